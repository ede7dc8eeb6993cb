"""Writes `quarry_client/models.py` from the server's OpenAPI document.

The client's request and answer types are generated, not hand-copied, so they
cannot drift from the server: `tests/client/test_drift.py` renders them again from
the live document and compares. Run it after changing a server schema:

    .venv/bin/python client/scripts/generate_models.py

It needs the server importable (it builds the app to read its document); the
generated file itself needs only pydantic.
"""

from __future__ import annotations

import keyword
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

MODELS = Path(__file__).resolve().parent.parent / "quarry_client" / "models.py"

HEADER = '''"""Request and answer types of the Quarry API, generated from its OpenAPI document
by `client/scripts/generate_models.py`. Do not edit: regenerate.

Answers accept fields this client does not know (a newer server may add some);
requests refuse unknown fields, as the server does."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
'''

#: Multipart form bodies: the client streams these itself.
SKIPPED = re.compile(r"^Body_")


def class_name(component: str) -> str:
    """`management__schemas__MessageAnswer` -> `ManagementMessageAnswer`: FastAPI
    prefixes a name two packages share with its module path."""
    if "__" not in component:
        return component
    parts = component.split("__")
    package = parts[-3] if len(parts) >= 3 else parts[0]
    return "".join(word.capitalize() for word in package.split("_")) + parts[-1]


def ref_name(ref: str) -> str:
    return class_name(ref.rsplit("/", 1)[-1])


def annotation(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return ref_name(schema["$ref"])
    if "anyOf" in schema or "oneOf" in schema:
        options = [annotation(option) for option in schema.get("anyOf", schema.get("oneOf"))]
        unique = list(dict.fromkeys(options))
        nulls = [option for option in unique if option == "None"]
        return " | ".join([option for option in unique if option != "None"] + nulls)
    if "const" in schema:
        return f"Literal[{schema['const']!r}]"
    if "enum" in schema:
        return "Literal[" + ", ".join(repr(value) for value in schema["enum"]) + "]"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(annotation({**schema, "type": each}) for each in kind)
    if kind == "string":
        return "datetime" if schema.get("format") == "date-time" else "str"
    if kind == "integer":
        return "int"
    if kind == "number":
        return "float"
    if kind == "boolean":
        return "bool"
    if kind == "null":
        return "None"
    if kind == "array":
        return f"list[{annotation(schema.get('items', {}))}]"
    if kind == "object" or "additionalProperties" in schema:
        extra = schema.get("additionalProperties")
        value = annotation(extra) if isinstance(extra, dict) and extra else "Any"
        return f"dict[str, {value}]"
    return "Any"


def field_name(name: str) -> str:
    python = re.sub(r"\W", "_", name).lstrip("_") or "field"
    if python[0].isdigit() or keyword.iskeyword(python):
        python += "_"
    return python


def field_line(name: str, schema: dict[str, Any], required: bool) -> str:
    python = field_name(name)
    kind = annotation(schema)
    arguments: list[str] = []
    if not required:
        default = schema.get("default")
        if isinstance(default, (list, dict)):
            arguments.append(f"default_factory=lambda: {default!r}")
        else:
            arguments.append(f"default={default!r}")
            if default is None and "None" not in kind.split(" | "):
                kind += " | None"
    if python != name:
        arguments.append(f"alias={name!r}")
    description = schema.get("description")
    if description:
        arguments.append(f"description={' '.join(description.split())!r}")
    if not arguments:
        return f"    {python}: {kind}"
    if arguments == [f"default={schema.get('default')!r}"]:
        return f"    {python}: {kind} = {schema.get('default')!r}"
    return f"    {python}: {kind} = Field({', '.join(arguments)})"


def render_enum(name: str, schema: dict[str, Any]) -> str:
    lines = [f"class {name}(StrEnum):"]
    description = schema.get("description")
    if description:
        lines.append(f"    {' '.join(description.split())!r}")
        lines.append("")
    lines += [f"    {value} = {value!r}" for value in schema["enum"]]
    return "\n".join(lines)


def render_model(name: str, schema: dict[str, Any]) -> str:
    request = schema.get("additionalProperties") is False
    lines = [f"class {name}(BaseModel):"]
    description = schema.get("description")
    if description:
        lines.append(f'    """{" ".join(description.split())}"""')
        lines.append("")
    extra = "forbid" if request else "allow"
    lines.append(f'    model_config = ConfigDict(extra="{extra}", populate_by_name=True)')
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    if properties:
        lines.append("")
    lines += [field_line(prop, properties[prop], prop in required) for prop in properties]
    return "\n".join(lines)


def render(document: dict[str, Any]) -> str:
    components = document.get("components", {}).get("schemas", {})
    blocks = [HEADER.rstrip("\n")]
    for component in sorted(components, key=class_name):
        if SKIPPED.match(component):
            continue
        schema = components[component]
        name = class_name(component)
        if "enum" in schema and schema.get("type") == "string":
            blocks.append(render_enum(name, schema))
        else:
            blocks.append(render_model(name, schema))
    return "\n\n\n".join(blocks) + "\n"


def formatted(source: str) -> str:
    """`source` as `ruff format` writes it (ruff is a development dependency)."""
    return subprocess.run(  # noqa: S603 - our own interpreter and ruff
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(MODELS), "-"],
        input=source,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def server_document() -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from app.main import create_app

    return create_app().openapi()


if __name__ == "__main__":
    MODELS.write_text(formatted(render(server_document())))
    print(f"wrote {MODELS}")
