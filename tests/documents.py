"""A caller with an API key and a database of their own (`crud`, `make_crud`
fixtures, exported by `tests/conftest.py`).

`crud` is the seed's `users` collection (email unique and required, signup_date
a date, age an int); `make_crud` builds one with other collections. `stored()`
reads the physical collection with the driver, so tests assert on what the
database holds, not only on what the API answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI

from app.wiring import state_of
from tests.accounts import Account
from tests.databases import USERS_SCHEMA


@dataclass
class Crud:
    http: httpx.AsyncClient
    app: FastAPI
    account: Account
    key: str
    database_id: str
    collection: str = "users"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Api-Key {self.key}"}

    def body(self, **fields: Any) -> dict[str, Any]:
        return {"database_id": self.database_id, "collection_name": self.collection, **fields}

    def params(self, **fields: Any) -> dict[str, Any]:
        return {key: value for key, value in self.body(**fields).items() if value is not None}

    async def insert(self, data: Any) -> httpx.Response:
        return await self.http.post("/api/crud", json=self.body(data=data), headers=self.headers)

    async def find(self, **params: Any) -> httpx.Response:
        return await self.http.get("/api/crud", params=self.params(**params), headers=self.headers)

    async def update(self, method: str = "PUT", **body: Any) -> httpx.Response:
        return await self.http.request(
            method, "/api/crud", json=self.body(**body), headers=self.headers
        )

    async def delete(self, **body: Any) -> httpx.Response:
        return await self.http.request(
            "DELETE", "/api/crud", json=self.body(**body), headers=self.headers
        )

    async def post(self, path: str, **body: Any) -> httpx.Response:
        return await self.http.post(path, json=self.body(**body), headers=self.headers)

    async def physical(self) -> Any:
        record = (
            await state_of(self.app)
            .database.control["databases"]
            .find_one({"_id": ObjectId(self.database_id)})
        )
        return state_of(self.app).database.client[record["dbName"]][self.collection]

    async def stored(self, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        collection = await self.physical()
        return [doc async for doc in collection.find(query or {}).sort("_id", 1)]


async def api_key(http: httpx.AsyncClient, account: Account) -> str:
    response = await http.post("/api/api_keys", headers=account.bearer, json={"name": "backend"})
    assert response.status_code == 201, response.text
    return response.json()["data"]["key"]  # type: ignore[no-any-return]


@pytest.fixture
def make_crud(
    client: httpx.AsyncClient,
    app: FastAPI,
    owner: Account,
    create_database: Callable[..., Awaitable[dict[str, Any]]],
) -> Callable[..., Awaitable[Crud]]:
    async def factory(
        collections: list[dict[str, Any]] | None = None, account: Account | None = None
    ) -> Crud:
        account = account or owner
        created = await create_database(account, collections=collections)
        key = await api_key(client, account)
        name = (collections or [{"name": "users"}])[0]["name"]
        return Crud(client, app, account, key, created["database"]["id"], name)

    return factory


@pytest.fixture
async def crud(make_crud: Callable[..., Awaitable[Crud]]) -> Crud:
    return await make_crud([{"name": "users", "fields": USERS_SCHEMA}])
