"""Collections: create, list with live counts, update schema (indexes follow), drop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pymongo import MongoClient

from app.errors import ErrorCode
from tests.fixtures.accounts import Account
from tests.fixtures.databases import metadata
from tests.fixtures.envelopes import assert_envelope

CreateDatabase = Callable[..., Awaitable[dict[str, Any]]]


async def _physical(client: httpx.AsyncClient, account: Account, database_id: str) -> str:
    return str((await metadata(client, account, database_id))["dbName"])


async def test_create_collections_adds_them_with_indexes(
    client: httpx.AsyncClient,
    owner: Account,
    create_database: CreateDatabase,
    sync_client: MongoClient[dict[str, Any]],
) -> None:
    database_id = (await create_database(owner))["database"]["id"]
    response = await client.post(
        "/api/create_collections",
        json={
            "database_id": database_id,
            "collections": [
                {"name": "products", "fields": [{"name": "sku", "type": "string", "unique": True}]},
                {"name": "events", "strict": True},
            ],
        },
        headers=owner.bearer,
    )
    assert response.status_code == 201, response.text
    assert [c["name"] for c in response.json()["collections"]] == ["products", "events"]
    db_name = await _physical(client, owner, database_id)
    assert sorted(sync_client[db_name].list_collection_names()) == ["events", "products", "users"]
    index_names = [index["name"] for index in sync_client[db_name]["products"].list_indexes()]
    assert "sku_unique" in index_names
    data = await metadata(client, owner, database_id)
    assert [c["name"] for c in data["collections"]] == ["users", "products", "events"]
    assert data["collections"][2]["strict"] is True


async def test_existing_collection_name_is_a_conflict_and_nothing_is_added(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase
) -> None:
    database_id = (await create_database(owner))["database"]["id"]
    response = await client.post(
        "/api/create_collections",
        json={"database_id": database_id, "collections": [{"name": "fresh"}, {"name": "users"}]},
        headers=owner.bearer,
    )
    assert_envelope(response, 409, ErrorCode.COLLECTION_EXISTS)
    data = await metadata(client, owner, database_id)
    assert [c["name"] for c in data["collections"]] == ["users"]


async def test_invalid_collection_name_is_invalid_name(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase
) -> None:
    database_id = (await create_database(owner))["database"]["id"]
    for bad in ("system_users", "9lives", "a.b"):
        response = await client.post(
            "/api/create_collections",
            json={"database_id": database_id, "collections": [{"name": bad}]},
            headers=owner.bearer,
        )
        assert_envelope(response, 422, ErrorCode.INVALID_NAME)


async def test_list_collections_reports_live_counts(
    client: httpx.AsyncClient,
    owner: Account,
    create_database: CreateDatabase,
    sync_client: MongoClient[dict[str, Any]],
) -> None:
    database_id = (await create_database(owner))["database"]["id"]
    db_name = await _physical(client, owner, database_id)
    sync_client[db_name]["users"].insert_many([{"email": f"u{i}@example.com"} for i in range(3)])
    response = await client.get(
        "/api/list_collections", params={"database_id": database_id}, headers=owner.bearer
    )
    assert response.json() == {
        "success": True,
        "collections": [{"name": "users", "num_documents": 3}],
    }


async def test_update_schema_moves_indexes_with_the_fields(
    client: httpx.AsyncClient,
    owner: Account,
    create_database: CreateDatabase,
    sync_client: MongoClient[dict[str, Any]],
) -> None:
    database_id = (await create_database(owner))["database"]["id"]
    response = await client.post(
        "/api/update_schema",
        json={
            "database_id": database_id,
            "collection_name": "users",
            "fields": [
                {"name": "email", "type": "string", "required": True},
                {"name": "handle", "type": "string", "unique": True},
            ],
            "strict": True,
        },
        headers=owner.bearer,
    )
    assert response.status_code == 200, response.text
    collection = response.json()["collection"]
    assert collection["strict"] is True
    assert [(i["name"], i["field"], i["unique"]) for i in collection["indexes"]] == [
        ("handle_unique", "handle", True)
    ]
    db_name = await _physical(client, owner, database_id)
    names = {index["name"] for index in sync_client[db_name]["users"].list_indexes()}
    assert names == {"_id_", "handle_unique"}


async def test_unique_field_over_duplicate_data_is_a_conflict_and_the_schema_stays(
    client: httpx.AsyncClient,
    owner: Account,
    create_database: CreateDatabase,
    sync_client: MongoClient[dict[str, Any]],
) -> None:
    database_id = (await create_database(owner))["database"]["id"]
    db_name = await _physical(client, owner, database_id)
    sync_client[db_name]["users"].insert_many(
        [{"email": "a@example.com", "city": "Oslo"}, {"email": "b@example.com", "city": "Oslo"}]
    )
    response = await client.post(
        "/api/update_schema",
        json={
            "database_id": database_id,
            "collection_name": "users",
            "fields": [{"name": "city", "type": "string", "unique": True}],
        },
        headers=owner.bearer,
    )
    assert_envelope(response, 409, ErrorCode.DUPLICATE_KEY)
    data = await metadata(client, owner, database_id)
    assert [f["name"] for f in data["collections"][0]["fields"]] == ["email", "signup_date", "age"]
    names = {index["name"] for index in sync_client[db_name]["users"].list_indexes()}
    assert "city_unique" not in names


async def test_update_schema_of_unknown_collection_is_not_found(
    client: httpx.AsyncClient, owner: Account, create_database: CreateDatabase
) -> None:
    database_id = (await create_database(owner))["database"]["id"]
    response = await client.post(
        "/api/update_schema",
        json={"database_id": database_id, "collection_name": "nope", "fields": []},
        headers=owner.bearer,
    )
    assert_envelope(response, 404, ErrorCode.COLLECTION_NOT_FOUND)


async def test_drop_collections_with_an_unknown_name_drops_nothing(
    client: httpx.AsyncClient,
    owner: Account,
    create_database: CreateDatabase,
    sync_client: MongoClient[dict[str, Any]],
) -> None:
    database_id = (await create_database(owner))["database"]["id"]
    db_name = await _physical(client, owner, database_id)
    response = await client.post(
        "/api/drop_collections",
        json={"database_id": database_id, "collection_names": ["users", "old_logs"]},
        headers=owner.bearer,
    )
    body = assert_envelope(response, 404, ErrorCode.COLLECTION_NOT_FOUND)
    assert "old_logs" in body["message"]
    assert sync_client[db_name].list_collection_names() == ["users"]


async def test_drop_collections_removes_them(
    client: httpx.AsyncClient,
    owner: Account,
    create_database: CreateDatabase,
    sync_client: MongoClient[dict[str, Any]],
) -> None:
    database_id = (
        await create_database(owner, collections=[{"name": "old_logs"}, {"name": "keep"}])
    )["database"]["id"]
    db_name = await _physical(client, owner, database_id)
    response = await client.request(
        "DELETE",
        "/api/drop_collections",
        json={"database_id": database_id, "collection_names": ["old_logs"]},
        headers=owner.bearer,
    )
    assert response.json() == {"success": True, "dropped_collections": ["old_logs"]}
    assert sync_client[db_name].list_collection_names() == ["keep"]
    assert [c["name"] for c in (await metadata(client, owner, database_id))["collections"]] == [
        "keep"
    ]
