"""Logical databases: create, list, metadata, drop, owner isolation, physical mapping."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from bson import ObjectId
from pymongo import MongoClient

from app.errors import ErrorCode
from app.wiring import state_of
from management import repository as management_repository
from management import service as management_service
from management.lifecycle import finish_stale_changes
from tests.fixtures.accounts import Account
from tests.fixtures.databases import USERS_SCHEMA, metadata, unique_name
from tests.fixtures.envelopes import assert_envelope

CreateDatabase = Callable[..., Awaitable[dict[str, Any]]]


@pytest.mark.smoke
async def test_create_database_answers_the_seed_shape_and_makes_the_physical_database(
    client: httpx.AsyncClient,
    owner: Account,
    create_database: CreateDatabase,
    sync_client: MongoClient[dict[str, Any]],
) -> None:
    name = unique_name("my_customer_project")
    body = await create_database(owner, name)
    assert body["success"] is True
    assert body["database"]["name"] == name
    assert re.fullmatch(r"[0-9a-f]{24}", body["database"]["id"])
    assert body["collections"] == [{"name": "users", "fields": USERS_SCHEMA, "strict": False}]

    data = await metadata(client, owner, body["database"]["id"])
    assert data["displayName"] == name
    assert re.fullmatch(rf"{name.lower()[:40]}_\d{{6}}", data["dbName"])
    physical = sync_client[data["dbName"]]
    assert physical.list_collection_names() == ["users"]
    indexes = {index["name"]: index for index in physical["users"].list_indexes()}
    assert indexes["email_unique"]["unique"] is True
    assert indexes["email_unique"]["key"] == {"email": 1}
    assert "signup_date_index" in indexes
    assert [
        {key: index[key] for key in ("name", "field", "unique", "declared")}
        for index in data["collections"][0]["indexes"]
    ] == [
        {"name": "email_unique", "field": "email", "unique": True, "declared": False},
        {"name": "signup_date_index", "field": "signup_date", "unique": False, "declared": False},
    ]
    assert data["collections"][0]["indexes"][0]["keys"] == [
        {"field": "email", "type": "string", "direction": 1, "guard": ANY}
    ]


async def test_create_database_with_no_collections_is_allowed(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase
) -> None:
    body = await create_database(owner, collections=[])
    assert body["collections"] == []
    data = await metadata(client, owner, body["database"]["id"])
    assert data["collections"] == []


async def test_duplicate_database_name_for_the_same_owner_is_a_conflict(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase
) -> None:
    name = unique_name()
    await create_database(owner, name)
    response = await client.post(
        "/api/create_database", json={"db_name": name, "collections": []}, headers=owner.bearer
    )
    assert_envelope(response, 409, ErrorCode.DATABASE_EXISTS)
    listed = await client.get("/api/list_databases", params={"search": name}, headers=owner.bearer)
    assert listed.json()["pagination"]["total_items"] == 1


async def test_two_owners_may_use_the_same_name_with_separate_physical_databases(
    client: httpx.AsyncClient,
    owner: Account,
    other_owner: Account,
    create_database: CreateDatabase,
) -> None:
    name = unique_name("my_customer_project")
    first = await create_database(owner, name)
    second = await create_database(other_owner, name)
    first_meta = await metadata(client, owner, first["database"]["id"])
    second_meta = await metadata(client, other_owner, second["database"]["id"])
    assert first_meta["dbName"] != second_meta["dbName"]
    assert first_meta["user_id"] != second_meta["user_id"]


async def test_invalid_database_names_are_refused_with_the_rule(
    client: httpx.AsyncClient, owner: Account
) -> None:
    for bad in ("1abc", "with-dash", "system_things", "a" * 64, "", "has space"):
        response = await client.post(
            "/api/create_database", json={"db_name": bad, "collections": []}, headers=owner.bearer
        )
        if bad == "":
            assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
            continue
        body = assert_envelope(response, 422, ErrorCode.INVALID_NAME)
        assert "letter" in body["message"] or "system" in body["message"]


async def test_invalid_schema_reports_every_problem_with_its_location(
    client: httpx.AsyncClient, owner: Account, sync_client: MongoClient[dict[str, Any]]
) -> None:
    before = set(sync_client.list_database_names())
    response = await client.post(
        "/api/create_database",
        json={
            "db_name": unique_name(),
            "collections": [
                {
                    "name": "users",
                    "fields": [
                        {"name": "age", "type": "int", "default": "old"},
                        {"name": "age", "type": "string"},
                    ],
                }
            ],
        },
        headers=owner.bearer,
    )
    body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    locs = [detail["loc"] for detail in body["details"]]
    assert ["collections", 0, "fields", 0, "default"] in locs
    assert ["collections", 0, "fields", 1, "name"] in locs
    assert set(sync_client.list_database_names()) == before


async def test_unknown_field_type_is_a_validation_error(
    client: httpx.AsyncClient, owner: Account
) -> None:
    response = await client.post(
        "/api/create_database",
        json={
            "db_name": unique_name(),
            "collections": [{"name": "u", "fields": [{"name": "x", "type": "varchar"}]}],
        },
        headers=owner.bearer,
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)


async def test_list_databases_is_sorted_searchable_and_paginated(
    client: httpx.AsyncClient, owner: Account, other_owner: Account, create_database: CreateDatabase
) -> None:
    tag = unique_name("t")
    for name in (f"b_{tag}_customer", f"a_{tag}_Customer", f"c_{tag}_other"):
        await create_database(owner, name, collections=[])
    await create_database(other_owner, f"d_{tag}_customer", collections=[])

    response = await client.get(
        "/api/list_databases",
        params={"search": f"{tag}_CUSTOMER", "page": 1, "page_size": 1},
        headers=owner.bearer,
    )
    assert response.status_code == 200
    body = response.json()
    assert [item["name"] for item in body["data"]] == [f"a_{tag}_Customer"]
    assert body["data"][0]["num_collections"] == 0
    assert body["data"][0]["created_at"].endswith("Z")
    assert body["pagination"] == {
        "page": 1,
        "page_size": 1,
        "total_items": 2,
        "total_pages": 2,
        "has_next": True,
        "has_previous": False,
    }
    second = await client.get(
        "/api/list_databases",
        params={"search": f"{tag}_customer", "page": 2, "page_size": 1},
        headers=owner.bearer,
    )
    assert [item["name"] for item in second.json()["data"]] == [f"b_{tag}_customer"]


async def test_search_is_literal_not_a_regular_expression(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase
) -> None:
    await create_database(owner, unique_name("plain"), collections=[])
    response = await client.get(
        "/api/list_databases", params={"search": ".*"}, headers=owner.bearer
    )
    assert response.json()["data"] == []


@pytest.mark.smoke
async def test_another_owners_database_is_not_found_everywhere(
    client: httpx.AsyncClient,
    owner: Account,
    other_owner: Account,
    create_database: CreateDatabase,
    sync_client: MongoClient[dict[str, Any]],
) -> None:
    body = await create_database(owner)
    database_id = body["database"]["id"]
    db_name = (await metadata(client, owner, database_id))["dbName"]
    headers = other_owner.bearer
    attempts = [
        client.get("/api/get_metadata", params={"database_id": database_id}, headers=headers),
        client.get("/api/list_collections", params={"database_id": database_id}, headers=headers),
        client.post(
            "/api/create_collections",
            json={"database_id": database_id, "collections": [{"name": "x"}]},
            headers=headers,
        ),
        client.post(
            "/api/update_schema",
            json={"database_id": database_id, "collection_name": "users", "fields": []},
            headers=headers,
        ),
        client.post(
            "/api/drop_collections",
            json={"database_id": database_id, "collection_names": ["users"]},
            headers=headers,
        ),
        client.post(
            "/api/drop_database",
            json={"database_id": database_id, "confirmation": body["database"]["name"]},
            headers=headers,
        ),
        client.post(
            "/api/import_data",
            data={"database_id": database_id, "collection_name": "users"},
            files={"json_file": ("u.json", b'[{"email": "x@example.com"}]')},
            headers=headers,
        ),
        client.get(
            "/api/export_data",
            params={"database_id": database_id, "collection_name": "users"},
            headers=headers,
        ),
    ]
    for attempt in attempts:
        assert_envelope(await attempt, 404, ErrorCode.DATABASE_NOT_FOUND)
    assert sync_client[db_name].list_collection_names() == ["users"]
    assert sync_client[db_name]["users"].count_documents({}) == 0
    assert (await metadata(client, owner, database_id))["collections"][0]["fields"] == USERS_SCHEMA


async def test_malformed_database_id_is_invalid_id(
    client: httpx.AsyncClient, owner: Account
) -> None:
    for bad in ("123", "zz" * 12, "60c72b2f9b1d8b1a2d3e45678"):
        response = await client.get(
            "/api/get_metadata", params={"database_id": bad}, headers=owner.bearer
        )
        assert_envelope(response, 422, ErrorCode.INVALID_ID)


async def test_missing_database_is_not_found(client: httpx.AsyncClient, owner: Account) -> None:
    response = await client.get(
        "/api/get_metadata",
        params={"database_id": "60c72b2f9b1d8b1a2d3e4567"},
        headers=owner.bearer,
    )
    assert_envelope(response, 404, ErrorCode.DATABASE_NOT_FOUND)


async def test_management_needs_credentials_and_accepts_api_keys(
    client: httpx.AsyncClient, owner: Account
) -> None:
    response = await client.get("/api/list_databases")
    assert_envelope(response, 401, ErrorCode.NOT_AUTHENTICATED)
    created = await client.post("/api/api_keys", json={"name": "backend"}, headers=owner.bearer)
    key = created.json()["data"]["key"]
    response = await client.post(
        "/api/create_database",
        json={"db_name": unique_name(), "collections": []},
        headers={"Authorization": f"Api-Key {key}"},
    )
    assert response.status_code == 201
    listed = await client.get("/api/list_databases", headers={"X-API-Key": key})
    assert listed.json()["pagination"]["total_items"] == 1


async def test_drop_database_with_a_wrong_confirmation_drops_nothing(
    client: httpx.AsyncClient,
    owner: Account,
    create_database: CreateDatabase,
    sync_client: MongoClient[dict[str, Any]],
) -> None:
    body = await create_database(owner)
    database_id, name = body["database"]["id"], body["database"]["name"]
    db_name = (await metadata(client, owner, database_id))["dbName"]
    response = await client.post(
        "/api/drop_database",
        json={"database_id": database_id, "confirmation": name.upper()},
        headers=owner.bearer,
    )
    assert_envelope(response, 400, ErrorCode.CONFIRMATION_MISMATCH)
    assert db_name in sync_client.list_database_names()
    await metadata(client, owner, database_id)


async def test_drop_database_removes_the_physical_database_and_its_metadata(
    client: httpx.AsyncClient,
    owner: Account,
    create_database: CreateDatabase,
    sync_client: MongoClient[dict[str, Any]],
) -> None:
    body = await create_database(owner)
    database_id, name = body["database"]["id"], body["database"]["name"]
    db_name = (await metadata(client, owner, database_id))["dbName"]
    assert db_name in sync_client.list_database_names()
    response = await client.request(
        "DELETE",
        "/api/drop_database",
        json={"database_id": database_id, "confirmation": name},
        headers=owner.bearer,
    )
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "message": f"Database '{name}' was successfully dropped.",
    }
    assert db_name not in sync_client.list_database_names()
    gone = await client.get(
        "/api/get_metadata", params={"database_id": database_id}, headers=owner.bearer
    )
    assert_envelope(gone, 404, ErrorCode.DATABASE_NOT_FOUND)
    # The name is free again.
    again = await client.post(
        "/api/create_database", json={"db_name": name, "collections": []}, headers=owner.bearer
    )
    assert again.status_code == 201


@pytest.mark.parametrize("name", ["pgdata", "PGstats"])
async def test_physical_names_are_ones_every_engine_keeps(
    client: httpx.AsyncClient,
    owner: Account,
    create_database: CreateDatabase,
    sync_client: MongoClient[dict[str, Any]],
    name: str,
) -> None:
    """FerretDB on PostgreSQL hides `pg…` schemas after a restart: such names get a
    `db_` prefix; the display name is unchanged."""
    created = await create_database(owner, name)
    data = await metadata(client, owner, created["database"]["id"])
    assert data["displayName"] == name
    assert re.fullmatch(rf"db_{name.lower()}_\d{{6}}", data["dbName"])
    assert sync_client[data["dbName"]].list_collection_names() == ["users"]


async def test_a_physical_name_that_stays_taken_is_refused_not_reused(
    client: httpx.AsyncClient,
    owner: Account,
    create_database: CreateDatabase,
    monkeypatch: pytest.MonkeyPatch,
    sync_client: MongoClient[dict[str, Any]],
) -> None:
    """Ten random names in a row taken used to fall through with the last one,
    creating collections in another owner's physical database."""
    taken = await create_database(owner, unique_name("first"))
    physical = (await metadata(client, owner, taken["database"]["id"]))["dbName"]
    monkeypatch.setattr(management_service, "physical_name", lambda display: physical)
    refused = await client.post(
        "/api/create_database",
        json={"db_name": "second", "collections": [{"name": "intruder", "fields": []}]},
        headers=owner.bearer,
    )
    assert_envelope(refused, 409, ErrorCode.DATABASE_BUSY)
    assert "intruder" not in sync_client[physical].list_collection_names()


async def test_maintenance_leaves_a_database_whose_create_is_still_running(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase, app: Any
) -> None:
    """A create that takes longer than QUARRY_STALE_AFTER_SECONDS holds its lock;
    the maintenance task must not drop it as if it had been interrupted."""
    created = await create_database(owner, unique_name("slow"))
    database_id = ObjectId(created["database"]["id"])
    control = state_of(app).database.control
    await control["databases"].update_one(
        {"_id": database_id},
        {"$set": {"state": "creating", "updated_at": datetime(2020, 1, 1, tzinfo=UTC)}},
    )
    lock = f"database:{database_id}"
    token = await management_repository.acquire_lock(db=control, name=lock, wait_seconds=0)
    try:
        await finish_stale_changes(state_of(app).database, state_of(app).settings)
        assert await control["databases"].find_one({"_id": database_id}) is not None
    finally:
        await management_repository.release_lock(db=control, name=lock, token=token)
    # Without the lock it was interrupted: then the maintenance task finishes it.
    await finish_stale_changes(state_of(app).database, state_of(app).settings)
    assert await control["databases"].find_one({"_id": database_id}) is None
