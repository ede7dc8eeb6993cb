"""Seed 002's examples, verbatim apart from Quarry's paths, ids and envelope:
create a dataset, bulk_insert two rows, read them back by range and ordering,
bulk_download as CSV and JSON, live NDJSON; and the dataset's row summary."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from tests.fixtures.rows import ROWS, RowsOwner, module_owner

pytestmark = pytest.mark.smoke


owner = module_owner("rows")


SEED_ROWS = [
    {"timestamp": "2025-12-16T10:00:00Z", "values": {"price": 104500}},
    {"timestamp": "2025-12-16T11:00:00Z", "values": {"price": 104600}},
]


async def test_seed_quick_start(owner: RowsOwner) -> None:
    created = await owner.http.post(
        "/api/v1/datasets",
        json={"name": "my_btc_prices", "description": "Bitcoin hourly prices"},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    dataset = created.json()["data"]["id"]

    inserted = await owner.http.post(
        f"{ROWS}/bulk_insert",
        json={"dataset": dataset, "rows": SEED_ROWS},
        headers=owner.headers,
    )
    assert inserted.status_code == 200, inserted.text
    assert inserted.json() == {
        "success": True,
        "inserted": 2,
        "skipped": 0,
        "replaced": 0,
        "total": 2,
    }

    page = await owner.read(
        dataset,
        start="2025-12-01T00:00:00Z",
        end="2025-12-17T00:00:00Z",
        ordering="-timestamp",
        limit=100,
    )
    assert page["data"] == [
        {"timestamp": "2025-12-16T11:00:00Z", "values": {"price": 104600}},
        {"timestamp": "2025-12-16T10:00:00Z", "values": {"price": 104500}},
    ]
    assert page["pagination"]["count"] == 2
    assert page["pagination"]["next"] is None and page["pagination"]["previous"] is None

    as_csv = await owner.http.get(
        f"{ROWS}/bulk_download", params={"dataset": dataset, "output": "csv"}, headers=owner.headers
    )
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "my_btc_prices.csv" in as_csv.headers["content-disposition"]
    assert list(csv.reader(io.StringIO(as_csv.text))) == [
        ["timestamp", "price"],
        ["2025-12-16T10:00:00Z", "104500"],
        ["2025-12-16T11:00:00Z", "104600"],
    ]

    as_json = await owner.http.get(
        f"{ROWS}/bulk_download",
        params={"dataset": dataset, "output": "json"},
        headers=owner.headers,
    )
    assert as_json.status_code == 200
    assert as_json.json() == SEED_ROWS

    live = await owner.http.get(
        f"{ROWS}/live", params={"dataset": dataset, "limit": 1000}, headers=owner.headers
    )
    assert live.status_code == 200
    assert [orjson.loads(line) for line in live.text.splitlines()] == [
        {"timestamp": "2025-12-16T10:00:00Z", "price": 104500},
        {"timestamp": "2025-12-16T11:00:00Z", "price": 104600},
    ]

    shown = (await owner.http.get(f"/api/v1/datasets/{dataset}", headers=owner.headers)).json()
    assert shown["data"]["row_count"] == 2
    assert shown["data"]["first_timestamp"] == "2025-12-16T10:00:00Z"
    assert shown["data"]["last_timestamp"] == "2025-12-16T11:00:00Z"
    stored = owner.stored_rows(dataset)
    assert [v for _, v in stored] == [{"price": 104500}, {"price": 104600}]


async def test_single_insert_and_conflict(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    row = {
        "dataset": dataset,
        "timestamp": "2025-12-16T12:00:00+02:00",
        "values": {"open": 104500.0, "high": 104800.0, "volume": 1234567},
    }
    created = await owner.http.post(ROWS, json=row, headers=owner.headers)
    assert created.status_code == 201, created.text
    assert created.json()["data"] == {
        "dataset": dataset,
        "timestamp": "2025-12-16T10:00:00Z",
        "values": {"open": 104500.0, "high": 104800.0, "volume": 1234567},
    }
    again = await owner.http.post(ROWS, json=row, headers=owner.headers)
    assert again.status_code == 409
    assert again.json()["error_code"] == "ROW_EXISTS"
    assert len(owner.stored_rows(dataset)) == 1
