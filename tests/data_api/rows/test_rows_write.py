"""The write side of rows (`spec/rows.md`): timestamps in, `on_conflict`, declared
columns and value rules, the columns endpoints, bulk limits and media types,
NDJSON loads (all or nothing over several internal batches), merging and
splitting of storage buckets, deleting by range, and what the dataset answer
and a dataset deletion do with rows. Every refusal is checked against what the
storage holds (directory and buckets, read with the driver)."""

from __future__ import annotations

import asyncio
import itertools
import random
from array import array
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from bson import ObjectId

from app.errors import ErrorCode
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.rows import (
    COLUMNS,
    ROWS,
    RowsOwner,
    iso_ms,
    module_owner,
    ms_of,
    ndjson,
    reference_rows,
    series,
)

T0 = ms_of(datetime(2025, 12, 16, tzinfo=UTC))
HOUR = 3_600_000
SMALL_BULK_LIMIT = 50
SMALL_BODY_LIMIT = 4096


owner = module_owner("rows_write")


#: A second app whose JSON bulk_insert takes at most SMALL_BULK_LIMIT rows and
#: SMALL_BODY_LIMIT bytes.
limited = module_owner(
    "rows_limited", max_bulk_rows=SMALL_BULK_LIMIT, max_bulk_body_bytes=SMALL_BODY_LIMIT
)


# ---------------------------------------------------------------- helpers


