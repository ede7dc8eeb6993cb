"""Concurrency: racing requests resolve to exactly one winner, or add up exactly."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import httpx
import jwt
import pytest

from app.errors import ErrorCode
from app.settings import Settings
from app.wiring import state_of
from tests.fixtures.databases import metadata, upload
from tests.fixtures.documents import Crud
from tests.fixtures.envelopes import assert_envelope


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    """Fifty imports by one owner at once: the per-user import quota (tested in
    tests/management/test_import.py) is raised so the race itself is tested; so is
    the burst of the per-user rate limit (tests/app/test_rate_limit.py), which
    200 inserts at once would exceed."""
    return make_settings(max_concurrent_imports_per_user=50, rate_limit_burst=1_000)


async def test_200_concurrent_inserts_of_one_unique_value_let_exactly_one_in(
    crud: Crud, sync_client: Any
) -> None:
    responses = await asyncio.gather(
        *(crud.insert({"email": "same@example.com", "age": i}) for i in range(200))
    )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: 199}, statuses
    for response in responses:
        if response.status_code == 409:
            body = assert_envelope(response, 409, ErrorCode.DUPLICATE_KEY)
            assert body["details"][0]["field"] == "email"
    winner = next(r for r in responses if r.status_code == 201).json()
    stored = await crud.stored()
    assert len(stored) == 1
    assert str(stored[0]["_id"]) == winner["inserted_ids"][0]


async def test_50_concurrent_batch_inserts_with_one_duplicate_each_leave_nothing(
    crud: Crud,
) -> None:
    """Each batch collides with the others on one email: at most one batch may
    win, every loser is removed in full."""
    batches = [
        [{"email": f"b{n}-{i}@example.com"} for i in range(20)] + [{"email": "shared@example.com"}]
        for n in range(50)
    ]
    responses = await asyncio.gather(*(crud.insert(batch) for batch in batches))
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: 49}, statuses
    winner = next(n for n, r in enumerate(responses) if r.status_code == 201)
    emails = sorted(doc["email"] for doc in await crud.stored())
    assert emails == sorted(doc["email"] for doc in batches[winner])


async def test_50_concurrent_imports_into_one_collection_add_up_exactly(
    client: httpx.AsyncClient, owner: Any, create_database: Any, sync_client: Any
) -> None:
    created = await create_database(owner, collections=[{"name": "events", "fields": []}])
    database_id = created["database"]["id"]
    db_name = (await metadata(client, owner, database_id))["dbName"]
    files = [json.dumps([{"file": n, "row": i} for i in range(200)]).encode() for n in range(50)]
    responses = await asyncio.gather(
        *(upload(client, owner, database_id, content, collection="events") for content in files)
    )
    assert [r.status_code for r in responses] == [200] * 50, [
        r.text for r in responses if r.status_code != 200
    ][:3]
    assert all(r.json()["inserted_count"] == 200 for r in responses)
    events = sync_client[db_name]["events"]
    assert events.count_documents({}) == 50 * 200
    per_file = Counter(doc["file"] for doc in events.find({}, {"file": 1}))
    assert per_file == dict.fromkeys(range(50), 200)
    assert len({doc["_id"] for doc in events.find({}, {"_id": 1})}) == 50 * 200


async def test_50_concurrent_refreshes_of_one_token_one_wins_and_the_family_dies(
    client: httpx.AsyncClient, register: Any, app: Any
) -> None:
    account = await register()
    responses = await asyncio.gather(
        *(client.post("/core/token/refresh", json={"refresh": account.refresh}) for _ in range(50))
    )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 1, 401: 49}, statuses
    for response in responses:
        if response.status_code == 401:
            assert_envelope(response, 401, ErrorCode.TOKEN_REVOKED)
    winner = next(r for r in responses if r.status_code == 200).json()
    # Reuse of the spent token revoked the whole family, the winner's new pair included.
    assert_envelope(
        await client.post("/core/token/refresh", json={"refresh": winner["refresh"]}),
        401,
        ErrorCode.TOKEN_REVOKED,
    )
    family = jwt.decode(account.refresh, options={"verify_signature": False})["fam"]
    tokens = state_of(app).database.control["refresh_tokens"]
    assert await tokens.count_documents({"family": family}) >= 2
    assert await tokens.count_documents({"family": family, "revoked_at": None}) == 0
