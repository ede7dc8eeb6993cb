"""The permission matrix: every dataset endpoint (and every rows and columns
endpoint, which name their dataset in the query or body) by every way of holding
access.

A caller's level on a dataset (`spec/datasets.md`, Permissions) is the highest of
owner, a live share, `read` for a public dataset or a matching tag, `admin` for a
platform administrator. With no level every endpoint answers 404
DATASET_NOT_FOUND (existence is never revealed); below the level an endpoint
needs, 403 INSUFFICIENT_PERMISSION naming that level; otherwise it is served.
Refusals leave the catalogue and the tenant data exactly as they were.

The cases are generated from two tables, `ENDPOINTS` (what each endpoint needs)
and `LEVELS` (what each way of holding access gives), and the first test proves
`ENDPOINTS` names every dataset route of the app, so a new endpoint cannot be
added without its row. One module-wide world (an app, twelve accounts, two
datasets) serves every case; a case that destroys what it touches (DELETE of a
dataset) gets a fresh dataset, and the other mutating cases put back what they
need (the share they revoke, the item they remove, the tag they take off)
before they run.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pymongo import MongoClient

from app.clock import utc_now
from app.errors import ErrorCode
from app.main import create_app
from app.settings import Settings
from app.wiring import state_of
from data_api.datasets.access import Level
from tests.fixtures.accounts import Account, register_account
from tests.fixtures.datasets import (
    QUIET_SETTINGS,
    add_entry,
    create_dataset,
    create_tag,
    from_now,
    make_platform_admin,
    share,
    stored_state,
    tag_dataset,
    user_id_of,
)
from tests.fixtures.documents import api_key
from tests.fixtures.engine import SYSTEM_DATABASES, DatabaseServer, running
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.mailbox import Inbox

DATASET = "/api/v1/datasets/{dataset_id}"
ACCESS_CHECK = "/api/v1/access/check"
#: Rows and columns name their dataset in the query or the body (`spec/rows.md`).
ROWS = "/api/v1/rows"
COLUMNS = "/api/v1/columns"
ON_DATASET = "?dataset={dataset_id}"
READER_TAG = "matrix-readers"
EXTRA_TAG = "matrix-extra"


class Holder(StrEnum):
    """The ways a caller can stand towards a dataset."""

    owner = "owner"
    admin_share = "admin share"
    write_share = "write share"
    read_share = "read share"
    expired_share = "expired share"
    public = "public dataset"
    tag = "matching tag"
    platform_admin = "platform admin"
    none = "no access"
    other_tenant_key = "another tenant's API key"


#: What each way of holding access gives (spec: the highest applies).
LEVELS: dict[Holder, Level] = {
    Holder.owner: Level.owner,
    Holder.admin_share: Level.admin,
    Holder.write_share: Level.write,
    Holder.read_share: Level.read,
    Holder.expired_share: Level.none,
    Holder.public: Level.read,
    Holder.tag: Level.read,
    Holder.platform_admin: Level.admin,
    Holder.none: Level.none,
    Holder.other_tenant_key: Level.none,
}


# ---------------------------------------------------------------- the world


@dataclass
class Target:
    """A dataset of the world's owner, with an item the matrix keeps and one it removes."""

    dataset_id: str
    keep_entry: str
    drop_entry: str


