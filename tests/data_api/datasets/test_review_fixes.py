"""Behaviours found in review: subsets never republish what the source shows only
through its ACL override; a new expiry gets its own warnings; paging flags agree with
the links at any offset; entries only go into live datasets; the engine's SQL falls
back (never a 500) when PostgreSQL cannot be reached."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI

from app.clock import utc_now
from app.db import Eq, PageQuery
from app.engine import EngineSql
from app.errors import ErrorCode
from app.wiring import state_of
from data_api.datasets.errors import DatasetNotFound
from data_api.datasets.expiry import ExpirySweeper
from tests.app.test_errors import assert_envelope
from tests.data_api.datasets.test_expiry import expire, new_dataset, service_of, user_id
from tests.mailbox import Inbox


@pytest.fixture
def settings(make_settings: Any) -> Any:
    """No background sweep; no dataset-create limit (12 creates in one test)."""
    return make_settings(dataset_sweep_seconds=3600, rate_limit_dataset_create=0)


async def entry_shared_with_a_curator(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> tuple[Any, Any, ObjectId]:
    """An entry in a private dataset shared (read) with a curator, and a reader who
    has no level on that dataset: (curator, reader, entry id)."""
    home_owner, curator, reader = await register(), await register(), await register()
    home = await new_dataset(client, home_owner, name="private home")
    entry = await service_of(app).create_entry_record(
        owner_id=await user_id(client, home_owner),
        dataset_id=ObjectId(home),
        name="secret.txt",
        size=1,
        content_type="text/plain",
    )
    shared = await client.post(
        f"/api/v1/datasets/{home}/shares", json={"email": curator.email}, headers=home_owner.bearer
    )
    assert shared.status_code == 201
    return curator, reader, entry


async def test_a_subset_cannot_take_items_seen_only_through_the_acl_override(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    curator, reader, entry = await entry_shared_with_a_curator(app, client, register)
    curated = await new_dataset(client, curator, name="curated")
    await client.patch(
        f"/api/v1/datasets/{curated}",
        json={"acl_override_enabled": True, "is_public": True},
        headers=curator.bearer,
    )
    added = await client.post(
        f"/api/v1/datasets/{curated}/items", json={"entry_ids": [str(entry)]},
        headers=curator.bearer,
    )  # fmt: skip
    assert added.json()["added"] == 1
    # The reader sees the entry through the override, but cannot republish it.
    listed = await client.get(f"/api/v1/datasets/{curated}/items", headers=reader.bearer)
    assert [i["id"] for i in listed.json()["data"]] == [str(entry)]
    subset = await client.post(
        f"/api/v1/datasets/{curated}/subset",
        json={"name": "stolen", "entry_ids": [str(entry)]},
        headers=reader.bearer,
    )
    body = assert_envelope(subset, 400, ErrorCode.NOT_IN_SOURCE)
    assert body["details"][0]["msg"] == str(entry)
    control = state_of(app).database.control
    assert await control["datasets"].count_documents({"name": "stolen"}) == 0


async def test_a_new_expiry_gets_its_own_warnings(
    app: FastAPI, client: httpx.AsyncClient, register: Any, inbox: Inbox
) -> None:
    owner = await register()
    inbox.clear()
    dataset_id = await new_dataset(client, owner, name="extended")
    now = utc_now()
    await expire(app, dataset_id, at=now + timedelta(hours=12))
    sweeper = state_of(app).get(ExpirySweeper)
    await sweeper.sweep(now)
    inbox.wait_for(owner.email)  # the 10-day and 1-day points are both passed: one mail
    extended = await client.patch(
        f"/api/v1/datasets/{dataset_id}",
        json={"expires_at": (now + timedelta(days=5)).isoformat()},
        headers=owner.bearer,
    )
    assert extended.status_code == 200, extended.text
    stored = (
        await state_of(app).database.control["datasets"].find_one({"_id": ObjectId(dataset_id)})
    )
    assert "warned" not in stored
    await sweeper.sweep(now + timedelta(minutes=1))
    assert "5 day" in inbox.wait_for(owner.email, count=2).subject


async def test_paging_flags_agree_with_the_links_at_any_offset(
    client: httpx.AsyncClient, register: Any
) -> None:
    owner = await register()
    for n in range(12):
        await new_dataset(client, owner, name=f"d{n}")
    page = await client.get(
        "/api/v1/datasets", params={"offset": 5, "limit": 10}, headers=owner.bearer
    )
    pagination = page.json()["pagination"]
    assert len(page.json()["data"]) == 7
    assert pagination["has_previous"] is True and pagination["previous"] is not None
    assert pagination["has_next"] is False and pagination["next"] is None


async def test_entries_go_only_into_live_datasets(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    owner = await register()
    dataset_id = await new_dataset(client, owner)
    await expire(app, dataset_id)
    with pytest.raises(DatasetNotFound):
        await service_of(app).create_entry_record(
            owner_id=await user_id(client, owner),
            dataset_id=ObjectId(dataset_id),
            name="late.txt",
            size=1,
            content_type="text/plain",
        )
    assert await state_of(app).database.control["entry_homes"].count_documents({}) == 0


async def test_engine_sql_without_a_reachable_postgresql_falls_back() -> None:
    unreachable = EngineSql("host=127.0.0.1 port=1 user=nobody dbname=nothing connect_timeout=1")
    query = PageQuery(clauses=((Eq("a", 1),),), sort_desc="at")
    assert await unreachable.count("db", "c") is None
    assert await unreachable.page("db", "c", query) is None
    assert await unreachable.lookups("db", [("c", "a", 1)]) is None
    await unreachable.close()


async def test_item_count_counts_only_the_items_the_caller_may_see(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    curator, reader, entry = await entry_shared_with_a_curator(app, client, register)
    curated = await new_dataset(client, curator, name="curated", is_public=True)
    await client.post(
        f"/api/v1/datasets/{curated}/items", json={"entry_ids": [str(entry)]},
        headers=curator.bearer,
    )  # fmt: skip
    as_curator = await client.get(f"/api/v1/datasets/{curated}", headers=curator.bearer)
    as_reader = await client.get(f"/api/v1/datasets/{curated}", headers=reader.bearer)
    assert as_curator.json()["data"]["item_count"] == 1
    assert as_reader.json()["data"]["item_count"] == 0
    listed = await client.get(f"/api/v1/datasets/{curated}/items", headers=reader.bearer)
    assert listed.json()["data"] == []
