"""Who finds what (`spec/entries.md`, "Keyword search"; `spec/datasets.md`,
"Permissions", "Items and subsets"): access is decided from the catalogue at query
time, so a share, a tag, a public flag or the ACL override counts from the next
search, and a lost share, a deleted entry or a deleted or expired dataset is gone
from the next search — checked here with the indexer stopped, so the answer cannot
be the index catching up. Each test makes its own users and data in a module app;
each uses a word of its own, so other tests' data cannot match."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI

from app.clock import utc_now
from app.errors import ErrorCode
from app.wiring import state_of
from tests.fixtures.accounts import Account, register_account
from tests.fixtures.datasets import (
    DATASETS,
    create_dataset,
    make_platform_admin,
    rows,
    share,
    tag_dataset,
    user_id_of,
)
from tests.fixtures.engine import DatabaseServer
from tests.fixtures.entries import Sync, module_app, module_settings, upload_texts
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.mailbox import Inbox
from tests.fixtures.search import (
    delete_entry,
    found,
    ids,
    indexing_paused,
    search,
    upload_searchable,
    wait_until_searchable,
)

OVERRIDE_READ = "search.read_through_acl_override"


@dataclass
class Served:
    app: FastAPI
    http: httpx.AsyncClient
    smtp: Inbox


@pytest.fixture(scope="module")
async def served(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Served]:
    settings = module_settings(database_server, smtp_server, tmp_path_factory.mktemp("access"))
    async with module_app(database_server, sync_client, settings) as (app, http):
        yield Served(app, http, smtp_server)


@pytest.fixture
def app(served: Served) -> FastAPI:
    return served.app


@pytest.fixture
def http(served: Served) -> httpx.AsyncClient:
    return served.http


@pytest.fixture
def person(served: Served) -> Callable[[], Awaitable[Account]]:
    """Register a new, verified, logged-in user."""

    async def factory() -> Account:
        return await register_account(served.http, served.smtp)

    return factory


@pytest.fixture
def word() -> str:
    """A word no other test's data contains."""
    return f"w{uuid.uuid4().hex[:10]}"


@dataclass
class Owned:
    """A dataset of `owner` holding one searchable entry with the test's word."""

    owner: Account
    dataset: str
    entry: str


@pytest.fixture
def owned(
    http: httpx.AsyncClient, person: Callable[[], Awaitable[Account]], word: str
) -> Callable[..., Awaitable[Owned]]:
    async def factory(owner: Account | None = None, **dataset_fields: Any) -> Owned:
        owner = owner or await person()
        dataset = (await create_dataset(http, owner.bearer, **dataset_fields))["id"]
        [entry] = await upload_searchable(
            http, owner.bearer, dataset, {f"{uuid.uuid4().hex[:8]}.txt": f"{word} report"}
        )
        return Owned(owner, dataset, entry)

    return factory


OwnedFactory = Callable[..., Awaitable[Owned]]
PersonFactory = Callable[[], Awaitable[Account]]


async def finds(http: httpx.AsyncClient, reader: Account, word: str, **options: Any) -> list[str]:
    return await found(http, reader.bearer, word, **options)


# ---------------------------------------------------------------- datasets


async def test_another_users_private_dataset_is_not_searched(
    http: httpx.AsyncClient, owned: OwnedFactory, person: PersonFactory, word: str
) -> None:
    data, reader = await owned(), await person()
    assert await finds(http, data.owner, word) == [data.entry]
    response = await search(http, reader.bearer, word)
    assert ids(response) == []
    assert response.json()["pagination"]["total_items"] == 0
    scoped = await search(http, reader.bearer, word, scope=data.dataset)
    assert_envelope(scoped, 404, ErrorCode.DATASET_NOT_FOUND)


async def test_a_read_share_makes_the_dataset_searchable(
    http: httpx.AsyncClient, owned: OwnedFactory, person: PersonFactory, word: str
) -> None:
    data, reader = await owned(), await person()
    await share(http, data.owner.bearer, data.dataset, email=reader.email)
    response = await search(http, reader.bearer, word)
    assert ids(response) == [data.entry]
    assert response.json()["data"][0]["dataset_id"] == data.dataset
    assert await finds(http, reader, word, scope=data.dataset) == [data.entry]


