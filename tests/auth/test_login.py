"""Login: pairs, non-enumeration, unverified accounts, brute force, re-hashing."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from app.errors import ErrorCode
from app.main import create_app
from app.wiring import state_of
from auth.service import _digest as login_scope_digest
from tests.fixtures.accounts import PASSWORD, new_email
from tests.fixtures.envelopes import assert_envelope


@pytest.mark.smoke
async def test_login_returns_a_token_pair(client: httpx.AsyncClient, register) -> None:
    account = await register(login=False)
    response = await client.post("/core/login", json={"email": account.email, "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["token_type"] == "bearer" and body["expires_in"] == 900
    access = jwt.decode(body["access"], options={"verify_signature": False})
    refresh = jwt.decode(body["refresh"], options={"verify_signature": False})
    assert access["aud"] == "quarry:access" and refresh["aud"] == "quarry:refresh"
    assert access["exp"] - access["iat"] == 900
    me = await client.get("/core/me", headers={"Authorization": f"Bearer {body['access']}"})
    assert me.status_code == 200 and me.json()["data"]["email"] == account.email


async def test_login_email_is_case_and_space_insensitive(
    client: httpx.AsyncClient, register
) -> None:
    account = await register(login=False)
    response = await client.post(
        "/core/login", json={"email": f" {account.email.upper()} ", "password": PASSWORD}
    )
    assert response.status_code == 200


async def test_unknown_email_and_wrong_password_answer_identically(
    client: httpx.AsyncClient, register
) -> None:
    account = await register(login=False)
    unknown = await client.post("/core/login", json={"email": new_email(), "password": PASSWORD})
    wrong = await client.post(
        "/core/login", json={"email": account.email, "password": "wrong-password"}
    )
    for response in (unknown, wrong):
        assert_envelope(response, 401, ErrorCode.INVALID_CREDENTIALS)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert unknown.json()["message"] == wrong.json()["message"]


async def test_unknown_email_costs_a_password_verification(make_client) -> None:
    """Timing: an unknown email is checked against a dummy hash of the same cost."""
    async with make_client(argon2_time_cost=2, argon2_memory_kib=32 * 1024) as (_app, http):
        email = new_email()
        await http.post(
            "/core/register",
            json={"email": email, "firstName": "A", "lastName": "B", "password": PASSWORD},
        )

        async def median(login_email: str) -> float:
            times = []
            for _ in range(5):
                started = time.perf_counter()
                await http.post("/core/login", json={"email": login_email, "password": "wrong-one"})
                times.append(time.perf_counter() - started)
            return sorted(times)[2]

        known, unknown = await median(email), await median(new_email())
    # Both pay for Argon2 (tens of ms); neither is an order of magnitude cheaper.
    assert unknown > known / 3 and known > unknown / 3


async def test_unverified_login_is_forbidden_only_with_the_right_password(
    client: httpx.AsyncClient, register
) -> None:
    account = await register(verify=False)
    right = await client.post("/core/login", json={"email": account.email, "password": PASSWORD})
    assert_envelope(right, 403, ErrorCode.EMAIL_NOT_VERIFIED)
    wrong = await client.post("/core/login", json={"email": account.email, "password": "nope-nope"})
    assert_envelope(wrong, 401, ErrorCode.INVALID_CREDENTIALS)


async def test_verification_can_be_switched_off(make_client, inbox) -> None:
    async with make_client(require_email_verification=False) as (_app, http):
        email = new_email()
        await http.post(
            "/core/register",
            json={"email": email, "firstName": "A", "lastName": "B", "password": PASSWORD},
        )
        assert (
            await http.post("/core/login", json={"email": email, "password": PASSWORD})
        ).status_code == 200


@pytest.mark.smoke
async def test_brute_force_gets_429_with_retry_after_whatever_the_password(
    client: httpx.AsyncClient, register, app
) -> None:
    account = await register(login=False)
    for _ in range(10):
        response = await client.post(
            "/core/login", json={"email": account.email, "password": "bad-guess"}
        )
        assert response.status_code == 401
    blocked = await client.post("/core/login", json={"email": account.email, "password": PASSWORD})
    assert_envelope(blocked, 429, ErrorCode.TOO_MANY_ATTEMPTS)
    # Fixed windows: the budget comes back when this one ends.
    retry_after = int(blocked.headers["retry-after"])
    assert 1 <= retry_after <= 900
    pair = f"login:{login_scope_digest(account.email, '127.0.0.1')}"
    stored = await state_of(app).database.control["login_attempts"].count_documents({"scope": pair})
    assert stored == 10


async def test_brute_force_counter_is_shared_by_two_app_instances(make_settings) -> None:
    """The counter lives in MongoDB: a second app on the same database sees it."""
    settings = make_settings(login_max_failures=4)
    first, second = create_app(settings), create_app(settings)
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        a = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=first), base_url="http://testserver"
        )
        b = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=second), base_url="http://testserver"
        )
        async with a, b:
            email = new_email()
            for http in (a, b, a, b):
                r = await http.post("/core/login", json={"email": email, "password": "bad-guess"})
                assert r.status_code == 401
            for http in (a, b):
                r = await http.post("/core/login", json={"email": email, "password": "bad-guess"})
                assert_envelope(r, 429, ErrorCode.TOO_MANY_ATTEMPTS)


async def test_successful_login_clears_the_failure_counter(
    client: httpx.AsyncClient, register, app
) -> None:
    account = await register(login=False)
    for _ in range(3):
        await client.post("/core/login", json={"email": account.email, "password": "bad-guess"})
    assert (
        await client.post("/core/login", json={"email": account.email, "password": PASSWORD})
    ).status_code == 200
    assert (
        await state_of(app)
        .database.control["login_attempts"]
        .count_documents({"email": account.email})
        == 0
    )


async def test_outdated_hash_is_rehashed_at_next_login(make_settings, inbox) -> None:
    settings = make_settings()
    weak = create_app(settings)
    email = new_email()
    async with (
        weak.router.lifespan_context(weak),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=weak), base_url="http://testserver"
        ) as http,
    ):
        await http.post(
            "/core/register",
            json={"email": email, "firstName": "A", "lastName": "B", "password": PASSWORD},
        )
        await http.get(
            "/core/verify", params={"token": inbox.wait_for(email).token("/core/verify")}
        )
        old_hash = (await state_of(weak).database.control["users"].find_one({"email": email}))[
            "password_hash"
        ]
    stronger = create_app(settings.model_copy(update={"argon2_time_cost": 2}))
    async with (
        stronger.router.lifespan_context(stronger),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=stronger), base_url="http://testserver"
        ) as http,
    ):
        assert (
            await http.post("/core/login", json={"email": email, "password": PASSWORD})
        ).status_code == 200
        new_hash = (await state_of(stronger).database.control["users"].find_one({"email": email}))[
            "password_hash"
        ]
    assert "t=1" in old_hash and "t=2" in new_hash
