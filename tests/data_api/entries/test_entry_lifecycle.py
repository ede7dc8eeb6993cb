"""An entry's life over HTTP (`spec/entries.md`): its text extracted after the
upload answered (every supported type, character sets, a decompression bomb,
pending until done), renaming and merging metadata, the batch reads, the list
of a dataset's entries, and deletion — of the entry, or of its home dataset —
which leaves no bytes, text, record, item or catalogue row anywhere.

One module-wide app serves every test (its extraction workers start once); each
test makes its own datasets and entries, and registers the other users it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI

from app.clock import utc_now
from app.errors import ErrorCode
from app.wiring import state_of
from data_api.entries.extraction import Extractor
from data_api.entries.sniff import DOCX
from tests.fixtures.accounts import Account, register_account
from tests.fixtures.datasets import DATASETS, create_dataset, parse_time, share, user_id_of
from tests.fixtures.engine import DatabaseServer
from tests.fixtures.entries import (
    ENTRIES,
    EXTRACTION_SECONDS,
    NO_TRACES,
    Stored,
    Sync,
    download,
    entry_of,
    make_docx,
    make_pdf,
    make_zip,
    module_app,
    module_settings,
    upload,
    upload_one,
    uploaded_ids,
    wait_for_text,
)
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.mailbox import Inbox

#: Bytes of no type with text: no extraction changes their entry behind a test's back.
BINARY = b"\x00\x01\x02\xff"


@dataclass
class World:
    app: FastAPI
    http: httpx.AsyncClient
    inbox: Inbox
    sync: Sync
    owner: Account
    owner_id: ObjectId
    stored: Stored

    @property
    def headers(self) -> dict[str, str]:
        return self.owner.bearer

    async def dataset(self, name: str = "lifecycle", **fields: Any) -> str:
        return str((await create_dataset(self.http, self.headers, name=name, **fields))["id"])

    async def user(self) -> tuple[Account, ObjectId, Stored]:
        """Another account, its id, and a reader of its stored state."""
        account = await register_account(self.http, self.inbox)
        user_id = await user_id_of(self.http, account)
        return account, user_id, Stored(self.sync, state_of(self.app).settings.control_db, user_id)

    async def upload(self, dataset_id: str, filename: str, data: bytes, **fields: Any) -> str:
        entry = await upload_one(self.http, self.headers, dataset_id, filename, data, **fields)
        return str(entry["id"])

    async def text_entry(self, dataset_id: str, filename: str, text: str) -> dict[str, Any]:
        """A text file uploaded and its text extracted; the entry."""
        entry_id = await self.upload(dataset_id, filename, text.encode())
        entry = await wait_for_text(self.http, self.headers, entry_id)
        assert entry["text_status"] == "done", entry
        return entry


@pytest.fixture(scope="module")
async def world(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[World]:
    settings = module_settings(
        database_server, smtp_server, tmp_path_factory.mktemp("lifecycle") / "data"
    )
    async with module_app(database_server, sync_client, settings) as (app, http):
        owner = await register_account(http, smtp_server)
        owner_id = await user_id_of(http, owner)
        stored = Stored(sync_client, settings.control_db, owner_id)
        world = World(app, http, smtp_server, sync_client, owner, owner_id, stored)
        # The owner's tenant database exists before the first test, and the
        # extraction workers have started.
        await world.text_entry(await world.dataset("seed"), "seed.txt", "seed")
        yield world


async def text_of(world: World, entry_id: str, headers: dict[str, str] | None = None) -> str:
    response = await world.http.get(f"{ENTRIES}/{entry_id}/text", headers=headers or world.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-text-status"] == "done"
    return response.text


async def job_done(world: World, entry_id: str) -> None:
    """The entry's extraction job is gone (it goes just after the text is recorded)."""
    deadline = time.monotonic() + EXTRACTION_SECONDS
    while world.stored.job(entry_id) is not None:
        assert time.monotonic() < deadline, f"the extraction job of {entry_id} is still there"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def extraction_paused(app: FastAPI) -> AsyncIterator[None]:
    """The extractor's loop stopped (its jobs wait in the catalogue), then started again."""
    extractor = state_of(app).get(Extractor)
    assert extractor.task is not None
    extractor.task.cancel()
    with contextlib.suppress(BaseException):
        await extractor.task
    try:
        yield
    finally:
        extractor.start()