async def test_a_deleted_share_hides_the_dataset_from_the_next_search(
    app: FastAPI, http: httpx.AsyncClient, owned: OwnedFactory, person: PersonFactory, word: str
) -> None:
    data, reader = await owned(), await person()
    granted = await share(http, data.owner.bearer, data.dataset, email=reader.email)
    assert await finds(http, reader, word) == [data.entry]
    async with indexing_paused(app):
        revoked = await http.delete(
            f"{DATASETS}/{data.dataset}/shares/{granted['id']}", headers=data.owner.bearer
        )
        assert revoked.status_code == 204, revoked.text
        response = await search(http, reader.bearer, word)
        assert ids(response) == []
        assert response.json()["pagination"]["total_items"] == 0
        scoped = await search(http, reader.bearer, word, scope=data.dataset)
        assert_envelope(scoped, 404, ErrorCode.DATASET_NOT_FOUND)


async def test_a_public_dataset_is_searched_by_everyone(
    http: httpx.AsyncClient, owned: OwnedFactory, person: PersonFactory, word: str
) -> None:
    data = await owned(is_public=True)
    for reader in (await person(), await person()):
        assert await finds(http, reader, word) == [data.entry]
        assert await finds(http, reader, word, scope=data.dataset) == [data.entry]


async def test_holding_one_of_the_datasets_tags_makes_it_searchable(
    http: httpx.AsyncClient, owned: OwnedFactory, person: PersonFactory, word: str
) -> None:
    data, reader = await owned(), await person()
    await tag_dataset(http, data.owner.bearer, data.dataset, "test")
    assert await finds(http, reader, word) == []
    acquired = await http.post(
        "/api/v1/tags/acquire", json={"tag_name": "test"}, headers=reader.bearer
    )
    assert acquired.status_code == 200, acquired.text
    assert await finds(http, reader, word) == [data.entry]


async def test_a_platform_admin_searches_every_dataset(
    app: FastAPI, http: httpx.AsyncClient, owned: OwnedFactory, person: PersonFactory, word: str
) -> None:
    data, admin = await owned(), await person()
    await make_platform_admin(app, await user_id_of(http, admin))
    assert await finds(http, admin, word) == [data.entry]


@dataclass
class TwoTenants:
    """A reader who finds `word` in entries of their own tenant and of a sharer's."""

    reader: Account
    word: str
    #: name → entry id
    entry: dict[str, str]


@pytest.fixture(scope="module")
async def two_tenants(served: Served) -> TwoTenants:
    http = served.http
    reader = await register_account(http, served.smtp)
    sharer = await register_account(http, served.smtp)
    own = (await create_dataset(http, reader.bearer))["id"]
    shared = (await create_dataset(http, sharer.bearer))["id"]
    await share(http, sharer.bearer, shared, email=reader.email)
    word = f"w{uuid.uuid4().hex[:10]}"
    # Every sort key alternates between the tenants; uploaded in created_at order.
    files = [
        (reader, own, "a.txt", f"{word} " + "!" * 30),
        (sharer, shared, "B.txt", f"{word} " + "!" * 10),
        (reader, own, "c.txt", f"{word} " + "!" * 40),
        (sharer, shared, "D.txt", f"{word} " + "!" * 20),
    ]
    entry = {}
    for account, dataset, name, text in files:
        [entry[name]] = await upload_texts(http, account.bearer, dataset, {name: text})
    await wait_until_searchable(http, reader.bearer, entry.values())
    return TwoTenants(reader, word, entry)


MERGED_ASCENDING = {
    "created_at": ["a.txt", "B.txt", "c.txt", "D.txt"],
    "name": ["a.txt", "B.txt", "c.txt", "D.txt"],
    "size": ["B.txt", "D.txt", "a.txt", "c.txt"],
}