def counts_of(response: httpx.Response) -> dict[str, int]:
    """A bulk_insert success: its counts, which always add up to `total`."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "inserted", "skipped", "replaced", "total"}
    assert body["success"] is True
    assert body["inserted"] + body["skipped"] + body["replaced"] == body["total"]
    return {k: body[k] for k in ("inserted", "skipped", "replaced", "total")}


def snapshot(owner: RowsOwner, dataset: str) -> tuple[Any, list[Any]]:
    """Everything storage holds for a dataset: its directory and every bucket."""
    return owner.directory(dataset), sorted(owner.buckets(dataset), key=lambda b: b["_id"])


def as_ms(value: datetime) -> int:
    return ms_of(value.replace(tzinfo=UTC) if value.tzinfo is None else value)


def assert_buckets_sound(owner: RowsOwner, dataset: str) -> None:
    """Buckets hold at most 2,000 rows, do not overlap, and are exactly the ones the
    directory names (no orphan left by the request that just returned)."""
    directory = owner.directory(dataset)
    buckets = owner.buckets(dataset)
    if directory is None:
        assert buckets == []
        return
    packed = array("q")
    packed.frombytes(bytes(directory["b"]))
    named = [f"{dataset}:{seq}" for seq in packed[2::4]]
    assert sorted(b["_id"] for b in buckets) == sorted(named)
    ordered = sorted(buckets, key=lambda b: b["lo"])
    for bucket in ordered:
        assert 1 <= bucket["n"] <= 2000, (bucket["_id"], bucket["n"])
        assert bucket["lo"] <= bucket["hi"]
    for before, after in itertools.pairwise(ordered):
        assert before["hi"] < after["lo"], (before["_id"], after["_id"])
    assert directory["count"] == sum(b["n"] for b in buckets)
    assert list(packed[0::4]) == [as_ms(b["lo"]) for b in ordered]
    assert list(packed[1::4]) == [as_ms(b["hi"]) for b in ordered]


async def delete_rows(owner: RowsOwner, body: dict[str, Any]) -> httpx.Response:
    return await owner.http.request("DELETE", ROWS, json=body, headers=owner.headers)


async def create_column(owner: RowsOwner, dataset: str, name: str, dtype: str) -> httpx.Response:
    return await owner.http.post(
        COLUMNS, json={"dataset": dataset, "name": name, "dtype": dtype}, headers=owner.headers
    )


async def list_columns(owner: RowsOwner, dataset: str) -> list[dict[str, Any]]:
    response = await owner.http.get(COLUMNS, params={"dataset": dataset}, headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    return response.json()["data"]  # type: ignore[no-any-return]


async def shown(owner: RowsOwner, dataset: str) -> dict[str, Any]:
    response = await owner.http.get(f"/api/v1/datasets/{dataset}", headers=owner.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def stored_columns(owner: RowsOwner, dataset: str) -> list[dict[str, Any]]:
    return list(owner.sync[owner.control_db]["columns"].find({"dataset_id": ObjectId(dataset)}))


async def seeded(owner: RowsOwner, rows: list[dict[str, Any]]) -> str:
    """A fresh dataset holding `rows`."""
    dataset = await owner.dataset()
    counts_of(await owner.bulk(dataset, rows))
    return dataset


# ---------------------------------------------------------------- timestamps


@pytest.mark.smoke
async def test_timestamps_are_normalised_to_utc_milliseconds(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    rows = [
        {"timestamp": "2025-12-16T12:00:00+02:00", "values": {"k": "offset +02:00"}},
        {"timestamp": "2025-12-16T06:00:00-05:00", "values": {"k": "offset -05:00"}},
        {"timestamp": "2025-12-16T12:00:00", "values": {"k": "no offset"}},
        {"timestamp": "2025-12-16T13:00:00.123456Z", "values": {"k": "sub-millisecond"}},
        {"timestamp": "2025-12-16T14:00:00.000999Z", "values": {"k": "below a millisecond"}},
        {"timestamp": T0 + 15 * HOUR + 7, "values": {"k": "epoch ms"}},
        {"timestamp": "2025-12-16T16:00:00.987654321Z", "values": {"k": "nanoseconds"}},
        {"timestamp": -1, "values": {"k": "before 1970"}},
    ]
    assert counts_of(await owner.bulk(dataset, rows)) == {
        "inserted": 8,
        "skipped": 0,
        "replaced": 0,
        "total": 8,
    }
    expected = [
        ("1969-12-31T23:59:59.999Z", "before 1970"),
        ("2025-12-16T10:00:00Z", "offset +02:00"),
        ("2025-12-16T11:00:00Z", "offset -05:00"),
        ("2025-12-16T12:00:00Z", "no offset"),
        ("2025-12-16T13:00:00.123Z", "sub-millisecond"),
        ("2025-12-16T14:00:00Z", "below a millisecond"),
        ("2025-12-16T15:00:00.007Z", "epoch ms"),
        ("2025-12-16T16:00:00.987Z", "nanoseconds"),
    ]
    page = await owner.read(dataset)
    assert [(r["timestamp"], r["values"]["k"]) for r in page["data"]] == expected
    assert [(iso_ms(t), v["k"]) for t, v in owner.stored_rows(dataset)] == expected


async def test_timestamps_equal_to_the_millisecond_name_one_row(owner: RowsOwner) -> None:
    dataset = await seeded(owner, [{"timestamp": "2025-12-16T10:00:00.5Z", "values": {"v": 1}}])
    same = [
        {"timestamp": "2025-12-16T10:00:00.500999Z", "values": {"v": 2}},
        {"timestamp": "2025-12-16T12:00:00.500+02:00", "values": {"v": 3}},
        {"timestamp": T0 + 10 * HOUR + 500, "values": {"v": 4}},
    ]
    assert counts_of(await owner.bulk(dataset, same, on_conflict="skip")) == {
        "inserted": 0,
        "skipped": 3,
        "replaced": 0,
        "total": 3,
    }
    assert owner.stored_rows(dataset) == [(T0 + 10 * HOUR + 500, {"v": 1})]


BAD_TIMESTAMPS = {
    "garbage": "yesterday",
    "empty": "",
    "bad month": "2025-13-01T00:00:00Z",
    "year 10000": "10000-01-01T00:00:00Z",
    "float": float(T0),
    "fraction": 1.5,
    "true": True,
    "null": None,
    "list": [T0],
    "after year 9999": 253_402_300_800_000,
    "before year 1": -62_135_596_800_001,
}


@pytest.mark.parametrize("bad", list(BAD_TIMESTAMPS.values()), ids=list(BAD_TIMESTAMPS))
async def test_bad_timestamp_refuses_the_request(owner: RowsOwner, bad: Any) -> None:
    dataset = await seeded(owner, [{"timestamp": T0, "values": {"v": 0}}])
    before = snapshot(owner, dataset)
    rows = [
        {"timestamp": T0 + 1000, "values": {"v": 1}},
        {"timestamp": bad, "values": {"v": 2}},
        {"timestamp": T0 + 3000, "values": {"v": 3}},
    ]
    body = assert_envelope(await owner.bulk(dataset, rows), 422, "INVALID_TIMESTAMP")
    assert [d["loc"] for d in body["details"]] == [["body", "rows", 1, "timestamp"]]
    assert snapshot(owner, dataset) == before
    assert owner.stored_rows(dataset) == [(T0, {"v": 0})]


async def test_missing_timestamp_is_invalid_timestamp(owner: RowsOwner) -> None:
    dataset = await seeded(owner, [{"timestamp": T0, "values": {"v": 0}}])
    before = snapshot(owner, dataset)
    rows = [{"values": {"v": 1}}, {"timestamp": T0 + 1, "values": {}}, {"values": {}}]
    body = assert_envelope(await owner.bulk(dataset, rows), 422, "INVALID_TIMESTAMP")
    assert [d["loc"] for d in body["details"]] == [
        ["body", "rows", 0, "timestamp"],
        ["body", "rows", 2, "timestamp"],
    ]
    assert snapshot(owner, dataset) == before


async def test_bad_timestamp_beside_bad_values_is_a_validation_error(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    rows = [
        {"timestamp": "soon", "values": {}},
        {"timestamp": T0, "values": {"a": {"nested": 1}}},
    ]
    body = assert_envelope(await owner.bulk(dataset, rows), 422, "VALIDATION_ERROR")
    assert [d["loc"] for d in body["details"]] == [
        ["body", "rows", 0, "timestamp"],
        ["body", "rows", 1, "values", "a"],
    ]
    assert owner.directory(dataset) is None
    assert owner.buckets(dataset) == []


async def test_single_row_with_bad_timestamp_is_refused(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    response = await owner.http.post(
        ROWS,
        json={"dataset": dataset, "timestamp": "noon", "values": {"v": 1}},
        headers=owner.headers,
    )
    body = assert_envelope(response, 422, "INVALID_TIMESTAMP")
    assert body["details"][0]["loc"] == ["body", "timestamp"]
    assert owner.directory(dataset) is None


# ---------------------------------------------------------------- on_conflict


EXISTING = [
    {"timestamp": T0, "values": {"v": "old0"}},
    {"timestamp": T0 + HOUR, "values": {"v": "old1"}},
]
INCOMING = [
    {"timestamp": T0 + 30 * 60_000, "values": {"v": "new-between"}},
    {"timestamp": "2025-12-16T01:00:00Z", "values": {"v": "new1"}},
    {"timestamp": T0 + 2 * HOUR, "values": {"v": "new-after"}},
]


@pytest.mark.parametrize("on_conflict", ["error", None])
async def test_conflict_with_error_writes_nothing(
    owner: RowsOwner, on_conflict: str | None
) -> None:
    dataset = await seeded(owner, EXISTING)
    before = snapshot(owner, dataset)
    response = await owner.bulk(dataset, INCOMING, on_conflict=on_conflict)
    body = assert_envelope(response, 409, "ROW_EXISTS")
    assert "2025-12-16T01:00:00Z" in body["message"]
    assert any("2025-12-16T01:00:00Z" in d["msg"] for d in body["details"])
    assert snapshot(owner, dataset) == before
    assert [v["v"] for _, v in owner.stored_rows(dataset)] == ["old0", "old1"]


async def test_conflict_with_skip_keeps_the_stored_row(owner: RowsOwner) -> None:
    dataset = await seeded(owner, EXISTING)
    assert counts_of(await owner.bulk(dataset, INCOMING, on_conflict="skip")) == {
        "inserted": 2,
        "skipped": 1,
        "replaced": 0,
        "total": 3,
    }
    assert owner.stored_rows(dataset) == [
        (T0, {"v": "old0"}),
        (T0 + 30 * 60_000, {"v": "new-between"}),
        (T0 + HOUR, {"v": "old1"}),
        (T0 + 2 * HOUR, {"v": "new-after"}),
    ]
    assert_buckets_sound(owner, dataset)


async def test_conflict_with_replace_overwrites_the_stored_row(owner: RowsOwner) -> None:
    dataset = await seeded(owner, EXISTING)
    assert counts_of(await owner.bulk(dataset, INCOMING, on_conflict="replace")) == {
        "inserted": 2,
        "skipped": 0,
        "replaced": 1,
        "total": 3,
    }
    assert owner.stored_rows(dataset) == [
        (T0, {"v": "old0"}),
        (T0 + 30 * 60_000, {"v": "new-between"}),
        (T0 + HOUR, {"v": "new1"}),
        (T0 + 2 * HOUR, {"v": "new-after"}),
    ]
    assert (await shown(owner, dataset))["row_count"] == 4


async def test_all_skipped_changes_nothing_stored(owner: RowsOwner) -> None:
    dataset = await seeded(owner, EXISTING)
    before = snapshot(owner, dataset)
    again = [{"timestamp": r["timestamp"], "values": {"v": "other"}} for r in EXISTING]
    assert counts_of(await owner.bulk(dataset, again, on_conflict="skip")) == {
        "inserted": 0,
        "skipped": 2,
        "replaced": 0,
        "total": 2,
    }
    assert snapshot(owner, dataset) == before


DUPLICATED = [
    {"timestamp": T0 + 5000, "values": {"v": "first"}},
    {"timestamp": T0 + 1000, "values": {"v": "alone"}},
    {"timestamp": "2025-12-16T00:00:05Z", "values": {"v": "second"}},
    {"timestamp": T0 + 5000, "values": {"v": "third"}},
]


async def test_duplicates_in_one_request_with_error_are_refused(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    body = assert_envelope(await owner.bulk(dataset, DUPLICATED), 409, "ROW_EXISTS")
    assert "2025-12-16T00:00:05Z" in body["message"]
    assert owner.directory(dataset) is None
    assert owner.buckets(dataset) == []


async def test_duplicates_in_one_request_with_skip_keep_the_first(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    assert counts_of(await owner.bulk(dataset, DUPLICATED, on_conflict="skip")) == {
        "inserted": 2,
        "skipped": 2,
        "replaced": 0,
        "total": 4,
    }
    assert owner.stored_rows(dataset) == [(T0 + 1000, {"v": "alone"}), (T0 + 5000, {"v": "first"})]


async def test_duplicates_in_one_request_with_replace_keep_the_last(owner: RowsOwner) -> None:
    dataset = await seeded(owner, [{"timestamp": T0 + 5000, "values": {"v": "stored"}}])
    assert counts_of(await owner.bulk(dataset, DUPLICATED, on_conflict="replace")) == {
        "inserted": 1,
        "skipped": 0,
        "replaced": 3,
        "total": 4,
    }
    assert owner.stored_rows(dataset) == [(T0 + 1000, {"v": "alone"}), (T0 + 5000, {"v": "third"})]


async def test_unknown_on_conflict_is_refused(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    response = await owner.bulk(dataset, EXISTING, on_conflict="merge")
    body = assert_envelope(response, 422, "VALIDATION_ERROR")
    assert body["details"][0]["loc"] == ["body", "on_conflict"]
    assert owner.directory(dataset) is None


# ---------------------------------------------------------------- declared columns


async def typed_dataset(owner: RowsOwner) -> str:
    dataset = await seeded(owner, [{"timestamp": T0, "values": {"f": 0.5}}])
    for name, dtype in (("f", "float"), ("i", "int"), ("s", "string"), ("b", "bool")):
        assert (await create_column(owner, dataset, name, dtype)).status_code == 201
    return dataset


async def test_declared_columns_accept_their_types_null_and_undeclared_keys(
    owner: RowsOwner,
) -> None:
    dataset = await typed_dataset(owner)
    rows = [
        {"timestamp": T0 + 1, "values": {"f": 1.25, "i": -3, "s": "x", "b": True, "free": 1}},
        {"timestamp": T0 + 2, "values": {"f": 7, "i": 10**15, "s": "", "b": False}},
        {"timestamp": T0 + 3, "values": {"f": None, "i": None, "s": None, "b": None}},
        {"timestamp": T0 + 4, "values": {"other": "text", "flag": True, "n": 1.5, "z": None}},
        {"timestamp": T0 + 5},
    ]
    assert counts_of(await owner.bulk(dataset, rows))["inserted"] == 5
    assert owner.stored_rows(dataset)[1:] == [
        (T0 + 1, {"f": 1.25, "i": -3, "s": "x", "b": True, "free": 1}),
        (T0 + 2, {"f": 7, "i": 10**15, "s": "", "b": False}),
        (T0 + 3, {"f": None, "i": None, "s": None, "b": None}),
        (T0 + 4, {"other": "text", "flag": True, "n": 1.5, "z": None}),
        (T0 + 5, {}),
    ]


WRONG_TYPES = [
    ("f", "1.5"),
    ("f", True),
    ("i", 1.5),
    ("i", True),
    ("i", "7"),
    ("s", 5),
    ("s", False),
    ("b", 1),
    ("b", "true"),
]


@pytest.mark.parametrize(("key", "value"), WRONG_TYPES, ids=[f"{k}={v!r}" for k, v in WRONG_TYPES])
async def test_wrong_type_for_a_declared_column_is_refused(
    owner: RowsOwner, key: str, value: Any
) -> None:
    dataset = await typed_dataset(owner)
    before = snapshot(owner, dataset)
    rows = [
        {"timestamp": T0 + 1, "values": {"f": 1.0, "i": 1, "s": "a", "b": True}},
        {"timestamp": T0 + 2, "values": {"s": "ok", key: value}},
    ]
    body = assert_envelope(await owner.bulk(dataset, rows), 422, "VALIDATION_ERROR")
    assert [d["loc"] for d in body["details"]] == [["body", "rows", 1, "values", key]]
    assert snapshot(owner, dataset) == before


async def test_wrong_type_on_a_single_row_names_the_key(owner: RowsOwner) -> None:
    dataset = await typed_dataset(owner)
    before = snapshot(owner, dataset)
    response = await owner.http.post(
        ROWS,
        json={"dataset": dataset, "timestamp": T0 + 1, "values": {"i": 1.5}},
        headers=owner.headers,
    )
    body = assert_envelope(response, 422, "VALIDATION_ERROR")
    assert body["details"][0]["loc"][-1] == "i"
    assert snapshot(owner, dataset) == before


BAD_VALUES: dict[str, tuple[dict[str, Any], list[Any]]] = {
    "nested object": ({"a": {"b": 1}}, ["values", "a"]),
    "array": ({"a": [1, 2]}, ["values", "a"]),
    "key timestamp": ({"timestamp": 1}, ["values", "timestamp"]),
    "key with dot": ({"a.b": 1}, ["values", "a.b"]),
    "key with dollar": ({"$gt": 1}, ["values", "$gt"]),
    "empty key": ({"": 1}, ["values", ""]),
    "key of 256 characters": ({"k" * 256: 1}, ["values", "k" * 256]),
    "key with NUL": ({"a\x00b": 1}, ["values", "a\x00b"]),
    "1001 keys": ({f"k{n}": n for n in range(1001)}, ["values"]),
    "over a MiB of values": ({"s": "x" * (1024 * 1024)}, ["values"]),
}


@pytest.mark.parametrize(("values", "loc"), list(BAD_VALUES.values()), ids=list(BAD_VALUES))
async def test_bad_values_are_refused(owner: RowsOwner, values: Any, loc: list[Any]) -> None:
    dataset = await seeded(owner, [{"timestamp": T0, "values": {"a": 0}}])
    before = snapshot(owner, dataset)
    rows = [{"timestamp": T0 + 1, "values": {"a": 1}}, {"timestamp": T0 + 2, "values": values}]
    body = assert_envelope(await owner.bulk(dataset, rows), 422, "VALIDATION_ERROR")
    assert [d["loc"] for d in body["details"]] == [["body", "rows", 1, *loc]]
    assert snapshot(owner, dataset) == before


async def test_a_thousand_keys_are_accepted(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    values = {f"k{n}": n for n in range(1000)}
    assert (
        counts_of(await owner.bulk(dataset, [{"timestamp": T0, "values": values}]))["inserted"] == 1
    )
    assert owner.stored_rows(dataset) == [(T0, values)]


async def test_values_are_stored_as_sent(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    values = {
        "note": "line one\nline two\r\n\ttab",
        "ключ": "значение 🙂",
        "quote": '"{}"[],',
        "nul": "a\x00b",
        "big": 9_223_372_036_854_775_807,
        "tiny": 5e-324,
        "max": 1.7976931348623157e308,
        "neg": -12.5,
        "k" * 255: True,
    }
    rows = [{"timestamp": T0, "values": values}, {"timestamp": T0 + 1, "values": {"a": 1}}]
    counts_of(await owner.bulk(dataset, rows))
    assert owner.stored_rows(dataset) == [(T0, values), (T0 + 1, {"a": 1})]
    assert (await owner.read(dataset))["data"][0] == {"timestamp": iso_ms(T0), "values": values}


@pytest.mark.parametrize(
    ("row", "loc"),
    [
        ({"timestamp": T0 + 1, "value": {"a": 1}}, ["body", "rows", 1, "value"]),
        ({"timestamp": T0 + 1, "values": [1, 2]}, ["body", "rows", 1, "values"]),
        ([T0 + 1, {"a": 1}], ["body", "rows", 1]),
    ],
    ids=["extra key value", "values not an object", "row not an object"],
)
async def test_malformed_row_is_refused(owner: RowsOwner, row: Any, loc: list[Any]) -> None:
    dataset = await seeded(owner, [{"timestamp": T0, "values": {"a": 0}}])
    before = snapshot(owner, dataset)
    rows = [{"timestamp": T0 + 2, "values": {"a": 2}}, row]
    body = assert_envelope(await owner.bulk(dataset, rows), 422, "VALIDATION_ERROR")
    assert [d["loc"] for d in body["details"]] == [loc]
    assert snapshot(owner, dataset) == before


# ---------------------------------------------------------------- columns endpoints


@pytest.mark.smoke
async def test_columns_are_created_and_listed_in_declaration_order(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    assert await list_columns(owner, dataset) == []
    created = await create_column(owner, dataset, "zeta", "float")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["success"] is True
    column = body["data"]
    assert set(column) == {"id", "dataset", "name", "dtype", "created_at"}
    assert (column["dataset"], column["name"], column["dtype"]) == (dataset, "zeta", "float")
    assert ObjectId.is_valid(column["id"])
    datetime.fromisoformat(column["created_at"].replace("Z", "+00:00"))
    for name, dtype in (("alpha", "int"), ("mid", "string"), ("flag", "bool")):
        assert (await create_column(owner, dataset, name, dtype)).status_code == 201
    listed = await list_columns(owner, dataset)
    assert [(c["name"], c["dtype"]) for c in listed] == [
        ("zeta", "float"),
        ("alpha", "int"),
        ("mid", "string"),
        ("flag", "bool"),
    ]
    assert listed[0] == column
    stored = stored_columns(owner, dataset)
    assert sorted(c["name"] for c in stored) == ["alpha", "flag", "mid", "zeta"]


async def test_duplicate_column_name_is_a_conflict(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    assert (await create_column(owner, dataset, "price", "float")).status_code == 201
    again = await create_column(owner, dataset, "price", "int")
    assert_envelope(again, 409, "COLUMN_EXISTS")
    stored = stored_columns(owner, dataset)
    assert [(c["name"], c["dtype"]) for c in stored] == [("price", "float")]
    # Another dataset may use the name.
    other = await owner.dataset()
    assert (await create_column(owner, other, "price", "int")).status_code == 201


@pytest.mark.parametrize(
    ("name", "dtype", "field"),
    [
        ("price", "double", "dtype"),
        ("price", "", "dtype"),
        ("timestamp", "float", "name"),
        ("a.b", "float", "name"),
        ("$price", "float", "name"),
        ("", "float", "name"),
    ],
)
async def test_bad_column_is_refused(owner: RowsOwner, name: str, dtype: str, field: str) -> None:
    dataset = await owner.dataset()
    body = assert_envelope(
        await create_column(owner, dataset, name, dtype), 422, "VALIDATION_ERROR"
    )
    assert ["body", field] in [d["loc"] for d in body["details"]]
    assert stored_columns(owner, dataset) == []


async def test_columns_of_an_unknown_dataset_are_not_found(owner: RowsOwner) -> None:
    missing = str(ObjectId())
    response = await owner.http.get(COLUMNS, params={"dataset": missing}, headers=owner.headers)
    assert_envelope(response, 404, "DATASET_NOT_FOUND")
    assert_envelope(await create_column(owner, missing, "a", "int"), 404, "DATASET_NOT_FOUND")
    assert stored_columns(owner, missing) == []


async def test_deleted_column_is_gone_and_its_values_stay(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    keep = (await create_column(owner, dataset, "keep", "float")).json()["data"]
    drop = (await create_column(owner, dataset, "count", "int")).json()["data"]
    counts_of(await owner.bulk(dataset, [{"timestamp": T0, "values": {"keep": 1.0, "count": 3}}]))

    response = await owner.http.delete(f"{COLUMNS}/{drop['id']}", headers=owner.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert await list_columns(owner, dataset) == [keep]
    assert [c["name"] for c in stored_columns(owner, dataset)] == ["keep"]
    page = await owner.read(dataset)
    assert page["data"] == [{"timestamp": iso_ms(T0), "values": {"keep": 1.0, "count": 3}}]
    # No longer declared: its type is no longer enforced.
    later = [{"timestamp": T0 + 1, "values": {"count": "many"}}]
    counts_of(await owner.bulk(dataset, later))
    assert owner.stored_rows(dataset)[-1] == (T0 + 1, {"count": "many"})

    again = await owner.http.delete(f"{COLUMNS}/{drop['id']}", headers=owner.headers)
    assert_envelope(again, 404, "COLUMN_NOT_FOUND")


async def test_delete_unknown_column_is_not_found(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    assert (await create_column(owner, dataset, "a", "int")).status_code == 201
    response = await owner.http.delete(f"{COLUMNS}/{ObjectId()}", headers=owner.headers)
    assert_envelope(response, 404, "COLUMN_NOT_FOUND")
    assert len(stored_columns(owner, dataset)) == 1


@pytest.mark.parametrize("column_id", ["not-an-id", "123", "g" * 24])
async def test_delete_column_with_malformed_id_is_invalid_id(
    owner: RowsOwner, column_id: str
) -> None:
    response = await owner.http.delete(f"{COLUMNS}/{column_id}", headers=owner.headers)
    assert_envelope(response, 422, "INVALID_ID")


# ---------------------------------------------------------------- limits and media


async def test_bulk_insert_above_the_row_limit_is_too_large(limited: RowsOwner) -> None:
    dataset = await limited.dataset()
    response = await limited.bulk(dataset, series(T0, SMALL_BULK_LIMIT + 1))
    body = assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")
    assert str(SMALL_BULK_LIMIT) in body["message"]
    assert limited.directory(dataset) is None
    assert limited.buckets(dataset) == []
    # At the limit it is fine, and NDJSON has no per-call row limit.
    assert counts_of(await limited.bulk(dataset, series(T0, SMALL_BULK_LIMIT)))["inserted"] == 50
    later = series(T0 + HOUR, 3 * SMALL_BULK_LIMIT)
    assert counts_of(await limited.load(dataset, ndjson(later)))["inserted"] == 150
    assert len(limited.stored_rows(dataset)) == 200


async def test_bulk_insert_body_above_the_byte_limit_is_too_large(limited: RowsOwner) -> None:
    dataset = await limited.dataset()
    rows = series(T0, 20, note="x" * 300)
    assert len(orjson.dumps({"dataset": dataset, "rows": rows})) > SMALL_BODY_LIMIT
    response = await limited.bulk(dataset, rows)
    # conventions.md: "413 body or file too large"; limits "enforced with a clear 413/422".
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")
    assert limited.directory(dataset) is None
    assert limited.buckets(dataset) == []
    # The same rows as NDJSON are not limited.
    assert counts_of(await limited.load(dataset, ndjson(rows)))["inserted"] == 20


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "text/csv"])
async def test_bulk_insert_with_wrong_content_type_is_refused(
    owner: RowsOwner, content_type: str
) -> None:
    dataset = await owner.dataset()
    body = orjson.dumps({"dataset": dataset, "rows": series(T0, 2)})
    response = await owner.http.post(
        f"{ROWS}/bulk_insert",
        params={"dataset": dataset},
        content=body,
        headers={**owner.headers, "content-type": content_type},
    )
    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert owner.directory(dataset) is None


async def test_bulk_insert_with_malformed_json_is_a_bad_request(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    body = b'{"dataset": "' + dataset.encode() + b'", "rows": [{"timestamp": 1,,}]}'
    response = await owner.http.post(
        f"{ROWS}/bulk_insert",
        content=body,
        headers={**owner.headers, "content-type": "application/json"},
    )
    # The code every other JSON body uses for this (conventions.md, app/errors.py).
    assert_envelope(response, 400, "MALFORMED_JSON")
    assert owner.directory(dataset) is None


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ([], ["body"]),
        ({"rows": []}, ["body", "dataset"]),
        ({"dataset": "D", "rows": {"timestamp": 1}}, ["body", "rows"]),
        ({"dataset": "D", "rows": [], "extra": 1}, ["body", "extra"]),
    ],
    ids=["not an object", "no dataset", "rows not a list", "unknown field"],
)
async def test_bulk_insert_body_shape_is_checked(
    owner: RowsOwner, body: Any, loc: list[Any]
) -> None:
    dataset = await owner.dataset()
    if isinstance(body, dict) and body.get("dataset") == "D":
        body["dataset"] = dataset
    response = await owner.http.post(
        f"{ROWS}/bulk_insert",
        content=orjson.dumps(body),
        headers={**owner.headers, "content-type": "application/json"},
    )
    answer = assert_envelope(response, 422, "VALIDATION_ERROR")
    assert answer["details"][0]["loc"] == loc
    assert owner.directory(dataset) is None


# ---------------------------------------------------------------- NDJSON loads

LOAD_ROWS = 30_000


async def test_ndjson_load_over_several_batches(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    rows = series(T0, LOAD_ROWS, close=1.5)
    random.Random(16).shuffle(rows)
    assert counts_of(await owner.load(dataset, ndjson(rows))) == {
        "inserted": LOAD_ROWS,
        "skipped": 0,
        "replaced": 0,
        "total": LOAD_ROWS,
    }
    stored = owner.stored_rows(dataset)
    expected = [(r["timestamp"], r["values"]) for r in rows]
    assert stored == sorted(expected)
    assert_buckets_sound(owner, dataset)
    assert len(await owner.read_all(dataset)) == LOAD_ROWS
    answer = await shown(owner, dataset)
    assert answer["row_count"] == LOAD_ROWS
    assert answer["first_timestamp"] == iso_ms(T0)
    assert answer["last_timestamp"] == iso_ms(T0 + (LOAD_ROWS - 1) * 1000)


async def test_ndjson_blank_lines_are_ignored(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    body = (
        b"\n"
        + orjson.dumps({"timestamp": T0, "values": {"a": 1}})
        + b"\r\n\n   \n"
        + orjson.dumps({"timestamp": "2025-12-16T00:00:01Z", "values": {"a": 2}})
    )
    assert counts_of(await owner.load(dataset, body)) == {
        "inserted": 2,
        "skipped": 0,
        "replaced": 0,
        "total": 2,
    }
    assert owner.stored_rows(dataset) == [(T0, {"a": 1}), (T0 + 1000, {"a": 2})]
    # A bad line is numbered counting the blank ones.
    bad = b"\n\n" + orjson.dumps({"timestamp": T0 + 5000, "values": {}}) + b"\n\n{oops\n"
    answer = assert_envelope(await owner.load(dataset, bad), 422, "VALIDATION_ERROR")
    assert answer["details"][0]["loc"][:2] == ["line", 5]
    assert len(owner.stored_rows(dataset)) == 2


def existing_between(count: int) -> list[dict[str, Any]]:
    """Rows half a second after some of a load's rows, so the load merges into them."""
    return [{"timestamp": T0 + 500 + k * 300_000, "values": {"old": k}} for k in range(count)]