# ---------------------------------------------------------------- text extraction


async def test_the_text_is_409_while_pending_then_served_once_extracted(world: World) -> None:
    dataset_id = await world.dataset()
    async with extraction_paused(world.app):
        entry_id = await world.upload(dataset_id, "later.txt", b"extracted after the answer")
        response = await world.http.get(f"{ENTRIES}/{entry_id}/text", headers=world.headers)
        assert_envelope(response, 409, ErrorCode.TEXT_NOT_READY)
        record = world.stored.entry(entry_id)
        assert record is not None and record["text_status"] == "pending"
        job = world.stored.job(entry_id)
        assert job is not None and job["owner_id"] == world.owner_id
        assert world.stored.texts(entry_id) == []
    entry = await wait_for_text(world.http, world.headers, entry_id)
    assert entry["text_status"] == "done"
    assert await text_of(world, entry_id) == "extracted after the answer"
    await job_done(world, entry_id)


async def test_an_unsupported_type_is_stored_and_has_an_empty_text(world: World) -> None:
    data = os.urandom(5000)
    entry_id = await world.upload(await world.dataset(), "blob.bin", data)
    entry = await entry_of(world.http, world.headers, entry_id)
    assert (entry["content_type"], entry["text_status"]) == (
        "application/octet-stream",
        "unsupported",
    )
    assert world.stored.job(entry_id) is None
    response = await world.http.get(f"{ENTRIES}/{entry_id}/text", headers=world.headers)
    assert response.status_code == 200
    assert (response.content, response.headers["x-text-status"]) == (b"", "unsupported")
    assert (await download(world.http, world.headers, entry_id)).content == data


