"""Datasets for tests (`spec/datasets.md`): small factories that go through the API,
the internal entry-record door (entries have no public endpoints yet), and readers
of what the catalogue and the tenant databases hold, so tests assert on stored state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx
from bson import ObjectId
from fastapi import FastAPI

from app.audit import AuditLog
from app.clock import utc_now
from app.wiring import state_of
from data_api.datasets.repository import Catalogue, tenant_db_name
from data_api.datasets.service import DatasetService
from tests.accounts import Account

#: Rate limits are tested in tests/app/test_rate_limit.py; here they would only
#: turn a long arrangement into 429s (0 disables a limit). No background sweep
#: either: tests that need one run it themselves.
QUIET_SETTINGS: dict[str, Any] = {
    "rate_limit_per_minute": 0,
    "rate_limit_burst": 0,
    "rate_limit_dataset_create": 0,
    "rate_limit_search": 0,
    "rate_limit_items": 0,
    "dataset_sweep_seconds": 3600,
}

#: The control collections and the tenant collections a dataset lives in.
CATALOGUE_COLLECTIONS = ("datasets", "shares", "tags", "user_tags", "entry_homes", "columns")
TENANT_COLLECTIONS = ("items", "entries", "row_dirs", "row_buckets")

Headers = Mapping[str, str]
#: The `register` fixture (tests/accounts.py).
Register = Callable[..., Awaitable[Account]]
DATASETS = "/api/v1/datasets"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def from_now(**delta: float) -> str:
    """An ISO-8601 instant, in whole seconds, relative to now (`from_now(days=1)`)."""
    return iso((utc_now() + timedelta(**delta)).replace(microsecond=0))


def service_of(app: FastAPI) -> DatasetService:
    return DatasetService(
        catalogue=state_of(app).get(Catalogue),
        settings=state_of(app).settings,
        audit=state_of(app).get(AuditLog),
    )


async def user_id_of(http: httpx.AsyncClient, account: Account) -> ObjectId:
    response = await http.get("/core/me", headers=account.bearer)
    assert response.status_code == 200, response.text
    return ObjectId(response.json()["data"]["id"])


async def make_platform_admin(app: FastAPI, user_id: ObjectId) -> None:
    await (
        state_of(app)
        .database.control["users"]
        .update_one({"_id": user_id}, {"$set": {"role": "admin"}})
    )


async def create_dataset(
    http: httpx.AsyncClient, headers: Headers, **fields: Any
) -> dict[str, Any]:
    """POST /api/v1/datasets; the answer's `data`."""
    body = {"name": "dataset", **fields}
    response = await http.post("/api/v1/datasets", json=body, headers=dict(headers))
    assert response.status_code == 201, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def add_entry(
    app: FastAPI, owner_id: ObjectId, dataset_id: str | ObjectId, name: str = "a.txt"
) -> ObjectId:
    """An entry record homed in `dataset_id` (and so one of its items)."""
    return await service_of(app).create_entry_record(
        owner_id=owner_id,
        dataset_id=ObjectId(dataset_id),
        name=name,
        size=3,
        content_type="text/plain",
    )


async def share(
    http: httpx.AsyncClient,
    headers: Headers,
    dataset_id: str,
    *,
    permission: str = "read",
    **target: Any,
) -> dict[str, Any]:
    """POST …/shares with `user_id=` or `email=` (and `expires_at=`); the answer's `data`."""
    response = await http.post(
        f"/api/v1/datasets/{dataset_id}/shares",
        json={"permission": permission, **target},
        headers=dict(headers),
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def create_tag(http: httpx.AsyncClient, admin: Headers, **fields: Any) -> dict[str, Any]:
    """POST /api/v1/tags as a platform admin; the answer's `data`."""
    response = await http.post("/api/v1/tags", json=fields, headers=dict(admin))
    assert response.status_code == 201, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def tag_dataset(
    http: httpx.AsyncClient, headers: Headers, dataset_id: str, tag_name: str
) -> None:
    response = await http.post(
        f"/api/v1/datasets/{dataset_id}/tags", json={"tag_name": tag_name}, headers=dict(headers)
    )
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------- stored state


async def rows(app: FastAPI, collection: str, query: Mapping[str, Any] | None = None) -> list[Any]:
    """Rows of a control collection, in `_id` order."""
    found = await state_of(app).database.control[collection].find(dict(query or {})).to_list(None)
    return sorted(found, key=lambda row: str(row["_id"]))


async def tenant_rows(
    app: FastAPI, owner_id: ObjectId, collection: str, query: Mapping[str, Any] | None = None
) -> list[Any]:
    """Rows of a collection in `owner_id`'s tenant database, in `_id` order."""
    database = state_of(app).database.client[tenant_db_name(owner_id)]
    found = await database[collection].find(dict(query or {})).to_list(None)
    return sorted(found, key=lambda row: str(row["_id"]))


async def dataset_row(app: FastAPI, dataset_id: str | ObjectId) -> Any:
    return await state_of(app).database.control["datasets"].find_one({"_id": ObjectId(dataset_id)})


async def stored_state(app: FastAPI, owner_ids: list[ObjectId]) -> dict[str, list[Any]]:
    """Everything the catalogue holds, and the items and entries of these owners."""
    state = {name: await rows(app, name) for name in CATALOGUE_COLLECTIONS}
    for owner_id in owner_ids:
        for name in TENANT_COLLECTIONS:
            state[f"{tenant_db_name(owner_id)}.{name}"] = await tenant_rows(app, owner_id, name)
    return state
