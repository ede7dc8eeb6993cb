"""Fault injection: the engine killed (SIGKILL) in the middle of a batch insert,
a drop_database and a login, or paused (SIGSTOP) for longer than the
server-selection timeout. The app is never restarted: once the engine is back it
answers again, and every operation either happened in full or left no trace
(asserted on the stored data with the driver). The import case is in
`tests/management/test_import.py` (stopped and killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI
from pymongo.errors import AutoReconnect

from app.errors import ErrorCode
from app.wiring import state_of
from auth import repository as auth_repository
from auth.repository import LOGIN_ATTEMPTS
from auth.service import _digest as login_scope_digest
from tests.fixtures.accounts import PASSWORD, Account
from tests.fixtures.documents import Crud, api_key, journal_empty
from tests.fixtures.engine import DatabaseServer, engine_down
from tests.fixtures.envelopes import assert_envelope

# Every answer during an outage comes within this (server selection is 1 s in
# the test settings; a paused engine's in-flight operations are interrupted by
# the driver's monitor).
BOUND_SECONDS = 10


@pytest.fixture
def engine(database_server: DatabaseServer) -> DatabaseServer:
    if not database_server.stoppable:
        pytest.skip("needs the embedded engine to kill or pause it")
    return database_server


@pytest.fixture
async def served(
    make_client: Callable[..., Any], register_in: Callable[..., Any]
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, Account]]:
    """An app whose maintenance task runs every 0.2 s, and an account on it."""
    async with make_client(maintenance_interval_seconds=0.2, stale_after_seconds=1) as (
        app,
        http,
    ):
        yield app, http, await register_in(http)


async def new_crud(app: FastAPI, http: httpx.AsyncClient, account: Account) -> Crud:
    created = await http.post(
        "/api/create_database",
        json={
            "db_name": f"faults_{ObjectId()}",
            "collections": [
                {"name": "users", "fields": [{"name": "email", "type": "string", "unique": True}]}
            ],
        },
        headers=account.bearer,
    )
    assert created.status_code == 201, created.text
    return Crud(http, app, account, await api_key(http, account), created.json()["database"]["id"])


async def wait_until(condition: Callable[[], Any], seconds: float = 30) -> None:
    """Poll `condition`; a pooled connection that died with the engine is not yet."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(AutoReconnect):
            if await asyncio.to_thread(condition):
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {seconds} s")


async def test_engine_killed_mid_batch_insert_leaves_no_document(
    engine: DatabaseServer, served: Any, sync_client: Any
) -> None:
    app, http, account = served
    crud = await new_crud(app, http, account)
    physical = await crud.physical()
    users = sync_client[physical.database.name]["users"]
    users.insert_many([{"_id": i, "email": f"before{i}@example.com"} for i in range(5)])
    before = list(users.find().sort("_id", 1))
    batch = [{"email": f"u{i}@example.com", "bio": "x" * 500} for i in range(10_000)]
    batch[3]["_id"] = "client-chosen"  # a client _id is journalled too

    def count() -> int:
        return int(sync_client[physical.database.name].command("collStats", "users")["count"])

    inserting = asyncio.create_task(crud.insert(batch))
    for _ in range(400):
        await asyncio.sleep(0.02)
        if inserting.done() or await asyncio.to_thread(count) > len(before):
            break
    assert not inserting.done(), "the insert finished before the engine could be killed"
    async with engine_down(engine):
        response = await inserting
        assert_envelope(response, 503, ErrorCode.DATABASE_UNAVAILABLE)
    # Back without an app restart; the maintenance task removes the partial batch.
    await wait_until(lambda: count() == len(before))
    assert list(users.find().sort("_id", 1)) == before
    await wait_until(lambda: journal_empty(app))
    again = await crud.insert(batch[:100])
    assert again.status_code == 201, again.text
    assert users.count_documents({}) == len(before) + 100


