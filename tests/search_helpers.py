"""Keyword-search tests' shared pieces (`spec/entries.md`, "Keyword search").

An app of a test module's own, so a corpus is uploaded and indexed once per
module rather than once per test; uploads through the real entries API; waiting
until the asynchronous extraction and indexing have made entries searchable (a
poll with a deadline, never a fixed sleep); and readers of search answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from pymongo import MongoClient

from app.background import start_periodic, stop_periodic
from app.main import create_app
from app.settings import Settings
from tests.conftest import SYSTEM_DATABASES, DatabaseServer, running
from tests.datasets import QUIET_SETTINGS
from tests.mailbox import Inbox
from tests.routes import install_test_routes

SEARCH = "/api/v1/search"
ENTRIES = "/api/v1/entries"
#: Extraction and indexing are asynchronous; an entry must be searchable by then.
INDEXING_DEADLINE_SECONDS = 10.0
POLL_SECONDS = 0.05

Headers = Mapping[str, str]


def module_settings(
    server: DatabaseServer, smtp: Inbox, data_dir: Path, **overrides: Any
) -> Settings:
    """Settings for an app a whole test module shares (`make_settings` is per test).
    Rate limits are off unless overridden."""
    values: dict[str, Any] = {
        "env": "test",
        "mongodb_url": server.url,
        "control_db": f"quarry_test_{uuid.uuid4().hex[:12]}",
        "data_dir": data_dir,
        "mongodb_timeout_ms": 1000,
        "retry_after_seconds": 3,
        "public_url": "http://testserver",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        # A module registers many users from one address.
        "register_max_per_address": 1000,
        **QUIET_SETTINGS,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def app_and_client(
    settings: Settings, server: DatabaseServer
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with its lifespan running, and a client for it (as `make_client`)."""
    application = create_app(settings)
    install_test_routes(application)
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with (
        running(application, server),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        yield application, http


@contextlib.asynccontextmanager
async def indexing_paused(app: FastAPI) -> AsyncIterator[None]:
    """The app's search indexer stopped inside the block (as `data_api/entries/lifecycle.py`
    wires it), so what a search answers there cannot be the index catching up: it
    must be the catalogue's word at query time."""
    await stop_periodic(app.state.search_indexing)
    try:
        yield
    finally:
        app.state.search_indexing = start_periodic(
            "search-indexer", app.state.search_indexer, app.state.settings.search_index_poll_seconds
        )


@contextlib.contextmanager
def databases_dropped_after(client: MongoClient[dict[str, Any]]) -> Iterator[None]:
    """Drop every database created inside the block (a module's own; the per-test
    autouse fixture only drops what a single test created)."""
    before = set(client.list_database_names())
    try:
        yield
    finally:
        for name in set(client.list_database_names()) - before - SYSTEM_DATABASES:
            client.drop_database(name)


# ---------------------------------------------------------------- entries


async def upload(
    http: httpx.AsyncClient, headers: Headers, dataset_id: str, files: Mapping[str, str]
) -> list[str]:
    """Upload `{filename: text}` in one multipart request; the new entry ids, in order."""
    parts = [("file", (name, text.encode(), "text/plain")) for name, text in files.items()]
    response = await http.post(
        ENTRIES, data={"dataset_id": dataset_id}, files=parts, headers=dict(headers)
    )
    assert response.status_code == 201, response.text
    body = response.json()
    entries = body["entries"] if body.get("entries") else [body["data"]]
    return [entry["id"] for entry in entries]


async def wait_text_done(
    http: httpx.AsyncClient, headers: Headers, entry_id: str, deadline: float
) -> dict[str, Any]:
    """The entry once its text is extracted (`text_status: done`)."""
    while True:
        response = await http.get(f"{ENTRIES}/{entry_id}", headers=dict(headers))
        assert response.status_code == 200, response.text
        entry: dict[str, Any] = response.json()["data"]
        assert entry["text_status"] in ("pending", "done"), entry
        if entry["text_status"] == "done":
            return entry
        assert time.monotonic() < deadline, f"text of {entry_id} not extracted in time"
        await asyncio.sleep(POLL_SECONDS)


def phrase(text: str) -> str:
    """`text` as a quoted phrase of the query language."""
    return '"' + text.replace('"', " ") + '"'


async def wait_until_searchable(
    http: httpx.AsyncClient, headers: Headers, entry_ids: Iterable[str]
) -> None:
    """Until a search (scoped to each entry's home, by its name) finds every entry."""
    deadline = time.monotonic() + INDEXING_DEADLINE_SECONDS
    for entry_id in entry_ids:
        entry = await wait_text_done(http, headers, entry_id, deadline)
        path = f"/api/v1/datasets/{entry['dataset_id']}/search"
        while True:
            response = await http.post(
                path, json={"query": phrase(entry["name"]), "page_size": 100}, headers=dict(headers)
            )
            assert response.status_code == 200, response.text
            if entry_id in ids(response):
                break
            assert time.monotonic() < deadline, f"{entry_id} not searchable in time"
            await asyncio.sleep(POLL_SECONDS)


async def upload_searchable(
    http: httpx.AsyncClient, headers: Headers, dataset_id: str, files: Mapping[str, str]
) -> list[str]:
    """Upload, then wait until every new entry is found by search."""
    entry_ids = await upload(http, headers, dataset_id, files)
    await wait_until_searchable(http, headers, entry_ids)
    return entry_ids


async def delete_entry(http: httpx.AsyncClient, headers: Headers, entry_id: str) -> None:
    response = await http.delete(f"{ENTRIES}/{entry_id}", headers=dict(headers))
    assert response.status_code == 204, response.text


# ---------------------------------------------------------------- searching


async def search(
    http: httpx.AsyncClient,
    headers: Headers,
    query: str,
    *,
    scope: str | None = None,
    **body: Any,
) -> httpx.Response:
    """`POST /api/v1/search`, or the scoped search of dataset `scope`."""
    path = SEARCH if scope is None else f"/api/v1/datasets/{scope}/search"
    return await http.post(path, json={"query": query, **body}, headers=dict(headers))


def ids(response: httpx.Response) -> list[str]:
    """The entry ids of a search answer, in its order."""
    assert response.status_code == 200, response.text
    return [hit["entry"]["id"] for hit in response.json()["data"]]


async def found(http: httpx.AsyncClient, headers: Headers, query: str, **options: Any) -> list[str]:
    """The ids a search returns (page size 100), in order."""
    return ids(await search(http, headers, query, page_size=100, **options))


async def wait_until_found(
    http: httpx.AsyncClient, headers: Headers, query: str, expected: list[str], **options: Any
) -> None:
    """Until a search finds exactly `expected` (in any order): for changes the
    indexer applies in the background, such as a rename."""
    deadline = time.monotonic() + INDEXING_DEADLINE_SECONDS
    while set(latest := await found(http, headers, query, **options)) != set(expected):
        assert time.monotonic() < deadline, f"{query!r} still finds {latest}, not {expected}"
        await asyncio.sleep(POLL_SECONDS)