HTML = b"""<!doctype html><html><head><title>Quarterly report</title>
<style>body { color: red }</style><script>var secret = "tracking";</script></head>
<body><h1>Revenue</h1><p>Forecast <b>for</b> Q4</p></body></html>"""
XML = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<report><title>Revenue</title><row>caf\xe9<b>forecast</b>tail</row></report>"""
DOCX_TEXT = "Quarterly revenue forecast\nRegion\nTotal\nNordics\n4200\nClosing remarks"


def docx_bytes(tmp_path: Path) -> bytes:
    return Path(make_docx(tmp_path / "r.docx")).read_bytes()


def pdf_bytes(tmp_path: Path) -> bytes:
    return make_pdf(["Hello revenue", "Forecast page two"])


#: (filename, bytes from tmp_path, the sniffed type, the exact text or None, words it has)
EXTRACTIONS: dict[str, tuple[str, Callable[[Path], bytes], str, str | None, tuple[str, ...]]] = {
    "plain text": (
        "notes.txt",
        lambda _: b"Plain revenue notes\nsecond line",
        "text/plain",
        "Plain revenue notes\nsecond line",
        (),
    ),
    "markdown": (
        "readme.md",
        lambda _: b"# Revenue\n\n* forecast for **Q4**",
        "text/markdown",
        "# Revenue\n\n* forecast for **Q4**",
        (),
    ),
    "csv": (
        "data.csv",
        lambda _: b"region,revenue\nNordics,4200\n",
        "text/csv",
        "region,revenue\nNordics,4200\n",
        (),
    ),
    "json": (
        "data.json",
        lambda _: b'{"region": "Nordics", "revenue": 4200}',
        "application/json",
        '{"region": "Nordics", "revenue": 4200}',
        (),
    ),
    "ndjson": (
        "rows.ndjson",
        lambda _: b'{"a": "revenue"}\n{"b": "forecast"}\n',
        "application/x-ndjson",
        '{"a": "revenue"}\n{"b": "forecast"}\n',
        (),
    ),
    "html": (
        "page.html",
        lambda _: HTML,
        "text/html",
        "Quarterly report\nRevenue\nForecast for Q4",
        (),
    ),
    "xml": ("r.xml", lambda _: XML, "application/xml", "Revenue café forecast tail", ()),
    "pdf": ("r.pdf", pdf_bytes, "application/pdf", None, ("Hello revenue", "Forecast page two")),
    "docx": ("r.docx", docx_bytes, DOCX, DOCX_TEXT, ()),
    "empty text": ("empty.txt", lambda _: b"", "text/plain", "", ()),
    "latin-1 text": (
        "menu.txt",
        lambda _: "Le café du coin, crème brûlée".encode("latin-1"),
        "text/plain",
        "Le café du coin, crème brûlée",
        (),
    ),
    "utf-16 text with a bom": (
        "wide.txt",
        lambda _: "Grüße, revenue €".encode("utf-16"),
        "text/plain",
        "Grüße, revenue €",
        (),
    ),
}


@pytest.mark.parametrize("kind", list(EXTRACTIONS))
async def test_the_text_of_each_supported_type_is_extracted_and_stored(
    world: World, tmp_path: Path, kind: str
) -> None:
    filename, make, content_type, exact, words = EXTRACTIONS[kind]
    entry_id = await world.upload(await world.dataset(), filename, make(tmp_path))
    entry = await wait_for_text(world.http, world.headers, entry_id)
    assert (entry["content_type"], entry["text_status"], entry["text_error"]) == (
        content_type,
        "done",
        None,
    )
    text = await text_of(world, entry_id)
    if exact is not None:
        assert text == exact
    for word in words:
        assert word in text
    assert entry["text_chars"] == len(text)
    assert (
        "".join(t["text"] for t in sorted(world.stored.texts(entry_id), key=lambda t: t["n"]))
        == text
    )


async def test_a_pdf_entry_counts_its_pages(world: World) -> None:
    entry_id = await world.upload(await world.dataset(), "r.pdf", make_pdf(["one", "two", "3"]))
    entry = await wait_for_text(world.http, world.headers, entry_id)
    assert (entry["text_status"], entry["pages"]) == ("done", 3)


async def test_html_scripts_and_styles_are_not_in_the_text(world: World) -> None:
    entry_id = await world.upload(await world.dataset(), "page.html", HTML)
    await wait_for_text(world.http, world.headers, entry_id)
    text = await text_of(world, entry_id)
    assert "tracking" not in text and "color" not in text


async def test_a_zip_bomb_docx_fails_with_a_reason_and_the_server_keeps_answering(
    world: World, tmp_path: Path
) -> None:
    bomb = Path(make_zip(tmp_path / "bomb.docx", {"word/document.xml": 200 * 1024 * 1024}))
    entry_id = await world.upload(await world.dataset(), "bomb.docx", bomb.read_bytes())
    entry = await wait_for_text(world.http, world.headers, entry_id)
    assert entry["text_status"] == "failed"
    assert re.search(r"unpack to \d+|over 200:1", entry["text_error"] or ""), entry
    record = world.stored.entry(entry_id)
    assert record is not None and record["text_error"] == entry["text_error"]
    assert world.stored.texts(entry_id) == []
    response = await world.http.get(f"{ENTRIES}/{entry_id}/text", headers=world.headers)
    assert response.status_code == 200
    assert (response.content, response.headers["x-text-status"]) == (b"", "failed")
    assert (await world.http.get("/health")).status_code == 200
    after = await world.text_entry(await world.dataset(), "after.txt", "still extracting")
    assert await text_of(world, after["id"]) == "still extracting"


async def test_a_text_longer_than_one_stored_piece_is_served_whole(world: World) -> None:
    """Texts are stored in pieces of 1,000,000 characters (data_api/entries/repository.py)."""
    text = "".join(f"{n:07d}\n" for n in range(300_000))  # 2,400,000 characters
    entry = await world.text_entry(await world.dataset(), "long.txt", text)
    assert entry["text_chars"] == len(text)
    assert [t["n"] for t in sorted(world.stored.texts(entry["id"]), key=lambda t: t["n"])] == [
        0,
        1,
        2,
    ]
    assert await text_of(world, entry["id"]) == text
    response = await world.http.post(
        f"{ENTRIES}/batch/content",
        json={"ids": [entry["id"]], "max_chars": 1_500_000},
        headers=world.headers,
    )
    assert response.status_code == 200, response.text
    [data] = response.json()["data"]
    assert (data["text"], data["truncated"]) == (text[:1_500_000], True)


# ---------------------------------------------------------------- changes


async def test_patch_renames_and_merges_metadata_a_null_removing_a_key(world: World) -> None:
    entry_id = await world.upload(
        await world.dataset(), "m.bin", BINARY, metadata={"keep": True, "drop": 1, "b": 0}
    )
    response = await world.http.patch(
        f"{ENTRIES}/{entry_id}",
        json={"name": "Renamed", "metadata": {"drop": None, "b": 2, "c": {"x": [1]}}},
        headers=world.headers,
    )
    assert response.status_code == 200, response.text
    entry = response.json()["data"]
    expected = {"keep": True, "b": 2, "c": {"x": [1]}}
    assert (entry["name"], entry["filename"], entry["metadata"]) == ("Renamed", "m.bin", expected)
    assert parse_time(entry["updated_at"]) >= parse_time(entry["created_at"])
    record = world.stored.entry(entry_id)
    assert record is not None
    assert (record["name"], record["metadata"]) == ("Renamed", expected)
    assert await entry_of(world.http, world.headers, entry_id) == entry


async def test_patch_with_only_metadata_keeps_the_name(world: World) -> None:
    entry_id = await world.upload(await world.dataset(), "keep.txt", b"x", name="Kept")
    response = await world.http.patch(
        f"{ENTRIES}/{entry_id}", json={"metadata": {"k": "v"}}, headers=world.headers
    )
    assert response.status_code == 200, response.text
    assert (response.json()["data"]["name"], response.json()["data"]["metadata"]) == (
        "Kept",
        {"k": "v"},
    )


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"metadata": {"$set": 1}}, ["metadata", "$set"]),
        ({"metadata": {"a.b": 1}}, ["metadata", "a.b"]),
        ({"name": ""}, ["body", "name"]),
        ({"colour": "blue"}, ["body", "colour"]),
        ({"metadata": [1]}, ["body", "metadata"]),
    ],
    ids=["dollar key", "dotted key", "empty name", "unknown field", "metadata not an object"],
)
async def test_an_invalid_patch_is_422_and_changes_nothing(
    world: World, body: dict[str, Any], loc: list[str]
) -> None:
    entry_id = await world.upload(await world.dataset(), "p.bin", BINARY, metadata={"a": 1})
    before = world.stored.entry(entry_id)
    response = await world.http.patch(f"{ENTRIES}/{entry_id}", json=body, headers=world.headers)
    details = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)["details"]
    assert [d["loc"] for d in details] == [loc]
    assert world.stored.entry(entry_id) == before


async def test_patch_of_an_unknown_entry_is_404(world: World) -> None:
    response = await world.http.patch(
        f"{ENTRIES}/{ObjectId()}", json={"name": "x"}, headers=world.headers
    )
    assert_envelope(response, 404, ErrorCode.ENTRY_NOT_FOUND)


# ---------------------------------------------------------------- batch reads


async def batch(world: World, headers: dict[str, str] | None = None, **body: Any) -> Any:
    response = await world.http.post(
        f"{ENTRIES}/batch", json=body, headers=headers or world.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_batch_pages_the_datasets_entries_in_upload_order(world: World) -> None:
    dataset_id = await world.dataset()
    ids = [await world.upload(dataset_id, f"f{n}.txt", b"x" * n) for n in range(3)]
    response = await upload(
        world.http, world.headers, dataset_id, [("g0.txt", b"a"), ("g1.txt", b"b")]
    )
    ids += uploaded_ids(response)
    found = await batch(world, dataset_id=dataset_id, limit=50)
    assert [e["id"] for e in found["data"]] == ids
    assert found["missing_ids"] == []
    pagination = found["pagination"]
    assert (pagination["limit"], pagination["offset"], pagination["total_items"]) == (50, 0, 5)
    assert pagination["has_next"] is False
    first = await batch(world, dataset_id=dataset_id, limit=2)
    assert [e["id"] for e in first["data"]] == ids[:2]
    assert first["pagination"]["has_next"] is True and first["pagination"]["total_items"] == 5
    last = await batch(world, dataset_id=dataset_id, limit=2, offset=4)
    assert [e["id"] for e in last["data"]] == ids[4:]
    assert (last["pagination"]["offset"], last["pagination"]["has_next"]) == (4, False)
    assert last["pagination"]["has_previous"] is True


async def test_batch_lists_the_entries_linked_into_the_dataset_too(world: World) -> None:
    home, curated = await world.dataset("home"), await world.dataset("curated")
    homed = await world.upload(curated, "own.txt", b"own")
    linked = await world.upload(home, "linked.txt", b"linked")
    added = await world.http.post(
        f"{DATASETS}/{curated}/items", json={"entry_ids": [linked]}, headers=world.headers
    )
    assert added.status_code == 200, added.text
    found = await batch(world, dataset_id=curated)
    assert [e["id"] for e in found["data"]] == [homed, linked]
    assert found["data"][1]["dataset_id"] == home


async def test_batch_by_ids_answers_those_in_order_and_names_the_missing_ones(
    world: World,
) -> None:
    dataset_id, elsewhere = await world.dataset(), await world.dataset("elsewhere")
    a, b, c = [await world.upload(dataset_id, f"{n}.txt", n.encode()) for n in "abc"]
    other = await world.upload(elsewhere, "other.txt", b"o")
    unknown = str(ObjectId())
    found = await batch(world, dataset_id=dataset_id, ids=[c, unknown, "garbage", a, other, b])
    assert [e["id"] for e in found["data"]] == [c, a, b]
    assert sorted(found["missing_ids"]) == sorted([unknown, "garbage", other])
    assert found["pagination"]["total_items"] == 3


async def test_batch_of_an_unknown_dataset_is_404(world: World) -> None:
    response = await world.http.post(
        f"{ENTRIES}/batch", json={"dataset_id": str(ObjectId())}, headers=world.headers
    )
    assert_envelope(response, 404, ErrorCode.DATASET_NOT_FOUND)


@pytest.mark.parametrize("limit", [0, 1001])
async def test_batch_limit_outside_1_to_1000_is_422(world: World, limit: int) -> None:
    response = await world.http.post(
        f"{ENTRIES}/batch",
        json={"dataset_id": str(ObjectId()), "limit": limit},
        headers=world.headers,
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)


async def test_batch_content_cuts_texts_at_max_chars_and_names_unreadable_ids(
    world: World,
) -> None:
    dataset_id = await world.dataset()
    long = await world.text_entry(dataset_id, "long.txt", "abcdefghij" * 3)
    short = await world.text_entry(dataset_id, "short.txt", "tiny")
    blob = await world.upload(dataset_id, "blob.bin", os.urandom(300))
    stranger, _, _ = await world.user()
    theirs = (await create_dataset(world.http, stranger.bearer, name="theirs"))["id"]
    unreadable = (await upload_one(world.http, stranger.bearer, theirs, "t.txt", b"secret"))["id"]
    unknown = str(ObjectId())
    response = await world.http.post(
        f"{ENTRIES}/batch/content",
        json={
            "ids": [short["id"], unknown, long["id"], "garbage", blob, unreadable],
            "max_chars": 5,
        },
        headers=world.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(d["id"], d["text"], d["truncated"], d["text_status"]) for d in body["data"]] == [
        (short["id"], "tiny", False, "done"),
        (long["id"], "abcde", True, "done"),
        (blob, "", False, "unsupported"),
    ]
    assert sorted(body["missing_ids"]) == sorted([unknown, "garbage", unreadable])


async def test_batch_content_defaults_to_whole_texts(world: World) -> None:
    entry = await world.text_entry(await world.dataset(), "whole.txt", "w" * 1000)
    response = await world.http.post(
        f"{ENTRIES}/batch/content", json={"ids": [entry["id"]]}, headers=world.headers
    )
    assert response.status_code == 200, response.text
    [data] = response.json()["data"]
    assert (data["text"], data["truncated"]) == ("w" * 1000, False)


# ---------------------------------------------------------------- the list of a dataset


async def listed(world: World, dataset_id: str, **params: Any) -> Any:
    response = await world.http.get(
        f"{DATASETS}/{dataset_id}/entries", params=params, headers=world.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def three(world: World) -> tuple[str, dict[str, str]]:
    """A dataset with b.txt (30 bytes), a.txt (10) and c.txt (20), uploaded in that
    order, and an entry of another dataset linked into it."""
    dataset_id = await world.dataset()
    ids = {
        name: await world.upload(dataset_id, f"{name}.txt", b"x" * size)
        for name, size in (("b", 30), ("a", 10), ("c", 20))
    }
    linked = await world.upload(await world.dataset("elsewhere"), "0-linked.txt", b"x")
    added = await world.http.post(
        f"{DATASETS}/{dataset_id}/items", json={"entry_ids": [linked]}, headers=world.headers
    )
    assert added.status_code == 200, added.text
    return dataset_id, ids


@pytest.mark.parametrize(
    ("params", "order"),
    [
        ({}, "cab"),
        ({"sort": "created_at", "order": "asc"}, "bac"),
        ({"sort": "name", "order": "asc"}, "abc"),
        ({"sort": "name", "order": "desc"}, "cba"),
        ({"sort": "size", "order": "asc"}, "acb"),
        ({"sort": "size"}, "bca"),
    ],
    ids=["default newest first", "oldest first", "name", "name desc", "size", "size desc"],
)
async def test_the_list_of_a_datasets_entries_is_sorted_as_asked(
    world: World, three: tuple[str, dict[str, str]], params: dict[str, str], order: str
) -> None:
    dataset_id, ids = three
    answer = await listed(world, dataset_id, **params)
    assert [e["id"] for e in answer["data"]] == [ids[name] for name in order]
    assert answer["pagination"]["total_items"] == 3


async def test_the_list_of_a_datasets_entries_pages(
    world: World, three: tuple[str, dict[str, str]]
) -> None:
    dataset_id, ids = three
    answer = await listed(world, dataset_id, sort="name", order="asc", page=2, page_size=2)
    assert [e["id"] for e in answer["data"]] == [ids["c"]]
    assert answer["pagination"] == {
        "page": 2,
        "page_size": 2,
        "total_items": 3,
        "total_pages": 2,
        "has_next": False,
        "has_previous": True,
    }


@pytest.mark.parametrize(
    "params",
    [{"sort": "filename"}, {"order": "up"}, {"page": 0}, {"page_size": 101}],
    ids=["sort", "order", "page", "page size"],
)
async def test_the_list_refuses_an_unknown_sort_or_page_with_422(
    world: World, three: tuple[str, dict[str, str]], params: dict[str, Any]
) -> None:
    response = await world.http.get(
        f"{DATASETS}/{three[0]}/entries", params=params, headers=world.headers
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)


# ---------------------------------------------------------------- deletion


async def test_deleting_an_entry_removes_every_trace_of_it_everywhere(world: World) -> None:
    home = await world.dataset("home")
    entry = await world.text_entry(home, "gone.txt", "text that goes")
    entry_id = entry["id"]
    assert world.stored.texts(entry_id) and world.stored.chunks(entry_id)
    curator, curator_id, curator_stored = await world.user()
    await share(world.http, world.headers, home, user_id=str(curator_id))
    theirs = (await create_dataset(world.http, curator.bearer, name="curated"))["id"]
    linked = await world.http.post(
        f"{DATASETS}/{theirs}/items", json={"entry_ids": [entry_id]}, headers=curator.bearer
    )
    assert linked.status_code == 200 and linked.json()["added"] == 1, linked.text
    assert len(curator_stored.items(entry_id)) == 1

    response = await world.http.delete(f"{ENTRIES}/{entry_id}", headers=world.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert world.stored.traces(entry_id) == NO_TRACES
    assert curator_stored.items(entry_id) == []
    for path in (f"{ENTRIES}/{entry_id}", f"{ENTRIES}/{entry_id}/download"):
        assert_envelope(
            await world.http.get(path, headers=world.headers), 404, ErrorCode.ENTRY_NOT_FOUND
        )
    items = await world.http.get(f"{DATASETS}/{theirs}/items", headers=curator.bearer)
    assert items.status_code == 200 and items.json()["data"] == [], items.text
    again = await world.http.delete(f"{ENTRIES}/{entry_id}", headers=world.headers)
    assert_envelope(again, 404, ErrorCode.ENTRY_NOT_FOUND)


async def test_deleting_an_entry_whose_text_is_pending_leaves_no_job_and_no_text(
    world: World,
) -> None:
    dataset_id = await world.dataset()
    async with extraction_paused(world.app):
        entry_id = await world.upload(dataset_id, "pending.txt", b"never extracted")
        assert world.stored.job(entry_id) is not None
        response = await world.http.delete(f"{ENTRIES}/{entry_id}", headers=world.headers)
        assert response.status_code == 204, response.text
        assert world.stored.traces(entry_id) == NO_TRACES
    # Extraction runs again (a later entry is extracted) and brings nothing back.
    await world.text_entry(dataset_id, "later.txt", "later")
    assert world.stored.traces(entry_id) == NO_TRACES


async def test_deleting_an_entry_leaves_the_others_of_its_dataset(world: World) -> None:
    dataset_id = await world.dataset()
    gone = await world.upload(dataset_id, "gone.bin", os.urandom(100))
    kept = await world.upload(dataset_id, "kept.bin", os.urandom(100))
    response = await world.http.delete(f"{ENTRIES}/{gone}", headers=world.headers)
    assert response.status_code == 204, response.text
    assert world.stored.traces(kept)["entries.chunks"] == 1
    found = await batch(world, dataset_id=dataset_id)
    assert [e["id"] for e in found["data"]] == [kept]


async def test_deleting_a_dataset_removes_its_entries_bytes_and_texts(world: World) -> None:
    dataset_id = await world.dataset("doomed")
    texted = await world.text_entry(dataset_id, "t.txt", "words to remove")
    blob = await world.upload(dataset_id, "b.bin", os.urandom(2 * 1024 * 1024))
    assert world.stored.texts(texted["id"]) and len(world.stored.chunks(blob)) == 2
    response = await world.http.delete(f"{DATASETS}/{dataset_id}", headers=world.headers)
    assert response.status_code == 204, response.text
    for entry_id in (texted["id"], blob):
        assert world.stored.traces(entry_id) == NO_TRACES
        gone = await world.http.get(f"{ENTRIES}/{entry_id}", headers=world.headers)
        assert_envelope(gone, 404, ErrorCode.ENTRY_NOT_FOUND)
    assert world.stored.tenant["items"].count_documents({"dataset_id": ObjectId(dataset_id)}) == 0


async def test_created_at_is_the_upload_time(world: World) -> None:
    before = utc_now().replace(microsecond=0)
    entry_id = await world.upload(await world.dataset(), "t.bin", b"\x00")
    created = parse_time((await entry_of(world.http, world.headers, entry_id))["created_at"])
    assert isinstance(created, datetime)
    assert before <= created <= utc_now()
