"""The field-schema language of management.md and its compiler.

A collection has `fields: [{name, type, required?, unique?, index?, default?,
enum?, items?}]` and `strict`. `compile_schema` turns that into a
`CompiledSchema` — one converter closure per field, built once and cached by
the schema's content (so a schema version, which changes the content, gets its
own entry and an unchanged schema is never rebuilt). `CompiledSchema.validate`
checks one document and converts it to BSON values in a single pass, collecting
every problem with its `loc` instead of stopping at the first; `convert_value`
converts one value the same way (filters and update operators use it).

Conversions (conventions.md): `date` takes ISO-8601 strings, `{"$date"}` or epoch
milliseconds in a wrapper and stores a BSON date; `id` takes 24-hex strings or
`{"$oid"}`; `int` takes integral JSON numbers within 64 bits (an integral float
such as `3.0` counts — JSON does not tell them apart); `float` (alias `number`)
takes any finite number and stores a double. Fields the schema does not name
keep their JSON type, except Extended JSON wrappers, which are honoured
everywhere. A top-level `_id` that is a 24-hex string is stored as an ObjectId
so that `_id` filters given as strings match. Field names at every depth follow
`app.kit.field_name_problem`; non-finite numbers are refused (JSON cannot
carry them back out).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from bson import ObjectId
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.kit import (
    INT64_MAX,
    INT64_MIN,
    NOT_A_WRAPPER,
    WrapperError,
    decode_wrapper,
    field_name_problem,
    parse_datetime,
    parse_object_id_value,
    to_extended,
)

FieldType = Literal[
    "string", "int", "float", "number", "bool", "date", "id", "object", "array", "any"
]
FIELD_TYPES: tuple[str, ...] = FieldType.__args__  # type: ignore[attr-defined]
MAX_FIELDS = 500
MAX_NESTING = 100

Loc = list[str | int]


class FieldDefinition(BaseModel):
    """One field of a collection schema."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"name": "email", "type": "string", "required": True, "unique": True}
        },
    )

    name: str = Field(min_length=1, max_length=255)
    type: FieldType
    required: bool = False
    unique: bool = False
    index: bool = False
    default: Any = Field(default=None, description="Filled in on insert when the field is missing.")
    enum: list[Any] | None = Field(default=None, min_length=1, max_length=1000)
    items: FieldType | None = Field(default=None, description="Element type of an `array` field.")

    @field_validator("name")
    @classmethod
    def _valid_field_name(cls, value: str) -> str:
        problem = field_name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        if value == "_id":
            raise ValueError("_id is managed by the server and cannot be declared")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FieldDefinition:
        if self.items is not None and self.type != "array":
            raise ValueError("items is only allowed on array fields")
        if self.items in ("array",):
            raise ValueError("items cannot be array (nested arrays are typed any)")
        if self.enum is not None and self.type in ("object", "array"):
            raise ValueError("enum is only allowed on scalar fields")
        return self

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set and self.default is not None


class SchemaError(ValueError):
    """A schema definition that cannot be compiled; `details` locate each problem."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(details)} problem(s) in the schema")
        self.details = details


class _Invalid(ValueError):
    def __init__(self, msg: str, kind: str, loc: Loc | None = None) -> None:
        super().__init__(msg)
        self.msg, self.kind, self.loc = msg, kind, loc or []


# ------------------------------------------------------------- value converters

Converter = Callable[[Any], Any]


def _check_int_range(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise _Invalid("integer out of the 64-bit range", "int_range")
    return value


def _wrapped(value: dict[str, Any]) -> Any:
    try:
        decoded = decode_wrapper(value)
    except WrapperError as exc:
        raise _Invalid(str(exc), "extended_json") from None
    return decoded


def convert_untyped(value: Any, depth: int = 0) -> Any:
    """A value of a field the schema does not type: JSON kept, wrappers honoured."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return _check_int_range(value)
    if kind is float:
        if not math.isfinite(value):
            raise _Invalid("non-finite numbers are not supported", "float_finite")
        return value
    if depth > MAX_NESTING:
        raise _Invalid(f"nesting deeper than {MAX_NESTING} levels", "nesting")
    if kind is dict:
        return _convert_object(value, depth)
    if kind is list:
        out = []
        for position, item in enumerate(value):
            try:
                out.append(convert_untyped(item, depth + 1))
            except _Invalid as exc:
                exc.loc.insert(0, position)
                raise
        return out
    # Already a BSON value (internal callers, decoded wrappers).
    return value


