"""`client.databases` against a real server: databases, collections and schemas,
import (a file with progress, a stream of documents) and export in each format,
checked through the API and with the raw driver."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from bson import ObjectId, json_util
from pymongo import MongoClient
from quarry_client import (
    AsyncQuarry,
    BadRequest,
    Conflict,
    NotFound,
    Quarry,
    QuarryError,
    ValidationError,
)
from quarry_client.models import MetadataAnswer

from tests.fixtures.mailbox import Inbox
from tests.fixtures.quarry_server import SECRET_KEY, verified_account

Raw = MongoClient[dict[str, Any]]

USERS = {
    "name": "users",
    "fields": [
        {"name": "email", "type": "string", "required": True, "unique": True},
        {"name": "age", "type": "int", "index": True},
        {"name": "signup_date", "type": "date"},
    ],
}
EVENTS = {"name": "events", "fields": [{"name": "n", "type": "int", "required": True}]}


def unique_name(prefix: str = "db") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def new_database(quarry: Quarry, *collections: dict[str, Any]) -> tuple[str, str]:
    """A new database with `collections`; its id and its physical name."""
    created = quarry.databases.create(unique_name(), collections=list(collections))
    return created.database.id, quarry.databases.get(created.database.id).dbName


def stored(sync_client: Raw, db_name: str, collection: str) -> list[dict[str, Any]]:
    return list(sync_client[db_name][collection].find().sort("_id", 1))


def write_ndjson(path: Path, documents: Iterator[dict[str, Any]]) -> int:
    with path.open("w") as out:
        for document in documents:
            out.write(json.dumps(document) + "\n")
    return path.stat().st_size


@pytest.fixture(scope="module")
def account(quarry_url: str, smtp_server: Inbox) -> tuple[str, str]:
    """One account for the module (registrations are budgeted per address)."""
    return verified_account(quarry_url, smtp_server)


@pytest.fixture(scope="module")
def quarry(quarry_url: str, account: tuple[str, str]) -> Iterator[Quarry]:
    with Quarry(quarry_url) as client:
        client.auth.login(*account)
        yield client


@pytest.fixture
async def aquarry(quarry_url: str, account: tuple[str, str]) -> AsyncIterator[AsyncQuarry]:
    async with AsyncQuarry(quarry_url) as client:
        await client.auth.login(*account)
        yield client


# ------------------------------------------------------------------ databases


def test_create_returns_the_database_and_builds_its_collections_and_indexes(
    quarry: Quarry, sync_client: Raw
) -> None:
    name = unique_name("shop")
    created = quarry.databases.create(name, collections=[USERS])
    assert created.success and created.database.name == name
    assert [c.name for c in created.collections] == ["users"]
    assert [f["name"] for f in created.collections[0].fields] == ["email", "age", "signup_date"]
    metadata = quarry.databases.get(created.database.id)
    assert (metadata.id, metadata.displayName) == (created.database.id, name)
    indexes = {(i.field, i.unique) for i in metadata.collections[0].indexes}
    assert {("email", True), ("age", False)} <= indexes
    assert "users" in sync_client[metadata.dbName].list_collection_names()


def test_a_duplicate_database_name_is_a_conflict(quarry: Quarry) -> None:
    name = unique_name()
    quarry.databases.create(name)
    with pytest.raises(Conflict) as caught:
        quarry.databases.create(name)
    assert caught.value.error_code == "DATABASE_EXISTS"


def test_list_walks_every_page_by_name_and_page_gives_one(make_quarry: Any) -> None:
    quarry: Quarry = make_quarry()
    names = sorted(unique_name("alpha") for _ in range(3))
    ids = {quarry.databases.create(name).database.id: name for name in names}
    everything = quarry.databases.list(page_size=2)
    assert [d.name for d in everything] == names
    assert {d.id for d in everything} == set(ids)
    second = quarry.databases.page(page=2, page_size=2)
    assert [d.name for d in second.data] == names[2:]
    assert (second.pagination.total_items, second.pagination.has_next) == (3, False)
    assert [d.name for d in quarry.databases.list(search=names[1][-8:].upper())] == [names[1]]


def test_find_returns_the_database_with_that_exact_name_or_none(quarry: Quarry) -> None:
    name = unique_name()
    created = quarry.databases.create(name)
    quarry.databases.create(name + "_more")
    found = quarry.databases.find(name)
    assert found is not None and found.id == created.database.id
    assert quarry.databases.find(unique_name()) is None


def test_an_unknown_database_is_not_found_with_code_and_request_id(quarry: Quarry) -> None:
    with pytest.raises(NotFound) as caught:
        quarry.databases.get(str(ObjectId()))
    error = caught.value
    assert (error.status_code, error.error_code) == (404, "DATABASE_NOT_FOUND")
    assert error.request_id


def test_another_owners_database_is_not_found(quarry: Quarry, make_quarry: Any) -> None:
    database_id, _ = new_database(quarry, EVENTS)
    with pytest.raises(NotFound) as caught:
        make_quarry().databases.list_collections(database_id)
    assert caught.value.error_code == "DATABASE_NOT_FOUND"


# ---------------------------------------------------------------- collections


def test_list_collections_counts_documents_live(quarry: Quarry) -> None:
    database_id, _ = new_database(quarry, USERS, EVENTS)
    quarry.documents.insert(database_id, "events", [{"n": 1}, {"n": 2}])
    counts = {c.name: c.num_documents for c in quarry.databases.list_collections(database_id)}
    assert counts == {"users": 0, "events": 2}


def test_create_collections_adds_them_and_refuses_an_existing_name(
    quarry: Quarry, sync_client: Raw
) -> None:
    database_id, db_name = new_database(quarry, EVENTS)
    added = quarry.databases.create_collections(database_id, [USERS, {"name": "notes"}])
    assert [(c.name, c.strict) for c in added] == [("users", False), ("notes", False)]
    assert {"users", "notes"} <= set(sync_client[db_name].list_collection_names())
    with pytest.raises(Conflict) as caught:
        quarry.databases.create_collections(database_id, [EVENTS])
    assert caught.value.error_code == "COLLECTION_EXISTS"


def test_update_schema_replaces_the_fields_and_the_indexes_follow(quarry: Quarry) -> None:
    database_id, _ = new_database(quarry, USERS)
    fields = [
        {"name": "email", "type": "string", "required": True},
        {"name": "plan", "type": "string", "index": True},
    ]
    updated = quarry.databases.update_schema(database_id, "users", fields, strict=True)
    assert [f["name"] for f in updated.fields] == ["email", "plan"] and updated.strict
    assert {(i.field, i.unique) for i in updated.indexes} == {("plan", False)}
    with pytest.raises(ValidationError):
        quarry.documents.insert(database_id, "users", {"email": "a@b.c", "extra": 1})


def test_declared_indexes_their_violations_and_their_conversion(
    quarry: Quarry, sync_client: Raw
) -> None:
    orders = {
        "name": "orders",
        "indexes": [{"keys": [{"field": "price", "type": "float", "direction": -1}]}],
    }
    database_id, db_name = new_database(quarry, orders)
    (index,) = quarry.databases.get(database_id).collections[0].indexes
    assert (index.name, index.declared, index.keys[0].direction) == ("price_-1", True, -1)
    assert index.state in ("building", "valid", "off")
    sync_client[db_name]["orders"].insert_many([{"price": "12"}, {"price": "cheap"}])
    listed = quarry.databases.violations(database_id, "orders", "price", page_size=1)
    assert listed.pagination.total_items == 2 and listed.data[0].type == "string"
    assert [v.type for v in quarry.databases.iter_violations(database_id, "orders", "price")] == [
        "string",
        "string",
    ]
    converted = quarry.databases.convert_violations(database_id, "orders", "price")
    assert (converted.converted, converted.unconvertible, converted.remaining) == (1, 1, 0)
    updated = quarry.databases.update_schema(database_id, "orders", [], indexes=[])
    assert updated.indexes == []
    assert [i["name"] for i in sync_client[db_name]["orders"].list_indexes()] == ["_id_"]


def test_drop_collections_drops_all_named_or_none(quarry: Quarry, sync_client: Raw) -> None:
    database_id, db_name = new_database(quarry, USERS, EVENTS)
    with pytest.raises(NotFound) as caught:
        quarry.databases.drop_collections(database_id, ["events", "nope"])
    assert caught.value.error_code == "COLLECTION_NOT_FOUND" and "nope" in caught.value.message
    assert {"users", "events"} <= set(sync_client[db_name].list_collection_names())
    assert quarry.databases.drop_collections(database_id, ["events"]) == ["events"]
    assert [c.name for c in quarry.databases.list_collections(database_id)] == ["users"]
    assert "events" not in sync_client[db_name].list_collection_names()


def test_drop_needs_the_exact_name_as_confirmation(quarry: Quarry, sync_client: Raw) -> None:
    name = unique_name()
    database_id = quarry.databases.create(name, collections=[EVENTS]).database.id
    db_name = quarry.databases.get(database_id).dbName
    quarry.documents.insert(database_id, "events", {"n": 1})
    with pytest.raises(BadRequest) as caught:
        quarry.databases.drop(database_id, confirmation=name.upper())
    assert caught.value.error_code == "CONFIRMATION_MISMATCH"
    assert db_name in sync_client.list_database_names()
    answer = quarry.databases.drop(database_id, confirmation=name)
    assert answer.message == f"Database '{name}' was successfully dropped."
    assert db_name not in sync_client.list_database_names()
    with pytest.raises(NotFound):
        quarry.databases.get(database_id)


# --------------------------------------------------------------------- import


def test_import_file_reports_progress_up_to_the_file_size(
    quarry: Quarry, sync_client: Raw, tmp_path: Path
) -> None:
    database_id, db_name = new_database(quarry, EVENTS)
    path = tmp_path / "events.ndjson"
    size = write_ndjson(path, ({"n": i, "text": "x" * 40} for i in range(5000)))
    seen: list[tuple[int, int | None]] = []
    answer = quarry.databases.import_file(
        database_id, "events", path, progress=lambda sent, total: seen.append((sent, total))
    )
    assert (answer.collection, answer.inserted_count, answer.skipped_count) == ("events", 5000, 0)
    sent = [s for s, _ in seen]
    assert len(sent) > 2 and sent == sorted(set(sent)) and sent[-1] == size
    assert {total for _, total in seen} == {size}
    assert sync_client[db_name]["events"].count_documents({}) == 5000
    assert quarry.documents.count(database_id, "events") == 5000


def test_import_file_names_the_collection_after_the_file_and_reads_extended_json(
    quarry: Quarry, sync_client: Raw, tmp_path: Path
) -> None:
    database_id, db_name = new_database(quarry)
    oid = ObjectId()
    path = tmp_path / "visits.json"
    records = [
        {"_id": {"$oid": str(oid)}, "at": {"$date": "2024-05-01T10:00:00Z"}},
        {"big": {"$numberLong": "9007199254740993"}},
    ]
    path.write_text(json.dumps(records))
    answer = quarry.databases.import_file(database_id, None, path)
    assert (answer.collection, answer.inserted_count) == ("visits", 2)
    first = sync_client[db_name]["visits"].find_one({"_id": oid})
    assert first is not None and first["at"] == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert sync_client[db_name]["visits"].find_one({"big": 9007199254740993}) is not None


def test_import_with_a_bad_record_and_abort_names_it_and_stores_nothing(
    quarry: Quarry, sync_client: Raw, tmp_path: Path
) -> None:
    database_id, db_name = new_database(quarry, EVENTS)
    path = tmp_path / "events.json"
    path.write_text(json.dumps([{"n": 0}, {"n": 1}, {"n": 2}, {"n": "three"}, {"n": 4}]))
    with pytest.raises(ValidationError) as caught:
        quarry.databases.import_file(database_id, "events", path, on_error="abort")
    error = caught.value
    assert error.error_code == "VALIDATION_ERROR" and "nothing was imported" in error.message
    assert error.details is not None and [d["index"] for d in error.details] == [3]
    assert error.details[0]["loc"][:2] == [3, "n"]
    assert sync_client[db_name]["events"].count_documents({}) == 0


def test_import_with_skip_stores_the_good_records_and_lists_the_bad(
    quarry: Quarry, sync_client: Raw, tmp_path: Path
) -> None:
    database_id, db_name = new_database(quarry, EVENTS)
    path = tmp_path / "events.jsonl"
    write_ndjson(path, iter([{"n": 0}, {"x": 1}, {"n": 2}]))
    answer = quarry.databases.import_file(database_id, "events", path, on_error="skip")
    assert (answer.inserted_count, answer.skipped_count) == (2, 1)
    assert answer.errors is not None and [e.index for e in answer.errors] == [1]
    assert sorted(d["n"] for d in stored(sync_client, db_name, "events")) == [0, 2]


def test_import_documents_streams_a_generator(quarry: Quarry, sync_client: Raw) -> None:
    database_id, db_name = new_database(quarry, EVENTS)
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    produced: list[int] = []

    def documents() -> Iterator[dict[str, Any]]:
        for n in range(3000):
            produced.append(n)
            yield {"n": n, "when": when, "tags": ["a", n]}

    seen: list[tuple[int, int | None]] = []
    answer = quarry.databases.import_documents(
        database_id, "events", documents(), progress=lambda s, t: seen.append((s, t))
    )
    assert (answer.inserted_count, answer.skipped_count) == (3000, 0)
    assert len(produced) == 3000 and len(seen) > 1 and {t for _, t in seen} == {None}
    rows = stored(sync_client, db_name, "events")
    assert sorted(d["n"] for d in rows) == list(range(3000))
    assert rows[0]["tags"] == ["a", rows[0]["n"]]


def test_import_into_an_unknown_database_is_not_found(quarry: Quarry, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text("[]")
    with pytest.raises(NotFound) as caught:
        quarry.databases.import_file(str(ObjectId()), "events", path)
    assert caught.value.error_code == "DATABASE_NOT_FOUND" and caught.value.request_id


@pytest.fixture
def refused_once(quarry_url: str, account: tuple[str, str]) -> Iterator[tuple[Quarry, list[int]]]:
    """A client whose access token the server refuses as expired while the client
    believes it fresh, so its next call is answered 401 TOKEN_EXPIRED, refreshed
    and sent again; with the statuses of every answer it gets."""
    with Quarry(quarry_url) as client:
        client.auth.login(*account)
        access = client.transport.credentials.access or ""
        claims = jwt.decode(access, options={"verify_signature": False})
        claims["exp"] = int(time.time() - 5)
        client.transport.credentials.access = jwt.encode(claims, SECRET_KEY, algorithm="HS256")
        client.transport.credentials.expiring = lambda: False  # type: ignore[method-assign]
        statuses: list[int] = []
        client.transport.http.event_hooks["response"].append(
            lambda response: statuses.append(response.status_code)
        )
        yield client, statuses


def test_an_import_sent_again_resends_the_file_from_its_start(
    quarry: Quarry, refused_once: tuple[Quarry, list[int]], sync_client: Raw, tmp_path: Path
) -> None:
    client, statuses = refused_once
    database_id, db_name = new_database(quarry, EVENTS)
    path = tmp_path / "events.ndjson"
    size = write_ndjson(path, ({"n": i, "text": "y" * 40} for i in range(3000)))
    sent: list[int] = []
    answer = client.databases.import_file(
        database_id, "events", path, progress=lambda done, _: sent.append(done)
    )
    assert statuses == [401, 200, 200]  # refused, the refresh, the upload again
    restart = next(i for i in range(1, len(sent)) if sent[i] < sent[i - 1])
    assert sent[restart - 1] == size and sent[-1] == size and sent[restart] < size
    assert answer.inserted_count == 3000
    assert sync_client[db_name]["events"].count_documents({}) == 3000


def test_an_import_of_a_generator_is_never_sent_twice(
    quarry: Quarry, refused_once: tuple[Quarry, list[int]], sync_client: Raw
) -> None:
    client, statuses = refused_once
    database_id, db_name = new_database(quarry, EVENTS)
    with pytest.raises(QuarryError, match="cannot be sent a second time"):
        client.databases.import_documents(database_id, "events", ({"n": n} for n in range(10)))
    assert statuses == [401, 200]
    assert sync_client[db_name]["events"].count_documents({}) == 0


def test_an_import_of_a_list_is_sent_again_whole(
    quarry: Quarry, refused_once: tuple[Quarry, list[int]], sync_client: Raw
) -> None:
    client, statuses = refused_once
    database_id, db_name = new_database(quarry, EVENTS)
    answer = client.databases.import_documents(database_id, "events", [{"n": n} for n in range(10)])
    assert statuses == [401, 200, 200] and answer.inserted_count == 10
    assert sync_client[db_name]["events"].count_documents({}) == 10


async def test_async_import_file_and_documents(
    aquarry: AsyncQuarry, sync_client: Raw, tmp_path: Path
) -> None:
    created = await aquarry.databases.create(unique_name(), collections=[EVENTS])
    database_id = created.database.id
    path = tmp_path / "events.ndjson"
    size = write_ndjson(path, ({"n": i} for i in range(2000)))
    seen: list[int] = []
    answer = await aquarry.databases.import_file(
        database_id, "events", path, progress=lambda sent, _: seen.append(sent)
    )
    assert answer.inserted_count == 2000 and seen[-1] == size
    answer = await aquarry.databases.import_documents(
        database_id, "events", ({"n": n} for n in range(2000, 2500))
    )
    assert answer.inserted_count == 500
    db_name = (await aquarry.databases.get(database_id)).dbName
    assert sync_client[db_name]["events"].count_documents({}) == 2500


# --------------------------------------------------------------------- export


@pytest.fixture
def exported(quarry: Quarry) -> tuple[Quarry, str, str]:
    """A database whose `users` holds a few varied documents; (client, id, dbName)."""
    database_id, db_name = new_database(quarry, USERS)
    quarry.documents.insert(
        database_id,
        "users",
        [
            {"email": "ada@example.com", "age": 36, "signup_date": "2023-10-27T10:00:00Z"},
            {"email": "=cmd@example.com", "age": 20, "tags": ["x", "y"], "score": 1.5},
            {"email": "bob@example.com", "nested": {"a": {"b": True}}},
        ],
    )
    return quarry, database_id, db_name


def extended(text: str) -> Any:
    return json_util.loads(text, json_options=json_util.JSONOptions(tz_aware=True, tzinfo=UTC))


@pytest.mark.parametrize("format", ["json", "ndjson", "csv"])
def test_export_to_a_file_matches_the_stored_documents(
    exported: tuple[Quarry, str, str], sync_client: Raw, tmp_path: Path, format: Any
) -> None:
    quarry, database_id, db_name = exported
    path = tmp_path / f"users.{format}"
    written = quarry.databases.export(database_id, "users", format=format, to=path)
    content = path.read_bytes()
    assert written == len(content)
    text = content.decode()
    documents = stored(sync_client, db_name, "users")
    if format == "json":
        assert sorted(extended(text), key=lambda d: d["_id"]) == documents
    elif format == "ndjson":
        lines = [extended(line) for line in text.splitlines()]
        assert sorted(lines, key=lambda d: d["_id"]) == documents
    else:
        rows = sorted(csv.DictReader(io.StringIO(text, newline="")), key=lambda r: r["_id"])
        assert [r["_id"] for r in rows] == [str(d["_id"]) for d in documents]
        assert [r["email"] for r in rows] == [
            "ada@example.com",
            "'=cmd@example.com",
            "bob@example.com",
        ]
        assert [r["age"] for r in rows] == ["36", "20", ""]
        assert json.loads(rows[2]["nested"]) == {"a": {"b": True}}


def test_export_with_a_filter_to_a_binary_file(exported: tuple[Quarry, str, str]) -> None:
    quarry, database_id, _ = exported
    buffer = io.BytesIO()
    quarry.databases.export(
        database_id, "users", format="ndjson", to=buffer, filter={"age": {"$gte": 30}}
    )
    assert [extended(line)["email"] for line in buffer.getvalue().splitlines()] == [
        "ada@example.com"
    ]


def test_export_of_an_unknown_collection_writes_no_file(
    exported: tuple[Quarry, str, str], tmp_path: Path
) -> None:
    quarry, database_id, _ = exported
    with pytest.raises(NotFound) as caught:
        quarry.databases.export(database_id, "nope", to=tmp_path / "nope.json")
    assert caught.value.error_code == "COLLECTION_NOT_FOUND"
    assert not (tmp_path / "nope.json").exists()


async def test_async_iter_export_yields_the_chunks_of_every_document(
    aquarry: AsyncQuarry,
) -> None:
    created = await aquarry.databases.create(unique_name(), collections=[EVENTS])
    database_id = created.database.id
    await aquarry.documents.insert_many(
        database_id, "events", ({"n": n, "pad": "p" * 100} for n in range(3000))
    )
    chunks = [
        chunk
        async for chunk in aquarry.databases.iter_export(database_id, "events", format="ndjson")
    ]
    assert len(chunks) > 1
    lines = b"".join(chunks).splitlines()
    assert sorted(json.loads(line)["n"] for line in lines) == list(range(3000))
    buffer = io.BytesIO()
    written = await aquarry.databases.export(database_id, "events", format="csv", to=buffer)
    assert written == len(buffer.getvalue()) and buffer.getvalue().count(b"\r\n") == 3001


def test_metadata_of_a_server_older_than_index_states_parses() -> None:
    """A server before declared indexes answered `{name, field, unique}` per index."""
    older = {
        "success": True,
        "data": {
            "_id": "60c72b2f9b1d8b1a2d3e4567",
            "user_id": "u",
            "displayName": "shop",
            "dbName": "shop_123456",
            "collections": [
                {
                    "name": "people",
                    "fields": [{"name": "email", "type": "string", "unique": True}],
                    "strict": False,
                    "indexes": [{"name": "email_unique", "field": "email", "unique": True}],
                }
            ],
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
        },
    }
    (index,) = MetadataAnswer.model_validate(older).data.collections[0].indexes
    assert (index.name, index.keys, index.state, index.declared) == (
        "email_unique",
        [],
        "valid",
        False,
    )