BAD_LINES = {
    "not json": b'{"timestamp": 1, "values": ',
    "nested value": orjson.dumps({"timestamp": T0 + 25_000_000 + 1, "values": {"a": {"b": 1}}}),
    "bad timestamp": orjson.dumps({"timestamp": "later", "values": {}}),
    "extra key": orjson.dumps({"timestamp": T0 + 25_000_000 + 1, "value": 1}),
    "not an object": b"[1, 2]",
}


@pytest.mark.parametrize("bad_line", list(BAD_LINES.values()), ids=list(BAD_LINES))
async def test_ndjson_bad_line_stores_nothing(owner: RowsOwner, bad_line: bytes) -> None:
    dataset = await seeded(owner, existing_between(100))
    before = snapshot(owner, dataset)
    lines = ndjson(series(T0, LOAD_ROWS)).split(b"\n")
    lines[25_000] = bad_line  # line 25,001
    response = await owner.load(dataset, b"\n".join(lines))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error_code"] in ("VALIDATION_ERROR", "INVALID_TIMESTAMP")
    assert body["details"], body
    assert all(d["loc"][:2] == ["line", 25_001] for d in body["details"])
    assert snapshot(owner, dataset) == before
    assert_buckets_sound(owner, dataset)


async def test_ndjson_conflict_in_a_later_batch_stores_nothing(owner: RowsOwner) -> None:
    clash = T0 + 25_000 * 1000
    dataset = await seeded(
        owner, [*existing_between(100), {"timestamp": clash, "values": {"old": "clash"}}]
    )
    before = snapshot(owner, dataset)
    response = await owner.load(dataset, ndjson(series(T0, LOAD_ROWS)))
    body = assert_envelope(response, 409, "ROW_EXISTS")
    assert iso_ms(clash) in body["message"]
    assert snapshot(owner, dataset) == before
    assert_buckets_sound(owner, dataset)


