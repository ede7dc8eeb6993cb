"""`app.engine.sjson`: `loads`, the JSON parser of the engine's SQL connections,
must return exactly what `json.loads` (psycopg's default) returned — the same
values of the same types, ints kept exact however long, the same errors — and
`decode_document`, which does the common kinds inline, exactly what a call of
`_value` per field returned; and `driver_document` exactly what the BSON round
trip it replaces returns (or None, for the round trip to decide); or the
documents read by SQL would differ from FerretDB's."""

from __future__ import annotations

import json
import math
import random
import struct
from decimal import Decimal
from typing import Any

import bson
import pytest

from app.engine import sjson
from app.engine.sjson import DRIVER_CODEC, decode_document, driver_document, loads
from tests.fixtures.values import same


def numeric_text(value: float) -> str:
    """A double as PostgreSQL's numeric prints it in jsonb (no exponent)."""
    return format(Decimal(repr(value)), "f")


TEXTS = [
    "1", "-0", "-0.0", "0.0", "1.0", "1E5", "1e-400", "2.5", "0.1", "1.7976931348623157e308",
    "5e-324", "4.9406564584124654e-324", "2.2250738585072014e-308",
    "0.1000000000000000055511151231257827",
    str(2**31), str(2**53 + 1), str(2**63 - 1), str(-(2**63)), str(2**63), str(2**64 - 1),
    str(2**64), str(-(2**63) - 1), "-" + "9" * 19, "9" * 19, "1" + "0" * 300,
    "17976931348623159" + "0" * 292, "1e400", "-1e400",
    numeric_text(1e300), numeric_text(-1e300), numeric_text(1e22), numeric_text(1e-300),
    numeric_text(2.0**63), numeric_text(9007199254740993.0), numeric_text(1 / 3),
    '"SKU-0000000000000000000042"', '"digits 1234567890123456789 in a string"',
    '"\\ud83d\\ude00 \\u00e9 \\u2028 \\"q\\" \\\\ \\n"', '"\\ud800"', '"é ✓ 𝄞"', '""',
    "[]", "{}", "null", "true", "false", "NaN", "Infinity", "[-Infinity]",
    '{"$s": {"p": {"_id": {"t": "objectId"}, "n": {"t": "long"}}, "$k": ["_id", "n"]}, '
    '"_id": "60c72b2f9b1d8b1a2d3e4567", "n": -9223372036854775808}',
    '{"a": [1, 2.5, {"b": [null, true, false, "x", 12345678901234567890123]}], "e": {}}',
    '{"a": 1, "a": 2}', '{"z": 1, "a": 2, "m": {"y": 0.5, "b": -0.0}}',
]  # fmt: skip


@pytest.mark.parametrize("text", TEXTS)
def test_loads_is_json_loads(text: str) -> None:
    expected = json.loads(text.encode())
    assert same(loads(text.encode()), expected), text


def test_loads_is_json_loads_for_random_doubles_and_integers() -> None:
    rng = random.Random(25)
    values: list[Any] = []
    for _ in range(3000):
        bits = rng.getrandbits(64)
        double = struct.unpack("<d", struct.pack("<Q", bits))[0]
        if math.isfinite(double):
            values.append(double)
        values.append(rng.uniform(-1e6, 1e6))
        values.append(rng.randint(-(2**70), 2**70) >> rng.randint(0, 70))
    for value in values:
        texts = [repr(value)]
        if isinstance(value, float):
            texts.append(numeric_text(value))
        for text in texts:
            data = f'{{"v": [{text}]}}'.encode()
            assert same(loads(data), json.loads(data)), text


@pytest.mark.parametrize("text", ["", "{", "[1,]", "nul", "nan", '"\\x"', "1 2", "[1] x"])
def test_loads_refuses_what_json_loads_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text.encode())
    with pytest.raises(json.JSONDecodeError) as found:
        loads(text.encode())
    assert str(found.value) == str(expected.value)


def reference_document(value: Any, schema: Any) -> dict[str, Any]:
    """`sjson._document` before its inline kinds: `_value` for every field."""
    if not isinstance(value, dict) or not isinstance(schema, dict):
        raise sjson.SjsonError("object without a schema")
    properties = schema.get("p") or {}
    keys = schema.get("$k") or []
    return {key: reference_value(value.get(key), properties.get(key)) for key in keys}


def reference_value(value: Any, elem: Any) -> Any:
    if isinstance(elem, dict) and elem.get("t") == "object" and value is not None:
        return reference_document(value, elem.get("$s"))
    if isinstance(elem, dict) and elem.get("t") == "array" and isinstance(value, list):
        items = elem.get("i") or []
        if len(items) == len(value):
            return [reference_value(v, e) for v, e in zip(value, items, strict=True)]
    return sjson._value(value, elem)


