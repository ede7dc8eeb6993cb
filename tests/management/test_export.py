"""Export: streamed JSON / JSON Lines / CSV, filters, and the round trip through import."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from bson import Int64, ObjectId
from pymongo import MongoClient

from app.errors import ErrorCode
from tests.fixtures.accounts import Account
from tests.fixtures.databases import metadata, upload
from tests.fixtures.envelopes import assert_envelope

CreateDatabase = Callable[..., Awaitable[dict[str, Any]]]
Sync = MongoClient[dict[str, Any]]

DOCUMENTS = [
    {
        "_id": ObjectId("60c72b2f9b1d8b1a2d3e4567"),
        "email": "a@example.com",
        "signup_date": datetime(2023, 10, 27, 10, 0, 0, 123000, tzinfo=UTC),
        "age": 31,
        "visits": Int64(9007199254740993),
        "nested": {
            "when": datetime(2020, 1, 1, tzinfo=UTC),
            "ref": ObjectId("60c72b2f9b1d8b1a2d3e4568"),
        },
        "tags": ["x", "y"],
    },
    {"_id": "custom", "email": "b@example.com", "age": 40, "score": 2.5, "active": False},
]


async def _seeded(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase, sync_client: Sync
) -> tuple[str, Any]:
    database_id = (await create_database(owner))["database"]["id"]
    db_name = (await metadata(client, owner, database_id))["dbName"]
    sync_client[db_name]["users"].insert_many([dict(document) for document in DOCUMENTS])
    return database_id, sync_client[db_name]


async def _export(
    client: httpx.AsyncClient, owner: Account, database_id: str, **params: str
) -> httpx.Response:
    return await client.get(
        "/api/export_data",
        params={"database_id": database_id, "collection_name": "users", **params},
        headers=owner.bearer,
    )


async def test_export_json_is_a_streamed_attachment_in_extended_json(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase, sync_client: Sync
) -> None:
    database_id, _ = await _seeded(client, owner, create_database, sync_client)
    response = await _export(client, owner, database_id)
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="users.json"'
    body = json.loads(response.content)
    assert body[0]["_id"] == {"$oid": "60c72b2f9b1d8b1a2d3e4567"}
    assert body[0]["signup_date"] == {"$date": "2023-10-27T10:00:00.123Z"}
    assert body[0]["visits"] == {"$numberLong": "9007199254740993"}
    assert body[1]["_id"] == "custom"


async def test_export_ndjson_with_a_filter_on_a_date_field(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase, sync_client: Sync
) -> None:
    database_id, _ = await _seeded(client, owner, create_database, sync_client)
    response = await _export(
        client,
        owner,
        database_id,
        format="ndjson",
        filters=json.dumps({"signup_date": {"$gte": "2023-10-01T00:00:00Z"}}),
    )
    lines = response.text.strip().split("\n")
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line)["email"] for line in lines] == ["a@example.com"]


async def test_export_csv_has_a_header_from_schema_and_first_batch(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase, sync_client: Sync
) -> None:
    database_id, _ = await _seeded(client, owner, create_database, sync_client)
    response = await _export(client, owner, database_id, format="csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][:4] == ["_id", "email", "signup_date", "age"]
    assert set(rows[0][4:]) == {"visits", "nested", "tags", "score", "active"}
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["signup_date"] == "2023-10-27T10:00:00.123Z"
    assert first["_id"] == "60c72b2f9b1d8b1a2d3e4567"
    assert json.loads(first["tags"]) == ["x", "y"]
    second = dict(zip(rows[0], rows[2], strict=True))
    assert (second["active"], second["signup_date"]) == ("false", "")


async def test_export_refuses_unsafe_or_malformed_filters(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase, sync_client: Sync
) -> None:
    database_id, _ = await _seeded(client, owner, create_database, sync_client)
    for text, needle in (
        ('{"$where": "sleep(1000)"}', "$where"),
        ('{"age": {"$expr": 1}}', "$expr"),
        ('{"email": {"$regex": "' + "a" * 600 + '"}}', "512"),
        ('{"email": ', "position"),
    ):
        response = await _export(client, owner, database_id, filters=text)
        body = assert_envelope(response, 400, ErrorCode.INVALID_FILTER)
        assert needle in body["message"]


async def test_export_of_unknown_collection_is_not_found(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase
) -> None:
    database_id = (await create_database(owner))["database"]["id"]
    response = await client.get(
        "/api/export_data",
        params={"database_id": database_id, "collection_name": "nope"},
        headers=owner.bearer,
    )
    assert_envelope(response, 404, ErrorCode.COLLECTION_NOT_FOUND)


@pytest.mark.smoke
async def test_export_then_import_round_trips_content_and_types(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase, sync_client: Sync
) -> None:
    source_id, source = await _seeded(client, owner, create_database, sync_client)
    target_id = (await create_database(owner, collections=[]))["database"]["id"]
    target = sync_client[(await metadata(client, owner, target_id))["dbName"]]
    for export_format, collection in (("json", "from_json"), ("ndjson", "from_ndjson")):
        exported = await _export(client, owner, source_id, format=export_format)
        response = await upload(client, owner, target_id, exported.content, collection=collection)
        assert response.json()["inserted_count"] == 2, response.text
        original = list(source["users"].find().sort("email", 1))
        copied = list(target[collection].find().sort("email", 1))
        assert copied == original
        for before, after in zip(original, copied, strict=True):
            assert {k: type(v) for k, v in before.items()} == {k: type(v) for k, v in after.items()}


async def test_csv_export_neutralises_cells_a_spreadsheet_would_run(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase, sync_client: Sync
) -> None:
    """OWASP CSV injection: a text starting with = + - @ tab or CR gets a leading '."""
    database_id = (await create_database(owner))["database"]["id"]
    db_name = (await metadata(client, owner, database_id))["dbName"]
    sync_client[db_name]["users"].insert_one(
        {
            "_id": "evil",
            "email": '=HYPERLINK("http://evil.example","click")',
            "age": -5,
            "=cmd": "+1+1",
            "note": "@SUM(A1)",
            "tab": "\tx",
            "cr": "\r=1",
            "minus": "-2+3",
            "score": -1.5,
            "plain": "safe - text",
        }
    )
    response = await _export(client, owner, database_id, format="csv")
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert len(rows) == 2, response.text
    header, row = rows
    cells = dict(zip(header, row, strict=True))
    assert cells["email"] == '\'=HYPERLINK("http://evil.example","click")'
    assert "'=cmd" in header and cells["'=cmd"] == "'+1+1"
    assert cells["note"] == "'@SUM(A1)"
    assert cells["tab"] == "'\tx" and cells["cr"] == "'\r=1"
    assert cells["minus"] == "'-2+3"
    # Numbers stay numbers; other text stays as it is.
    assert (cells["age"], cells["score"], cells["plain"]) == ("-5", "-1.5", "safe - text")