@dataclass
class World:
    app: FastAPI
    http: httpx.AsyncClient
    accounts: dict[str, Account]
    user_ids: dict[str, ObjectId]
    #: The account behind each way of holding access, and the headers it calls with.
    holders: dict[Holder, str]
    headers: dict[Holder, dict[str, str]]
    tag_ids: dict[str, str]
    #: The world's two datasets: "private" (held in every way but the public flag)
    #: and "public".
    targets: dict[str, Target] = field(default_factory=dict)

    def caller_id(self, holder: Holder) -> ObjectId:
        return self.user_ids[self.holders[holder]]

    @property
    def owner(self) -> dict[str, str]:
        return self.headers[Holder.owner]

    def target_for(self, holder: Holder) -> Target:
        """The public dataset for the `public` way, the private one for every other."""
        return self.targets["public" if holder is Holder.public else "private"]

    async def build_target(self, *, public: bool) -> Target:
        """A dataset held in every way of `Holder`: shares (one of them expired), the
        readers' tag — or, when `public`, only its public flag — plus a spare share."""
        owner_id = self.user_ids["owner"]
        dataset = await create_dataset(self.http, self.owner, name="matrix", is_public=public)
        dataset_id = dataset["id"]
        if not public:
            for name, permission in (
                ("admin_share", "admin"),
                ("write_share", "write"),
                ("read_share", "read"),
            ):
                await share(
                    self.http,
                    self.owner,
                    dataset_id,
                    user_id=str(self.user_ids[name]),
                    permission=permission,
                )
            expired = await share(
                self.http,
                self.owner,
                dataset_id,
                user_id=str(self.user_ids["expired_share"]),
                expires_at=from_now(hours=1),
            )
            await (
                state_of(self.app)
                .database.control["shares"]
                .update_one(
                    {"_id": ObjectId(expired["id"])},
                    {"$set": {"expires_at": utc_now() - timedelta(minutes=1)}},
                )
            )
            await tag_dataset(self.http, self.owner, dataset_id, READER_TAG)
        await share(self.http, self.owner, dataset_id, user_id=str(self.user_ids["spare"]))
        keep = await add_entry(self.app, owner_id, dataset_id, "keep.txt")
        drop = await add_entry(self.app, owner_id, dataset_id, "drop.txt")
        return Target(dataset_id=dataset_id, keep_entry=str(keep), drop_entry=str(drop))

    async def share_row(self, target: Target, user: str) -> Any:
        return (
            await state_of(self.app)
            .database.control["shares"]
            .find_one({"dataset_id": ObjectId(target.dataset_id), "user_id": self.user_ids[user]})
        )

    async def assert_still_held(self, holder: Holder, target: Target) -> None:
        """The expired share is still stored (no sweep ran): the case tests expiry."""
        if holder is Holder.expired_share:
            row = await self.share_row(target, "expired_share")
            assert row is not None and row["expires_at"] < utc_now(), row


ACCOUNTS = (
    "owner",
    "admin_share",
    "write_share",
    "read_share",
    "expired_share",
    "visitor",
    "tag_holder",
    "platform_admin",
    "stranger",
    "other_tenant",
    "spare",
    "newcomer",
)


def module_settings(server: DatabaseServer, inbox: Inbox, data_dir: Path) -> Settings:
    """The values of tests/conftest.py's `make_settings`, for a module-wide app."""
    return Settings(
        env="test",
        mongodb_url=server.url,
        control_db=f"quarry_test_{uuid.uuid4().hex[:12]}",
        data_dir=data_dir,
        mongodb_timeout_ms=1000,
        retry_after_seconds=3,
        public_url="http://testserver",
        smtp_host="127.0.0.1",
        smtp_port=inbox.port,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
        **QUIET_SETTINGS,
    )


async def build_world(app: FastAPI, http: httpx.AsyncClient, inbox: Inbox) -> World:
    accounts = {name: await register_account(http, inbox) for name in ACCOUNTS}
    user_ids = {name: await user_id_of(http, account) for name, account in accounts.items()}
    await make_platform_admin(app, user_ids["platform_admin"])
    other_key = await api_key(http, accounts["other_tenant"])
    holders = {
        Holder.owner: "owner",
        Holder.admin_share: "admin_share",
        Holder.write_share: "write_share",
        Holder.read_share: "read_share",
        Holder.expired_share: "expired_share",
        Holder.public: "visitor",
        Holder.tag: "tag_holder",
        Holder.platform_admin: "platform_admin",
        Holder.none: "stranger",
        Holder.other_tenant_key: "other_tenant",
    }
    headers = {holder: accounts[name].bearer for holder, name in holders.items()}
    headers[Holder.other_tenant_key] = {"Authorization": f"Api-Key {other_key}"}
    admin = headers[Holder.platform_admin]
    tag_ids = {
        name: (await create_tag(http, admin, name=name))["id"] for name in (READER_TAG, EXTRA_TAG)
    }
    acquired = await http.post(
        "/api/v1/tags/acquire", json={"tag_name": READER_TAG}, headers=headers[Holder.tag]
    )
    assert acquired.status_code == 200, acquired.text
    world = World(app, http, accounts, user_ids, holders, headers, tag_ids)
    world.targets = {
        "private": await world.build_target(public=False),
        "public": await world.build_target(public=True),
    }
    return world


