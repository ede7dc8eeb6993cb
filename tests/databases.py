"""Owners and databases for the management and CRUD tests, made through the API."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.accounts import Account

USERS_SCHEMA: list[dict[str, Any]] = [
    {"name": "email", "type": "string", "required": True, "unique": True},
    {"name": "signup_date", "type": "date", "index": True},
    {"name": "age", "type": "int"},
]


@pytest.fixture
async def owner(register: Callable[..., Awaitable[Account]]) -> Account:
    return await register()


@pytest.fixture
async def other_owner(register: Callable[..., Awaitable[Account]]) -> Account:
    return await register()


def unique_name(prefix: str = "db") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def create_database(
    client: httpx.AsyncClient,
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """POST /api/create_database; returns the answer body (asserting 201)."""

    async def factory(
        account: Account,
        name: str | None = None,
        collections: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        body = {
            "db_name": name or unique_name(),
            "collections": [{"name": "users", "fields": USERS_SCHEMA}]
            if collections is None
            else collections,
        }
        response = await client.post("/api/create_database", json=body, headers=account.bearer)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    return factory


async def metadata(client: httpx.AsyncClient, account: Account, database_id: str) -> dict[str, Any]:
    response = await client.get(
        "/api/get_metadata", params={"database_id": database_id}, headers=account.bearer
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]
