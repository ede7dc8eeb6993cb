"""The permission matrix of entries: every entry endpoint by every way of holding
access to the entry's home dataset (`spec/entries.md`, `spec/datasets.md`
Permissions and Items).

Uploading, renaming and deleting need `write` on the home dataset; reading
(the record, the bytes, the text, the batches, a dataset's list) needs `read`
on it — or on a dataset with ACL override that links the entry, a read that is
audited. With no level an entry is a 404 ENTRY_NOT_FOUND (a dataset-addressed
call: DATASET_NOT_FOUND; the batch of texts lists it as missing), below the
level needed a 403 INSUFFICIENT_PERMISSION; refusals leave the stored state as
it was. The cases come from two tables, `ENDPOINTS` and `LEVELS` (the ways of
holding access, as in tests/data_api/datasets/test_permissions.py), and the
first test proves `ENDPOINTS` names every entry route of the app.

One module-wide world (an app, eleven accounts, a private and a public dataset
of the owner, each with an entry) serves every case; a DELETE case deletes an
entry uploaded for it. Entries the matrix uploads are bytes of no text type, so
no extraction changes the stored state while a case snapshots it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from app.clock import utc_now
from app.errors import ErrorCode
from app.wiring import state_of
from data_api.datasets.access import Level
from tests.fixtures.accounts import Account, register_account
from tests.fixtures.datasets import (
    DATASETS,
    create_dataset,
    create_tag,
    from_now,
    make_platform_admin,
    rows,
    share,
    tag_dataset,
    user_id_of,
)
from tests.fixtures.documents import api_key
from tests.fixtures.engine import DatabaseServer
from tests.fixtures.entries import (
    ENTRIES,
    MULTIPART,
    NO_TRACES,
    Stored,
    Sync,
    download,
    file,
    form_field,
    module_app,
    module_settings,
    multipart_body,
    upload_one,
    wait_for_text,
)
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.mailbox import Inbox

ENTRY = f"{ENTRIES}/{{entry_id}}"
DATASET_ENTRIES = f"{DATASETS}/{{dataset_id}}/entries"
READER_TAG = "entries-matrix-readers"
#: Bytes of no text type: an entry the matrix uploads is never extracted.
BINARY = b"\x00\x01\x02\x03\xfe\xff"
KEEP_TEXT = "the entry every read of the matrix reads"


class Holder(StrEnum):
    """The ways a caller can stand towards the home dataset of an entry."""

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
)
HOLDER_ACCOUNTS = dict(zip(Holder, ACCOUNTS, strict=True))


# ---------------------------------------------------------------- the world


@dataclass
class Target:
    """A dataset of the owner and an entry homed in it (text extracted)."""

    dataset_id: str
    entry_id: str


@dataclass
class World:
    app: FastAPI
    http: httpx.AsyncClient
    inbox: Inbox
    sync: Sync
    accounts: dict[str, Account]
    user_ids: dict[str, ObjectId]
    headers: dict[Holder, dict[str, str]]
    targets: dict[str, Target] = field(default_factory=dict)

    @property
    def owner(self) -> dict[str, str]:
        return self.headers[Holder.owner]

    def stored(self, user: str | ObjectId) -> Stored:
        user_id = self.user_ids[user] if isinstance(user, str) else user
        return Stored(self.sync, state_of(self.app).settings.control_db, user_id)

    def caller_id(self, holder: Holder) -> ObjectId:
        return self.user_ids[HOLDER_ACCOUNTS[holder]]

    def target_for(self, holder: Holder) -> Target:
        return self.targets["public" if holder is Holder.public else "private"]

    async def build_target(self, *, public: bool) -> Target:
        """A dataset held in every way of `Holder` but the public flag — or, when
        `public`, only by it — with a text entry whose text is extracted."""
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
        entry = await upload_one(self.http, self.owner, dataset_id, "keep.txt", KEEP_TEXT.encode())
        done = await wait_for_text(self.http, self.owner, entry["id"])
        assert done["text_status"] == "done", done
        # Its extraction job goes just after: gone before any case snapshots the catalogue.
        deadline = time.monotonic() + 30
        while self.stored("owner").job(entry["id"]) is not None:
            assert time.monotonic() < deadline, "the extraction job stays"
            await asyncio.sleep(0.05)
        return Target(dataset_id=dataset_id, entry_id=entry["id"])

    async def fresh_entry(self, target: Target) -> str:
        entry = await upload_one(self.http, self.owner, target.dataset_id, "doomed.bin", BINARY)
        return str(entry["id"])

    async def user(self) -> tuple[Account, ObjectId]:
        account = await register_account(self.http, self.inbox)
        return account, await user_id_of(self.http, account)


async def build_world(app: FastAPI, http: httpx.AsyncClient, inbox: Inbox, sync: Sync) -> World:
    accounts = {name: await register_account(http, inbox) for name in ACCOUNTS}
    user_ids = {name: await user_id_of(http, account) for name, account in accounts.items()}
    await make_platform_admin(app, user_ids["platform_admin"])
    headers = {holder: accounts[name].bearer for holder, name in HOLDER_ACCOUNTS.items()}
    key = await api_key(http, accounts["other_tenant"])
    headers[Holder.other_tenant_key] = {"Authorization": f"Api-Key {key}"}
    await create_tag(http, headers[Holder.platform_admin], name=READER_TAG)
    acquired = await http.post(
        "/api/v1/tags/acquire", json={"tag_name": READER_TAG}, headers=headers[Holder.tag]
    )
    assert acquired.status_code == 200, acquired.text
    world = World(app, http, inbox, sync, accounts, user_ids, headers)
    world.targets = {
        "private": await world.build_target(public=False),
        "public": await world.build_target(public=True),
    }
    # The other tenant has entries of its own (its tenant database exists).
    theirs = await create_dataset(http, accounts["other_tenant"].bearer, name="theirs")
    await upload_one(http, accounts["other_tenant"].bearer, theirs["id"], "t.bin", BINARY)
    return world


@pytest.fixture(scope="module")
async def world(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[World]:
    settings = module_settings(
        database_server, smtp_server, tmp_path_factory.mktemp("entries-matrix") / "data"
    )
    async with module_app(database_server, sync_client, settings) as (app, http):
        yield await build_world(app, http, smtp_server, sync_client)


# ---------------------------------------------------------------- the endpoints

#: The request of a case: keyword arguments of `httpx.AsyncClient.request`.
Build = Callable[[World, Target, str], dict[str, Any]]


def no_body(world: World, target: Target, entry_id: str) -> dict[str, Any]:
    return {}


def upload_body(world: World, target: Target, entry_id: str) -> dict[str, Any]:
    parts = [form_field("dataset_id", target.dataset_id), file("matrix.bin", BINARY)]
    return {"content": multipart_body(parts), "headers": {"Content-Type": MULTIPART}}


@dataclass(frozen=True)
class Endpoint:
    needs: Level
    served: int
    build: Build = no_body
    #: Addressed by its dataset: no level is DATASET_NOT_FOUND, not ENTRY_NOT_FOUND.
    by_dataset: bool = False
    #: DELETE: each case deletes an entry of its own.
    destroys_entry: bool = False
    #: The batch of texts: an unreadable entry is listed as missing, not refused.
    lists_missing: bool = False


ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("POST", ENTRIES): Endpoint(Level.write, 201, build=upload_body, by_dataset=True),
    ("GET", ENTRY): Endpoint(Level.read, 200),
    ("PATCH", ENTRY): Endpoint(
        Level.write, 200, build=lambda w, t, e: {"json": {"metadata": {"touched": True}}}
    ),
    ("DELETE", ENTRY): Endpoint(Level.write, 204, destroys_entry=True),
    ("GET", f"{ENTRY}/download"): Endpoint(Level.read, 200),
    ("GET", f"{ENTRY}/text"): Endpoint(Level.read, 200),
    ("POST", f"{ENTRIES}/batch"): Endpoint(
        Level.read,
        200,
        build=lambda w, t, e: {"json": {"dataset_id": t.dataset_id, "ids": [e]}},
        by_dataset=True,
    ),
    ("POST", f"{ENTRIES}/batch/content"): Endpoint(
        Level.read, 200, build=lambda w, t, e: {"json": {"ids": [e]}}, lists_missing=True
    ),
    ("GET", DATASET_ENTRIES): Endpoint(Level.read, 200, by_dataset=True),
}


def outcome(endpoint: Endpoint, holder: Holder) -> str:
    level = LEVELS[holder]
    if level is Level.none:
        return "listed missing" if endpoint.lists_missing else "not found"
    return "served" if level >= endpoint.needs else "forbidden"


def cases(wanted: str) -> list[Any]:
    return [
        pytest.param(method, path, holder, id=f"{method} {path} as {holder.value}")
        for (method, path), endpoint in ENDPOINTS.items()
        for holder in Holder
        if outcome(endpoint, holder) == wanted
    ]


def snapshot(world: World, owners: list[ObjectId]) -> dict[str, Any]:
    """The catalogue rows entries keep, and the entry data of these owners."""
    control = world.sync[state_of(world.app).settings.control_db]
    state: dict[str, Any] = {
        name: sorted(control[name].find(), key=lambda row: str(row["_id"]))
        for name in ("entry_homes", "uploads", "extraction_jobs", "datasets", "shares")
    }
    for owner_id in owners:
        tenant = world.stored(owner_id).tenant
        for name in ("entries", "entries.files", "entries.chunks", "entry_texts", "items"):
            found = sorted(tenant[name].find(), key=lambda row: str(row["_id"]))
            state[f"{owner_id}.{name}"] = found
    return state


@dataclass
class Sent:
    response: httpx.Response
    target: Target
    entry_id: str
    owners: list[ObjectId]
    before: dict[str, Any]

    def assert_nothing_changed(self, world: World) -> None:
        assert snapshot(world, self.owners) == self.before


async def call(world: World, method: str, path: str, holder: Holder) -> Sent:
    """Arrange the case, snapshot the stored state (of the owner and of the caller),
    then send it."""
    endpoint = ENDPOINTS[(method, path)]
    target = world.target_for(holder)
    entry_id = await world.fresh_entry(target) if endpoint.destroys_entry else target.entry_id
    url = path.format(entry_id=entry_id, dataset_id=target.dataset_id)
    request = endpoint.build(world, target, entry_id)
    headers = {**world.headers[holder], **request.pop("headers", {})}
    owners = list(dict.fromkeys([world.user_ids["owner"], world.caller_id(holder)]))
    before = snapshot(world, owners)
    response = await world.http.request(method, url, headers=headers, **request)
    return Sent(response, target, entry_id, owners, before)


# ---------------------------------------------------------------- the matrix


def entry_routes(app: FastAPI) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):
        path = context.path
        if isinstance(context.original_route, APIRoute) and (
            path.startswith(ENTRIES) or path == DATASET_ENTRIES
        ):
            found |= {(method, path) for method in context.methods or ()}
    return found


async def test_the_matrix_names_every_entry_endpoint_of_the_app(world: World) -> None:
    assert entry_routes(world.app) == set(ENDPOINTS)


async def assert_served(world: World, method: str, path: str, holder: Holder, sent: Sent) -> None:
    """What a served call did, by endpoint."""
    response, target, caller = sent.response, sent.target, world.caller_id(holder)
    owner_stored = world.stored("owner")
    if (method, path) == ("POST", ENTRIES):
        entry = response.json()["data"]
        assert entry["dataset_id"] == target.dataset_id
        record = owner_stored.entry(entry["id"])  # in the owner's tenant, whoever uploads
        assert record is not None and record["created_by"] == caller
    elif (method, path) == ("PATCH", ENTRY):
        record = owner_stored.entry(target.entry_id)
        assert record is not None and record["metadata"]["touched"] is True
    elif method == "DELETE":
        assert owner_stored.traces(sent.entry_id) == NO_TRACES
    elif path.endswith("/download"):
        assert response.content == KEEP_TEXT.encode()
    elif path.endswith("/text"):
        assert response.text == KEEP_TEXT
    elif path.endswith("/batch/content"):
        assert [d["text"] for d in response.json()["data"]] == [KEEP_TEXT]
    elif path.endswith("/batch") or path == DATASET_ENTRIES:
        assert target.entry_id in [e["id"] for e in response.json()["data"]]
    else:
        assert response.json()["data"]["id"] == target.entry_id


@pytest.mark.parametrize(("method", "path", "holder"), cases("served"))
async def test_a_caller_with_the_level_needed_is_served(
    world: World, method: str, path: str, holder: Holder
) -> None:
    sent = await call(world, method, path, holder)
    assert sent.response.status_code == ENDPOINTS[(method, path)].served, sent.response.text
    await assert_served(world, method, path, holder, sent)


@pytest.mark.parametrize(("method", "path", "holder"), cases("forbidden"))
async def test_a_reader_is_forbidden_to_write_and_nothing_changes(
    world: World, method: str, path: str, holder: Holder
) -> None:
    sent = await call(world, method, path, holder)
    body = assert_envelope(sent.response, 403, ErrorCode.INSUFFICIENT_PERMISSION)
    assert "write" in body["message"]
    sent.assert_nothing_changed(world)


@pytest.mark.parametrize(("method", "path", "holder"), cases("not found"))
async def test_a_caller_without_any_level_is_told_not_found_and_nothing_changes(
    world: World, method: str, path: str, holder: Holder
) -> None:
    sent = await call(world, method, path, holder)
    endpoint = ENDPOINTS[(method, path)]
    code = ErrorCode.DATASET_NOT_FOUND if endpoint.by_dataset else ErrorCode.ENTRY_NOT_FOUND
    assert_envelope(sent.response, 404, code)
    sent.assert_nothing_changed(world)


@pytest.mark.parametrize(("method", "path", "holder"), cases("listed missing"))
async def test_the_batch_of_texts_lists_an_entry_without_access_as_missing(
    world: World, method: str, path: str, holder: Holder
) -> None:
    sent = await call(world, method, path, holder)
    assert sent.response.status_code == 200, sent.response.text
    body = sent.response.json()
    assert (body["data"], body["missing_ids"]) == ([], [sent.entry_id])
    sent.assert_nothing_changed(world)


# ---------------------------------------------------------------- other tenants and ids


async def test_another_tenants_entry_ids_are_missing_from_a_batch_of_ones_own_dataset(
    world: World,
) -> None:
    stranger = world.accounts["stranger"]
    own = await create_dataset(world.http, stranger.bearer, name="own")
    mine = await upload_one(world.http, stranger.bearer, own["id"], "mine.bin", BINARY)
    foreign = world.targets["private"].entry_id
    response = await world.http.post(
        f"{ENTRIES}/batch",
        json={"dataset_id": own["id"], "ids": [foreign, mine["id"]]},
        headers=stranger.bearer,
    )
    assert response.status_code == 200, response.text
    assert [e["id"] for e in response.json()["data"]] == [mine["id"]]
    assert response.json()["missing_ids"] == [foreign]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", f"{ENTRIES}/not-an-id", {}),
        ("PATCH", f"{ENTRIES}/not-an-id", {"json": {"name": "x"}}),
        ("DELETE", f"{ENTRIES}/not-an-id", {}),
        ("GET", f"{ENTRIES}/not-an-id/download", {}),
        ("GET", f"{ENTRIES}/0123456789abcdef0123456/text", {}),
        ("GET", f"{DATASETS}/not-an-id/entries", {}),
        ("POST", f"{ENTRIES}/batch", {"json": {"dataset_id": "not-an-id"}}),
        (
            "POST",
            ENTRIES,
            {
                "content": multipart_body(
                    [form_field("dataset_id", "not-an-id"), file("a.bin", BINARY)]
                ),
                "headers": {"Content-Type": MULTIPART},
            },
        ),
    ],
    ids=["get", "patch", "delete", "download", "text", "list", "batch", "upload"],
)
async def test_a_malformed_id_is_422_invalid_id(
    world: World, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    kwargs = dict(kwargs)
    headers = {**world.owner, **kwargs.pop("headers", {})}
    response = await world.http.request(method, path, headers=headers, **kwargs)
    assert_envelope(response, 422, ErrorCode.INVALID_ID)


async def test_a_malformed_id_in_a_batch_of_texts_is_listed_missing(world: World) -> None:
    response = await world.http.post(
        f"{ENTRIES}/batch/content", json={"ids": ["not-an-id"]}, headers=world.owner
    )
    assert response.status_code == 200, response.text
    assert response.json()["missing_ids"] == ["not-an-id"]


# ---------------------------------------------------------------- ACL override


@dataclass
class Curated:
    """A curator's `private_home` (homing `entry`) and `curated` dataset linking
    it; the reader holds a read share on `curated` only."""

    curator: Account
    reader: Account
    reader_id: ObjectId
    private_home: str
    curated: str
    entry: str
    data: bytes


Curate = Callable[..., Awaitable[Curated]]


@pytest.fixture
def curate(world: World) -> Curate:
    async def factory(*, override: bool) -> Curated:
        curator, _ = await world.user()
        reader, reader_id = await world.user()
        home = (await create_dataset(world.http, curator.bearer, name="private home"))["id"]
        data = b"homed where the reader cannot read"
        entry = await upload_one(world.http, curator.bearer, home, "closed.txt", data)
        await wait_for_text(world.http, curator.bearer, entry["id"])
        curated = await create_dataset(
            world.http,
            curator.bearer,
            name="curated",
            entry_ids=[entry["id"]],
            acl_override_enabled=override,
        )
        await share(world.http, curator.bearer, curated["id"], user_id=str(reader_id))
        return Curated(curator, reader, reader_id, home, curated["id"], entry["id"], data)

    return factory


async def override_reads(world: World, curated: Curated) -> list[Any]:
    found = await rows(world.app, "audit_log", {"action": "entries.read_through_acl_override"})
    return [r for r in found if r["actor_user_id"] == curated.reader_id]


async def test_through_the_acl_override_a_reader_gets_and_downloads_an_entry_and_it_is_audited(
    world: World, curate: Curate
) -> None:
    curated = await curate(override=True)
    reader = curated.reader.bearer
    response = await world.http.get(f"{ENTRIES}/{curated.entry}", headers=reader)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["dataset_id"] == curated.private_home
    [record] = await override_reads(world, curated)
    assert record["dataset_id"] == ObjectId(curated.curated)
    assert record["details"]["entry_ids"] == [curated.entry]
    got = await download(world.http, reader, curated.entry)
    assert got.status_code == 200 and got.content == curated.data
    text = await world.http.get(f"{ENTRIES}/{curated.entry}/text", headers=reader)
    assert text.status_code == 200 and text.text == curated.data.decode()
    assert len(await override_reads(world, curated)) == 3


async def test_through_the_acl_override_a_batch_lists_the_entry_and_audits_it(
    world: World, curate: Curate
) -> None:
    curated = await curate(override=True)
    response = await world.http.post(
        f"{ENTRIES}/batch", json={"dataset_id": curated.curated}, headers=curated.reader.bearer
    )
    assert response.status_code == 200, response.text
    assert [e["id"] for e in response.json()["data"]] == [curated.entry]
    [record] = await override_reads(world, curated)
    assert record["details"]["entry_ids"] == [curated.entry]


async def test_through_the_acl_override_a_reader_still_cannot_change_the_entry(
    world: World, curate: Curate
) -> None:
    curated = await curate(override=True)
    reader = curated.reader.bearer
    patched = await world.http.patch(
        f"{ENTRIES}/{curated.entry}", json={"name": "mine"}, headers=reader
    )
    assert_envelope(patched, 403, ErrorCode.INSUFFICIENT_PERMISSION)
    deleted = await world.http.delete(f"{ENTRIES}/{curated.entry}", headers=reader)
    assert_envelope(deleted, 403, ErrorCode.INSUFFICIENT_PERMISSION)
    record = world.stored(await user_id_of(world.http, curated.curator)).entry(curated.entry)
    assert record is not None and record["name"] == "closed.txt"


async def test_without_the_acl_override_the_linked_entry_is_not_found_for_the_reader(
    world: World, curate: Curate
) -> None:
    curated = await curate(override=False)
    reader = curated.reader.bearer
    for path in ("", "/download", "/text"):
        response = await world.http.get(f"{ENTRIES}/{curated.entry}{path}", headers=reader)
        assert_envelope(response, 404, ErrorCode.ENTRY_NOT_FOUND)
    found = await world.http.post(
        f"{ENTRIES}/batch",
        json={"dataset_id": curated.curated, "ids": [curated.entry]},
        headers=reader,
    )
    assert found.status_code == 200, found.text
    assert (found.json()["data"], found.json()["missing_ids"]) == ([], [curated.entry])
    listed = await world.http.get(f"{DATASETS}/{curated.private_home}/entries", headers=reader)
    assert_envelope(listed, 404, ErrorCode.DATASET_NOT_FOUND)
    assert await override_reads(world, curated) == []
