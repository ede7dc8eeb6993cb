"""`app.kit.ejson.to_plain` (every API answer's values) dispatches on the exact
types documents are made of before the general isinstance chain; these tests hold
it to that chain (copied here as it was) for edge values and subclasses: the same
JSON values of the same types, so the answers stay byte for byte the same."""

from __future__ import annotations

import json
import math
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from bson import SON, Binary, Decimal128, Int64, ObjectId, Regex, Timestamp
from bson.tz_util import utc as bson_utc

from app.clock import iso_z
from app.kit import to_plain
from app.kit.ejson import _common_out, _float_out
from tests.fixtures.values import same


def reference(value: Any) -> Any:
    """`to_plain` before its exact-type dispatch."""
    if isinstance(value, str | bool | None):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, dict):
        return {key: reference(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [reference(item) for item in value]
    if isinstance(value, float):
        return _float_out(value)
    if isinstance(value, datetime):
        return iso_z(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, ObjectId | Decimal128):
        return str(value)
    return _common_out(value)


class Text(str):
    pass


class Number(int):
    pass


class Real(float):
    pass


class Moment(datetime):
    pass


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
VALUES: list[Any] = [
    "", "é ✓ 𝄞", Text("sub"), True, False, None, 0, -1, 2**31, 2**63 - 1, -(2**63), 2**70,
    Int64(5), Int64(-(2**63)), Number(3), 0.0, -0.0, 1.5, 1e300, 5e-324, 1e16, 0.1 + 0.2,
    math.nan, math.inf, -math.inf, Real(2.5), Real(math.nan),
    EPOCH, EPOCH - timedelta(milliseconds=1), datetime(1900, 1, 1, 0, 0, 0, 1000, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), datetime(2024, 2, 29, 12, 0),
    datetime(2024, 2, 29, 12, 0, 0, 123456, tzinfo=bson_utc),
    datetime(2024, 2, 29, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    Moment(2020, 1, 1, tzinfo=UTC), ObjectId("60c72b2f9b1d8b1a2d3e4567"),
    Decimal128("123.4500"), Decimal128("-0"), Decimal128("NaN"), b"\x00\xff", Binary(b"ab", 0),
    Binary(b"\x01" * 16, 4), Binary(b"\xde\xad", 5), uuid.UUID(int=7), Regex("^a", "im"),
    Timestamp(1_700_000_000, 3), (1, "two"), [], {}, [[1, [2.5, None]], {"a": ()}],
    {"b": 1, "a": {"z": [EPOCH, ObjectId("60c72b2f9b1d8b1a2d3e4567")], "y": Int64(2)}},
    SON([("z", 1), ("a", Int64(2))]), OrderedDict(b=[-0.0], a=Text("x")),
    {"_id": ObjectId("60c72b2f9b1d8b1a2d3e4567"), "n": [1, 1.0, True, math.inf, {"d": EPOCH}]},
    {"t": Text("sub"), "i": Int64(3), "b": True, "f": -0.0, "nan": math.nan, "n": Number(4),
     "none": None, "s": "", "big": 2**64, "bytes": b"\x00", "d": datetime(2000, 1, 1)},
]  # fmt: skip


def test_to_plain_is_the_isinstance_chain() -> None:
    for value in VALUES:
        found, expected = to_plain(value), reference(value)
        assert same(found, expected), value
        assert json.dumps(found) == json.dumps(expected), value
    assert same(to_plain(VALUES), reference(VALUES))
