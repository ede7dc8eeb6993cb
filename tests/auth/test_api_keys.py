"""API keys: shown once, stored hashed, revocation at once, Bearer-only management."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.errors import ErrorCode
from app.http import CallerDep
from app.wiring import state_of
from tests.fixtures.envelopes import assert_envelope

KEY_SHAPE = re.compile(r"^qk_[A-Za-z0-9]{8}_[A-Za-z0-9]{43}$")


async def create_key(client: httpx.AsyncClient, account, **body) -> dict:
    response = await client.post(
        "/api/api_keys", headers=account.bearer, json={"name": "backend", **body}
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def test_key_is_shown_once_and_stored_only_hashed(client, register, app) -> None:
    account = await register()
    data = await create_key(client, account, expires_in_days=30)
    assert KEY_SHAPE.match(data["key"]) and data["key"].startswith(f"qk_{data['prefix']}_")
    assert set(data) == {"id", "name", "prefix", "key", "created_at", "expires_at"}
    listed = (await client.get("/api/api_keys", headers=account.bearer)).json()["data"]
    assert [k["id"] for k in listed] == [data["id"]]
    assert "key" not in listed[0] and data["key"] not in str(listed)
    stored = [doc async for doc in state_of(app).database.control["api_keys"].find({})]
    assert len(stored) == 1
    assert data["key"] not in repr(stored)
    secret_part = data["key"].split("_", 2)[2]
    assert secret_part not in repr(stored)
    import hashlib

    assert stored[0]["key_hash"] == hashlib.sha256(data["key"].encode()).hexdigest()


@pytest.mark.parametrize("style", ["authorization", "x-api-key"])
async def test_key_authenticates_both_header_styles(client, register, style) -> None:
    """A valid key works in either header on an endpoint that takes keys; a garbage
    key in the same header is 401; Bearer-only endpoints refuse even a valid key."""
    account = await register()
    key = (await create_key(client, account))["key"]

    def headers(value: str) -> dict[str, str]:
        if style == "authorization":
            return {"Authorization": f"Api-Key {value}"}
        return {"X-API-Key": value}

    listed = await client.get("/api/list_databases", headers=headers(key))
    assert listed.status_code == 200, listed.text
    garbage = f"qk_{key[3:11]}_{'x' * 43}"
    refused = await client.get("/api/list_databases", headers=headers(garbage))
    assert_envelope(refused, 401, ErrorCode.API_KEY_INVALID)
    response = await client.get("/api/api_keys", headers=headers(key))
    assert_envelope(response, 403, ErrorCode.FORBIDDEN)


async def test_key_cannot_create_keys(client, register, app) -> None:
    account = await register()
    key = (await create_key(client, account))["key"]
    response = await client.post(
        "/api/api_keys", headers={"Authorization": f"Api-Key {key}"}, json={"name": "x"}
    )
    assert_envelope(response, 403, ErrorCode.FORBIDDEN)
    assert await state_of(app).database.control["api_keys"].count_documents({}) == 1


async def test_caller_resolves_key_and_revocation_is_immediate(client, register, app) -> None:
    @app.get("/_test/whoami")
    async def whoami(caller: CallerDep) -> dict:
        return {"user_id": str(caller.user_id), "method": caller.method}

    account = await register()
    data = await create_key(client, account)
    me = (await client.get("/core/me", headers=account.bearer)).json()["data"]
    for headers in ({"Authorization": f"Api-Key {data['key']}"}, {"X-API-Key": data["key"]}):
        response = await client.get("/_test/whoami", headers=headers)
        assert response.json() == {"user_id": me["id"], "method": "api_key"}
    assert (await client.get("/_test/whoami", headers=account.bearer)).json()["method"] == "bearer"
    listed = (await client.get("/api/api_keys", headers=account.bearer)).json()["data"]
    assert listed[0]["last_used_at"] is not None

    deleted = await client.delete(f"/api/api_keys/{data['id']}", headers=account.bearer)
    assert deleted.status_code == 200
    gone = await client.get("/_test/whoami", headers={"X-API-Key": data["key"]})
    assert_envelope(gone, 401, ErrorCode.API_KEY_INVALID)
    assert gone.headers["www-authenticate"].startswith("Api-Key")


async def test_expired_and_unknown_keys_are_invalid(client, register, app) -> None:
    @app.get("/_test/whoami")
    async def whoami(caller: CallerDep) -> dict:
        return {"ok": True}

    account = await register()
    data = await create_key(client, account, expires_in_days=1)
    await (
        state_of(app)
        .database.control["api_keys"]
        .update_one(
            {"prefix": data["prefix"]},
            {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}},
        )
    )
    expired = await client.get("/_test/whoami", headers={"X-API-Key": data["key"]})
    assert_envelope(expired, 401, ErrorCode.API_KEY_INVALID)
    unknown = await client.get(
        "/_test/whoami", headers={"Authorization": "Api-Key qk_AAAAAAAA_" + "b" * 43}
    )
    assert_envelope(unknown, 401, ErrorCode.API_KEY_INVALID)
    empty = await client.get("/_test/whoami", headers={"X-API-Key": " "})
    assert_envelope(empty, 401, ErrorCode.API_KEY_INVALID)


async def test_fifty_key_limit(client, register, make_settings, app) -> None:
    account = await register()
    keys = state_of(app).database.control["api_keys"]
    me = (await client.get("/core/me", headers=account.bearer)).json()["data"]
    from bson import ObjectId

    now = datetime.now(UTC)
    await keys.insert_many(
        [
            {
                "user_id": ObjectId(me["id"]),
                "name": f"k{i}",
                "prefix": f"p{i:07d}",
                "key_hash": f"h{i}",
                "created_at": now,
                "expires_at": None,
                "last_used_at": None,
            }
            for i in range(49)
        ]
    )
    await create_key(client, account)
    response = await client.post(
        "/api/api_keys", headers=account.bearer, json={"name": "one too many"}
    )
    assert_envelope(response, 409, ErrorCode.API_KEY_LIMIT)
    assert await keys.count_documents({}) == 50


async def test_delete_other_users_key_is_404_and_bad_id_422(client, register, app) -> None:
    owner, other = await register(), await register()
    data = await create_key(client, owner)
    response = await client.delete(f"/api/api_keys/{data['id']}", headers=other.bearer)
    assert_envelope(response, 404, ErrorCode.API_KEY_NOT_FOUND)
    assert await state_of(app).database.control["api_keys"].count_documents({}) == 1
    bad = await client.delete("/api/api_keys/not-an-id", headers=owner.bearer)
    assert_envelope(bad, 422, ErrorCode.INVALID_ID)


async def test_key_management_needs_credentials(client) -> None:
    response = await client.get("/api/api_keys")
    assert_envelope(response, 401, ErrorCode.NOT_AUTHENTICATED)
    assert "Bearer" in response.headers["www-authenticate"]


async def test_sweep_removes_expired_rows(make_client, inbox) -> None:

    async with make_client(sweep_interval_seconds=0.2) as (app, _http):
        control = state_of(app).database.control
        past = datetime.now(UTC) - timedelta(seconds=5)
        future = datetime.now(UTC) + timedelta(days=1)
        for name in ("refresh_tokens", "api_keys", "login_attempts"):
            # Distinct values for the collections' unique keys (`parent`, `key_hash`): a
            # unique index admits one document without its key, as on MongoDB.
            await control[name].insert_many(
                [
                    {"expires_at": past, "k": 1, "parent": "p1", "key_hash": "h1"},
                    {"expires_at": future, "k": 2, "parent": "p2", "key_hash": "h2"},
                ]
            )
        import asyncio

        for _ in range(50):
            counts = [
                await control[n].count_documents({})
                for n in ("refresh_tokens", "api_keys", "login_attempts")
            ]
            if counts == [1, 1, 1]:
                break
            await asyncio.sleep(0.1)
        assert counts == [1, 1, 1]