def _convert_object(value: dict[str, Any], depth: int) -> Any:
    if value and next(iter(value))[:1] == "$":
        decoded = _wrapped(value)
        if decoded is not NOT_A_WRAPPER:
            return decoded
    out = {}
    for key, item in value.items():
        problem = field_name_problem(key) if type(key) is str else "field names must be strings"
        if problem is not None:
            raise _Invalid(problem, "field_name", [key])
        try:
            out[key] = convert_untyped(item, depth + 1)
        except _Invalid as exc:
            exc.loc.insert(0, key)
            raise
    return out


def _to_string(value: Any) -> str:
    if type(value) is str:
        return value
    raise _Invalid("expected a string", "string_type")


def _to_int(value: Any) -> int:
    kind = type(value)
    if kind is int:
        return _check_int_range(value)
    if kind is float and value.is_integer():
        return _check_int_range(int(value))
    if kind is dict:
        decoded = _wrapped(value)
        if isinstance(decoded, int) and not isinstance(decoded, bool):
            return decoded
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _Invalid("expected an integer", "int_type")


def _to_float(value: Any) -> float:
    kind = type(value)
    if kind is float or kind is int:
        number = float(value)
    elif kind is dict:
        decoded = _wrapped(value)
        if not isinstance(decoded, int | float) or isinstance(decoded, bool):
            raise _Invalid("expected a number", "float_type")
        number = float(decoded)
    else:
        raise _Invalid("expected a number", "float_type")
    if not math.isfinite(number):
        raise _Invalid("non-finite numbers are not supported", "float_finite")
    return number


def _to_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise _Invalid("expected true or false", "bool_type")


def _to_date(value: Any) -> datetime:
    kind = type(value)
    if kind is dict:
        decoded = _wrapped(value)
        if isinstance(decoded, datetime):
            return decoded
        raise _Invalid('expected an ISO-8601 date or {"$date": ...}', "date_type")
    if kind is str or isinstance(value, datetime):
        try:
            return parse_datetime(value)
        except WrapperError as exc:
            raise _Invalid(str(exc), "date_type") from None
    raise _Invalid("expected an ISO-8601 date string, e.g. 2023-10-27T10:00:00Z", "date_type")


def _to_object_id(value: Any) -> ObjectId:
    if type(value) is dict:
        value = _wrapped(value)
    try:
        return parse_object_id_value(value)
    except WrapperError as exc:
        raise _Invalid(str(exc), "id_type") from None