@pytest.fixture(scope="module")
async def world(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: MongoClient[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[World]:
    before = set(sync_client.list_database_names())
    settings = module_settings(
        database_server, smtp_server, tmp_path_factory.mktemp("matrix") / "data"
    )
    application = create_app(settings)
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    try:
        async with (
            running(application, database_server),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
        ):
            yield await build_world(application, http, smtp_server)
    finally:
        for name in set(sync_client.list_database_names()) - before - SYSTEM_DATABASES:
            sync_client.drop_database(name)


# ---------------------------------------------------------------- the endpoints

PathValues = dict[str, str]
Prepare = Callable[[World, Target], Awaitable[PathValues]]
Body = Callable[[World, Target], Any]


async def nothing_to_prepare(world: World, target: Target) -> PathValues:
    return {}


async def extra_tag_on_dataset(world: World, target: Target) -> PathValues:
    """The tag that DELETE …/tags/{tag_id} takes off is on the dataset."""
    await tag_dataset(world.http, world.owner, target.dataset_id, EXTRA_TAG)
    return {"tag_id": world.tag_ids[EXTRA_TAG]}


async def newcomer_not_shared(world: World, target: Target) -> PathValues:
    """POST …/shares can share with the newcomer: no share of theirs is left."""
    row = await world.share_row(target, "newcomer")
    if row is not None:
        revoked = await world.http.delete(
            f"/api/v1/datasets/{target.dataset_id}/shares/{row['_id']}", headers=world.owner
        )
        assert revoked.status_code == 204, revoked.text
    return {}


async def spare_share(world: World, target: Target) -> PathValues:
    """The share PATCH/DELETE …/shares/{share_id} change exists (made again if revoked)."""
    row = await world.share_row(target, "spare")
    if row is None:
        made = await share(
            world.http, world.owner, target.dataset_id, user_id=str(world.user_ids["spare"])
        )
        return {"share_id": made["id"]}
    return {"share_id": str(row["_id"])}


async def drop_entry_linked(world: World, target: Target) -> PathValues:
    """The item DELETE …/items removes is linked (again)."""
    linked = await world.http.post(
        f"/api/v1/datasets/{target.dataset_id}/items",
        json={"entry_ids": [target.drop_entry]},
        headers=world.owner,
    )
    assert linked.status_code == 200, linked.text
    return {}


async def owners_column(world: World, target: Target) -> PathValues:
    """The column DELETE /columns/{column_id} removes (declared by the owner)."""
    made = await world.http.post(
        COLUMNS,
        json={"dataset": target.dataset_id, "name": f"c{uuid.uuid4().hex[:8]}", "dtype": "int"},
        headers=world.owner,
    )
    assert made.status_code == 201, made.text
    return {"column_id": made.json()["data"]["id"]}


def a_row(world: World, target: Target) -> dict[str, Any]:
    """A row at a timestamp no other case used."""
    return {"timestamp": uuid.uuid4().int % 10**12, "values": {"v": 1}}


@dataclass(frozen=True)
class Endpoint:
    needs: Level
    served: int
    body: Body | None = None
    prepare: Prepare = nothing_to_prepare
    #: The URL, when the dataset is not in the route's path (rows, columns).
    url: str | None = None
    #: What an unreadable dataset answers (a column names no dataset in its URL).
    not_found: ErrorCode = ErrorCode.DATASET_NOT_FOUND
    #: Server-Sent Events: only its refusals are cases here (an open stream does not
    #: end); tests/data_api/rows/test_rows_stream.py serves it to a read share.
    streams: bool = False
    #: DELETE of the dataset: each case gets a dataset of its own.
    destroys_dataset: bool = False
    #: Access check: answers 200 to everyone, `has_access` says the rest.
    always_answers: bool = False


ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", DATASET): Endpoint(Level.read, 200),
    ("PATCH", DATASET): Endpoint(
        Level.admin, 200, body=lambda w, t: {"description": "changed by the matrix"}
    ),
    ("PUT", DATASET): Endpoint(
        Level.admin,
        200,
        body=lambda w, t: {"name": "matrix", "description": "replaced", "metadata": {"k": 1}},
    ),
    ("DELETE", DATASET): Endpoint(Level.owner, 204, destroys_dataset=True),
    ("PATCH", f"{DATASET}/metadata"): Endpoint(Level.admin, 200, body=lambda w, t: {"m": "x"}),
    ("PUT", f"{DATASET}/metadata"): Endpoint(Level.admin, 200, body=lambda w, t: {"m": "y"}),
    ("GET", f"{DATASET}/tags"): Endpoint(Level.read, 200),
    ("POST", f"{DATASET}/tags"): Endpoint(
        Level.admin, 200, body=lambda w, t: {"tag_name": EXTRA_TAG}
    ),
    ("DELETE", f"{DATASET}/tags/{{tag_id}}"): Endpoint(
        Level.admin, 204, prepare=extra_tag_on_dataset
    ),
    ("POST", f"{DATASET}/shares"): Endpoint(
        Level.admin,
        201,
        body=lambda w, t: {"user_id": str(w.user_ids["newcomer"]), "permission": "read"},
        prepare=newcomer_not_shared,
    ),
    ("GET", f"{DATASET}/shares"): Endpoint(Level.admin, 200),
    ("PATCH", f"{DATASET}/shares/{{share_id}}"): Endpoint(
        Level.admin, 200, body=lambda w, t: {"permission": "write"}, prepare=spare_share
    ),
    ("DELETE", f"{DATASET}/shares/{{share_id}}"): Endpoint(Level.admin, 204, prepare=spare_share),
    ("POST", f"{DATASET}/items"): Endpoint(
        Level.write, 200, body=lambda w, t: {"entry_ids": [t.keep_entry]}
    ),
    ("GET", f"{DATASET}/items"): Endpoint(Level.read, 200),
    ("DELETE", f"{DATASET}/items"): Endpoint(
        Level.write, 200, body=lambda w, t: {"entry_ids": [t.drop_entry]}, prepare=drop_entry_linked
    ),
    ("POST", f"{DATASET}/subset"): Endpoint(
        Level.read, 201, body=lambda w, t: {"name": "matrix subset", "entry_ids": [t.keep_entry]}
    ),
    ("GET", f"{DATASET}/entries"): Endpoint(Level.read, 200),
    ("POST", f"{DATASET}/search"): Endpoint(Level.read, 200, body=lambda w, t: {"query": "x"}),
    ("POST", ACCESS_CHECK): Endpoint(
        Level.read, 200, body=lambda w, t: {"dataset_id": t.dataset_id}, always_answers=True
    ),
    ("GET", COLUMNS): Endpoint(Level.read, 200, url=COLUMNS + ON_DATASET),
    ("POST", COLUMNS): Endpoint(
        Level.write,
        201,
        body=lambda w, t: {
            "dataset": t.dataset_id,
            "name": f"c{uuid.uuid4().hex[:8]}",
            "dtype": "float",
        },
    ),
    ("DELETE", f"{COLUMNS}/{{column_id}}"): Endpoint(
        Level.write, 204, prepare=owners_column, not_found=ErrorCode.COLUMN_NOT_FOUND
    ),
    ("POST", ROWS): Endpoint(
        Level.write, 201, body=lambda w, t: {"dataset": t.dataset_id, **a_row(w, t)}
    ),
    ("POST", f"{ROWS}/bulk_insert"): Endpoint(
        Level.write, 200, body=lambda w, t: {"dataset": t.dataset_id, "rows": [a_row(w, t)]}
    ),
    ("GET", ROWS): Endpoint(Level.read, 200, url=ROWS + ON_DATASET),
    ("DELETE", ROWS): Endpoint(
        Level.write, 200, body=lambda w, t: {"dataset": t.dataset_id, "start": 0, "end": 1000}
    ),
    ("GET", f"{ROWS}/bulk_download"): Endpoint(
        Level.read, 200, url=f"{ROWS}/bulk_download{ON_DATASET}&output=csv"
    ),
    ("GET", f"{ROWS}/live"): Endpoint(Level.read, 200, url=f"{ROWS}/live{ON_DATASET}"),
    ("GET", f"{ROWS}/stream"): Endpoint(
        Level.read, 200, url=f"{ROWS}/stream{ON_DATASET}", streams=True
    ),
    ("GET", f"{ROWS}/aggregate"): Endpoint(
        Level.read, 200, url=f"{ROWS}/aggregate{ON_DATASET}&bucket=1h&agg=avg"
    ),
}


def outcome(endpoint: Endpoint, holder: Holder) -> str:
    level = LEVELS[holder]
    if endpoint.always_answers:
        return "answered"
    if level is Level.none:
        return "not found"
    return "served" if level >= endpoint.needs else "forbidden"


def cases(wanted: str) -> list[Any]:
    return [
        pytest.param(method, path, holder, id=f"{method} {path} as {holder.value}")
        for (method, path), endpoint in ENDPOINTS.items()
        for holder in Holder
        if outcome(endpoint, holder) == wanted and not (endpoint.streams and wanted == "served")
    ]


@dataclass
class Sent:
    response: httpx.Response
    #: The owners whose tenant data the snapshot covers, and the snapshot.
    owners: list[ObjectId]
    before: dict[str, list[Any]]

    async def assert_nothing_changed(self, world: World) -> None:
        assert await stored_state(world.app, self.owners) == self.before


async def call(world: World, method: str, path: str, holder: Holder) -> Sent:
    """Arrange the case, snapshot the stored state (the catalogue, and the tenant data
    of the owner and of the caller), then send it."""
    endpoint = ENDPOINTS[(method, path)]
    if endpoint.destroys_dataset:
        target = await world.build_target(public=holder is Holder.public)
    else:
        target = world.target_for(holder)
    await world.assert_still_held(holder, target)
    values = await endpoint.prepare(world, target)
    url = (endpoint.url or path).format(dataset_id=target.dataset_id, **values)
    body = endpoint.body(world, target) if endpoint.body else None
    owners = list(dict.fromkeys([world.user_ids["owner"], world.caller_id(holder)]))
    before = await stored_state(world.app, owners)
    response = await world.http.request(method, url, json=body, headers=world.headers[holder])
    return Sent(response, owners, before)


# ---------------------------------------------------------------- the tests


def dataset_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route on one dataset, and of the access check."""
    found: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and (
            context.path.startswith((DATASET, ROWS, COLUMNS)) or context.path == ACCESS_CHECK
        ):
            found |= {(method, context.path) for method in context.methods or ()}
    return found


async def test_the_matrix_names_every_dataset_endpoint_of_the_app(world: World) -> None:
    assert dataset_routes(world.app) == set(ENDPOINTS)


@pytest.mark.parametrize(("method", "path", "holder"), cases("served"))
async def test_a_caller_with_the_level_needed_is_served(
    world: World, method: str, path: str, holder: Holder
) -> None:
    response = (await call(world, method, path, holder)).response
    assert response.status_code == ENDPOINTS[(method, path)].served, response.text
    if response.status_code == 204 or not response.headers["content-type"].startswith(
        "application/json"
    ):
        return  # no body, or rows as a file (CSV, NDJSON)
    assert response.json()["success"] is True
    data = response.json().get("data")
    if isinstance(data, dict) and "user_permission" in data:  # an answer with a dataset
        mine = path.endswith("/subset")  # the subset is a new dataset of the caller's
        assert data["user_permission"] == ("owner" if mine else LEVELS[holder].name)


@pytest.mark.parametrize(("method", "path", "holder"), cases("forbidden"))
async def test_a_caller_below_the_level_needed_is_forbidden_and_nothing_changes(
    world: World, method: str, path: str, holder: Holder
) -> None:
    sent = await call(world, method, path, holder)
    body = assert_envelope(sent.response, 403, ErrorCode.INSUFFICIENT_PERMISSION)
    assert ENDPOINTS[(method, path)].needs.name in body["message"]
    await sent.assert_nothing_changed(world)


@pytest.mark.parametrize(("method", "path", "holder"), cases("not found"))
async def test_a_caller_without_any_level_is_told_not_found_and_nothing_changes(
    world: World, method: str, path: str, holder: Holder
) -> None:
    sent = await call(world, method, path, holder)
    assert_envelope(sent.response, 404, ENDPOINTS[(method, path)].not_found)
    await sent.assert_nothing_changed(world)


@pytest.mark.parametrize(("method", "path", "holder"), cases("answered"))
async def test_the_access_check_answers_everyone_with_has_access_by_level(
    world: World, method: str, path: str, holder: Holder
) -> None:
    sent = await call(world, method, path, holder)
    assert sent.response.status_code == 200, sent.response.text
    level = LEVELS[holder]
    data = sent.response.json()["data"]
    assert data["has_access"] is (level >= Level.read)
    if level is Level.none:
        assert data == {
            "has_access": False,
            "is_owner": False,
            "permission": None,
            "matching_tags": [],
        }
    else:
        assert data["permission"] == level.name
        assert data["is_owner"] is (holder is Holder.owner)
        assert data["matching_tags"] == ([READER_TAG] if holder is Holder.tag else [])
    await sent.assert_nothing_changed(world)


@pytest.mark.parametrize(
    ("holder", "status"),
    [(Holder.admin_share, 200), (Holder.read_share, 403), (Holder.none, 404)],
    ids=lambda value: str(getattr(value, "value", value)),
)
async def test_an_api_key_acts_with_its_users_level(
    world: World, holder: Holder, status: int
) -> None:
    key = await api_key(world.http, world.accounts[world.holders[holder]])
    target = world.target_for(holder)
    response = await world.http.patch(
        f"/api/v1/datasets/{target.dataset_id}",
        json={"description": "changed with a key"},
        headers={"X-API-Key": key},
    )
    assert response.status_code == status, response.text