def stored(fields: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """A row's `_jsonb`: field → (stored value, elem)."""
    return {
        "$s": {"p": {k: e for k, (_, e) in fields.items()}, "$k": list(fields)},
        **{k: v for k, (v, _) in fields.items()},
    }


ROWS: list[dict[str, Any]] = [
    stored(
        {
            "_id": ("60c72b2f9b1d8b1a2d3e4567", {"t": "objectId"}),
            "s": ("é ✓", {"t": "string"}),
            "b": (False, {"t": "bool"}),
            "d": (-0.0, {"t": "double"}),
            "whole": (3, {"t": "double"}),
            "big": (10**300, {"t": "double"}),
            "i": (-(2**31), {"t": "int"}),
            "l": (-(2**63), {"t": "long"}),
            "date": (-1, {"t": "date"}),
            "bin": ("AAH/", {"t": "binData", "s": 4}),
            "ts": (2**40 + 3, {"t": "timestamp"}),
            "re": ("^a", {"t": "regex", "o": "im"}),
            "n": (None, {"t": "null"}),
            "none": (None, {"t": "string"}),
            "o": ({"x": 1.5}, {"t": "object", "$s": {"p": {"x": {"t": "double"}}, "$k": ["x"]}}),
            "a": (
                [1, "x", None],
                {"t": "array", "i": [{"t": "int"}, {"t": "string"}, {"t": "null"}]},
            ),
        }
    ),
    # What the reader meets only in data it does not know: kept as it was, or the
    # same error (the caller then reads the document through FerretDB).
    stored({"s": (7, {"t": "string"}), "b": ("yes", {"t": "bool"}), "i": (2.9, {"t": "int"})}),
    stored({"l": (1.5, {"t": "long"})}),
    stored({"x": (1, {"t": "decimal"})}),
    stored({"x": (1, {"t": ["int"]})}),
    stored({"x": (1, {"t": None})}),
    stored({"x": (1, "int")}),
    stored({"x": (1, None)}),
    stored({"x": ("zz", {"t": "objectId"})}),
    stored({"x": ("nope", {"t": "double"})}),
    stored({"x": ([1], {"t": "array", "i": []})}),
    stored({"x": ({"y": 1}, {"t": "object"})}),
    {"$s": {"p": {}, "$k": ["missing"]}},
    {"$s": {"p": {"a": {"t": "int"}}, "$k": ["a", "a"]}, "a": 1},
    {"$s": {"$k": []}},
    {"no": "schema"},
]


@pytest.mark.parametrize("row", ROWS)
def test_decode_document_is_a_value_per_field(row: dict[str, Any]) -> None:
    try:
        expected: Any = reference_document(row, row.get("$s"))
    except Exception as exc:  # the same error either way
        with pytest.raises(type(exc)):
            decode_document(row)
        return
    found = decode_document(row)
    assert list(found) == list(expected)
    assert all(type(found[k]) is type(expected[k]) for k in found)
    assert repr(found) == repr(expected)


def round_trip(row: dict[str, Any]) -> dict[str, Any]:
    """What the adapter did for every document (`EngineAdapter._driver_form`)."""
    return bson.decode(bson.encode(decode_document(row)), codec_options=DRIVER_CODEC)


#: Rows `driver_document` must read itself (the kinds nearly every document has).
DIRECT: list[dict[str, Any]] = [
    ROWS[0]
    | {
        "$s": {
            **ROWS[0]["$s"],
            "$k": [k for k in ROWS[0]["$s"]["$k"] if k not in ("bin", "ts", "re")],
        }
    },
    stored(
        {
            "_id": ("60c72b2f9b1d8b1a2d3e4567", {"t": "objectId"}),
            "dates": (
                [-1, 0, 1, -2208988800000, 253402300799999, 1709251199999],
                {"t": "array", "i": [{"t": "date"}] * 6},
            ),
            "bytes": ("AAH/", {"t": "binData", "s": 0}),
            "empty": ("", {"t": "binData"}),
            "i": (2**31 - 1, {"t": "int"}),
            "l": (2**63 - 1, {"t": "long"}),
            "small_long": (1, {"t": "long"}),
            "o": ({}, {"t": "object", "$s": {"p": {}, "$k": []}}),
            "deep": (
                [{"a": [None, 1.5]}],
                {
                    "t": "array",
                    "i": [
                        {
                            "t": "object",
                            "$s": {
                                "p": {"a": {"t": "array", "i": [{"t": "null"}, {"t": "double"}]}},
                                "$k": ["a"],
                            },
                        }
                    ],
                },
            ),
        }
    ),
    stored({"no_id": ("x", {"t": "string"}), "d": (1.0, {"t": "double"})}),
]
#: Rows it leaves to the round trip.
DECLINED: list[dict[str, Any]] = [
    ROWS[0],  # binary subtype 4, a timestamp, a regex
    stored({"i": (2**31, {"t": "int"})}),  # BSON writes it as an int64
    stored({"s": ("x", {"t": "string"}), "_id": (1, {"t": "int"})}),  # BSON puts _id first
]


def assert_same(found: dict[str, Any], expected: dict[str, Any]) -> None:
    assert list(found) == list(expected)
    assert repr(found) == repr(expected)  # types and time zones included
    encoded = bson.encode(found, codec_options=DRIVER_CODEC)
    assert encoded == bson.encode(expected, codec_options=DRIVER_CODEC)


@pytest.mark.parametrize("row", DIRECT)
def test_driver_document_is_the_bson_round_trip(row: dict[str, Any]) -> None:
    found = driver_document(row)
    assert found is not None
    assert_same(found, round_trip(row))


@pytest.mark.parametrize("row", DECLINED)
def test_driver_document_leaves_the_rest_to_the_round_trip(row: dict[str, Any]) -> None:
    assert driver_document(row) is None


@pytest.mark.parametrize("row", ROWS)
def test_driver_document_never_differs_from_the_round_trip(row: dict[str, Any]) -> None:
    """Whatever it reads is the round trip's answer; where the long way fails it
    declines (and the long way raises, as it always did)."""
    found = driver_document(row)
    try:
        expected = round_trip(row)
    except Exception:  # the long way's error stands
        assert found is None
        return
    if found is not None:
        assert_same(found, expected)
