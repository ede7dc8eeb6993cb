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
from bson.binary import Binary, UuidRepresentation
from bson.codec_options import CodecOptions
from bson.tz_util import utc as bson_utc

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


# ------------------------------------------------------- the driver's form, at once

#: The codec options of Quarry's client (`app.db.database`): what `driver_document`
#: returns documents as (tz-aware datetimes in UTC, standard UUIDs, plain dicts).
DRIVER_CODEC: CodecOptions[dict[str, Any]] = CodecOptions(
    tz_aware=True, uuid_representation=UuidRepresentation.STANDARD
)
#: As PyMongo's decoder dates them: `bson.tz_util.utc`, not `datetime.UTC`.
_DRIVER_EPOCH = datetime(1970, 1, 1, tzinfo=bson_utc)
_INT32 = 2**31
_INT64 = 2**63


class _Declined(Exception):
    """Something `driver_document` leaves to the BSON round trip."""


def driver_document(stored: dict[str, Any]) -> dict[str, Any] | None:
    """`decode_document(stored)` exactly as PyMongo returns it after a BSON round
    trip with `DRIVER_CODEC` (`EngineAdapter._driver_form`), without the round
    trip — or None: the document holds something this does not convert (binary
    data other than subtype 0, a regex, a timestamp, an int field beyond int32, a
    top-level `_id` that is not first) or that the reader refuses; the caller
    then reads it the long way, which decides (and raises) as it always has."""
    try:
        document = _driver_object(stored, stored.get("$s"))
    except Exception:  # declined: the long way gives the answer, or the error
        return None
    if "_id" in document and next(iter(document)) != "_id":
        return None  # BSON writes a top-level _id first
    return document


def _driver_object(value: Any, schema: Any) -> dict[str, Any]:
    if type(value) is not dict or type(schema) is not dict:
        raise _Declined
    properties = schema.get("p") or {}
    keys = schema.get("$k") or []
    get, elem_of = value.get, properties.get
    document: dict[str, Any] = {}
    for key in keys:
        document[key] = _driver_value(get(key), elem_of(key))
    return document


def _driver_value(value: Any, elem: Any) -> Any:
    if value is None:
        return None
    if type(elem) is not dict:
        raise _Declined
    kind = elem.get("t")
    if kind == "string":
        if type(value) is not str:
            raise _Declined
        return value
    if kind == "double":
        return float(value)
    if kind == "int":
        number = int(value)
        if not -_INT32 <= number < _INT32:
            raise _Declined  # BSON would write (and read back) an int64
        return number
    if kind == "objectId":
        return ObjectId(value)
    if kind == "date":
        return _DRIVER_EPOCH + timedelta(milliseconds=int(value))
    if kind == "long":
        number = int(value)
        if not -_INT64 <= number < _INT64:
            raise _Declined
        return Int64(number)
    if kind == "bool":
        if type(value) is not bool:
            raise _Declined
        return value
    if kind == "object":
        return _driver_object(value, elem.get("$s"))
    if kind == "array":
        items = elem.get("i") or []
        if type(value) is not list or type(items) is not list or len(items) != len(value):
            raise _Declined
        return [_driver_value(v, e) for v, e in zip(value, items, strict=True)]
    if kind == "binData" and int(elem.get("s", 0)) == 0:
        return base64.b64decode(value)  # subtype 0 reads back as bytes
    if kind == "null":
        return None
    raise _Declined
