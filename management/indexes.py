"""The indexes of a collection: those its schema fields ask for (`unique`/`index`)
and those it declares on their own (`indexes: [{name?, keys, unique}]`), the
rules they follow, and how a value of another type converts to the declared one.

Pure: no I/O. The service (`management.service`, `management.index_service`)
creates and drops the engine's indexes and reads their state.

Stored in the collection entry's `indexes` list, one entry per engine index:
`{name, field, unique}` for a field's flag (as before declared indexes existed;
its key is the field, ascending, of the field's type), and `{name, field,
unique, declared: true, keys: [{field, type, direction}]}` for a declared one
(`field` is its first key's, for the clients that read only that); either may
carry `engine_name`, the index's name on the engine where it differs (`engine_name`).

Rules (422 `VALIDATION_ERROR` with every problem located and typed — `invalid_name`,
`index_name_taken`, `index_keys_taken`, `type_mismatch`, `duplicate_key`,
`too_many_indexes` — the name rule being the database names'): 1-8 keys, at most
`MAX_DECLARED_INDEXES` declared indexes, and with `_id`'s and the field flags' at
most `MAX_COLLECTION_INDEXES`; key fields are top-level or dotted names whose every
part is a field name,
never `_id`, and one field at most once per index; where the field is declared in
`fields` the key's type must be the field's, and one undeclared field has one type
across indexes; a name is unique among the collection's indexes (field flags'
`<field>_unique`/`<field>_index` included, `_id_` reserved), and so is a key pattern
(fields and directions). A name left out is derived from the keys as MongoDB derives
it (`price_1_sku_-1`); a name given equal to that derived name is accepted as if left
out (the name rule aside), so what `get_metadata` shows goes back as it is.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from bson import Int64, ObjectId
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.kit import field_name_problem, name_problem, parse_datetime
from app.schema import FieldType

#: Declared indexes per collection at most (request validation).
MAX_DECLARED_INDEXES = 32
#: Indexes per collection at most, `_id`'s included: MongoDB's limit, kept on
#: every engine so that data moves between them (`too_many_indexes`).
MAX_COLLECTION_INDEXES = 64
MAX_KEYS = 8
#: MongoDB's index of `_id`: no other index may take its name.
ID_INDEX_NAME = "_id_"
#: Derived names longer than this are cut and end with a digest of the whole.
MAX_DERIVED_NAME = 120

_EXAMPLE = {
    "name": "by_price",
    "keys": [
        {"field": "price", "type": "float", "direction": -1},
        {"field": "sku", "type": "string", "direction": 1},
    ],
    "unique": False,
}


class IndexKey(BaseModel):
    """One key of a declared index: a field, its type and the key's direction."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1, max_length=1024)
    type: FieldType
    direction: Literal[1, -1] = 1

    @field_validator("field")
    @classmethod
    def _valid_path(cls, value: str) -> str:
        for part in value.split("."):
            problem = field_name_problem(part)
            if problem is not None:
                raise ValueError(f"each part of a dotted key: {problem}")
        if value.split(".")[0] == "_id":
            raise ValueError("_id has its own index and cannot be a key of a declared one")
        return value


class IndexDefinition(BaseModel):
    """An index declared without declaring its fields."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": _EXAMPLE})

    name: str | None = Field(default=None, min_length=1, max_length=200)
    keys: list[IndexKey] = Field(min_length=1, max_length=MAX_KEYS)
    unique: bool = False


def derived_name(keys: Iterable[Mapping[str, Any]]) -> str:
    """MongoDB's default name for these keys (`price_1_sku_-1`), cut when long."""
    name = "_".join(f"{key['field']}_{key['direction']}" for key in keys)
    if len(name) <= MAX_DERIVED_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[: MAX_DERIVED_NAME - 13]}_{digest}"


def engine_name(index: Mapping[str, Any]) -> str:
    """The name of the index on the engine: its name, unless it was renamed without
    being rebuilt (a rename is metadata only) or made while its name was taken on
    the engine (`engine_name` kept beside the name)."""
    return str(index.get("engine_name") or index["name"])


