"""Refresh rotation, reuse detection, logout, and every way a token can be wrong."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from app.errors import ErrorCode
from app.main import create_app
from app.wiring import state_of
from auth.service import AuthState
from auth.tokens import ACCESS
from tests.fixtures.accounts import PASSWORD
from tests.fixtures.envelopes import assert_envelope


def forge(token: str, app, **changes) -> str:
    """Re-sign a token's claims with the app's own key after changing some."""
    key = state_of(app).get(AuthState).codec._key
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="HS256")


async def test_refresh_rotates_and_the_new_pair_works(
    client: httpx.AsyncClient, register, app
) -> None:
    account = await register()
    response = await client.post("/core/token/refresh", json={"refresh": account.refresh})
    assert response.status_code == 200
    pair = response.json()
    assert pair["refresh"] != account.refresh and pair["access"] != account.access
    old = jwt.decode(account.refresh, options={"verify_signature": False})
    new = jwt.decode(pair["refresh"], options={"verify_signature": False})
    assert old["fam"] == new["fam"] and old["jti"] != new["jti"]
    stored = await state_of(app).database.control["refresh_tokens"].find_one({"_id": old["jti"]})
    assert stored["used_at"] is not None and stored["revoked_at"] is None
    me = await client.get("/core/me", headers={"Authorization": f"Bearer {pair['access']}"})
    assert me.status_code == 200


async def test_reusing_a_refresh_token_revokes_the_family(
    client: httpx.AsyncClient, register, app
) -> None:
    account = await register()
    rotated = (await client.post("/core/token/refresh", json={"refresh": account.refresh})).json()
    reuse = await client.post("/core/token/refresh", json={"refresh": account.refresh})
    assert_envelope(reuse, 401, ErrorCode.TOKEN_REVOKED)
    # The thief's (or the owner's) newer token is dead too.
    after = await client.post("/core/token/refresh", json={"refresh": rotated["refresh"]})
    assert_envelope(after, 401, ErrorCode.TOKEN_REVOKED)
    family = jwt.decode(account.refresh, options={"verify_signature": False})["fam"]
    tokens = state_of(app).database.control["refresh_tokens"]
    assert await tokens.count_documents({"family": family, "revoked_at": None}) == 0


async def test_concurrent_refreshes_of_one_token_let_exactly_one_through(
    client: httpx.AsyncClient, register
) -> None:
    account = await register()
    responses = await asyncio.gather(
        *(client.post("/core/token/refresh", json={"refresh": account.refresh}) for _ in range(10))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1 and statuses.count(401) == 9


async def test_logout_revokes_that_session_only(client: httpx.AsyncClient, register) -> None:
    account = await register()
    other = (
        await client.post("/core/login", json={"email": account.email, "password": PASSWORD})
    ).json()
    assert (await client.post("/core/logout", json={"refresh": account.refresh})).status_code == 200
    assert_envelope(
        await client.post("/core/token/refresh", json={"refresh": account.refresh}),
        401,
        ErrorCode.TOKEN_REVOKED,
    )
    assert (
        await client.post("/core/token/refresh", json={"refresh": other["refresh"]})
    ).status_code == 200


async def test_logout_all_revokes_every_session(client: httpx.AsyncClient, register) -> None:
    account = await register()
    other = (
        await client.post("/core/login", json={"email": account.email, "password": PASSWORD})
    ).json()
    response = await client.post("/core/logout-all", headers=account.bearer)
    assert response.status_code == 200
    for refresh in (account.refresh, other["refresh"]):
        assert_envelope(
            await client.post("/core/token/refresh", json={"refresh": refresh}),
            401,
            ErrorCode.TOKEN_REVOKED,
        )


async def test_access_token_is_not_a_refresh_token_and_the_reverse(
    client: httpx.AsyncClient, register
) -> None:
    account = await register()
    as_refresh = await client.post("/core/token/refresh", json={"refresh": account.access})
    assert_envelope(as_refresh, 401, ErrorCode.TOKEN_INVALID)
    as_access = await client.get("/core/me", headers={"Authorization": f"Bearer {account.refresh}"})
    assert_envelope(as_access, 401, ErrorCode.TOKEN_INVALID)
    assert 'error="invalid_token"' in as_access.headers["www-authenticate"]


@pytest.mark.parametrize("kind", ["access", "refresh"])
async def test_tampered_tokens_are_invalid(client: httpx.AsyncClient, register, kind: str) -> None:
    account = await register()
    token = getattr(account, kind)
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-3]}{'xyz' if signature[-3:] != 'xyz' else 'abc'}"
    if kind == "access":
        response = await client.get("/core/me", headers={"Authorization": f"Bearer {tampered}"})
    else:
        response = await client.post("/core/token/refresh", json={"refresh": tampered})
    assert_envelope(response, 401, ErrorCode.TOKEN_INVALID)


@pytest.mark.parametrize("kind", ["access", "refresh"])
async def test_expired_tokens_are_expired(
    client: httpx.AsyncClient, register, app, kind: str
) -> None:
    account = await register()
    past = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
    expired = forge(getattr(account, kind), app, exp=past)
    if kind == "access":
        response = await client.get("/core/me", headers={"Authorization": f"Bearer {expired}"})
    else:
        response = await client.post("/core/token/refresh", json={"refresh": expired})
    assert_envelope(response, 401, ErrorCode.TOKEN_EXPIRED)


async def test_access_token_expires_after_its_lifetime(make_client, inbox) -> None:
    async with make_client(access_token_minutes=1) as (app, http):
        codec = state_of(app).get(AuthState).codec
        codec.access_ttl = timedelta(seconds=1)
        from bson import ObjectId

        token = codec.access_token(str(ObjectId()), "fam")
        await asyncio.sleep(2.1)
        response = await http.get("/core/me", headers={"Authorization": f"Bearer {token}"})
        assert_envelope(response, 401, ErrorCode.TOKEN_EXPIRED)


@pytest.mark.parametrize("audience", ["quarry:verify", "quarry:reset", "quarry:refresh", "other"])
async def test_wrong_audience_is_refused_as_access(client, register, app, audience: str) -> None:
    account = await register()
    token = forge(account.access, app, aud=audience)
    response = await client.get("/core/me", headers={"Authorization": f"Bearer {token}"})
    assert_envelope(response, 401, ErrorCode.TOKEN_INVALID)


async def test_access_token_is_refused_as_verify_and_reset_token(client, register) -> None:
    account = await register()
    verify = await client.post("/core/verify", json={"token": account.access})
    assert_envelope(verify, 400, ErrorCode.VERIFY_TOKEN_INVALID)
    reset = await client.post(
        "/core/password/reset", json={"token": account.access, "password": "new-password-1"}
    )
    assert_envelope(reset, 400, ErrorCode.RESET_TOKEN_INVALID)


async def test_token_signed_with_another_key_is_invalid(client, register) -> None:
    account = await register()
    claims = jwt.decode(account.access, options={"verify_signature": False})
    foreign = jwt.encode(claims, "another-key-of-at-least-32-bytes!!", algorithm="HS256")
    response = await client.get("/core/me", headers={"Authorization": f"Bearer {foreign}"})
    assert_envelope(response, 401, ErrorCode.TOKEN_INVALID)


async def test_alg_none_token_is_invalid(client, register) -> None:
    account = await register()
    claims = jwt.decode(account.access, options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")
    response = await client.get("/core/me", headers={"Authorization": f"Bearer {unsigned}"})
    assert_envelope(response, 401, ErrorCode.TOKEN_INVALID)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, ErrorCode.NOT_AUTHENTICATED),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, ErrorCode.NOT_AUTHENTICATED),
        ({"Authorization": "Bearer"}, ErrorCode.TOKEN_INVALID),
        ({"Authorization": "Bearer not.a.jwt"}, ErrorCode.TOKEN_INVALID),
    ],
)
async def test_malformed_or_missing_credentials_are_401_with_challenge(
    client, headers, code
) -> None:
    response = await client.get("/core/me", headers=headers)
    assert_envelope(response, 401, code)
    assert response.headers["www-authenticate"]


async def test_secret_key_is_generated_once_and_kept(make_settings, tmp_path) -> None:
    settings = make_settings(data_dir=tmp_path / "keys")
    keys, tokens = [], []
    for _ in range(2):
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            codec = state_of(app).get(AuthState).codec
            keys.append(codec._key)
            # A token signed before the restart still verifies after it.
            for token in tokens:
                assert codec.decode(token, ACCESS)["sub"] == "60c72b2f9b1d8b1a2d3e4567"
            tokens.append(codec.access_token("60c72b2f9b1d8b1a2d3e4567", "family"))
    path = tmp_path / "keys" / "secret_key"
    assert keys[0] == keys[1] == path.read_text().strip()
    assert len(keys[0]) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
