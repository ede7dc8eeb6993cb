"""Entries for tests (`spec/entries.md`): multipart bodies built byte by byte (so a
test decides the order, names and encoding of the parts), uploads through the
API, waiting for text extraction (a poll with a deadline, never a fixed sleep), a
module-wide app for modules that share one (the entries and the search tests), and
a reader of everything entries leave in the catalogue and in an owner's tenant
database (with the driver, as the tests assert on stored state).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from bson import ObjectId
from fastapi import FastAPI
from pymongo import MongoClient

from app.main import create_app
from app.settings import Settings
from data_api.datasets.repository import tenant_db_name
from tests.conftest import SYSTEM_DATABASES, DatabaseServer, running
from tests.datasets import QUIET_SETTINGS
from tests.mailbox import Inbox
from tests.routes import install_test_routes

ENTRIES = "/api/v1/entries"
BOUNDARY = "quarry-entries-test-9f3c1a"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
#: GridFS chunk size of entries (data_api/entries/repository.py).
CHUNK = 1 << 20
#: How long extraction of a small file may take, worker start-up included.
EXTRACTION_SECONDS = 60
#: How long a test waits between two looks at something the app does in the background.
POLL_SECONDS = 0.05

Headers = Mapping[str, str]
Sync = MongoClient[dict[str, Any]]


@dataclass(frozen=True)
class Part:
    """One part of a multipart body: a text field, or a file when `filename` is set."""

    name: str
    value: bytes | str
    filename: str | None = None
    content_type: str = "application/octet-stream"


def form_field(name: str, value: str) -> Part:
    return Part(name, value)


def file(filename: str, data: bytes, content_type: str = "application/octet-stream") -> Part:
    return Part("file", data, filename, content_type)


def part_head(part: Part) -> bytes:
    """A part's boundary line and headers; a filename is sent as raw UTF-8 in a
    quoted string, its quotes and backslashes escaped with a backslash."""
    disposition = f'form-data; name="{part.name}"'
    if part.filename is not None:
        quoted = part.filename.replace("\\", "\\\\").replace('"', '\\"')
        disposition += f'; filename="{quoted}"'
    lines = [f"--{BOUNDARY}", f"Content-Disposition: {disposition}"]
    if part.filename is not None:
        lines.append(f"Content-Type: {part.content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def multipart_body(parts: Sequence[Part]) -> bytes:
    body = bytearray()
    for part in parts:
        value = part.value.encode("utf-8") if isinstance(part.value, str) else part.value
        body += part_head(part) + value + b"\r\n"
    return bytes(body + f"--{BOUNDARY}--\r\n".encode())


def closing_boundary() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


async def post_parts(
    http: httpx.AsyncClient,
    headers: Headers,
    parts: Sequence[Part],
    *,
    params: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST /api/v1/entries with exactly these parts, in this order."""
    return await http.post(
        ENTRIES,
        content=multipart_body(parts),
        params=dict(params or {}),
        headers={**headers, "Content-Type": MULTIPART},
    )


def upload_parts(
    dataset_id: str,
    files: Sequence[tuple[str, bytes]],
    *,
    name: str | None = None,
    metadata: Any = None,
) -> list[Part]:
    parts = [form_field("dataset_id", dataset_id)]
    if name is not None:
        parts.append(form_field("name", name))
    if metadata is not None:
        text = metadata if isinstance(metadata, str) else json.dumps(metadata)
        parts.append(form_field("metadata", text))
    return parts + [file(filename, data) for filename, data in files]


async def upload(
    http: httpx.AsyncClient,
    headers: Headers,
    dataset_id: str,
    files: Sequence[tuple[str, bytes]],
    *,
    name: str | None = None,
    metadata: Any = None,
) -> httpx.Response:
    """Upload `files` ((filename, bytes) pairs) into the dataset in one request."""
    parts = upload_parts(dataset_id, files, name=name, metadata=metadata)
    return await post_parts(http, headers, parts)


def uploaded_ids(response: httpx.Response) -> list[str]:
    """The ids of the entries an upload created (its 201 answer), in upload order."""
    assert response.status_code == 201, response.text
    body = response.json()
    return [entry["id"] for entry in body.get("entries") or [body["data"]]]


