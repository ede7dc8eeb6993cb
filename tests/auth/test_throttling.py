"""Login and registration budgets (auth/service.py docstring): exact under
concurrency, per email and address, per address, per email; an attacker's guesses
lock the attacker's address out, not the account's owner; registering costs a
budget per address and per email, and an existing address gets one notice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi import FastAPI

from app.errors import ErrorCode
from app.wiring import state_of
from tests.fixtures.accounts import PASSWORD, body, new_email
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.mailbox import Inbox


@contextlib.asynccontextmanager
async def clients_at(
    make_client: Callable[..., Any], **settings: Any
) -> AsyncIterator[tuple[FastAPI, Callable[[str], httpx.AsyncClient]]]:
    """An app, and HTTP clients calling it from the addresses they are given."""
    async with make_client(**settings) as (app, _):
        opened: list[httpx.AsyncClient] = []

        def at(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            opened.append(client)
            return client

        try:
            yield app, at
        finally:
            for client in opened:
                await client.aclose()


async def registered(http: httpx.AsyncClient, inbox: Inbox) -> str:
    email = new_email()
    assert (await http.post("/core/register", json=body(email))).status_code == 201
    token = inbox.wait_for(email).token("/core/verify")
    assert (await http.get("/core/verify", params={"token": token})).status_code == 200
    return email


def login(http: httpx.AsyncClient, email: str, password: str = "a-wrong-guess") -> Any:
    return http.post("/core/login", json={"email": email, "password": password})


async def test_parallel_guesses_get_exactly_the_budget(make_client, inbox: Inbox) -> None:
    """Read-then-record let every parallel guess pass the check; slots do not."""
    async with clients_at(make_client) as (_, at):
        attacker = at("10.0.0.66")
        email = await registered(attacker, inbox)
        answers = await asyncio.gather(*(login(attacker, email) for _ in range(30)))
        statuses = sorted(response.status_code for response in answers)
        assert statuses == [401] * 10 + [429] * 20


async def test_an_attackers_guesses_do_not_lock_the_owner_out(make_client, inbox: Inbox) -> None:
    async with clients_at(make_client) as (_, at):
        attacker, owner = at("10.0.0.66"), at("192.0.2.7")
        email = await registered(owner, inbox)
        for _ in range(10):
            assert (await login(attacker, email)).status_code == 401
        blocked = await login(attacker, email, PASSWORD)
        assert_envelope(blocked, 429, ErrorCode.TOO_MANY_ATTEMPTS)
        assert int(blocked.headers["retry-after"]) >= 1
        assert (await login(owner, email, PASSWORD)).status_code == 200


async def test_one_address_guessing_across_emails_is_stopped(make_client) -> None:
    """Credential stuffing: many emails, one address."""
    async with clients_at(make_client, login_max_failures_per_address=5) as (_, at):
        stuffer, bystander = at("10.0.0.66"), at("192.0.2.7")
        emails = [new_email() for _ in range(6)]
        for email in emails[:5]:
            assert (await login(stuffer, email)).status_code == 401
        assert_envelope(await login(stuffer, emails[5]), 429, ErrorCode.TOO_MANY_ATTEMPTS)
        assert (await login(bystander, emails[5])).status_code == 401


async def test_many_addresses_guessing_one_email_are_stopped(make_client, inbox: Inbox) -> None:
    """A distributed guess: the one budget that can lock an owner out, for a window."""
    async with clients_at(make_client, login_max_failures_per_email=5) as (_, at):
        email = await registered(at("192.0.2.7"), inbox)
        for n in range(5):
            assert (await login(at(f"10.0.1.{n}"), email)).status_code == 401
        assert_envelope(await login(at("10.0.1.99"), email), 429, ErrorCode.TOO_MANY_ATTEMPTS)


async def test_registrations_are_budgeted_per_address(make_client) -> None:
    async with clients_at(make_client, register_max_per_address=3) as (app, at):
        one, other = at("10.0.0.66"), at("192.0.2.7")
        for _ in range(3):
            assert (await one.post("/core/register", json=body(new_email()))).status_code == 201
        refused = await one.post("/core/register", json=body(email := new_email()))
        assert_envelope(refused, 429, ErrorCode.TOO_MANY_ATTEMPTS)
        assert "registrations" in refused.json()["message"]
        assert await state_of(app).database.control["users"].count_documents({"email": email}) == 0
        assert (await other.post("/core/register", json=body(new_email()))).status_code == 201


async def test_registrations_are_budgeted_per_email(make_client) -> None:
    async with clients_at(make_client, register_max_per_email=2) as (_, at):
        email = new_email()
        for n in range(2):
            assert (
                await at(f"10.0.2.{n}").post("/core/register", json=body(email))
            ).status_code == 201
        refused = await at("10.0.2.9").post("/core/register", json=body(email))
        assert_envelope(refused, 429, ErrorCode.TOO_MANY_ATTEMPTS)


async def test_registering_an_existing_address_mails_one_notice_per_window(
    make_client, inbox: Inbox
) -> None:
    """Background mail runs before the ASGI call returns, so the inbox is final here."""
    async with clients_at(make_client, register_max_per_email=10) as (_, at):
        http = at("192.0.2.7")
        email = await registered(http, inbox)
        for _ in range(4):
            assert (await http.post("/core/register", json=body(email))).status_code == 201
        notices = [m for m in inbox.mails_to(email) if "tried to register" in m.subject]
        assert len(notices) == 1
