"""Rows in and out: timestamps, values, and the bytes a storage bucket holds.

A timestamp is kept as integer milliseconds since the Unix epoch (UTC) from the
moment it is parsed until it leaves as ISO-8601 with `Z`
(`2025-12-16T10:00:00Z`, milliseconds kept when non-zero, as everywhere in
Quarry). Input is an ISO-8601 string with or without offset (without one it is
UTC; an offset is normalised away) or an integer of epoch milliseconds;
precision below a millisecond is cut off (so two inputs that differ only below
it name the same row).

`values` is a flat object: at most 1,000 keys following the field-name rules,
not `timestamp` (so the flattened forms of `live` and `stream` are never
ambiguous), each value a number, string, boolean or null. A declared column
types its key: `float` takes any number (not a boolean), `int` an integer,
`string` a string, `bool` a boolean; null is accepted for every type.

A row's values are stored as their compact JSON (orjson) and sent back as those
same bytes, so reading and downloading rows never rebuilds an object per row.
"""

from __future__ import annotations

import math
from array import array
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from app.kit import field_name_problem

MAX_KEYS = 1000
#: Integers JSON encoding keeps exact (int64 and uint64).
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
DTYPES = ("float", "int", "string", "bool")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
DAY_MS = 86_400_000
#: 0001-01-01 and the last millisecond of 9999 (the range of ISO dates).
MIN_MS = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // ONE_MS
MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - EPOCH) // ONE_MS
TIMESTAMP_RULE = (
    "an ISO-8601 date-time (with or without offset) or integer epoch milliseconds "
    "between years 1 and 9999"
)


class BadTimestamp(ValueError):
    pass


def parse_timestamp(value: Any) -> int:
    """Epoch milliseconds of an input timestamp; raises BadTimestamp."""
    if type(value) is int:
        if MIN_MS <= value <= MAX_MS:
            return value
        raise BadTimestamp(f"timestamp must be {TIMESTAMP_RULE}")
    if isinstance(value, str) and 10 <= len(value) <= 40:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise BadTimestamp(f"timestamp must be {TIMESTAMP_RULE}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            ms = (moment - EPOCH) // ONE_MS
        except OverflowError:
            raise BadTimestamp(f"timestamp must be {TIMESTAMP_RULE}") from None
        if MIN_MS <= ms <= MAX_MS:  # an offset can move a date out of years 1..9999
            return ms
    raise BadTimestamp(f"timestamp must be {TIMESTAMP_RULE}")


@lru_cache(maxsize=4096)
def _day(days: int) -> str:
    return (EPOCH + timedelta(days=days)).strftime("%Y-%m-%dT")


@lru_cache(maxsize=1)
def _clock() -> tuple[str, ...]:
    """`HH:MM:SS` of every second of a day (built once, on first use)."""
    return tuple(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400))


def format_timestamp(ms: int) -> str:
    days, rest = divmod(ms, DAY_MS)
    seconds, millis = divmod(rest, 1000)
    if millis:
        return f"{_day(days)}{_clock()[seconds]}.{millis:03d}Z"
    return _day(days) + _clock()[seconds] + "Z"


def to_datetime(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def from_datetime(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // ONE_MS


# ------------------------------------------------------------------ values

_SCALARS = (str, int, float, bool, type(None))
#: The exact types JSON parsing gives for scalars.
SCALAR_TYPES = frozenset(_SCALARS)
_TYPE_OK = {
    "float": lambda v: type(v) is float or type(v) is int,
    "int": lambda v: type(v) is int,
    "string": lambda v: type(v) is str,
    "bool": lambda v: type(v) is bool,
}
#: Keys already found valid (the same few keys repeat in every row).
_good_keys: set[str] = set()


def known_keys() -> set[str]:
    """Value keys already found valid (grows as rows are checked)."""
    return _good_keys


def declared_ok(values: dict[str, Any], columns: dict[str, str]) -> bool:
    for key, dtype in columns.items():
        value = values.get(key)
        if value is not None and not _TYPE_OK[dtype](value):
            return False
    return True


def key_problem(key: Any) -> str | None:
    if key in _good_keys:
        return None
    if not isinstance(key, str):
        return "must be a string"
    if key == "timestamp":
        return "'timestamp' is the row's own field and cannot be a value key"
    problem = field_name_problem(key)
    if problem is None and len(_good_keys) < 100_000:
        _good_keys.add(key)
    return problem


def values_problems(values: Any, columns: dict[str, str]) -> list[tuple[list[str], str]]:
    """What is wrong with one row's `values`: `(loc below values, message)` pairs."""
    if not isinstance(values, dict):
        return [([], "values must be an object")]
    if len(values) > MAX_KEYS:
        return [([], f"values may have at most {MAX_KEYS} keys")]
    problems: list[tuple[list[str], str]] = []
    for key, value in values.items():
        problem = key_problem(key)
        if problem is not None:
            problems.append(([str(key)], problem))
            continue
        if not isinstance(value, _SCALARS):
            problems.append(([key], "a value must be a number, string, boolean or null"))
            continue
        if type(value) is int and not INT_MIN <= value <= INT_MAX:
            problems.append(([key], "an integer must fit in 64 bits"))
            continue
        if type(value) is float and not math.isfinite(value):
            problems.append(([key], "a number must be finite"))
            continue
        dtype = columns.get(key)
        if dtype is not None and value is not None and not _TYPE_OK[dtype](value):
            problems.append(([key], f"column {key!r} is declared {dtype}"))
    return problems


def encode_values(values: dict[str, Any]) -> bytes:
    return orjson.dumps(values)


# ------------------------------------------------------------------ buckets


def pack_times(times: list[int]) -> bytes:
    return array("q", times).tobytes()


def unpack_times(blob: bytes) -> array[int]:
    times = array("q")
    times.frombytes(blob)
    return times


def pack_values(lines: list[bytes]) -> bytes:
    # orjson never writes a raw newline (it escapes them), so lines split back exactly.
    return b"\n".join(lines)


def unpack_values(blob: bytes, count: int) -> list[bytes]:
    if count == 0:
        return []
    return blob.split(b"\n")


def row_json(ms: int, line: bytes) -> bytes:
    """`{"timestamp": …, "values": …}` from the stored bytes."""
    return b'{"timestamp":"' + format_timestamp(ms).encode() + b'","values":' + line + b"}"


def flat_json(ms: int, line: bytes) -> bytes:
    """`{"timestamp": …, <values>}` (seed 002's live and stream rows)."""
    head = b'{"timestamp":"' + format_timestamp(ms).encode() + b'"'
    if line == b"{}":
        return head + b"}"
    return head + b"," + line[1:]
