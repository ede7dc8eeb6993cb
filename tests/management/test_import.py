"""Import: shapes, Extended JSON, BOM, broken files, abort vs skip, duplicates,
the size limit, and the rollback when the engine dies mid-import."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import Int64, ObjectId
from pymongo import MongoClient
from pymongo.errors import AutoReconnect

from app.errors import ErrorCode
from app.wiring import state_of
from tests.fixtures.accounts import Account
from tests.fixtures.databases import metadata, upload
from tests.fixtures.engine import DatabaseServer
from tests.fixtures.envelopes import assert_envelope

CreateDatabase = Callable[..., Awaitable[dict[str, Any]]]
Sync = MongoClient[dict[str, Any]]


@pytest.fixture
async def target(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase, sync_client: Sync
) -> tuple[str, Any]:
    """(database id, the physical `users` collection)."""
    database_id = (await create_database(owner))["database"]["id"]
    db_name = (await metadata(client, owner, database_id))["dbName"]
    return database_id, sync_client[db_name]["users"]


def _users(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"email": f"u{i}@example.com", "signup_date": "2023-10-27T10:00:00Z", "age": 20 + i % 50}
        for i in range(start, start + count)
    ]


@pytest.mark.smoke
async def test_import_of_an_array_converts_by_schema(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any]
) -> None:
    database_id, users = target
    response = await upload(client, owner, database_id, json.dumps(_users(3)).encode())
    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True,
        "collection": "users",
        "inserted_count": 3,
        "skipped_count": 0,
        "errors": [],
    }
    stored = users.find_one({"email": "u1@example.com"})
    assert stored["signup_date"] == datetime(2023, 10, 27, 10, tzinfo=UTC)
    assert isinstance(stored["_id"], ObjectId)
    assert users.count_documents({}) == 3


async def test_import_of_a_single_object(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any]
) -> None:
    database_id, users = target
    response = await upload(client, owner, database_id, b'{"email": "solo@example.com"}')
    assert response.json()["inserted_count"] == 1
    assert users.count_documents({"email": "solo@example.com"}) == 1


async def test_import_of_ndjson_with_a_bom(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any]
) -> None:
    database_id, users = target
    lines = "\n".join(json.dumps(user) for user in _users(4)) + "\n"
    response = await upload(
        client, owner, database_id, b"\xef\xbb\xbf" + lines.encode(), filename="u.ndjson"
    )
    assert response.json()["inserted_count"] == 4, response.text
    assert users.count_documents({}) == 4


async def test_import_of_mongoexport_extended_json(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any]
) -> None:
    database_id, users = target
    lines = (
        b'{"_id":{"$oid":"60c72b2f9b1d8b1a2d3e4567"},"email":"a@example.com",'
        b'"signup_date":{"$date":"2023-10-27T10:00:00.123Z"},"visits":{"$numberLong":"9007199254740993"},'
        b'"ref":{"$oid":"60c72b2f9b1d8b1a2d3e4568"}}\n'
        b'{"_id":{"$oid":"60c72b2f9b1d8b1a2d3e4569"},"email":"b@example.com",'
        b'"signup_date":{"$date":{"$numberLong":"1698400800000"}}}\n'
    )
    response = await upload(client, owner, database_id, lines, filename="users.json")
    assert response.json()["inserted_count"] == 2, response.text
    first = users.find_one({"_id": ObjectId("60c72b2f9b1d8b1a2d3e4567")})
    assert first["signup_date"] == datetime(2023, 10, 27, 10, 0, 0, 123000, tzinfo=UTC)
    assert first["visits"] == Int64(9007199254740993) and isinstance(first["visits"], Int64)
    assert first["ref"] == ObjectId("60c72b2f9b1d8b1a2d3e4568")
    second = users.find_one({"_id": ObjectId("60c72b2f9b1d8b1a2d3e4569")})
    assert second["signup_date"] == datetime(2023, 10, 27, 10, tzinfo=UTC)


async def test_decimal_on_the_embedded_engine_is_a_clear_record_error(
    client: httpx.AsyncClient,
    owner: Account,
    target: tuple[str, Any],
    database_server: DatabaseServer,
) -> None:
    if not database_server.stoppable:
        pytest.skip("MongoDB stores Decimal128")
    database_id, users = target
    content = b'{"email": "a@example.com", "price": {"$numberDecimal": "19.99"}}'
    response = await upload(client, owner, database_id, content)
    body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert body["details"][0]["loc"] == [0, "price"]
    assert "need MongoDB" in body["details"][0]["msg"]
    assert users.count_documents({}) == 0


async def test_broken_json_names_the_byte_offset_and_writes_nothing(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any]
) -> None:
    database_id, users = target
    content = b'[{"email": "a@example.com"},\n {"email": "b@example.com" "age": 3}]'
    response = await upload(client, owner, database_id, content)
    body = assert_envelope(response, 400, ErrorCode.INVALID_IMPORT_FILE)
    offset = content.index(b'"age"')
    assert f"byte {offset}" in body["message"]
    assert "line 2" in body["message"]
    assert users.count_documents({}) == 0


@pytest.mark.parametrize(
    ("content", "status", "needle"),
    [
        (b"42", 400, "expected a JSON array"),
        (b"email,age\na@example.com,3\n", 400, "expected a JSON array"),
        (b"", 400, "empty"),
        (b'[{"email": "a@example.com"}, 7]', 422, "Record 1"),
        (b'{"email": "a@example.com"}\n[1]\n', 422, "Record 1"),
    ],
)
async def test_files_that_are_not_objects_are_refused_naming_the_record(
    client: httpx.AsyncClient,
    owner: Account,
    target: tuple[str, Any],
    content: bytes,
    status: int,
    needle: str,
) -> None:
    database_id, users = target
    response = await upload(client, owner, database_id, content)
    body = assert_envelope(response, status, ErrorCode.INVALID_IMPORT_FILE)
    assert needle in body["message"]
    assert users.count_documents({}) == 0


async def test_abort_refuses_the_whole_file_listing_every_bad_record(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any]
) -> None:
    database_id, users = target
    records = _users(5)
    records[1]["age"] = "old"
    records[3]["signup_date"] = "yesterday"
    del records[4]["email"]
    response = await upload(client, owner, database_id, json.dumps(records).encode())
    body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert "3 of 5 records" in body["message"]
    assert [(d["index"], d["loc"]) for d in body["details"]] == [
        (1, [1, "age"]),
        (3, [3, "signup_date"]),
        (4, [4, "email"]),
    ]
    assert users.count_documents({}) == 0


async def test_skip_inserts_the_good_records_and_lists_the_bad(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any]
) -> None:
    database_id, users = target
    records = _users(5)
    records[2]["age"] = 1.5
    response = await upload(
        client, owner, database_id, json.dumps(records).encode(), on_error="skip"
    )
    body = response.json()
    assert (body["inserted_count"], body["skipped_count"]) == (4, 1)
    assert body["errors"] == [
        {"index": 2, "loc": [2, "age"], "msg": "expected an integer", "type": "int_type"}
    ]
    assert users.count_documents({}) == 4
    assert users.count_documents({"email": "u2@example.com"}) == 0


async def test_a_duplicate_id_in_the_file_aborts_and_rolls_back(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any]
) -> None:
    database_id, users = target
    records = _users(6)
    records[0]["_id"] = "same"
    records[4]["_id"] = "same"
    response = await upload(client, owner, database_id, json.dumps(records).encode())
    body = assert_envelope(response, 409, ErrorCode.DUPLICATE_KEY)
    assert "Record 4" in body["message"]
    assert users.count_documents({}) == 0


async def test_a_duplicate_id_in_the_file_is_one_skipped_record_with_skip(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any]
) -> None:
    database_id, users = target
    records = _users(6)
    records[0]["_id"] = "same"
    records[4]["_id"] = "same"
    response = await upload(
        client, owner, database_id, json.dumps(records).encode(), on_error="skip"
    )
    body = response.json()
    assert (body["inserted_count"], body["skipped_count"]) == (5, 1)
    assert body["errors"][0]["index"] == 4 and body["errors"][0]["type"] == "duplicate"
    assert users.count_documents({}) == 5


@pytest.mark.smoke
async def test_a_unique_field_clash_rolls_the_import_back_and_keeps_existing_documents(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any]
) -> None:
    database_id, users = target
    users.insert_one({"_id": "keep", "email": "u3@example.com"})
    response = await upload(client, owner, database_id, json.dumps(_users(10)).encode())
    assert_envelope(response, 409, ErrorCode.DUPLICATE_KEY)
    assert list(users.find()) == [{"_id": "keep", "email": "u3@example.com"}]


async def test_an_existing_id_aborts_before_anything_is_written(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any]
) -> None:
    database_id, users = target
    users.insert_one({"_id": ObjectId("60c72b2f9b1d8b1a2d3e4567"), "email": "old@example.com"})
    records = _users(3)
    records[2]["_id"] = "60c72b2f9b1d8b1a2d3e4567"
    response = await upload(client, owner, database_id, json.dumps(records).encode())
    body = assert_envelope(response, 409, ErrorCode.DUPLICATE_KEY)
    assert "Record 2" in body["message"]
    assert users.count_documents({}) == 1


async def test_missing_collection_name_comes_from_the_file_name_and_is_created(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any], sync_client: Sync
) -> None:
    database_id, users = target
    response = await upload(
        client, owner, database_id, b'[{"kind": "click"}]', filename="events.json", collection=None
    )
    assert response.json()["collection"] == "events"
    assert users.database["events"].count_documents({"kind": "click"}) == 1
    data = await metadata(client, owner, database_id)
    assert {"name": "events", "fields": [], "strict": False, "indexes": []} in data["collections"]


async def test_bad_file_name_without_collection_name_is_invalid_name(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any]
) -> None:
    database_id, _ = target
    response = await upload(
        client, owner, database_id, b"[]", filename="2024 dump.json", collection=None
    )
    assert_envelope(response, 422, ErrorCode.INVALID_NAME)


async def test_file_over_the_limit_is_413_and_nothing_is_written(
    make_client: Callable[..., Any], register_in: Callable[..., Any], sync_client: Sync
) -> None:
    async with make_client(max_import_bytes=4096) as (_app, http):
        account = await register_in(http)
        created = await http.post(
            "/api/create_database",
            json={"db_name": "limits", "collections": [{"name": "users"}]},
            headers=account.bearer,
        )
        database_id = created.json()["database"]["id"]
        response = await upload(http, account, database_id, json.dumps(_users(200)).encode())
        assert_envelope(response, 413, ErrorCode.PAYLOAD_TOO_LARGE)
        db_name = (await metadata(http, account, database_id))["dbName"]
        assert sync_client[db_name]["users"].count_documents({}) == 0
        small = await upload(http, account, database_id, json.dumps(_users(2)).encode())
        assert small.json()["inserted_count"] == 2


async def test_temporary_files_and_journal_are_removed(
    client: httpx.AsyncClient, owner: Account, target: tuple[str, Any], settings: Any
) -> None:
    database_id, users = target
    ok = await upload(client, owner, database_id, json.dumps(_users(3)).encode())
    assert ok.status_code == 200 and ok.json()["inserted_count"] == 3, ok.text
    broken = await upload(client, owner, database_id, b"[{]")
    assert_envelope(broken, 400, ErrorCode.INVALID_IMPORT_FILE)
    records = _users(3, start=10)
    records[1]["_id"] = records[2]["_id"] = 1
    duplicate = await upload(client, owner, database_id, json.dumps(records).encode())
    assert_envelope(duplicate, 409, ErrorCode.DUPLICATE_KEY)
    assert users.count_documents({}) == 3  # the rolled-back import left nothing
    data_dir = Path(settings.data_dir)
    assert list((data_dir / "tmp").iterdir()) == []
    assert list((data_dir / "import-journal").iterdir()) == []


@pytest.mark.parametrize("fault", ["stop", "kill"])
async def test_engine_stopped_mid_import_rolls_back_once_it_returns(
    fault: str,
    make_client: Callable[..., Any],
    register_in: Callable[..., Any],
    database_server: DatabaseServer,
    sync_client: Sync,
) -> None:
    if not database_server.stoppable:
        pytest.skip("needs the embedded engine to stop it")
    async with make_client(maintenance_interval_seconds=0.2) as (app, http):
        account = await register_in(http)
        created = await http.post(
            "/api/create_database",
            json={"db_name": "outage", "collections": [{"name": "users"}]},
            headers=account.bearer,
        )
        database_id = created.json()["database"]["id"]
        db_name = (await metadata(http, account, database_id))["dbName"]
        users = sync_client[db_name]["users"]
        users.insert_many([{"_id": i, "before": True} for i in range(10)])
        before = list(users.find().sort("_id", 1))
        records = [{"n": i, "payload": "x" * 100} for i in range(200_000)]
        importing = asyncio.create_task(
            upload(http, account, database_id, json.dumps(records).encode(), collection="users")
        )

        def count() -> int:
            """The stored count (-1 while the test's own client still holds a
            connection from before the restart, which the engine's new socket refuses)."""
            try:
                return int(sync_client[db_name].command("collStats", "users")["count"])
            except AutoReconnect:
                return -1

        for _ in range(600):
            await asyncio.sleep(0.05)
            if await asyncio.to_thread(count) > 10 or importing.done():
                break
        assert not importing.done(), "the import finished before the engine could be stopped"
        # stop: SIGTERM, the engine shuts down in order; kill: SIGKILL, a crash.
        await asyncio.to_thread(getattr(database_server, fault))
        try:
            response = await importing
            assert_envelope(response, 503, ErrorCode.DATABASE_UNAVAILABLE)
        finally:
            await asyncio.to_thread(database_server.start)
        for _ in range(300):
            if await asyncio.to_thread(count) == 10:
                break
            await asyncio.sleep(0.1)
        assert list(users.find().sort("_id", 1)) == before
        for _ in range(50):
            if not list((Path(state_of(app).settings.data_dir) / "import-journal").iterdir()):
                break
            await asyncio.sleep(0.1)
        assert list((Path(state_of(app).settings.data_dir) / "import-journal").iterdir()) == []


async def test_one_import_too_many_at_once_is_429_before_its_body_is_read(
    make_client: Callable[..., Any], register_in: Callable[..., Any], sync_client: Sync
) -> None:
    """The quota is checked before the upload is spooled: the first import's body
    is held open here while a second one is refused, then both finish cleanly."""
    async with make_client(max_concurrent_imports_per_user=1) as (app, http):
        account = await register_in(http)
        created = await http.post(
            "/api/create_database",
            json={"db_name": "quota", "collections": [{"name": "users", "fields": []}]},
            headers=account.bearer,
        )
        database_id = created.json()["database"]["id"]
        boundary = "quarryboundary"
        head = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="database_id"\r\n\r\n'
                f"{database_id}\r\n--{boundary}\r\nContent-Disposition: form-data; "
                'name="collection_name"\r\n\r\nusers\r\n--{boundary}\r\nContent-Disposition: '
                'form-data; name="json_file"; filename="a.json"\r\n'
                'Content-Type: application/json\r\n\r\n[{"n": 1},'
            )
            .replace("{boundary}", boundary)
            .encode()
        )
        tail = f' {{"n": 2}}]\r\n--{boundary}--\r\n'.encode()
        release = asyncio.Event()

        async def slow_body() -> Any:
            yield head
            await release.wait()
            yield tail

        first = asyncio.create_task(
            http.post(
                "/api/import_data",
                content=slow_body(),
                headers={
                    **account.bearer,
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                },
            )
        )
        leases = state_of(app).database.control["import_leases"]
        for _ in range(100):
            if await leases.count_documents({}) == 1:
                break
            await asyncio.sleep(0.02)
        second = await upload(http, account, database_id, b'[{"n": 3}]')
        assert_envelope(second, 429, ErrorCode.TOO_MANY_IMPORTS)
        assert second.headers["retry-after"] == "5"
        release.set()
        done = await first
        assert done.status_code == 200, done.text
        assert done.json()["inserted_count"] == 2
        assert await leases.count_documents({}) == 0
        third = await upload(http, account, database_id, b'[{"n": 3}]')
        assert third.status_code == 200, third.text
