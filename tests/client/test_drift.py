"""The client and the server's OpenAPI document cannot drift apart silently.

The generated files are current (models from the document, the blocking client
from the async one), every operation of the document is called by the client or
named in `UNCOVERED` with a reason, and every operation the client declares
exists there with the same request and answer schemas, the same query
parameters and the same need for credentials."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from quarry_client.endpoints import UNCOVERED, Endpoint, all_endpoints

from app.main import create_app

CLIENT = Path(__file__).resolve().parents[2] / "client"


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"client_{name}", CLIENT / "scripts" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app().openapi()


@pytest.fixture(scope="module")
def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }


def declared() -> dict[tuple[str, str], Endpoint]:
    table: dict[tuple[str, str], Endpoint] = {}
    for each in all_endpoints():
        assert (each.method, each.path) not in table, f"{each.method} {each.path} declared twice"
        table[(each.method, each.path)] = each
    return table


def schema_name(schema: dict[str, Any] | None, generator: ModuleType) -> str | None:
    """The model a body schema names: a `$ref`, or the one `$ref` of an optional body."""
    if not schema:
        return None
    if "$ref" in schema:
        return str(generator.ref_name(schema["$ref"]))
    refs = [option for option in schema.get("anyOf", []) if "$ref" in option]
    return str(generator.ref_name(refs[0]["$ref"])) if len(refs) == 1 else None


def test_models_are_generated_from_the_current_document(document: dict[str, Any]) -> None:
    generator = script("generate_models")
    expected = generator.formatted(generator.render(document))
    assert generator.MODELS.read_text() == expected, (
        "client/quarry_client/models.py is stale: run client/scripts/generate_models.py"
    )


def test_the_blocking_client_is_generated_from_the_async_one() -> None:
    unasync = script("unasync")
    expected = unasync.rendered()
    present = {path.name: path.read_text() for path in unasync.TARGET.glob("*.py")}
    assert present == expected, "quarry_client/_sync is stale: run client/scripts/unasync.py"


def test_every_operation_is_called_by_the_client_or_named_as_uncovered(
    operations: dict[tuple[str, str], dict[str, Any]],
) -> None:
    table = declared()
    missing = sorted(set(operations) - set(table) - set(UNCOVERED))
    assert not missing, f"operations the client does not call: {missing}"
    both = sorted(set(table) & set(UNCOVERED))
    assert not both, f"declared and also listed as uncovered: {both}"
    gone = sorted(set(UNCOVERED) - set(operations))
    assert not gone, f"UNCOVERED names operations the server no longer has: {gone}"


def test_every_declared_operation_exists_on_the_server(
    operations: dict[tuple[str, str], dict[str, Any]],
) -> None:
    unknown = sorted(set(declared()) - set(operations))
    assert not unknown, f"the client calls operations the server does not have: {unknown}"


def test_request_and_answer_types_match_the_document(
    operations: dict[tuple[str, str], dict[str, Any]],
) -> None:
    generator = script("generate_models")
    problems = []
    for key, each in declared().items():
        operation = operations.get(key)
        if operation is None:
            continue
        content = operation.get("requestBody", {}).get("content", {})
        body = schema_name(content.get("application/json", {}).get("schema"), generator)
        if each.body is not None and each.body.__name__ != body:
            problems.append(f"{key}: request {each.body.__name__} != {body}")
        success = next(
            (answer for code, answer in operation["responses"].items() if code.startswith("2")),
            {},
        )
        answer = schema_name(
            success.get("content", {}).get("application/json", {}).get("schema"), generator
        )
        if each.answer is not None and each.answer.__name__ != answer:
            problems.append(f"{key}: answer {each.answer.__name__} != {answer}")
        if each.body is None and body is not None:
            problems.append(f"{key}: the server takes {body}; the client declares no body type")
        if each.answer is None and answer is not None:
            problems.append(f"{key}: the server answers {answer}; the client declares none")
    assert not problems, "\n".join(problems)


def test_query_parameters_match_the_document(
    operations: dict[tuple[str, str], dict[str, Any]],
) -> None:
    problems = []
    for key, each in declared().items():
        operation = operations.get(key)
        if operation is None:
            continue
        server = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        if set(each.query) != server:
            problems.append(
                f"{key}: client sends {sorted(each.query)}, server reads {sorted(server)}"
            )
    assert not problems, "\n".join(problems)


def test_credentials_are_sent_exactly_where_the_server_wants_them(
    operations: dict[tuple[str, str], dict[str, Any]],
) -> None:
    wrong = sorted(
        f"{key}: client auth={each.auth}"
        for key, each in declared().items()
        if key in operations and each.auth != bool(operations[key].get("security"))
    )
    assert not wrong, wrong