async def test_ndjson_duplicates_across_batches(owner: RowsOwner) -> None:
    """A timestamp repeated 10,000 lines later meets the first batch's staged row:
    error refuses, skip keeps the first, replace keeps the last."""
    rows = series(T0, 12_000)
    rows[11_000] = {"timestamp": T0 + 5 * 1000, "values": {"dup": "last"}}
    body = ndjson(rows)
    expected = sorted((r["timestamp"], r["values"]) for r in rows[:11_000] + rows[11_001:])

    dataset = await owner.dataset()
    assert_envelope(await owner.load(dataset, body), 409, "ROW_EXISTS")
    assert owner.directory(dataset) is None
    assert owner.buckets(dataset) == []

    assert counts_of(await owner.load(dataset, body, on_conflict="skip")) == {
        "inserted": 11_999,
        "skipped": 1,
        "replaced": 0,
        "total": 12_000,
    }
    assert owner.stored_rows(dataset) == expected
    assert_buckets_sound(owner, dataset)

    other = await owner.dataset()
    assert counts_of(await owner.load(other, body, on_conflict="replace")) == {
        "inserted": 11_999,
        "skipped": 0,
        "replaced": 1,
        "total": 12_000,
    }
    stored = owner.stored_rows(other)
    assert stored[5] == (T0 + 5000, {"dup": "last"})
    assert len(stored) == 11_999
    assert_buckets_sound(owner, other)


