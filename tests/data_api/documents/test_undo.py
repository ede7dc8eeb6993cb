"""Undo takes back what the request wrote and nothing else: an insert's undo never
deletes a document that existed before with one of the request's `_id`s, and a
batch whose outcome is unknown (the connection failed while the engine was
writing) is taken back by the journal once the engine has finished, not by an
undo racing it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from app.db import Database, delete_if_written, open_client
from app.engine import choose_adapter
from app.errors import ErrorCode
from app.wiring import state_of
from data_api.documents import repository
from management.lifecycle import recover_imports
from tests.fixtures.documents import Crud, api_key, journal_empty
from tests.fixtures.engine import DatabaseServer, engine_sql
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.served import holding_writes


async def test_delete_if_written_keeps_documents_that_differ(
    database_server: DatabaseServer,
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(database_server.url)
    try:
        things = client["undo_probe"]["things"]
        await things.insert_many([{"_id": "ours", "v": 1}, {"_id": "theirs", "v": "before"}])
        written = [{"_id": "ours", "v": 1}, {"_id": "theirs", "v": "what we tried"}]
        assert await delete_if_written(things, written) == 1
        assert [d async for d in things.find()] == [{"_id": "theirs", "v": "before"}]
    finally:
        await client.drop_database("undo_probe")
        await client.close()


async def test_an_abandoned_batch_is_rolled_back_later_and_existing_documents_stay(
    database_server: DatabaseServer,
    make_client: Callable[..., Any],
    register_in: Callable[..., Any],
    sync_client: Any,
) -> None:
    if database_server.engine is None:
        pytest.skip("MongoDB may go on writing an abandoned batch after the rollback")
    conninfo = database_server.engine.superuser_conninfo()
    if conninfo is None:
        pytest.skip("holding the batch back takes a lock in the engine's PostgreSQL")
    async with make_client(mongodb_socket_timeout_ms=300, maintenance_interval_seconds=3600) as (
        app,
        http,
    ):
        account = await register_in(http)
        created = await http.post(
            "/api/create_database",
            json={"db_name": "undo_batch", "collections": [{"name": "items", "fields": []}]},
            headers=account.bearer,
        )
        assert created.status_code == 201, created.text
        crud = Crud(
            http, app, account, await api_key(http, account), created.json()["database"]["id"],
            "items",
        )  # fmt: skip
        items = sync_client[(await crud.physical()).database.name]["items"]
        items.insert_one({"_id": "keep", "v": "existed before"})
        batch = [{"_id": f"i{n:05d}", "pad": "x" * 1500} for n in range(9_999)]
        batch.append({"_id": "keep", "v": "the request's"})
        # Writes to `items` wait behind a lock (reads do not), so the batch is
        # still in the engine when the 300 ms socket timeout abandons it, however
        # fast this machine writes; once it is let go, the engine writes it.
        with holding_writes(conninfo, items.database.name, "items"):
            response = await crud.insert(batch)
        assert_envelope(response, 504, ErrorCode.OPERATION_TIMEOUT)
        assert items.find_one({"_id": "keep"}) == {"_id": "keep", "v": "existed before"}

        # The engine finishes (or drops) the batch; then the maintenance pass.
        previous = None
        for _ in range(100):
            current = await asyncio.to_thread(items.count_documents, {})
            if current == previous:
                break
            previous = current
            await asyncio.sleep(0.3)
        # The engine wrote the abandoned batch after all (9,999 beside "keep"): the
        # rollback below has something to take back.
        assert previous == 1 + 9_999
        settings = state_of(app).settings.model_copy(update={"mongodb_socket_timeout_ms": 0})
        database = Database(
            client=open_client(database_server.url, settings),
            control_db_name=settings.control_db,
            choose_adapter=choose_adapter,
            engine_reads=engine_sql(database_server),
        )
        try:
            await recover_imports(database, settings)
        finally:
            await database.close()
        assert journal_empty(app)
        assert list(items.find()) == [{"_id": "keep", "v": "existed before"}]


async def test_an_update_changes_only_the_documents_whose_pre_images_it_read(
    crud: Crud, monkeypatch: pytest.MonkeyPatch, sync_client: Any
) -> None:
    """No snapshot between reading the pre-images and the update: a document that
    starts matching in between was changed but could never be put back. Staged
    here by another writer that lands right before the update reaches the engine."""
    assert (
        await crud.insert([{"email": f"u{i}@example.com", "age": 30} for i in range(3)])
    ).status_code == 201
    assert (await crud.insert({"email": "late@example.com", "age": 99})).status_code == 201
    users = sync_client[(await crud.physical()).database.name]["users"]
    update_documents = repository.update_documents

    async def another_writer_first(**kwargs: Any) -> Any:
        await asyncio.to_thread(
            users.update_one, {"email": "late@example.com"}, {"$set": {"age": 30}}
        )
        return await update_documents(**kwargs)

    monkeypatch.setattr(repository, "update_documents", another_writer_first)
    response = await crud.update("PATCH", filters={"age": 30}, update_data={"$inc": {"age": 1}})
    assert response.status_code == 200, response.text
    assert response.json()["matched_count"] == 3
    stored = {d["email"]: d["age"] for d in await crud.stored()}
    assert stored == {
        "u0@example.com": 31, "u1@example.com": 31, "u2@example.com": 31,
        "late@example.com": 30,
    }  # fmt: skip