async def test_engine_killed_during_drop_database_ends_dropped_or_intact(
    engine: DatabaseServer, served: Any, sync_client: Any
) -> None:
    """Killed at several moments of a drop: each time the database is either
    fully gone (record and data) or fully there and usable."""
    app, http, account = served
    outcomes = []
    for delay in (0.0, 0.005, 0.02, 0.05):
        crud = await new_crud(app, http, account)
        name = (
            await http.get(
                "/api/get_metadata",
                params={"database_id": crud.database_id},
                headers=account.bearer,
            )
        ).json()["data"]["displayName"]
        db_name = (await crud.physical()).database.name
        inserted = await crud.insert([{"email": f"{i}@example.com"} for i in range(500)])
        assert inserted.status_code == 201
        dropping = asyncio.create_task(
            http.post(
                "/api/drop_database",
                json={"database_id": crud.database_id, "confirmation": name},
                headers=account.bearer,
            )
        )
        await asyncio.sleep(delay)
        async with engine_down(engine):
            response = await dropping
        assert response.status_code in (200, 503), response.text

        def settled(db_name: str = db_name, database_id: str = crud.database_id) -> bool:
            record = sync_client[state_of(app).settings.control_db]["databases"].find_one(
                {"_id": ObjectId(database_id)}
            )
            exists = db_name in sync_client.list_database_names()
            if record is None:
                return not exists
            return record.get("state") == "ready" and exists

        await wait_until(settled)
        record = sync_client[state_of(app).settings.control_db]["databases"].find_one(
            {"_id": ObjectId(crud.database_id)}
        )
        if response.status_code == 200:
            assert record is None
        listed = await http.get(
            "/api/get_metadata", params={"database_id": crud.database_id}, headers=account.bearer
        )
        if record is None:
            outcomes.append("dropped")
            assert_envelope(listed, 404, ErrorCode.DATABASE_NOT_FOUND)
        else:
            outcomes.append("intact")
            assert listed.status_code == 200
            assert sync_client[db_name]["users"].count_documents({}) == 500
            found = await crud.find(page_size=1, count="true")
            assert found.status_code == 200 and found.json()["pagination"]["total_items"] == 500
    print("drop outcomes by kill delay:", outcomes)


