"""Platform admins: `QUARRY_ADMIN_EMAILS`, `quarry users promote|demote`, `role` in /core/me."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app.cli import main as quarry
from app.settings import Settings
from app.wiring import state_of
from tests.fixtures.accounts import PASSWORD, new_email, register_account


async def me(client: httpx.AsyncClient, access: str) -> dict[str, Any]:
    response = await client.get("/core/me", headers={"Authorization": f"Bearer {access}"})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_a_new_account_is_a_regular_user(client: httpx.AsyncClient, register: Any) -> None:
    account = await register()
    assert (await me(client, account.access))["role"] == "user"


async def test_admin_emails_make_an_admin_at_registration(
    make_client: Any, register_in: Any, inbox: Any
) -> None:
    email = new_email()
    async with make_client(admin_emails=f" other@example.com , {email.upper()} ") as (app, http):
        account = await register_account(http, inbox, email=email)
        assert (await me(http, account.access))["role"] == "admin"
        stored = await state_of(app).database.control["users"].find_one({"email": email})
        assert stored["role"] == "admin"


async def test_admin_emails_promote_an_existing_account_at_login(
    make_client: Any, register_in: Any
) -> None:
    control_db = "quarry_test_admin_login"
    async with make_client(control_db=control_db) as (app, http):
        await state_of(app).database.client.drop_database(control_db)
    async with make_client(control_db=control_db) as (app, http):
        account = await register_in(http)
        assert (await me(http, account.access))["role"] == "user"
    async with make_client(control_db=control_db, admin_emails=account.email) as (app, http):
        login = await http.post("/core/login", json={"email": account.email, "password": PASSWORD})
        assert login.status_code == 200
        assert (await me(http, login.json()["access"]))["role"] == "admin"
        await state_of(app).database.client.drop_database(control_db)


async def test_cli_promotes_and_demotes(
    client: httpx.AsyncClient,
    register: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    account = await register()
    monkeypatch.setenv("QUARRY_MONGODB_URL", settings.mongodb_url)
    monkeypatch.setenv("QUARRY_CONTROL_DB", settings.control_db)
    assert await _run(["users", "promote", account.email.upper()]) == 0
    assert (await me(client, account.access))["role"] == "admin"
    assert await _run(["users", "demote", account.email]) == 0
    assert (await me(client, account.access))["role"] == "user"
    assert await _run(["users", "promote", "nobody@example.com"]) == 1
    assert "no account" in capsys.readouterr().err


async def _run(argv: list[str]) -> int:
    return await asyncio.to_thread(quarry, argv)
