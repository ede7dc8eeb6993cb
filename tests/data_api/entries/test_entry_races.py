"""Entries while something else changes them (`spec/entries.md`): a stale upload
is given up only while it is still stale, and then cannot renew; an entry whose
deletion began cannot be linked into another dataset; an upload into a dataset
deleted meanwhile leaves nothing behind."""

from __future__ import annotations

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
from data_api.datasets.repository import Catalogue
from data_api.entries.repository import EntryStore
from tests.fixtures.accounts import Account
from tests.fixtures.datasets import QUIET_SETTINGS, create_dataset, user_id_of
from tests.fixtures.entries import (
    ENTRIES,
    MULTIPART,
    Stored,
    closing_boundary,
    file,
    form_field,
    part_head,
    upload_one,
)
from tests.fixtures.envelopes import assert_envelope


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> Any:
    return make_settings(**QUIET_SETTINGS)


async def test_a_stale_upload_is_given_up_only_while_still_stale_and_then_cannot_renew(
    app: FastAPI,
) -> None:
    store = EntryStore(state_of(app).get(Catalogue))
    renewed, abandoned, owner = ObjectId(), ObjectId(), ObjectId()
    long_ago = utc_now() - timedelta(hours=1)
    await store.begin_uploads(file_ids=[renewed, abandoned], owner_id=owner, now=long_ago)
    before = utc_now() - timedelta(minutes=1)
    # The upload renewed its marker after the janitor read it as stale.
    assert await store.heartbeat(file_ids=[renewed], now=utc_now())
    assert not await store.give_up_upload(file_id=renewed, before=before)
    assert await store.give_up_upload(file_id=abandoned, before=before)
    # An abandoned upload's renewal fails (it answers 408); its marker stays stale.
    assert not await store.heartbeat(file_ids=[abandoned], now=utc_now())
    assert [u["_id"] for u in await store.stale_uploads(before=before)] == [abandoned]


async def test_an_entry_whose_deletion_began_cannot_be_linked(
    app: FastAPI, client: httpx.AsyncClient, owner: Account, sync_client: Any
) -> None:
    home = (await create_dataset(client, owner.bearer))["id"]
    other = (await create_dataset(client, owner.bearer))["id"]
    entry = await upload_one(client, owner.bearer, home, "a.txt", b"x")
    control = sync_client[state_of(app).settings.control_db]
    control["entry_homes"].update_one(
        {"_id": ObjectId(entry["id"])}, {"$set": {"state": "deleting"}}
    )
    response = await client.post(
        f"/api/v1/datasets/{other}/items", json={"entry_ids": [entry["id"]]}, headers=owner.bearer
    )
    assert response.status_code == 200, response.text
    assert (response.json()["added"], response.json()["skipped_ids"]) == (0, [entry["id"]])
    tenant = sync_client[f"qt_{await user_id_of(client, owner)}"]
    assert tenant["items"].count_documents({"dataset_id": ObjectId(other)}) == 0


async def test_an_upload_into_a_dataset_deleted_meanwhile_leaves_nothing(
    app: FastAPI, client: httpx.AsyncClient, owner: Account, sync_client: Any
) -> None:
    dataset = (await create_dataset(client, owner.bearer))["id"]
    stored = Stored(sync_client, state_of(app).settings.control_db, await user_id_of(client, owner))
    before = stored.totals()
    control = sync_client[state_of(app).settings.control_db]

    async def body() -> AsyncIterator[bytes]:
        yield part_head(form_field("dataset_id", dataset)) + dataset.encode() + b"\r\n"
        yield part_head(file("late.txt", b"", "text/plain")) + b"first half "
        # The dataset is deleted while the file is still arriving.
        control["datasets"].update_one({"_id": ObjectId(dataset)}, {"$set": {"state": "deleting"}})
        yield b"second half\r\n" + closing_boundary()

    response = await client.post(
        ENTRIES, content=body(), headers={**owner.bearer, "Content-Type": MULTIPART}
    )
    assert_envelope(response, 404, ErrorCode.DATASET_NOT_FOUND)
    assert stored.totals() == before