async def test_login_while_the_engine_dies_answers_503_then_works_again(
    engine: DatabaseServer, served: Any, sync_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine dies at the moment a login stores its refresh token (staged by
    killing it there), so the outcome is one, every run: 503 and no session."""
    app, http, account = served
    credentials = {"email": account.email, "password": PASSWORD}
    store_token = auth_repository.insert_refresh_token

    async def engine_dies_first(**kwargs: Any) -> Any:
        await asyncio.to_thread(engine.kill)
        return await store_token(**kwargs)

    monkeypatch.setattr(auth_repository, "insert_refresh_token", engine_dies_first)
    try:
        raced = await http.post("/core/login", json=credentials)
        monkeypatch.setattr(auth_repository, "insert_refresh_token", store_token)
        assert_envelope(raced, 503, ErrorCode.DATABASE_UNAVAILABLE)
        started = time.perf_counter()
        during = await http.post("/core/login", json=credentials)
        elapsed = time.perf_counter() - started
        assert_envelope(during, 503, ErrorCode.DATABASE_UNAVAILABLE)
        assert during.headers["retry-after"] == "3"
        assert elapsed < BOUND_SECONDS
    finally:
        await asyncio.to_thread(engine.start)
    user = sync_client[state_of(app).settings.control_db]["users"].find_one(
        {"email": account.email}
    )
    tokens = sync_client[state_of(app).settings.control_db]["refresh_tokens"]
    assert tokens.count_documents({"user_id": user["_id"]}) == 1  # only register_in's login
    # Back without a restart of the app: the same login works, and so do the tokens.
    after = await http.post("/core/login", json=credentials)
    assert after.status_code == 200, after.text
    refreshed = await http.post("/core/token/refresh", json={"refresh": after.json()["refresh"]})
    assert refreshed.status_code == 200, refreshed.text
    # The attempts cut short by the outage did not count against the account from
    # this address (the successful login after them clears that budget).
    attempts = sync_client[state_of(app).settings.control_db][LOGIN_ATTEMPTS]
    pair = f"login:{login_scope_digest(account.email, '127.0.0.1')}"
    assert attempts.count_documents({"scope": pair}) == 0


async def test_paused_engine_answers_503_within_a_bound_and_recovers(
    engine: DatabaseServer, served: Any
) -> None:
    app, http, account = served
    crud = await new_crud(app, http, account)
    assert (await crud.insert({"email": "a@example.com"})).status_code == 201
    calls: list[Callable[[], Any]] = [
        lambda: http.post("/core/login", json={"email": account.email, "password": PASSWORD}),
        lambda: http.get("/api/list_databases", headers=account.bearer),
        lambda: crud.find(),
        lambda: crud.insert({"email": "b@example.com"}),
        lambda: http.get("/core/me", headers=account.bearer),
    ]
    engine.pause()
    try:
        started = time.perf_counter()

        async def timed(call: Callable[[], Any]) -> tuple[float, httpx.Response]:
            response = await call()
            return time.perf_counter() - started, response

        results = await asyncio.gather(*(timed(call) for call in calls))
        health = await http.get("/health")
        # Paused for at least twice the server-selection timeout (1 s here).
        await asyncio.sleep(max(0.0, 2.0 - (time.perf_counter() - started)))
    finally:
        engine.resume()
    for elapsed, response in results:
        assert elapsed < BOUND_SECONDS, (elapsed, response.request.url)
        assert_envelope(response, 503, ErrorCode.DATABASE_UNAVAILABLE)
    assert health.status_code == 503
    # The same calls succeed once the engine runs again, without an app restart.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (await http.get("/health")).status_code == 200:
            break
        await asyncio.sleep(0.2)
    statuses = [(await call()).status_code for call in calls]
    assert statuses == [200, 200, 200, 201, 200]
    # The insert that answered 503 left nothing.
    assert [doc["email"] for doc in await crud.stored()] == ["a@example.com", "b@example.com"]


async def test_engine_killed_mid_multi_update_leaves_the_collection_as_before(
    engine: DatabaseServer, served: Any, sync_client: Any
) -> None:
    """FerretDB updates document by document (and in quadratic time: 1,000
    documents take ≈3 s, 4,000 ≈43 s); killed part-way, the update was left
    half-applied (found by this test) until updates were journalled."""
    app, http, account = served
    crud = await new_crud(app, http, account)
    physical = await crud.physical()
    users = sync_client[physical.database.name]["users"]
    await asyncio.to_thread(
        users.insert_many,
        [{"_id": i, "email": f"u{i}@example.com", "bio": "x" * 300} for i in range(1_500)],
    )

    def stored() -> list[dict[str, Any]]:
        return list(users.find().sort("_id", 1))

    before = await asyncio.to_thread(stored)

    def changed() -> int:
        return users.count_documents({"bio": "changed"})

    def started() -> bool:  # an _id lookup: a full scan would starve the update
        return (users.find_one({"_id": 0}) or {}).get("bio") == "changed"

    running = asyncio.create_task(
        crud.update("PATCH", filters={}, all=True, update_data={"$set": {"bio": "changed"}})
    )
    for _ in range(1000):
        await asyncio.sleep(0.005)
        if running.done() or await asyncio.to_thread(started):
            break
    assert not running.done(), "the update finished before the engine could be killed"
    async with engine_down(engine):
        response = await running
        assert_envelope(response, 503, ErrorCode.DATABASE_UNAVAILABLE)
    await wait_until(lambda: changed() == 0)
    assert await asyncio.to_thread(stored) == before
    await wait_until(lambda: journal_empty(app))
