"""FerretDB 1.24's storage format on PostgreSQL ("sjson"), read back into BSON values.

Each document is one `jsonb` value: the fields as plain JSON plus `$s`, a schema
that gives every field's BSON type (`{"p": {field: elem}, "$k": [field order]}`;
an elem is `{"t": type}`, with `$s` for an object, `i` (one elem per item) for
an array, `s` (subtype) for binary data, `o` (options) for a regex). ObjectIds
are stored as hex strings, dates as milliseconds, binary data as base64. This
reader follows FerretDB's own (`internal/handler/sjson` in the 1.24.2 module) so
that `app.engine.sql` can return the documents of a page query from the SQL it
ran instead of asking FerretDB for each again; anything it does not recognise
raises `SjsonError` and the caller reads those documents through FerretDB.

`loads` parses the rows' JSON text the way `json.loads` does (what psycopg uses
by default), a few times faster: the engine's SQL connections read `jsonb` with it.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from bson import Int64, ObjectId, Regex, Timestamp
from bson.binary import Binary

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: An integer orjson would read as a float where `json.loads` keeps it exact (beyond
#: 64 bits; negatives beyond int64 have 19 digits) shows as 19 digits in a row (in
#: a string too: that text just takes the slower parser). Found by mapping every
#: digit to "0" and looking for 19 of them: a regular expression costs more than
#: the parse.
_DIGITS_AS_ZERO = bytes(ord("0") if chr(b).isdigit() and b < 128 else b for b in range(256))
_LONG_DIGITS = b"0" * 19


def loads(data: bytes) -> Any:
    """`json.loads(data)`, exactly: orjson where its answer is the same (it rounds
    numbers to the nearest double as Python does), `json.loads` for a text with a
    long integer (kept exact there) or one orjson refuses (a number beyond a double,
    a surrogate escape), so that each value and error is what it always was."""
    if _LONG_DIGITS not in data.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


#: Kinds whose value is one call away from its BSON value (as `_value` converts it).
_CONVERT: dict[str, Any] = {"double": float, "int": int, "long": Int64, "objectId": ObjectId}


class SjsonError(ValueError):
    """A value or schema this reader does not know."""


def decode_document(stored: dict[str, Any]) -> dict[str, Any]:
    """The document of one FerretDB row (`_jsonb`)."""
    return _document(stored, stored.get("$s"))


def _document(value: Any, schema: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(schema, dict):
        raise SjsonError("object without a schema")
    properties = schema.get("p") or {}
    keys = schema.get("$k") or []
    # `_value` of each field, with the kinds most fields have done inline: a page
    # of documents calls this tens of thousands of times.
    get, elem_of = value.get, properties.get
    document: dict[str, Any] = {}
    for key in keys:
        item, elem = get(key), elem_of(key)
        if item is not None and type(elem) is dict:
            kind = elem.get("t")
            if kind == "string" or kind == "bool":
                document[key] = item
                continue
            convert = _CONVERT.get(kind) if type(kind) is str else None
            if convert is not None:
                document[key] = convert(item)
                continue
        document[key] = _value(item, elem)
    return document


def _value(value: Any, elem: Any) -> Any:
    if value is None:
        return None
    if not isinstance(elem, dict):
        raise SjsonError("value without a type")
    kind = elem.get("t")
    if kind == "object":
        return _document(value, elem.get("$s"))
    if kind == "array":
        items = elem.get("i") or []
        if not isinstance(value, list) or len(items) != len(value):
            raise SjsonError("array does not match its schema")
        return [_value(v, e) for v, e in zip(value, items, strict=True)]
    if kind in ("string", "bool"):
        return value
    if kind == "double":
        return float(value)
    if kind == "int":
        return int(value)
    if kind == "long":
        return Int64(value)
    if kind == "objectId":
        return ObjectId(value)
    if kind == "date":
        return _EPOCH + timedelta(milliseconds=int(value))
    if kind == "binData":
        return Binary(base64.b64decode(value), int(elem.get("s", 0)))
    if kind == "timestamp":
        number = int(value)
        return Timestamp(number >> 32, number & 0xFFFFFFFF)
    if kind == "regex":
        return Regex(value, elem.get("o", ""))
    if kind == "null":
        return None
    raise SjsonError(f"unknown type {kind!r}")