@pytest.mark.parametrize("sort_order", ["asc", "desc"])
@pytest.mark.parametrize("sort_by", sorted(MERGED_ASCENDING))
async def test_hits_of_several_tenants_are_merged_in_sort_order(
    http: httpx.AsyncClient, two_tenants: TwoTenants, sort_by: str, sort_order: str
) -> None:
    ascending = [two_tenants.entry[name] for name in MERGED_ASCENDING[sort_by]]
    expected = ascending if sort_order == "asc" else ascending[::-1]
    reader, word = two_tenants.reader, two_tenants.word
    assert await finds(http, reader, word, sort_by=sort_by, sort_order=sort_order) == expected
    second_page = await search(
        http, reader.bearer, word, sort_by=sort_by, sort_order=sort_order, page=2, page_size=2
    )
    assert ids(second_page) == expected[2:]
    assert second_page.json()["pagination"]["total_items"] == 4


# ---------------------------------------------------------------- ACL override


@dataclass
class Curated:
    """`home` (the owner's, unreadable by the reader) holds the entry; `curated`
    (the owner's, shared read with the reader) links it."""

    home: Owned
    curated: str
    reader: Account
    reader_id: ObjectId


@pytest.fixture
def curated(
    http: httpx.AsyncClient, owned: OwnedFactory, person: PersonFactory
) -> Callable[[bool], Awaitable[Curated]]:
    async def factory(acl_override_enabled: bool) -> Curated:
        home, reader = await owned(), await person()
        curated = await create_dataset(
            http,
            home.owner.bearer,
            name="curated",
            acl_override_enabled=acl_override_enabled,
            entry_ids=[home.entry],
        )
        await share(http, home.owner.bearer, curated["id"], email=reader.email)
        return Curated(home, curated["id"], reader, await user_id_of(http, reader))

    return factory


async def override_reads(app: FastAPI, dataset_id: str) -> list[Any]:
    return [
        record
        for record in await rows(app, "audit_log", {"dataset_id": ObjectId(dataset_id)})
        if record["action"] == OVERRIDE_READ
    ]


async def test_through_the_acl_override_a_reader_finds_an_entry_of_an_unreadable_home(
    app: FastAPI, http: httpx.AsyncClient, curated: Callable[[bool], Awaitable[Curated]], word: str
) -> None:
    setup = await curated(True)
    response = await search(http, setup.reader.bearer, word, scope=setup.curated)
    assert ids(response) == [setup.home.entry]
    assert response.json()["data"][0]["dataset_id"] == setup.curated
    [record] = await override_reads(app, setup.curated)
    assert record["actor_user_id"] == setup.reader_id
    assert record["details"]["entry_ids"] == [setup.home.entry]


async def test_the_acl_override_reaches_the_global_search_too(
    app: FastAPI, http: httpx.AsyncClient, curated: Callable[[bool], Awaitable[Curated]], word: str
) -> None:
    setup = await curated(True)
    response = await search(http, setup.reader.bearer, word)
    assert ids(response) == [setup.home.entry]
    assert response.json()["data"][0]["dataset_id"] == setup.curated
    [record] = await override_reads(app, setup.curated)
    assert record["actor_user_id"] == setup.reader_id


async def test_without_the_acl_override_a_linked_entry_of_an_unreadable_home_is_not_found(
    app: FastAPI, http: httpx.AsyncClient, curated: Callable[[bool], Awaitable[Curated]], word: str
) -> None:
    setup = await curated(False)
    assert await finds(http, setup.reader, word, scope=setup.curated) == []
    assert await finds(http, setup.reader, word) == []
    # The owner reads the home, so they find it through the curated dataset.
    assert await finds(http, setup.home.owner, word, scope=setup.curated) == [setup.home.entry]
    assert await override_reads(app, setup.curated) == []


# ---------------------------------------------------------------- deletion


async def test_a_deleted_entry_is_gone_from_the_very_next_search(
    app: FastAPI, http: httpx.AsyncClient, owned: OwnedFactory, word: str
) -> None:
    data = await owned()
    [kept] = await upload_searchable(http, data.owner.bearer, data.dataset, {"kept.txt": word})
    async with indexing_paused(app):
        await delete_entry(http, data.owner.bearer, data.entry)
        for scope in (None, data.dataset):
            response = await search(http, data.owner.bearer, word, scope=scope)
            assert ids(response) == [kept]
            assert response.json()["pagination"]["total_items"] == 1