async def upload_texts(
    http: httpx.AsyncClient, headers: Headers, dataset_id: str, texts: Mapping[str, str]
) -> list[str]:
    """Upload `{filename: text}` in one request; the new entry ids, in order."""
    files = [(filename, text.encode()) for filename, text in texts.items()]
    return uploaded_ids(await upload(http, headers, dataset_id, files))


async def upload_one(
    http: httpx.AsyncClient,
    headers: Headers,
    dataset_id: str,
    filename: str,
    data: bytes,
    **fields: Any,
) -> dict[str, Any]:
    """Upload one file; the entry the 201 answers with."""
    response = await upload(http, headers, dataset_id, [(filename, data)], **fields)
    assert response.status_code == 201, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def entry_of(http: httpx.AsyncClient, headers: Headers, entry_id: str) -> dict[str, Any]:
    response = await http.get(f"{ENTRIES}/{entry_id}", headers=dict(headers))
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def wait_for_text(
    http: httpx.AsyncClient, headers: Headers, entry_id: str, seconds: float = EXTRACTION_SECONDS
) -> dict[str, Any]:
    """The entry once its text is no longer `pending` (`seconds` from now at the most)."""
    deadline = time.monotonic() + seconds
    while True:
        entry = await entry_of(http, headers, entry_id)
        if entry["text_status"] != "pending":
            return entry
        assert time.monotonic() < deadline, f"text of {entry_id} still pending after {seconds} s"
        await asyncio.sleep(POLL_SECONDS)


async def download(
    http: httpx.AsyncClient, headers: Headers, entry_id: str, **extra: str
) -> httpx.Response:
    return await http.get(f"{ENTRIES}/{entry_id}/download", headers={**headers, **extra})


# ---------------------------------------------------------------- a module-wide app