def _to_object(value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise _Invalid("expected an object", "object_type")
    converted = convert_untyped(value)
    if not isinstance(converted, dict):
        raise _Invalid("expected an object, not an Extended JSON value", "object_type")
    return converted


def _array_of(element: Converter | None) -> Converter:
    def convert(value: Any) -> list[Any]:
        if type(value) is not list:
            raise _Invalid("expected an array", "array_type")
        if element is None:
            return convert_untyped(value)  # type: ignore[no-any-return]
        out = []
        for position, item in enumerate(value):
            try:
                out.append(element(item))
            except _Invalid as exc:
                exc.loc.insert(0, position)
                raise
        return out

    return convert


_SCALAR_CONVERTERS: dict[str, Converter] = {
    "string": _to_string,
    "int": _to_int,
    "float": _to_float,
    "number": _to_float,
    "bool": _to_bool,
    "date": _to_date,
    "id": _to_object_id,
    "object": _to_object,
    "any": convert_untyped,
}


def converter_for(field_type: str, items: str | None = None) -> Converter:
    if field_type == "array":
        return _array_of(_SCALAR_CONVERTERS[items] if items else None)
    return _SCALAR_CONVERTERS[field_type]


def convert_untyped_value(value: Any) -> Any:
    """`convert_untyped` for callers outside this module: raises `ValueError`."""
    try:
        return convert_untyped(value)
    except _Invalid as exc:
        raise ValueError(exc.msg) from None


def convert_document_id(value: Any) -> Any:
    """The `_id` a client gives a document: a string, a number or an ObjectId
    (conventions.md). Other types are refused so that `_id` order has only these
    three type groups — cursor pagination relies on it to stay one comparison."""
    converted = convert_id(value)
    if isinstance(converted, bool) or not isinstance(converted, str | int | float | ObjectId):
        raise _Invalid("_id must be a string, a number or an ObjectId", "id_type")
    return converted


def convert_id(value: Any) -> Any:
    """An `_id` value (documents and filters): 24-hex strings and `{"$oid"}` become
    ObjectIds."""
    if type(value) is str and len(value) == 24 and ObjectId.is_valid(value):
        return ObjectId(value)
    if type(value) is list:
        raise _Invalid("_id cannot be an array", "id_type")
    return convert_untyped(value)


# ------------------------------------------------------------------ the compiler


@dataclass(frozen=True)
class _CompiledField:
    name: str
    type: str
    convert: Converter
    required: bool
    default: Any
    has_default: bool
    enum: tuple[Any, ...] | None
    #: The converter of one element, for array fields with typed `items`.
    element: Converter | None = None


def _with_loc(exc: _Invalid) -> str:
    where = "".join(f"[{part!r}]" for part in exc.loc)
    return f"{exc.msg}{' at ' + where if where else ''}"


def _problem(loc: Loc, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


class CompiledSchema:
    """A collection schema ready to check and convert documents; build with `compile_schema`."""

    def __init__(self, fields: Iterable[_CompiledField], strict: bool) -> None:
        self._fields = {field.name: field for field in fields}
        self._filled = tuple(
            field for field in self._fields.values() if field.required or field.has_default
        )
        self.strict = strict

    def field_names(self) -> list[str]:
        return list(self._fields)

    def has_field(self, name: str) -> bool:
        return name in self._fields

    def validate(
        self, document: Any, *, index: int | None = None, fill_defaults: bool = True
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """(converted document, []) or (None, every problem with its loc)."""
        prefix: Loc = [] if index is None else [index]
        if type(document) is not dict:
            return None, [_problem(prefix, "expected a JSON object", "object_type")]
        out: dict[str, Any] = {}
        problems: list[dict[str, Any]] = []
        fields = self._fields
        for key, value in document.items():
            field = fields.get(key)
            try:
                if field is not None:
                    out[key] = self._convert_field(field, value)
                elif key == "_id":
                    out[key] = convert_document_id(value)
                elif self.strict:
                    raise _Invalid("field not allowed: the collection's schema is strict", "strict")
                else:
                    problem = field_name_problem(key)
                    if problem is not None:
                        raise _Invalid(problem, "field_name")
                    out[key] = convert_untyped(value)
            except _Invalid as exc:
                problems.append(_problem([*prefix, key, *exc.loc], exc.msg, exc.kind))
        for field in self._filled:
            if field.name in document:
                continue  # present; a null in a required field was refused above
            if field.has_default and fill_defaults:
                out[field.name] = copy.deepcopy(field.default)
            elif field.required:
                problems.append(_problem([*prefix, field.name], "field required", "missing"))
        if problems:
            return None, problems
        return out, problems

    def field_type(self, name: str) -> str | None:
        """The declared type of top-level field `name` (`number` reads `float`), or None."""
        field = self._fields.get(name)
        return None if field is None else field.type

    def is_required(self, name: str) -> bool:
        field = self._fields.get(name)
        return field is not None and field.required

    def has_element_type(self, name: str) -> bool:
        field = self._fields.get(name)
        return field is not None and field.element is not None

    def defaults(self) -> dict[str, Any]:
        """The fields with a default and their (converted) default values."""
        return {f.name: copy.deepcopy(f.default) for f in self._filled if f.has_default}

    def convert_field_value(self, name: str, value: Any) -> Any:
        """A whole value of field `name` as an insert would store it (null only when
        the field is optional, enum respected); raises `ValueError` saying why not."""
        field = self._fields.get(name)
        if field is None:
            return self.convert_value(name, value)
        try:
            return self._convert_field(field, value)
        except _Invalid as exc:
            raise ValueError(_with_loc(exc)) from None

    def convert_element(self, name: str, value: Any) -> Any:
        """One element of array field `name` (typed by its `items`, else untyped)."""
        field = self._fields.get(name)
        try:
            if field is not None and field.element is not None:
                return field.element(value)
            return convert_untyped(value)
        except _Invalid as exc:
            raise ValueError(_with_loc(exc)) from None

    def convert_value(self, name: str, value: Any) -> Any:
        """One value as field `name` stores it; raises `ValueError` saying why not."""
        field = self._fields.get(name)
        try:
            if field is None:
                return convert_id(value) if name == "_id" else convert_untyped(value)
            return field.convert(value)
        except _Invalid as exc:
            raise ValueError(_with_loc(exc)) from None

    def convert_filter_value(self, name: str, value: Any) -> Any:
        """A filter value for field `name`: like `convert_value`, except that an array
        field also takes a single element (MongoDB matches it against the elements),
        typed by the field's `items` or, without them, kept as an untyped value."""
        field = self._fields.get(name)
        if field is not None and field.type == "array" and type(value) is not list:
            try:
                if value is None:
                    return None
                return field.element(value) if field.element else convert_untyped(value)
            except _Invalid as exc:
                raise ValueError(exc.msg) from None
        if value is None:
            return None
        return self.convert_value(name, value)

    @staticmethod
    def _convert_field(field: _CompiledField, value: Any) -> Any:
        if value is None:
            if field.required:
                raise _Invalid("field required (null is not allowed)", "missing")
            return None
        converted = field.convert(value)
        if field.enum is not None and converted not in field.enum:
            allowed = ", ".join(json.dumps(item, default=str) for item in field.enum[:20])
            raise _Invalid(f"must be one of: {allowed}", "enum")
        return converted


def _compile_field(
    definition: FieldDefinition, position: int
) -> tuple[_CompiledField, list[dict[str, Any]]]:
    convert = converter_for(definition.type, definition.items)
    problems: list[dict[str, Any]] = []
    enum: tuple[Any, ...] | None = None
    if definition.enum is not None:
        converted_enum = []
        for number, item in enumerate(definition.enum):
            try:
                converted_enum.append(convert(item))
            except _Invalid as exc:
                problems.append(_problem([position, "enum", number], exc.msg, exc.kind))
        enum = tuple(converted_enum)
    default = None
    if definition.has_default:
        try:
            default = convert(definition.default)
        except _Invalid as exc:
            problems.append(_problem([position, "default", *exc.loc], exc.msg, exc.kind))
        if enum is not None and default is not None and default not in enum:
            problems.append(_problem([position, "default"], "the default is not in enum", "enum"))
    compiled = _CompiledField(
        name=definition.name,
        type="float" if definition.type == "number" else definition.type,
        convert=convert,
        required=definition.required,
        default=default,
        has_default=definition.has_default,
        enum=enum,
        element=_SCALAR_CONVERTERS[definition.items] if definition.items else None,
    )
    return compiled, problems


def check_definitions(fields: list[FieldDefinition]) -> list[dict[str, Any]]:
    """Every problem of a schema definition (loc relative to the `fields` list)."""
    problems: list[dict[str, Any]] = []
    if len(fields) > MAX_FIELDS:
        problems.append(_problem([], f"at most {MAX_FIELDS} fields", "too_many_fields"))
    seen: set[str] = set()
    for position, definition in enumerate(fields):
        if definition.name in seen:
            problems.append(_problem([position, "name"], "duplicate field name", "duplicate"))
        seen.add(definition.name)
        problems.extend(_compile_field(definition, position)[1])
    return problems


@lru_cache(maxsize=2048)
def _compile_cached(key: str) -> CompiledSchema:
    payload = json.loads(key)
    definitions = [FieldDefinition.model_validate(item) for item in payload["fields"]]
    problems = check_definitions(definitions)
    if problems:
        raise SchemaError(problems)
    compiled = [_compile_field(definition, n)[0] for n, definition in enumerate(definitions)]
    return CompiledSchema(compiled, payload["strict"])


def schema_key(fields: Iterable[Mapping[str, Any] | FieldDefinition], strict: bool) -> str:
    """The cache key of a schema: its canonical JSON (field order matters, key order not)."""
    plain = [
        field.model_dump(exclude_unset=True) if isinstance(field, FieldDefinition) else dict(field)
        for field in fields
    ]
    return json.dumps(
        {"fields": plain, "strict": bool(strict)}, sort_keys=True, default=_json_default
    )


def _json_default(value: Any) -> Any:
    return to_extended(value)


def stored_definition(definition: FieldDefinition) -> dict[str, Any]:
    """A field definition as the control database keeps it: defaults and enums converted."""
    stored = definition.model_dump(exclude_unset=True)
    compiled, problems = _compile_field(definition, 0)
    if problems:
        raise SchemaError(problems)
    if "default" in stored:
        stored["default"] = compiled.default
    if compiled.enum is not None:
        stored["enum"] = list(compiled.enum)
    return stored


def compile_schema(
    fields: Iterable[Mapping[str, Any] | FieldDefinition], strict: bool = False
) -> CompiledSchema:
    """The compiled, cached validator of a schema; raises `SchemaError` when it is invalid."""
    return _compile_cached(schema_key(fields, strict))
