"""JSON ↔ BSON values (conventions.md), in both directions.

In: `decode_wrapper` turns one MongoDB Extended JSON wrapper — canonical or
relaxed, as `mongoexport` writes them (`{"$oid"}`, `{"$date"}`, `{"$numberLong"}`,
`{"$numberInt"}`, `{"$numberDouble"}`, `{"$numberDecimal"}`, `{"$binary"}`,
`{"$timestamp"}`, `{"$regularExpression"}`) — into its BSON value, honoured
wherever a document or filter value is read. The schema compiler
(`app.schema`) walks documents and calls it.

Out, two dialects:
- `to_plain` — API answers: dates as ISO-8601 with `Z`, ObjectIds as 24-hex,
  Decimal128 as a string, binary as `{"$binary": {...}}`.
- `to_extended` — export files: relaxed Extended JSON as `mongoexport` writes it
  (`{"$oid"}`, `{"$date"}`, `{"$numberLong"}` for 64-bit integers,
  `{"$numberDecimal"}`), so that a file exported by Quarry imports back with every
  type intact whatever the collection's schema says.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from decimal import InvalidOperation
from typing import Any

from bson import ObjectId
from bson.binary import Binary
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.regex import Regex
from bson.timestamp import Timestamp

from app.clock import iso_z
from app.kit.regex_limits import regex_problem

#: False while serving a request on an engine that cannot store Decimal128 (the
#: embedded FerretDB closes the connection on one): `$numberDecimal` is then a
#: clear value error instead of a dropped connection. Set per request by
#: `app.db.Database.apply_value_limits`; worker threads inherit it.
DECIMAL_SUPPORTED: ContextVar[bool] = ContextVar("quarry_decimal_supported", default=True)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class WrapperError(ValueError):
    """An Extended JSON wrapper with a value it cannot hold; the message says why."""


def parse_datetime(value: object) -> datetime:
    """An ISO-8601 string (naive means UTC) or epoch milliseconds → aware UTC datetime (ms)."""
    if isinstance(value, bool):
        raise WrapperError("expected an ISO-8601 date string")
    if isinstance(value, int):
        moment = _EPOCH + timedelta(milliseconds=value)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise WrapperError("expected an ISO-8601 date, e.g. 2023-10-27T10:00:00Z") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
    elif isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        raise WrapperError("expected an ISO-8601 date string")
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def parse_object_id_value(value: object) -> ObjectId:
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str) and ObjectId.is_valid(value):
        return ObjectId(value)
    raise WrapperError("expected a 24-character hex ObjectId")


def _date(payload: Any) -> datetime:
    if isinstance(payload, dict) and set(payload) == {"$numberLong"}:
        payload = _number_long(payload["$numberLong"])
    return parse_datetime(payload)


def _number_long(payload: Any) -> Int64:
    try:
        number = int(payload) if isinstance(payload, str) else None
    except ValueError:
        number = None
    if number is None or not INT64_MIN <= number <= INT64_MAX:
        raise WrapperError("$numberLong needs a 64-bit integer as a string")
    return Int64(number)


def _number_int(payload: Any) -> int:
    try:
        number = int(payload) if isinstance(payload, str) else None
    except ValueError:
        number = None
    if number is None or not -(2**31) <= number < 2**31:
        raise WrapperError("$numberInt needs a 32-bit integer as a string")
    return number


def _number_double(payload: Any) -> float:
    try:
        number = float(payload) if isinstance(payload, str) else None
    except ValueError:
        number = None
    if number is None or not math.isfinite(number):
        raise WrapperError("$numberDouble needs a finite number as a string")
    return number


def _number_decimal(payload: Any) -> Decimal128:
    if not DECIMAL_SUPPORTED.get():
        raise WrapperError(
            "$numberDecimal values need MongoDB: the embedded engine (ferretdb-sqlite) "
            "cannot store Decimal128"
        )
    try:
        if not isinstance(payload, str):
            raise InvalidOperation
        return Decimal128(payload)
    except (InvalidOperation, ValueError):
        raise WrapperError("$numberDecimal needs a decimal number as a string") from None


def _binary(payload: Any, subtype: Any = None) -> Binary:
    if isinstance(payload, dict):
        data, subtype = payload.get("base64"), payload.get("subType")
    else:
        data = payload
    try:
        raw = base64.b64decode(data, validate=True) if isinstance(data, str) else None
        kind = int(subtype, 16) if isinstance(subtype, str) else 0
    except (binascii.Error, ValueError):
        raw = None
        kind = 0
    if raw is None or not 0 <= kind <= 255:
        raise WrapperError("$binary needs base64 data and a hex subType")
    return Binary(raw, kind)


def _timestamp(payload: Any) -> Timestamp:
    if isinstance(payload, dict):
        t, i = payload.get("t"), payload.get("i")
        if isinstance(t, int) and isinstance(i, int) and 0 <= t < 2**32 and 0 <= i < 2**32:
            return Timestamp(t, i)
    raise WrapperError("$timestamp needs {t, i}")


def _regex(payload: Any) -> Regex[Any]:
    if isinstance(payload, dict):
        pattern, options = payload.get("pattern"), payload.get("options", "")
        if isinstance(pattern, str) and isinstance(options, str):
            problem = regex_problem(pattern, options)
            if problem is not None:
                raise WrapperError(f"$regularExpression {problem}")
            return Regex(pattern, options)
    raise WrapperError("$regularExpression needs {pattern, options}")


_SINGLE: dict[str, Callable[[Any], Any]] = {
    "$oid": parse_object_id_value,
    "$date": _date,
    "$numberLong": _number_long,
    "$numberInt": _number_int,
    "$numberDouble": _number_double,
    "$numberDecimal": _number_decimal,
    "$binary": _binary,
    "$timestamp": _timestamp,
    "$regularExpression": _regex,
}

#: Returned by `decode_wrapper` for a dict that is not an Extended JSON wrapper.
NOT_A_WRAPPER = object()


def decode_wrapper(value: dict[str, Any]) -> Any:
    """The BSON value of an Extended JSON wrapper, or `NOT_A_WRAPPER`.

    Raises `WrapperError` for a wrapper with a bad payload.
    """
    if len(value) == 1:
        key, payload = next(iter(value.items()))
        decoder = _SINGLE.get(key)
        if decoder is not None:
            return decoder(payload)
    elif len(value) == 2 and "$binary" in value and "$type" in value:
        return _binary(value["$binary"], value["$type"])
    return NOT_A_WRAPPER


# ------------------------------------------------------------------------- out


def _binary_out(value: bytes, subtype: int) -> dict[str, Any]:
    return {"$binary": {"base64": base64.b64encode(value).decode(), "subType": f"{subtype:02x}"}}


def _float_out(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {
        "$numberDouble": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    }


def _common_out(value: Any) -> Any:
    if isinstance(value, Binary):
        return _binary_out(bytes(value), value.subtype)
    if isinstance(value, bytes):
        return _binary_out(value, 0)
    if isinstance(value, Regex):
        return {"$regularExpression": {"pattern": value.pattern, "options": str(value.flags)}}
    if isinstance(value, Timestamp):
        return {"$timestamp": {"t": value.time, "i": value.inc}}
    return str(value)


def to_plain(value: Any) -> Any:
    """A BSON value as API JSON (conventions.md): ISO dates, hex ids, decimal strings."""
    # The exact types documents are made of first (a page holds tens of thousands
    # of values); anything else, subclasses included, goes through `_plain`.
    kind = type(value)
    if kind is str:
        return value
    if kind is dict:
        plain: dict[str, Any] = {}
        for key, item in value.items():
            # A document's strings and ints are most of its values: kept as they
            # are without a call each.
            of = type(item)
            plain[key] = item if of is str or of is int or item is None else to_plain(item)
        return plain
    if kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else _float_out(value)
    if kind is datetime:
        return iso_z(value if value.tzinfo else value.replace(tzinfo=UTC))
    if kind is ObjectId:
        return str(value)
    if kind is list:
        return [to_plain(item) for item in value]
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, str | bool | None):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    if isinstance(value, float):
        return _float_out(value)
    if isinstance(value, datetime):
        return iso_z(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, ObjectId | Decimal128):
        return str(value)
    return _common_out(value)


def to_extended(value: Any) -> Any:
    """A BSON value as relaxed Extended JSON, the way `mongoexport` writes it."""
    if isinstance(value, str | bool | None):
        return value
    if isinstance(value, Int64):
        return {"$numberLong": str(int(value))}
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {key: to_extended(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_extended(item) for item in value]
    if isinstance(value, float):
        return _float_out(value)
    if isinstance(value, datetime):
        return {"$date": iso_z(value if value.tzinfo else value.replace(tzinfo=UTC))}
    if isinstance(value, ObjectId):
        return {"$oid": str(value)}
    if isinstance(value, Decimal128):
        return {"$numberDecimal": str(value)}
    return _common_out(value)