async def test_ndjson_skip_and_replace_over_stored_rows(owner: RowsOwner) -> None:
    dataset = await seeded(owner, EXISTING)
    assert counts_of(await owner.load(dataset, ndjson(INCOMING), on_conflict="skip")) == {
        "inserted": 2,
        "skipped": 1,
        "replaced": 0,
        "total": 3,
    }
    again = [{"timestamp": T0 + HOUR, "values": {"v": "replaced"}}]
    assert counts_of(await owner.load(dataset, ndjson(again), on_conflict="replace")) == {
        "inserted": 0,
        "skipped": 0,
        "replaced": 1,
        "total": 1,
    }
    assert [v["v"] for _, v in owner.stored_rows(dataset)] == [
        "old0",
        "new-between",
        "replaced",
        "new-after",
    ]


async def test_ndjson_without_dataset_is_refused(owner: RowsOwner) -> None:
    response = await owner.http.post(
        f"{ROWS}/bulk_insert",
        content=ndjson(series(T0, 2)),
        headers={**owner.headers, "content-type": "application/x-ndjson"},
    )
    body = assert_envelope(response, 422, "VALIDATION_ERROR")
    assert body["details"][0]["loc"] == ["query", "dataset"]


# ---------------------------------------------------------------- merging and splitting


async def test_interleaved_out_of_order_inserts_merge_and_split_buckets(
    owner: RowsOwner,
) -> None:
    dataset = await owner.dataset()
    step = 1000
    evens = [{"timestamp": T0 + 2 * k * step, "values": {"k": 2 * k}} for k in range(5000)]
    counts_of(await owner.bulk(dataset, evens))
    assert_buckets_sound(owner, dataset)

    odds = [{"timestamp": T0 + (2 * k + 1) * step, "values": {"k": 2 * k + 1}} for k in range(5000)]
    random.Random(7).shuffle(odds)
    # Uneven requests: some land in one bucket, some spread over all of them.
    for a, b in ((0, 300), (300, 1800), (1800, 2000), (2000, 4000), (4000, 5000)):
        assert counts_of(await owner.bulk(dataset, odds[a:b]))["inserted"] == b - a
        assert_buckets_sound(owner, dataset)

    # Rows before the first and after the last, in one request, descending.
    edges = [
        {"timestamp": T0 + 20_000 * step, "values": {"k": "after"}},
        {"timestamp": T0 - step, "values": {"k": "before"}},
    ]
    counts_of(await owner.bulk(dataset, edges))
    assert_buckets_sound(owner, dataset)

    model = [(r["timestamp"], r["values"]) for r in evens + odds + edges]
    assert owner.stored_rows(dataset) == sorted(model)
    assert await owner.read_all(dataset) == reference_rows(model)
    assert len(owner.buckets(dataset)) >= 10_002 // 2000