def field_index_entries(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The indexes the fields' `unique`/`index` flags ask for."""
    indexes = []
    for field in fields:
        if field.get("unique"):
            indexes.append(
                {"name": f"{field['name']}_unique", "field": field["name"], "unique": True}
            )
        elif field.get("index"):
            indexes.append(
                {"name": f"{field['name']}_index", "field": field["name"], "unique": False}
            )
    return indexes


def declared_entry(definition: IndexDefinition) -> dict[str, Any]:
    keys = [key.model_dump() for key in definition.keys]
    return {
        "name": definition.name or derived_name(keys),
        "field": keys[0]["field"],
        "unique": definition.unique,
        "declared": True,
        "keys": keys,
    }


def declared_entries(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The declared indexes stored in a collection entry."""
    return [index for index in entry.get("indexes", []) if index.get("declared")]


def as_definitions(entries: Iterable[Mapping[str, Any]]) -> list[IndexDefinition]:
    """Stored declarations as they were declared (a derived name left out again)."""
    return [
        IndexDefinition(
            name=None if entry["name"] == derived_name(entry["keys"]) else entry["name"],
            keys=entry["keys"],
            unique=entry["unique"],
        )
        for entry in entries
    ]


def index_keys(index: Mapping[str, Any], fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The keys of a stored index entry (a field flag's: its field, ascending)."""
    if "keys" in index:
        return list(index["keys"])
    types = {field["name"]: field["type"] for field in fields}
    return [{"field": index["field"], "type": types.get(index["field"], "any"), "direction": 1}]


def key_spec(index: Mapping[str, Any], fields: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The index as the driver creates it: `[(field, direction), ...]`."""
    return [(key["field"], int(key["direction"])) for key in index_keys(index, fields)]


def indexed_field_types(entry: Mapping[str, Any]) -> dict[str, str]:
    """Every field an index of the collection keys, with its type: the fields marked
    `unique` or `index` and the key fields of declared indexes — what the engine may
    build typed indexes of (`EngineAdapter.declare_fields`; it keeps the top-level
    scalar ones) and what has a type guard."""
    fields = entry.get("fields", [])
    types = {
        field["name"]: field["type"]
        for field in fields
        if field.get("unique") or field.get("index")
    }
    for index in declared_entries(entry):
        for key in index["keys"]:
            types.setdefault(key["field"], key["type"])
    return types


def index_problems(
    fields: list[dict[str, Any]], declared: list[IndexDefinition]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The stored entries of every index (field flags first) and the problems of the
    declarations, each located under `indexes`."""
    problems: list[dict[str, Any]] = []
    entries = field_index_entries(fields)
    names = {entry["name"]: f"the index of field {entry['field']}" for entry in entries}
    names[ID_INDEX_NAME] = "the index of _id"
    patterns = {tuple(key_spec(entry, fields)): entry["name"] for entry in entries}
    field_types = {field["name"]: field["type"] for field in fields}
    key_types: dict[str, tuple[str, int]] = {}
    for position, definition in enumerate(declared):
        entry = declared_entry(definition)
        problems += _definition_problems(position, definition, entry, field_types, key_types)
        if entry["name"] in names:
            problems.append(
                _problem(
                    [position, "name"],
                    f"the name {entry['name']!r} is taken by {names[entry['name']]}",
                    "index_name_taken",
                )
            )
        pattern = tuple(key_spec(entry, fields))
        if pattern in patterns:
            problems.append(
                _problem(
                    [position, "keys"],
                    f"index {patterns[pattern]!r} has the same keys and directions",
                    "index_keys_taken",
                )
            )
        names.setdefault(entry["name"], f"declared index {position}")
        patterns.setdefault(pattern, entry["name"])
        entries.append(entry)
    if 1 + len(entries) > MAX_COLLECTION_INDEXES:
        problems.append(
            _problem(
                [],
                f"{len(entries)} indexes (field flags and declared) and _id's are more than "
                f"the {MAX_COLLECTION_INDEXES} a collection may have",
                "too_many_indexes",
            )
        )
    return entries, problems


def _definition_problems(
    position: int,
    definition: IndexDefinition,
    entry: dict[str, Any],
    field_types: Mapping[str, str],
    key_types: dict[str, tuple[str, int]],
) -> list[dict[str, Any]]:
    problems = []
    # A name equal to the one derived from the keys is the name left out (so what
    # get_metadata shows goes back as it is), whatever the name rule says of it.
    if definition.name is not None and definition.name != derived_name(entry["keys"]):
        problem = name_problem(definition.name)
        if problem is not None:
            problems.append(
                _problem([position, "name"], f"an index name {problem}", "invalid_name")
            )
    seen: set[str] = set()
    for number, key in enumerate(definition.keys):
        loc = [position, "keys", number]
        if key.field in seen:
            problems.append(_problem([*loc, "field"], "a field is a key once", "duplicate_key"))
        seen.add(key.field)
        declared_type = field_types.get(key.field)
        if declared_type is not None and declared_type != key.type:
            problems.append(
                _problem(
                    [*loc, "type"],
                    f"field {key.field} is declared as {declared_type} in fields, not {key.type}",
                    "type_mismatch",
                )
            )
            continue
        earlier = key_types.setdefault(key.field, (key.type, position))
        if earlier[0] != key.type:
            problems.append(
                _problem(
                    [*loc, "type"],
                    f"field {key.field} is a {earlier[0]} key in declared index {earlier[1]}",
                    "type_mismatch",
                )
            )
    return problems


def _problem(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["indexes", *loc], "msg": msg, "type": kind}


# ------------------------------------------------------------------ conversion

#: What `lossless_conversion` answers for a value that does not convert.
UNCONVERTIBLE: Any = object()
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_HEX_ID = re.compile(r"[0-9a-f]{24}")
#: The one date form that converts: calendar date, `T`, time to the second, an
#: optional fraction and a zone (`Z` or `±HH:MM`), so the instant is never guessed.
_DATE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_SAFE_INTEGER = 2**53
_INT64 = 2**63


def lossless_conversion(schema_type: str, value: Any) -> Any:
    """`value` as a value of `schema_type` when it comes back exactly as it was
    written, else `UNCONVERTIBLE`:

    - a string of an integer written plainly (no `+`, no leading zero, not `-0`)
      → int for int and number fields, a double within 2^53 for float fields;
    - a string that is the shortest form of a finite double (`repr(float(s)) ==
      s`: `"12.5"`, `"-0.0"`, `"1e+16"`) → that double, for float and number fields;
    - an int or long within 2^53 → double, for float fields;
    - an integral double other than `-0.0` (its sign would be lost) → int, for int
      fields;
    - `YYYY-MM-DDTHH:MM:SS(.f{1,6})?(Z|±HH:MM)` of whole milliseconds within
      years 1-9999 in UTC → date (the instant; the offset itself is not kept,
      BSON dates have none);
    - a lower-case 24-hex string → ObjectId; `"true"`/`"false"` → bool.

    Nothing else: upper-case hex, `"True"`, naive, week or date-only dates and
    numbers with a `+` do not come back as written."""
    if schema_type in ("int", "number", "float") and isinstance(value, str):
        return _from_number_text(schema_type, value)
    if schema_type == "float" and _is_integer(value) and abs(int(value)) <= _SAFE_INTEGER:
        return float(value)
    if schema_type == "int" and isinstance(value, float) and value.is_integer():
        if math.copysign(1.0, value) < 0 and value == 0:
            return UNCONVERTIBLE  # -0.0: an int has no sign of zero
        return _as_int(int(value)) if -_INT64 <= value < _INT64 else UNCONVERTIBLE
    if not isinstance(value, str):
        return UNCONVERTIBLE
    if schema_type == "bool" and value in ("true", "false"):
        return value == "true"
    if schema_type == "id" and _HEX_ID.fullmatch(value):
        return ObjectId(value)
    if schema_type == "date":
        return _date(value)
    return UNCONVERTIBLE


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_int(number: int) -> int:
    return Int64(number) if not -(2**31) <= number < 2**31 else number


def _from_number_text(schema_type: str, text: str) -> Any:
    if _INTEGER.fullmatch(text) is not None:
        number = int(text)
        if str(number) == text and -_INT64 <= number < _INT64:
            if schema_type != "float":
                return _as_int(number)
            if abs(number) <= _SAFE_INTEGER:
                return float(number)
    if schema_type == "int":
        return UNCONVERTIBLE
    return _double_text(text)


def _double_text(text: str) -> Any:
    """The double `text` is the shortest form of (Python's `repr`), else UNCONVERTIBLE."""
    try:
        number = float(text)
    except ValueError:
        return UNCONVERTIBLE
    if not math.isfinite(number) or repr(number) != text:
        return UNCONVERTIBLE
    return number


def _date(text: str) -> Any:
    if _DATE.fullmatch(text) is None:
        return UNCONVERTIBLE
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.microsecond % 1000:
            return UNCONVERTIBLE  # a date keeps milliseconds
        return parse_datetime(text)
    except (ValueError, OverflowError):  # no such day, or beyond years 1-9999 in UTC
        return UNCONVERTIBLE


def bson_type_name(value: Any) -> str:
    """The `$type` name of a value read by the driver."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Int64):
        return "long"
    if isinstance(value, int):
        return "int" if -(2**31) <= value < 2**31 else "long"
    names = {
        float: "double",
        str: "string",
        dict: "object",
        list: "array",
        datetime: "date",
        ObjectId: "objectId",
    }
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return type(value).__name__.lower()
