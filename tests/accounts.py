"""Accounts for tests: register through the API and verify with the mailed link.

The `register` fixture is exported by `tests/conftest.py`; every package's tests use it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest

from tests.mailbox import Inbox

PASSWORD = "correct horse battery staple"


@dataclass
class Account:
    email: str
    password: str
    access: str = ""
    refresh: str = ""

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


async def register_account(
    http: httpx.AsyncClient,
    inbox: Inbox,
    *,
    verify: bool = True,
    login: bool = True,
    email: str | None = None,
) -> Account:
    """Register through `http`, verify with the mailed link, log in."""
    account = Account(email=email or new_email(), password=PASSWORD)
    response = await http.post(
        "/core/register",
        json={
            "email": account.email,
            "firstName": "Ada",
            "lastName": "Lovelace",
            "password": PASSWORD,
        },
    )
    assert response.status_code == 201, response.text
    if verify:
        link = inbox.wait_for(account.email).link("/core/verify")
        assert (await http.get(link.replace("http://testserver", ""))).status_code == 200
        if login:
            tokens = (
                await http.post("/core/login", json={"email": account.email, "password": PASSWORD})
            ).json()
            account.access, account.refresh = tokens["access"], tokens["refresh"]
    return account


@pytest.fixture
def register(client: httpx.AsyncClient, inbox: Inbox) -> Callable[..., Awaitable[Account]]:
    """Register on the test's `client`."""

    async def factory(
        *, verify: bool = True, login: bool = True, email: str | None = None
    ) -> Account:
        return await register_account(client, inbox, verify=verify, login=login, email=email)

    return factory


@pytest.fixture
def register_in(inbox: Inbox) -> Callable[..., Awaitable[Account]]:
    """Register on a client of the test's own (`make_client`)."""

    async def factory(http: httpx.AsyncClient) -> Account:
        return await register_account(http, inbox)

    return factory