async def test_concurrent_interleaved_requests_all_land(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    requests = [
        [{"timestamp": T0 + (4 * k + j) * 1000, "values": {"j": j}} for k in range(1500)]
        for j in range(4)
    ]
    answers = await asyncio.gather(*(owner.bulk(dataset, rows) for rows in requests))
    assert [counts_of(a)["inserted"] for a in answers] == [1500] * 4
    model = [(r["timestamp"], r["values"]) for rows in requests for r in rows]
    assert owner.stored_rows(dataset) == sorted(model)
    assert_buckets_sound(owner, dataset)
    assert (await shown(owner, dataset))["row_count"] == 6000


async def test_dense_insert_into_one_bucket_splits_it(owner: RowsOwner) -> None:
    dataset = await seeded(
        owner,
        [{"timestamp": T0, "values": {"k": "lo"}}, {"timestamp": T0 + HOUR, "values": {"k": "hi"}}],
    )
    inside = series(T0 + 1, 4500, step_ms=7)
    random.Random(3).shuffle(inside)
    counts_of(await owner.bulk(dataset, inside))
    assert_buckets_sound(owner, dataset)
    assert len(owner.buckets(dataset)) >= 3
    model = [(T0, {"k": "lo"}), (T0 + HOUR, {"k": "hi"})] + [
        (r["timestamp"], r["values"]) for r in inside
    ]
    assert owner.stored_rows(dataset) == sorted(model)


# ---------------------------------------------------------------- deleting rows


async def big_dataset(owner: RowsOwner, count: int = 6000) -> tuple[str, list[Any]]:
    dataset = await owner.dataset()
    rows = series(T0, count)
    counts_of(await owner.bulk(dataset, rows))
    assert len(owner.buckets(dataset)) > 1
    return dataset, [(r["timestamp"], r["values"]) for r in rows]


def without(model: list[Any], start: int | None, end: int | None) -> list[Any]:
    return [
        (t, v) for t, v in model if not ((start is None or t >= start) and (end is None or t < end))
    ]


async def test_delete_by_range_across_bucket_edges(owner: RowsOwner) -> None:
    dataset, model = await big_dataset(owner)
    start, end = T0 + 500 * 1000, T0 + 3500 * 1000
    response = await delete_rows(
        owner, {"dataset": dataset, "start": iso_ms(start), "end": iso_ms(end)}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "deleted": 3000}
    model = without(model, start, end)
    assert owner.stored_rows(dataset) == model
    assert_buckets_sound(owner, dataset)
    # The start is inclusive and the end exclusive.
    assert (start - 1000, {"i": 499}) in model and (end, {"i": 3500}) in model

    # Only a start; only an end (epoch milliseconds), each across a bucket edge.
    response = await delete_rows(owner, {"dataset": dataset, "start": T0 + 5990 * 1000 + 1})
    assert response.json() == {"success": True, "deleted": 9}
    model = without(model, T0 + 5990 * 1000 + 1, None)
    response = await delete_rows(owner, {"dataset": dataset, "end": "2025-12-16T00:00:10+00:00"})
    assert response.json() == {"success": True, "deleted": 10}
    model = without(model, None, T0 + 10_000)
    assert owner.stored_rows(dataset) == model
    assert_buckets_sound(owner, dataset)
    assert await owner.read_all(dataset) == reference_rows(model)
    answer = await shown(owner, dataset)
    assert answer["row_count"] == len(model)
    assert answer["first_timestamp"] == iso_ms(model[0][0])
    assert answer["last_timestamp"] == iso_ms(model[-1][0])


async def test_delete_of_an_empty_range_changes_nothing(owner: RowsOwner) -> None:
    dataset, _model = await big_dataset(owner, 2500)
    before = snapshot(owner, dataset)
    for body in (
        {"start": T0 + 500, "end": T0 + 999},  # between two rows
        {"start": T0 - HOUR, "end": T0},  # before the first, end exclusive
        {"start": T0 + 10 * HOUR},
    ):
        response = await delete_rows(owner, {"dataset": dataset, **body})
        assert response.json() == {"success": True, "deleted": 0}, body
    assert snapshot(owner, dataset) == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "VALIDATION_ERROR"),
        ({"all": False}, "VALIDATION_ERROR"),
        ({"all": True, "start": T0}, "VALIDATION_ERROR"),
        ({"start": "whenever"}, "INVALID_TIMESTAMP"),
        ({"start": T0, "end": "x"}, "INVALID_TIMESTAMP"),
    ],
    ids=["no range", "all false", "all with start", "bad start", "bad end"],
)
async def test_delete_without_a_proper_range_is_refused(
    owner: RowsOwner, body: dict[str, Any], code: str
) -> None:
    dataset = await seeded(owner, series(T0, 10))
    before = snapshot(owner, dataset)
    response = await delete_rows(owner, {"dataset": dataset, **body})
    assert_envelope(response, 422, code)
    assert snapshot(owner, dataset) == before