def module_settings(
    server: DatabaseServer, inbox: Inbox, data_dir: Path, **overrides: Any
) -> Settings:
    """tests/conftest.py's `make_settings` values (and no rate limits), for an app
    that serves a whole module."""
    values: dict[str, Any] = {
        "env": "test",
        "mongodb_url": server.url,
        "control_db": f"quarry_test_{uuid.uuid4().hex[:12]}",
        "data_dir": data_dir,
        "mongodb_timeout_ms": 1000,
        "retry_after_seconds": 3,
        "public_url": "http://testserver",
        "smtp_host": "127.0.0.1",
        "smtp_port": inbox.port,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        # A module registers many users from one address.
        "register_max_per_address": 1000,
        **QUIET_SETTINGS,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.contextmanager
def databases_dropped_after(sync_client: Sync) -> Iterator[None]:
    """Drop every database created inside the block (a module's own; the per-test
    autouse fixture of tests/conftest.py only drops what a single test created)."""
    before = set(sync_client.list_database_names())
    try:
        yield
    finally:
        for name in set(sync_client.list_database_names()) - before - SYSTEM_DATABASES:
            sync_client.drop_database(name)


@contextlib.asynccontextmanager
async def app_and_client(
    server: DatabaseServer, settings: Settings
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with its lifespan running, and a client for it (as `make_client`): on
    its own, a second worker beside a module's app."""
    application = create_app(settings)
    install_test_routes(application)
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with (
        running(application, server),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        yield application, http


@contextlib.asynccontextmanager
async def module_app(
    server: DatabaseServer, sync_client: Sync, settings: Settings
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with its lifespan running and a client for it; the databases created
    meanwhile are dropped at the end (after a stopped engine is started again).
    What a module's setup creates outlives the per-test cleanup of
    tests/conftest.py (it exists before each test starts), so a module fixture
    should create its owners' tenant databases itself (a first upload does)."""
    with databases_dropped_after(sync_client):
        try:
            async with app_and_client(server, settings) as served:
                yield served
        finally:
            if server.engine is not None and not server.engine.running():
                server.start()


# ---------------------------------------------------------------- stored state


class Stored:
    """What entries hold for one owner, read with the driver: the tenant database
    (`entries`, `entries.files`, `entries.chunks`, `entry_texts`, `items`) and the
    catalogue (`entry_homes`, `uploads`, `extraction_jobs`)."""

    def __init__(self, sync_client: Sync, control_db: str, owner_id: ObjectId) -> None:
        self.client = sync_client
        self.control = sync_client[control_db]
        self.owner_id = owner_id
        self.tenant = sync_client[tenant_db_name(owner_id)]

    def entry(self, entry_id: str | ObjectId) -> dict[str, Any] | None:
        return self.tenant["entries"].find_one({"_id": ObjectId(entry_id)})

    def files_doc(self, entry_id: str | ObjectId) -> dict[str, Any] | None:
        return self.tenant["entries.files"].find_one({"_id": ObjectId(entry_id)})

    def chunks(self, entry_id: str | ObjectId) -> list[int]:
        """The numbers (`n`) of the entry's GridFS chunks, in order."""
        found = self.tenant["entries.chunks"].find(
            {"files_id": ObjectId(entry_id)}, {"n": 1, "_id": 0}
        )
        return sorted(chunk["n"] for chunk in found)

    def stored_bytes(self, entry_id: str | ObjectId) -> bytes:
        """The entry's bytes as its chunks hold them, read one chunk at a time (a
        batch of many 1 MiB chunks would pass the engine's message size)."""
        chunks = self.tenant["entries.chunks"]
        oid = ObjectId(entry_id)
        found = (chunks.find_one({"files_id": oid, "n": n}) for n in self.chunks(oid))
        return b"".join(bytes(chunk["data"]) for chunk in found if chunk is not None)

    def texts(self, entry_id: str | ObjectId) -> list[dict[str, Any]]:
        return list(self.tenant["entry_texts"].find({"entry_id": ObjectId(entry_id)}))

    def items(self, entry_id: str | ObjectId) -> list[dict[str, Any]]:
        return list(self.tenant["items"].find({"entry_id": ObjectId(entry_id)}))

    def home(self, entry_id: str | ObjectId) -> dict[str, Any] | None:
        return self.control["entry_homes"].find_one({"_id": ObjectId(entry_id)})

    def marker(self, entry_id: str | ObjectId) -> dict[str, Any] | None:
        return self.control["uploads"].find_one({"_id": ObjectId(entry_id)})

    def job(self, entry_id: str | ObjectId) -> dict[str, Any] | None:
        return self.control["extraction_jobs"].find_one({"_id": ObjectId(entry_id)})

    def traces(self, entry_id: str | ObjectId) -> dict[str, int]:
        """How many documents of each kind the entry has (all zero once it is gone)."""
        oid = ObjectId(entry_id)
        return {
            "entries": self.tenant["entries"].count_documents({"_id": oid}),
            "entries.files": self.tenant["entries.files"].count_documents({"_id": oid}),
            "entries.chunks": self.tenant["entries.chunks"].count_documents({"files_id": oid}),
            "entry_texts": self.tenant["entry_texts"].count_documents({"entry_id": oid}),
            "items": self.tenant["items"].count_documents({"entry_id": oid}),
            "entry_homes": self.control["entry_homes"].count_documents({"_id": oid}),
            "uploads": self.control["uploads"].count_documents({"_id": oid}),
            "extraction_jobs": self.control["extraction_jobs"].count_documents({"_id": oid}),
        }

    def totals(self) -> dict[str, int]:
        """How many documents of each kind the owner has: an upload that failed
        leaves these as they were before it. (Extraction jobs are not counted:
        those of earlier uploads finish meanwhile.)"""
        owner = {"owner_id": self.owner_id}
        return {
            "entries": self.tenant["entries"].count_documents({}),
            "entries.files": self.tenant["entries.files"].count_documents({}),
            "entries.chunks": self.tenant["entries.chunks"].count_documents({}),
            "items": self.tenant["items"].count_documents({}),
            "entry_homes": self.control["entry_homes"].count_documents(owner),
            "uploads": self.control["uploads"].count_documents(owner),
        }


NO_TRACES = {
    "entries": 0,
    "entries.files": 0,
    "entries.chunks": 0,
    "entry_texts": 0,
    "items": 0,
    "entry_homes": 0,
    "uploads": 0,
    "extraction_jobs": 0,
}
