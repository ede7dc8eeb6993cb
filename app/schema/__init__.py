"""Collection schemas and the filters checked against them.

`fields` is the field-schema language of a collection (`FieldDefinition`,
`compile_schema` → `CompiledSchema`, which validates and converts documents in
one pass); `filters` turns a client's MongoDB filter into a safe driver filter
(`compile_filter`: operator allow-list, regex limits, values converted by the
schema) or refuses it with 400 `INVALID_FILTER`. Both are pure: no I/O.
"""

from app.schema.fields import (
    FIELD_TYPES,
    CompiledSchema,
    FieldDefinition,
    FieldType,
    SchemaError,
    compile_schema,
    convert_id,
    convert_untyped_value,
    stored_definition,
)
from app.schema.filters import (
    ALLOWED,
    InvalidFilter,
    compile_condition,
    compile_filter,
    parse_filter_json,
)

__all__ = [
    "ALLOWED",
    "FIELD_TYPES",
    "CompiledSchema",
    "FieldDefinition",
    "FieldType",
    "InvalidFilter",
    "SchemaError",
    "compile_condition",
    "compile_filter",
    "compile_schema",
    "convert_id",
    "convert_untyped_value",
    "parse_filter_json",
    "stored_definition",
]
