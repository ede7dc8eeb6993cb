"""Dataset expiry: 404 from the second of expiry, the sweeper's deletion (the same as
DELETE, finished later when cut short by an engine crash), its lease, the warnings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI

from app.clock import utc_now
from app.errors import ErrorCode
from app.wiring import state_of
from data_api.datasets.errors import DatasetNotFound
from data_api.datasets.expiry import ExpirySweeper
from data_api.datasets.repository import tenant_db_name
from tests.fixtures.accounts import Account
from tests.fixtures.datasets import expire, new_dataset, service_of, user_id_of
from tests.fixtures.engine import DatabaseServer, engine_down
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.mailbox import Inbox


@pytest.fixture
def settings(make_settings: Any) -> Any:
    """No background sweep: each test runs the sweeper when it wants to."""
    return make_settings(dataset_sweep_seconds=3600)


async def populated(
    app: FastAPI, client: httpx.AsyncClient, owner: Account, reader: Account, entries: int = 3
) -> tuple[str, ObjectId, list[ObjectId]]:
    """A dataset with entries (items), a share and a tag."""
    dataset_id = await new_dataset(client, owner)
    owner_id = await user_id_of(client, owner)
    service = service_of(app)
    entry_ids = [
        await service.create_entry_record(
            owner_id=owner_id,
            dataset_id=ObjectId(dataset_id),
            name=f"e{n}.txt",
            size=n,
            content_type="text/plain",
        )
        for n in range(entries)
    ]
    shared = await client.post(
        f"/api/v1/datasets/{dataset_id}/shares",
        json={"email": reader.email, "permission": "read"},
        headers=owner.bearer,
    )
    assert shared.status_code == 201, shared.text
    tagged = await client.post(
        f"/api/v1/datasets/{dataset_id}/tags", json={"tag_name": "test"}, headers=owner.bearer
    )
    assert tagged.status_code == 200, tagged.text
    return dataset_id, owner_id, entry_ids


def stored(sync_client: Any, app: FastAPI, dataset_id: str, owner_id: ObjectId) -> dict[str, int]:
    control = sync_client[state_of(app).settings.control_db]
    tenant = sync_client[tenant_db_name(owner_id)]
    oid = ObjectId(dataset_id)
    return {
        "datasets": control["datasets"].count_documents({"_id": oid}),
        "shares": control["shares"].count_documents({"dataset_id": oid}),
        "entry_homes": control["entry_homes"].count_documents({"home_dataset_id": oid}),
        "items": tenant["items"].count_documents({"dataset_id": oid}),
        "entries": tenant["entries"].count_documents({"dataset_id": oid}),
    }


async def test_an_expired_dataset_answers_404_before_any_sweep(
    app: FastAPI, client: httpx.AsyncClient, register: Any, sync_client: Any
) -> None:
    owner, reader = await register(), await register()
    dataset_id, owner_id, _ = await populated(app, client, owner, reader)
    await expire(app, dataset_id)
    for account in (owner, reader):
        response = await client.get(f"/api/v1/datasets/{dataset_id}", headers=account.bearer)
        assert_envelope(response, 404, ErrorCode.DATASET_NOT_FOUND)
        listed = (await client.get("/api/v1/datasets", headers=account.bearer)).json()["data"]
        assert dataset_id not in [d["id"] for d in listed]
    check = await client.post(
        "/api/v1/access/check", json={"dataset_id": dataset_id}, headers=reader.bearer
    )
    assert check.json()["data"] == {
        "has_access": False,
        "is_owner": False,
        "permission": None,
        "matching_tags": [],
    }
    # Nothing was swept yet: invisible is not the same as deleted.
    assert stored(sync_client, app, dataset_id, owner_id)["datasets"] == 1


async def test_the_sweeper_deletes_an_expired_dataset_like_delete(
    app: FastAPI, client: httpx.AsyncClient, register: Any, sync_client: Any
) -> None:
    owner, reader = await register(), await register()
    dataset_id, owner_id, entry_ids = await populated(app, client, owner, reader)
    kept_id, _, kept_entries = await populated(app, client, owner, reader)
    assert stored(sync_client, app, dataset_id, owner_id) == {
        "datasets": 1,
        "shares": 1,
        "entry_homes": 3,
        "items": 3,
        "entries": 3,
    }
    await expire(app, dataset_id)
    done = await state_of(app).get(ExpirySweeper).sweep()
    assert done["expired"] == 1
    assert stored(sync_client, app, dataset_id, owner_id) == dict.fromkeys(
        ("datasets", "shares", "entry_homes", "items", "entries"), 0
    )
    assert (
        sync_client[tenant_db_name(owner_id)]["entries"].count_documents(
            {"_id": {"$in": entry_ids}}
        )
        == 0
    )
    # The other dataset of the same owner is untouched.
    assert stored(sync_client, app, kept_id, owner_id)["entries"] == len(kept_entries)
    audit = sync_client[state_of(app).settings.control_db]["audit_log"]
    if "audit_log" in sync_client[state_of(app).settings.control_db].list_collection_names():
        records = list(audit.find({"action": "datasets.expire", "resource_id": dataset_id}))
        assert len(records) == 1 and records[0]["actor_user_id"] is None


async def test_an_entry_linked_elsewhere_is_unlinked_when_its_home_expires(
    app: FastAPI, client: httpx.AsyncClient, register: Any, sync_client: Any
) -> None:
    owner, curator = await register(), await register()
    home_id, _, entry_ids = await populated(app, client, owner, curator, entries=1)
    curated = await new_dataset(client, curator)
    added = await client.post(
        f"/api/v1/datasets/{curated}/items", json={"entry_ids": [str(entry_ids[0])]},
        headers=curator.bearer,
    )  # fmt: skip
    assert added.json()["added"] == 1, added.text
    curator_id = await user_id_of(client, curator)
    curator_items = sync_client[tenant_db_name(curator_id)]["items"]
    assert curator_items.count_documents({"dataset_id": ObjectId(curated)}) == 1
    await expire(app, home_id)
    await state_of(app).get(ExpirySweeper).sweep()
    assert curator_items.count_documents({"dataset_id": ObjectId(curated)}) == 0
    listed = await client.get(f"/api/v1/datasets/{curated}/items", headers=curator.bearer)
    assert listed.json()["data"] == []


@pytest.fixture
def engine(database_server: DatabaseServer) -> DatabaseServer:
    if not database_server.stoppable:
        pytest.skip("needs the embedded engine to kill it")
    return database_server


@pytest.fixture
async def served(
    make_client: Callable[..., Any], register_in: Callable[..., Any]
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, Account, Account]]:
    async with make_client(dataset_sweep_seconds=3600) as (app, http):
        yield app, http, await register_in(http), await register_in(http)


async def answered(http: httpx.AsyncClient, path: str, account: Account) -> httpx.Response:
    """The first answer that is not 503: pooled connections that died with the
    engine are replaced by the driver within its server-selection timeout."""
    for _ in range(50):
        response = await http.get(path, headers=account.bearer)
        if response.status_code != 503:
            return response
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} still answers 503")


async def test_a_sweep_killed_part_way_is_finished_by_the_next_and_never_half_visible(
    engine: DatabaseServer, served: Any, sync_client: Any
) -> None:
    app, http, owner, reader = served
    dataset_id, owner_id, _ = await populated(app, http, owner, reader, entries=300)
    await expire(app, dataset_id)
    sweeper: ExpirySweeper = state_of(app).get(ExpirySweeper)
    sweeping = asyncio.create_task(sweeper())

    def entries_left() -> int:
        return stored(sync_client, app, dataset_id, owner_id)["entries"]

    for _ in range(500):
        await asyncio.sleep(0.01)
        if sweeping.done() or await asyncio.to_thread(entries_left) < 300:
            break
    assert not sweeping.done(), "the sweep finished before the engine could be killed"
    async with engine_down(engine):
        await sweeping  # the round gives up (logged), the process goes on
    left = await asyncio.to_thread(stored, sync_client, app, dataset_id, owner_id)
    assert left["datasets"] == 1 and 0 < left["entries"] < 300, left
    # Half-deleted, but invisible to everyone meanwhile.
    for account in (owner, reader):
        response = await answered(http, f"/api/v1/datasets/{dataset_id}", account)
        assert_envelope(response, 404, ErrorCode.DATASET_NOT_FOUND)
    done = await sweeper.sweep()
    assert done["finished"] == 1
    assert stored(sync_client, app, dataset_id, owner_id) == dict.fromkeys(
        ("datasets", "shares", "entry_homes", "items", "entries"), 0
    )


async def test_one_worker_at_a_time_holds_the_sweep_lease(
    app: FastAPI, client: httpx.AsyncClient, register: Any, sync_client: Any
) -> None:
    owner, reader = await register(), await register()
    dataset_id, owner_id, _ = await populated(app, client, owner, reader, entries=1)
    first: ExpirySweeper = state_of(app).get(ExpirySweeper)
    second = ExpirySweeper(service=service_of(app), mailer=None, interval=first.interval)
    now = utc_now()
    await first.sweep(now)  # takes the lease
    await expire(app, dataset_id)
    assert (await second.sweep(now))["expired"] == 0
    assert stored(sync_client, app, dataset_id, owner_id)["datasets"] == 1
    # The first worker stops renewing: once its lease lapses the second takes over.
    later = now + timedelta(hours=3)
    assert (await second.sweep(later))["expired"] == 1
    assert (await first.sweep(later))["expired"] == 0
    assert stored(sync_client, app, dataset_id, owner_id)["datasets"] == 0


async def test_owner_is_mailed_at_ten_days_and_at_one_day_and_warned_in_the_log(
    app: FastAPI,
    client: httpx.AsyncClient,
    register: Any,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = await register()
    inbox.clear()
    dataset_id = await new_dataset(client, owner, name="Quarterly")
    now = utc_now()
    await expire(app, dataset_id, at=now + timedelta(days=5))
    sweeper: ExpirySweeper = state_of(app).get(ExpirySweeper)
    with caplog.at_level(logging.WARNING, logger="quarry.datasets"):
        assert (await sweeper.sweep(now))["warned"] == 1
        mail = inbox.wait_for(owner.email)
        assert "Quarterly" in mail.subject and "5 day" in mail.subject
        assert dataset_id in mail.part("plain")
        # Again within the day: no mail, no log line.
        caplog.clear()
        assert (await sweeper.sweep(now + timedelta(hours=2)))["warned"] == 0
        assert not [r for r in caplog.records if dataset_id in r.getMessage()]
        # Next day: a log line, still no second mail.
        assert (await sweeper.sweep(now + timedelta(days=1, minutes=1)))["warned"] == 1
        assert [r for r in caplog.records if dataset_id in r.getMessage()]
        assert len(inbox.mails_to(owner.email)) == 1
        # Final day: the one-day mail, then hourly log lines.
        final = now + timedelta(days=4, hours=12)
        assert (await sweeper.sweep(final))["warned"] == 1
        second = inbox.wait_for(owner.email, count=2)
        assert "1 day" in second.subject
        assert (await sweeper.sweep(final + timedelta(minutes=61)))["warned"] == 1
        assert (await sweeper.sweep(final + timedelta(minutes=62)))["warned"] == 0
    assert len(inbox.mails_to(owner.email)) == 2


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


async def test_entries_go_only_into_live_datasets(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    owner = await register()
    dataset_id = await new_dataset(client, owner)
    await expire(app, dataset_id)
    with pytest.raises(DatasetNotFound):
        await service_of(app).create_entry_record(
            owner_id=await user_id_of(client, owner),
            dataset_id=ObjectId(dataset_id),
            name="late.txt",
            size=1,
            content_type="text/plain",
        )
    assert await state_of(app).database.control["entry_homes"].count_documents({}) == 0
