"""Keyword-search tests' own pieces (`spec/entries.md`, "Keyword search"): waiting
until the asynchronous extraction and indexing have made entries searchable (a
poll with a deadline, never a fixed sleep), the indexer paused, and readers of
search answers. The module-wide app, its settings and uploads are tests/entries.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import httpx
from fastapi import FastAPI

from app.wiring import state_of
from data_api.search.lifecycle import INDEXER_TASK
from tests.entries import ENTRIES, POLL_SECONDS, Headers, upload_texts, wait_for_text

SEARCH = "/api/v1/search"
#: Extraction and indexing are asynchronous; an entry must be searchable by then.
INDEXING_DEADLINE_SECONDS = 10.0


@contextlib.asynccontextmanager
async def indexing_paused(app: FastAPI) -> AsyncIterator[None]:
    """The app's search indexer stopped inside the block, so what a search answers
    there cannot be the index catching up: it must be the catalogue's word at
    query time."""
    async with state_of(app).background.paused(INDEXER_TASK):
        yield


# ---------------------------------------------------------------- searchable entries


def phrase(text: str) -> str:
    """`text` as a quoted phrase of the query language."""
    return '"' + text.replace('"', " ") + '"'


async def wait_until_searchable(
    http: httpx.AsyncClient, headers: Headers, entry_ids: Iterable[str]
) -> None:
    """Until a search (scoped to each entry's home, by its name) finds every entry."""
    deadline = time.monotonic() + INDEXING_DEADLINE_SECONDS
    for entry_id in entry_ids:
        entry = await wait_for_text(http, headers, entry_id, deadline - time.monotonic())
        assert entry["text_status"] == "done", entry
        query, home = phrase(entry["name"]), entry["dataset_id"]
        while entry_id not in await found(http, headers, query, scope=home):
            assert time.monotonic() < deadline, f"{entry_id} not searchable in time"
            await asyncio.sleep(POLL_SECONDS)


async def upload_searchable(
    http: httpx.AsyncClient, headers: Headers, dataset_id: str, files: Mapping[str, str]
) -> list[str]:
    """Upload, then wait until every new entry is found by search."""
    entry_ids = await upload_texts(http, headers, dataset_id, files)
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