async def test_delete_all_rows(owner: RowsOwner) -> None:
    dataset, model = await big_dataset(owner, 4500)
    response = await delete_rows(owner, {"dataset": dataset, "all": True})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "deleted": len(model)}
    assert owner.stored_rows(dataset) == []
    assert owner.buckets(dataset) == []
    assert owner.directory(dataset)["count"] == 0
    answer = await shown(owner, dataset)
    assert (answer["row_count"], answer["first_timestamp"], answer["last_timestamp"]) == (
        0,
        None,
        None,
    )
    assert (await owner.read(dataset))["data"] == []
    # The dataset takes rows again.
    counts_of(await owner.bulk(dataset, series(T0, 3)))
    assert (await shown(owner, dataset))["row_count"] == 3


# ---------------------------------------------------------------- the dataset answer


async def test_dataset_answer_follows_rows_and_columns(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    answer = await shown(owner, dataset)
    assert (answer["row_count"], answer["first_timestamp"], answer["last_timestamp"]) == (
        0,
        None,
        None,
    )
    assert answer["columns"] == []

    column = (await create_column(owner, dataset, "price", "float")).json()["data"]
    counts_of(
        await owner.bulk(
            dataset,
            [
                {"timestamp": "2025-12-16T10:00:00Z", "values": {"price": 1.0}},
                {"timestamp": "2025-12-16T11:00:00.250Z", "values": {"price": 2.0}},
            ],
        )
    )
    answer = await shown(owner, dataset)
    assert answer["row_count"] == 2
    assert answer["first_timestamp"] == "2025-12-16T10:00:00Z"
    assert answer["last_timestamp"] == "2025-12-16T11:00:00.250Z"
    assert answer["columns"] == [column]

    single = await owner.http.post(
        ROWS,
        json={"dataset": dataset, "timestamp": "2025-12-15T09:00:00Z", "values": {"price": 0.5}},
        headers=owner.headers,
    )
    assert single.status_code == 201, single.text
    answer = await shown(owner, dataset)
    assert (answer["row_count"], answer["first_timestamp"]) == (3, "2025-12-15T09:00:00Z")

    response = await delete_rows(owner, {"dataset": dataset, "start": "2025-12-16T11:00:00Z"})
    assert response.json() == {"success": True, "deleted": 1}
    answer = await shown(owner, dataset)
    assert (answer["row_count"], answer["last_timestamp"]) == (2, "2025-12-16T10:00:00Z")
    assert owner.directory(dataset)["count"] == 2

    assert (
        await owner.http.delete(f"{COLUMNS}/{column['id']}", headers=owner.headers)
    ).status_code == 204
    assert (await shown(owner, dataset))["columns"] == []


async def test_deleting_the_dataset_removes_rows_and_columns(owner: RowsOwner) -> None:
    dataset, _model = await big_dataset(owner, 4500)
    assert (await create_column(owner, dataset, "i", "int")).status_code == 201
    neighbour = await seeded(owner, series(T0, 5))
    assert (await create_column(owner, neighbour, "i", "int")).status_code == 201
    neighbour_before = snapshot(owner, neighbour)

    response = await owner.http.delete(f"/api/v1/datasets/{dataset}", headers=owner.headers)
    assert response.status_code == 204, response.text
    assert owner.directory(dataset) is None
    assert owner.buckets(dataset) == []
    assert stored_columns(owner, dataset) == []
    leases = owner.sync[owner.control_db]["leases"]
    assert leases.find_one({"_id": f"rows:{dataset}"}) is None
    assert snapshot(owner, neighbour) == neighbour_before
    assert len(stored_columns(owner, neighbour)) == 1

    gone = await owner.http.get(ROWS, params={"dataset": dataset}, headers=owner.headers)
    assert_envelope(gone, 404, "DATASET_NOT_FOUND")
    assert_envelope(await owner.bulk(dataset, series(T0, 1)), 404, "DATASET_NOT_FOUND")
    listed = await owner.http.get(COLUMNS, params={"dataset": dataset}, headers=owner.headers)
    assert_envelope(listed, 404, "DATASET_NOT_FOUND")


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999-01:00"]
)
async def test_an_offset_that_leaves_the_date_range_is_an_invalid_timestamp(
    owner: RowsOwner, timestamp: str
) -> None:
    dataset = await owner.dataset()
    response = await owner.bulk(dataset, [{"timestamp": timestamp, "values": {}}])
    assert_envelope(response, 422, ErrorCode.INVALID_TIMESTAMP)
    assert owner.directory(dataset) is None


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity"])
async def test_a_single_row_refuses_numbers_json_cannot_carry(
    owner: RowsOwner, value: bytes
) -> None:
    dataset = await owner.dataset()
    body = b'{"dataset": "%s", "timestamp": 1, "values": {"x": %s}}' % (dataset.encode(), value)
    response = await owner.http.post(
        ROWS, content=body, headers={**owner.headers, "content-type": "application/json"}
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert owner.directory(dataset) is None


async def test_a_single_row_with_an_integer_beyond_64_bits_is_not_a_500(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    huge = b"1" + b"0" * 30
    body = b'{"dataset": "%s", "timestamp": 1, "values": {"x": %s}}' % (dataset.encode(), huge)
    response = await owner.http.post(
        ROWS, content=body, headers={**owner.headers, "content-type": "application/json"}
    )
    # Taken as the number it is, like bulk_insert (orjson) does: a float.
    assert response.status_code == 201, response.text
    assert owner.stored_rows(dataset) == [(1, {"x": 1e30})]


async def test_an_endless_ndjson_line_is_refused_and_nothing_is_stored(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    good = ndjson(series(0, 3))

    async def body() -> AsyncIterator[bytes]:
        yield good
        for _ in range(40):  # 2.5 MiB without a newline
            yield b"x" * 65536

    response = await owner.http.post(
        f"{ROWS}/bulk_insert",
        params={"dataset": dataset},
        content=body(),
        headers={**owner.headers, "content-type": "application/x-ndjson"},
    )
    found = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert found["details"][0]["loc"] == ["line", 4]
    assert owner.directory(dataset) is None
    assert owner.buckets(dataset) == []


async def test_a_newest_first_backfill_fills_the_gap_without_a_bucket_per_request(
    owner: RowsOwner,
) -> None:
    dataset = await owner.dataset()
    # Two full buckets with a gap between them.
    early = [{"timestamp": n, "values": {}} for n in range(2000)]
    late = [{"timestamp": 1_000_000 + n, "values": {}} for n in range(1000)]
    assert (await owner.bulk(dataset, early)).status_code == 200
    assert (await owner.bulk(dataset, late)).status_code == 200
    before = len(owner.buckets(dataset))
    gap = list(range(999_999, 999_949, -1))  # newest first, one row per request
    for ts in gap:
        response = await owner.bulk(dataset, [{"timestamp": ts, "values": {"g": 1}}])
        assert response.status_code == 200, response.text
    assert len(owner.buckets(dataset)) <= before + 1
    stored = owner.stored_rows(dataset)
    assert len(stored) == 3050
    page = await owner.read(dataset, start=999_949, end=1_000_000, limit=100)
    assert page["data"] == reference_rows(stored, 999_949, 1_000_000)
