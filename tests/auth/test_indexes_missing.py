"""A server started while its database is down serves without its unique
indexes until they can be created; the endpoints whose safety rests on them
(one account per email, single-use refresh tokens, API keys) answer 503 until
then instead of running without them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app.errors import ErrorCode
from app.main import create_app
from app.wiring import state_of
from auth.lifecycle import index_creation
from auth.service import AuthState
from management.lifecycle import maintenance_pass
from tests.fixtures.accounts import body, new_email
from tests.fixtures.engine import DatabaseServer
from tests.fixtures.envelopes import assert_envelope


async def test_writes_that_need_unique_indexes_answer_503_until_they_exist(
    database_server: DatabaseServer, make_settings: Any, register_in: Any
) -> None:
    if not database_server.stoppable:
        pytest.skip("needs the embedded engine to stop it")
    database_server.stop()
    try:
        app = create_app(make_settings(maintenance_interval_seconds=3600))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
        ):
            assert state_of(app).get(AuthState).indexes_ready is False
            await asyncio.to_thread(database_server.start)
            for _ in range(100):
                if (await http.get("/health")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            email = new_email()
            refused = await http.post("/core/register", json=body(email))
            assert_envelope(refused, 503, ErrorCode.DATABASE_UNAVAILABLE)
            assert "retry-after" in refused.headers
            users = state_of(app).database.control["users"]
            assert await users.count_documents({"email": email}) == 0
            # The next maintenance pass creates them; then the same request works.
            await index_creation(state_of(app).database, state_of(app).get(AuthState))()
            assert state_of(app).get(AuthState).indexes_ready is True
            assert (await http.post("/core/register", json=body(email))).status_code == 201
            raw_users = state_of(app).database.client[state_of(app).settings.control_db]["users"]
            indexes = [index["name"] async for index in await raw_users.list_indexes()]
            assert "email_unique" in indexes

            # Same for creating a database (unique per owner and name).
            account = await register_in(http)
            create = {"db_name": "shop", "collections": []}
            refused = await http.post("/api/create_database", json=create, headers=account.bearer)
            assert_envelope(refused, 503, ErrorCode.DATABASE_UNAVAILABLE)
            await maintenance_pass(state_of(app).database, state_of(app).settings)()
            created = await http.post("/api/create_database", json=create, headers=account.bearer)
            assert created.status_code == 201, created.text

    finally:
        if not database_server.engine.running():
            database_server.start()