async def test_after_deleting_the_best_match_the_first_page_holds_the_next_best(
    app: FastAPI, http: httpx.AsyncClient, person: PersonFactory, word: str
) -> None:
    owner = await person()
    dataset = (await create_dataset(http, owner.bearer))["id"]
    best, second, third = await upload_searchable(
        http,
        owner.bearer,
        dataset,
        {
            "best.txt": f"{word} {word} {word} one two",
            "second.txt": f"{word} {word} one two three",
            "third.txt": f"{word} one two three four",
        },
    )
    assert await finds(http, owner, word) == [best, second, third]
    async with indexing_paused(app):
        await delete_entry(http, owner.bearer, best)
        response = await search(http, owner.bearer, word, page=1, page_size=1)
        assert (ids(response), response.json()["pagination"]["total_items"]) == ([second], 2)


@pytest.mark.parametrize("sort_by", ["created_at", "name"])
async def test_sorting_hits_of_several_tenants_just_after_a_deletion_works(
    app: FastAPI,
    http: httpx.AsyncClient,
    owned: OwnedFactory,
    person: PersonFactory,
    word: str,
    sort_by: str,
) -> None:
    shared, reader = await owned(), await person()
    await share(http, shared.owner.bearer, shared.dataset, email=reader.email)
    own = await owned(owner=reader)
    assert set(await finds(http, reader, word)) == {shared.entry, own.entry}
    async with indexing_paused(app):
        await delete_entry(http, shared.owner.bearer, shared.entry)
        response = await search(http, reader.bearer, word, sort_by=sort_by)
        assert response.status_code == 200, response.text
        assert ids(response) == [own.entry]


async def test_a_deleted_datasets_entries_are_not_found_anywhere(
    app: FastAPI, http: httpx.AsyncClient, owned: OwnedFactory, word: str
) -> None:
    data = await owned()
    elsewhere = await create_dataset(http, data.owner.bearer, entry_ids=[data.entry])
    assert await finds(http, data.owner, word, scope=elsewhere["id"]) == [data.entry]
    async with indexing_paused(app):
        deleted = await http.delete(f"{DATASETS}/{data.dataset}", headers=data.owner.bearer)
        assert deleted.status_code == 204, deleted.text
        assert await finds(http, data.owner, word) == []
        assert await finds(http, data.owner, word, scope=elsewhere["id"]) == []
        scoped = await search(http, data.owner.bearer, word, scope=data.dataset)
        assert_envelope(scoped, 404, ErrorCode.DATASET_NOT_FOUND)


async def expire(app: FastAPI, dataset_id: str) -> None:
    """Make the dataset expire now (an expiry cannot be set in the past through the API)."""
    await (
        state_of(app)
        .database.control["datasets"]
        .update_one(
            {"_id": ObjectId(dataset_id)},
            {"$set": {"expires_at": utc_now() - timedelta(milliseconds=1)}},
        )
    )


async def test_an_expired_datasets_entries_are_not_found_before_any_sweep(
    app: FastAPI, http: httpx.AsyncClient, owned: OwnedFactory, person: PersonFactory, word: str
) -> None:
    data, reader = await owned(), await person()
    await share(http, data.owner.bearer, data.dataset, email=reader.email)
    assert await finds(http, reader, word) == [data.entry]
    await expire(app, data.dataset)
    for account in (data.owner, reader):
        assert await finds(http, account, word) == []
        scoped = await search(http, account.bearer, word, scope=data.dataset)
        assert_envelope(scoped, 404, ErrorCode.DATASET_NOT_FOUND)


async def test_an_expired_homes_entries_are_not_found_through_an_acl_override(
    app: FastAPI, http: httpx.AsyncClient, curated: Callable[[bool], Awaitable[Curated]], word: str
) -> None:
    setup = await curated(True)
    assert await finds(http, setup.reader, word, scope=setup.curated) == [setup.home.entry]
    await expire(app, setup.home.dataset)
    assert await finds(http, setup.reader, word, scope=setup.curated) == []
    assert await finds(http, setup.reader, word) == []
