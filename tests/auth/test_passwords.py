"""Forgot / reset / change password."""

from __future__ import annotations

import asyncio

import httpx

from app.errors import ErrorCode
from app.wiring import state_of
from tests.fixtures.accounts import PASSWORD, new_email
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.mailbox import Inbox

NEW_PASSWORD = "a-brand-new-password"


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/core/login", json={"email": email, "password": password})


async def reset_token(client: httpx.AsyncClient, inbox: Inbox, email: str, count: int = 1) -> str:
    assert (await client.post("/core/password/forgot", json={"email": email})).status_code == 202
    return inbox.wait_for(email, count=count).token("/core/password/reset")


async def test_forgot_password_always_202_with_the_same_body(client, register, inbox) -> None:
    account = await register()
    known = await client.post("/core/password/forgot", json={"email": account.email})
    unknown = await client.post("/core/password/forgot", json={"email": new_email()})
    garbage = await client.post("/core/password/forgot", json={"email": "not an email"})
    assert known.status_code == unknown.status_code == garbage.status_code == 202
    assert known.json() == unknown.json() == garbage.json()


async def test_reset_sets_the_password_and_revokes_every_session(client, register, inbox) -> None:
    account = await register()
    inbox.clear()
    token = await reset_token(client, inbox, account.email)
    response = await client.post(
        "/core/password/reset", json={"token": token, "password": NEW_PASSWORD}
    )
    assert response.status_code == 200
    assert_envelope(
        await login(client, account.email, PASSWORD), 401, ErrorCode.INVALID_CREDENTIALS
    )
    assert (await login(client, account.email, NEW_PASSWORD)).status_code == 200
    refresh = await client.post("/core/token/refresh", json={"refresh": account.refresh})
    assert_envelope(refresh, 401, ErrorCode.TOKEN_REVOKED)


async def test_reset_token_works_once(client, register, inbox) -> None:
    account = await register()
    inbox.clear()
    token = await reset_token(client, inbox, account.email)
    assert (
        await client.post("/core/password/reset", json={"token": token, "password": NEW_PASSWORD})
    ).status_code == 200
    again = await client.post(
        "/core/password/reset", json={"token": token, "password": "yet-another-one"}
    )
    assert_envelope(again, 400, ErrorCode.RESET_TOKEN_INVALID)
    assert (await login(client, account.email, NEW_PASSWORD)).status_code == 200


async def test_reset_token_dies_when_the_password_changes(client, register, inbox) -> None:
    account = await register()
    inbox.clear()
    token = await reset_token(client, inbox, account.email)
    changed = await client.post(
        "/core/password/change",
        headers=account.bearer,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 200
    late = await client.post(
        "/core/password/reset", json={"token": token, "password": "yet-another-one"}
    )
    assert_envelope(late, 400, ErrorCode.RESET_TOKEN_INVALID)


async def test_tampered_and_expired_reset_tokens_are_refused(make_client, inbox) -> None:
    async with make_client(reset_token_seconds=1) as (_app, http):
        email = new_email()
        await http.post(
            "/core/register",
            json={"email": email, "firstName": "A", "lastName": "B", "password": PASSWORD},
        )
        token = await reset_token(http, inbox, email, count=2)
        tampered = token[:-2] + ("aa" if token[-2:] != "aa" else "bb")
        bad = await http.post(
            "/core/password/reset", json={"token": tampered, "password": NEW_PASSWORD}
        )
        assert_envelope(bad, 400, ErrorCode.RESET_TOKEN_INVALID)
        await asyncio.sleep(2.1)
        expired = await http.post(
            "/core/password/reset", json={"token": token, "password": NEW_PASSWORD}
        )
        assert_envelope(expired, 400, ErrorCode.RESET_TOKEN_INVALID)


async def test_change_password_keeps_this_session_and_ends_the_others(client, register) -> None:
    account = await register()
    other = (await login(client, account.email, PASSWORD)).json()
    response = await client.post(
        "/core/password/change",
        headers=account.bearer,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert (
        await client.post("/core/token/refresh", json={"refresh": account.refresh})
    ).status_code == 200
    assert_envelope(
        await client.post("/core/token/refresh", json={"refresh": other["refresh"]}),
        401,
        ErrorCode.TOKEN_REVOKED,
    )
    assert (await login(client, account.email, NEW_PASSWORD)).status_code == 200


async def test_change_password_with_wrong_current_password_is_refused(
    client, register, app
) -> None:
    account = await register()
    users = state_of(app).database.control["users"]
    before = (await users.find_one({"email": account.email}))["password_hash"]
    response = await client.post(
        "/core/password/change",
        headers=account.bearer,
        json={"current_password": "not-my-password", "new_password": NEW_PASSWORD},
    )
    assert_envelope(response, 403, ErrorCode.INVALID_CREDENTIALS)
    assert (await users.find_one({"email": account.email}))["password_hash"] == before


async def test_me_reads_and_updates_the_profile(client, register) -> None:
    account = await register()
    me = (await client.get("/core/me", headers=account.bearer)).json()["data"]
    assert set(me) == {"id", "email", "firstName", "lastName", "is_verified", "role", "created_at"}
    assert me["is_verified"] is True and me["created_at"].endswith("Z")
    updated = await client.patch("/core/me", headers=account.bearer, json={"firstName": "  Grace "})
    assert updated.status_code == 200
    assert (
        updated.json()["data"]["firstName"] == "Grace"
        and updated.json()["data"]["lastName"] == "Lovelace"
    )
    assert (await client.get("/core/me", headers=account.bearer)).json()["data"][
        "firstName"
    ] == "Grace"
    bad = await client.patch("/core/me", headers=account.bearer, json={"firstName": ""})
    assert_envelope(bad, 422, ErrorCode.VALIDATION_ERROR)
