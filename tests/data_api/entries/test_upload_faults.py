"""Uploads over real HTTP (`spec/entries.md`, Storage): a 50 MB file streamed
through a TCP socket into GridFS and back without the server holding it in
memory; a client that goes away mid-body, an engine killed (SIGKILL)
mid-upload, and a client silent for longer than the upload markers' age, each
leaving no entry, no chunk and no upload marker behind; and uploads slower than
that age, which keep every byte.

Apps run under uvicorn in this process, on free loopback ports, their
maintenance task every 0.2 s. `live` keeps the default staleness of upload
markers (60 s): what it shows must not depend on maintenance. `reaping` has
markers stale after 3 s, so maintenance cleans up after a dead upload within
the test; a live upload renews its markers, however slow, and one silent for
longer than that is given up (408).
Accounts are registered through an ASGI client of the same app (registering
waits for a mail, which would block the loop uvicorn serves on). The 50 MB
upload is made once and looked at by two tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.accounts import Account, register_account
from tests.fixtures.datasets import create_dataset, user_id_of
from tests.fixtures.engine import DatabaseServer
from tests.fixtures.entries import (
    BOUNDARY,
    CHUNK,
    ENTRIES,
    MULTIPART,
    Stored,
    Sync,
    closing_boundary,
    file,
    form_field,
    module_app,
    module_settings,
    part_head,
    upload_one,
)
from tests.fixtures.mailbox import Inbox
from tests.fixtures.served import eventually, uvicorn_serving

BIG_BYTES = 50 * CHUNK
#: Streamed, an upload holds a few chunks at a time, never the whole file.
RSS_GROWTH_LIMIT = 30_000_000
#: Upload markers of the `reaping` app are stale after this long.
STALE_SECONDS = 3.0
#: What maintenance may take to clean up after a dead upload.
CLEANUP_SECONDS = 30
#: Past the first batch of chunks (8 MiB): the upload has written to GridFS.
PAST_FIRST_BATCH = 9 * CHUNK
#: A steady client: this many bytes every TRICKLE_PAUSE seconds.
TRICKLE_PIECE = 64 * 1024
TRICKLE_PAUSE = 0.05


@dataclass
class Live:
    app: FastAPI
    url: str
    account: Account
    dataset_id: str
    stored: Stored

    @property
    def headers(self) -> dict[str, str]:
        return self.account.bearer

    def client(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, **options)


@contextlib.asynccontextmanager
async def served(
    server: DatabaseServer, inbox: Inbox, sync_client: Sync, data_dir: Path, **overrides: Any
) -> AsyncIterator[Live]:
    """An app served over HTTP, with an account and a dataset of its own."""
    settings = module_settings(
        server, inbox, data_dir, maintenance_interval_seconds=0.2, **overrides
    )
    async with (
        module_app(server, sync_client, settings) as (app, asgi),
        uvicorn_serving(app) as url,
    ):
        account = await register_account(asgi, inbox)
        owner_id = await user_id_of(asgi, account)
        dataset = await create_dataset(asgi, account.bearer, name="faults")
        # The tenant database exists before the first test, and the upload path has run.
        await upload_one(asgi, account.bearer, dataset["id"], "warm.bin", os.urandom(CHUNK))
        stored = Stored(sync_client, settings.control_db, owner_id)
        yield Live(app, url, account, dataset["id"], stored)


@pytest.fixture(scope="module")
async def live(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Live]:
    data_dir = tmp_path_factory.mktemp("upload-live") / "data"
    async with served(database_server, smtp_server, sync_client, data_dir) as app:
        yield app


@pytest.fixture(scope="module")
async def reaping(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Live]:
    data_dir = tmp_path_factory.mktemp("upload-reaping") / "data"
    async with served(
        database_server, smtp_server, sync_client, data_dir, stale_after_seconds=STALE_SECONDS
    ) as app:
        yield app


# ---------------------------------------------------------------- bodies and state


def dataset_head(dataset_id: str) -> bytes:
    dataset = form_field("dataset_id", dataset_id)
    return part_head(dataset) + dataset_id.encode() + b"\r\n"


def file_head(filename: str, *, first: bool = True) -> bytes:
    """A file part's headers (after the previous file's bytes unless `first`)."""
    return (b"" if first else b"\r\n") + part_head(file(filename, b""))


def upload_head(dataset_id: str, filename: str) -> bytes:
    """The body up to a file's first byte: the dataset field and the file part's headers."""
    return dataset_head(dataset_id) + file_head(filename)


def upload_tail() -> bytes:
    return b"\r\n" + closing_boundary()


def owner_markers(live: Live) -> int:
    return int(live.stored.control["uploads"].count_documents({"owner_id": live.stored.owner_id}))


def more_chunks_than(live: Live, before: dict[str, int]) -> bool:
    return live.stored.totals()["entries.chunks"] > before["entries.chunks"]


def stored_sha256(live: Live, entry_id: str) -> str:
    return hashlib.sha256(live.stored.stored_bytes(entry_id)).hexdigest()


async def post(live: Live, content: Any, *, timeout: float = 120) -> httpx.Response:
    async with live.client(timeout=timeout) as http:
        return await http.post(
            ENTRIES, content=content, headers={**live.headers, "Content-Type": MULTIPART}
        )


# ---------------------------------------------------------------- 50 MB through a socket


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def release_free_memory() -> None:
    """Hand the memory earlier tests freed back to the system (glibc `malloc_trim`),
    so that a baseline taken now is not padded by free heap that an upload could
    reuse unseen."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.asynccontextmanager
async def peak_rss() -> AsyncIterator[list[int]]:
    """This process's RSS sampled every 50 ms while the block runs: [baseline, peak]."""
    release_free_memory()
    found = [rss_bytes(), rss_bytes()]

    async def sample() -> None:
        while True:
            found[1] = max(found[1], rss_bytes())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        yield found
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        found[1] = max(found[1], rss_bytes())


@dataclass(frozen=True)
class BigUpload:
    response: httpx.Response
    sha256: str
    #: How much this process's RSS grew while the upload ran (client and server).
    rss_growth: int


@pytest.fixture(scope="module")
async def big_upload(live: Live) -> BigUpload:
    """50 MB of random bytes streamed from a generator over TCP (chunked), once."""
    sent = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        yield upload_head(live.dataset_id, "big.bin")
        for _ in range(BIG_BYTES // CHUNK):
            piece = os.urandom(CHUNK)
            sent.update(piece)
            yield piece
        yield upload_tail()

    async with peak_rss() as rss:
        response = await post(live, body())
    return BigUpload(response, sent.hexdigest(), rss[1] - rss[0])


async def test_a_50_mb_upload_over_http_downloads_byte_identical(
    live: Live, big_upload: BigUpload
) -> None:
    response = big_upload.response
    assert response.status_code == 201, response.text
    entry = response.json()["data"]
    assert (entry["size"], entry["sha256"]) == (BIG_BYTES, big_upload.sha256)
    assert await asyncio.to_thread(live.stored.chunks, entry["id"]) == list(range(50))
    received, size = hashlib.sha256(), 0
    async with (
        live.client(timeout=120) as http,
        http.stream("GET", f"{ENTRIES}/{entry['id']}/download", headers=live.headers) as got,
    ):
        assert got.status_code == 200
        assert got.headers["content-length"] == str(BIG_BYTES)
        async for piece in got.aiter_bytes():
            received.update(piece)
            size += len(piece)
    assert (size, received.hexdigest()) == (BIG_BYTES, big_upload.sha256)


async def test_a_50_mb_upload_grows_the_process_by_well_under_the_file_size(
    big_upload: BigUpload,
) -> None:
    assert big_upload.response.status_code == 201, big_upload.response.text
    growth = big_upload.rss_growth
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.1f} MiB during the upload"


# ---------------------------------------------------------------- interrupted uploads


async def raw_upload_start(
    live: Live, declared: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw HTTP/1.1 upload that declares `declared` bytes and sends its head."""
    host, port = live.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = (
        f"POST {ENTRIES} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Authorization: {live.headers['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    writer.write(request.encode() + upload_head(live.dataset_id, "cut.bin"))
    await writer.drain()
    return reader, writer


async def raw_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of an HTTP/1.1 answer with a Content-Length."""
    status = int((await reader.readline()).split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return status, json.loads(body)


async def test_a_client_that_goes_away_mid_body_leaves_nothing(live: Live) -> None:
    """Markers are stale only after 60 s here: the upload cleans up after itself."""
    before = await asyncio.to_thread(live.stored.totals)
    _, writer = await raw_upload_start(live, declared=20_000_000)
    for _ in range(PAST_FIRST_BATCH // CHUNK):
        writer.write(os.urandom(CHUNK))
        await writer.drain()
    await eventually(lambda: owner_markers(live) == 1 and more_chunks_than(live, before))
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    await eventually(lambda: live.stored.totals() == before)


@pytest.fixture
def engine(database_server: DatabaseServer) -> DatabaseServer:
    if not database_server.stoppable:
        pytest.skip("needs the embedded engine to kill it")
    return database_server


async def test_an_upload_the_engine_dies_under_fails_and_maintenance_removes_what_it_wrote(
    reaping: Live, engine: DatabaseServer
) -> None:
    live = reaping
    before = await asyncio.to_thread(live.stored.totals)
    killed = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield upload_head(live.dataset_id, "doomed.bin")
        for _ in range(PAST_FIRST_BATCH // CHUNK):
            yield os.urandom(CHUNK)
        await killed.wait()
        for _ in range(PAST_FIRST_BATCH // CHUNK):  # the next batch meets the dead engine
            yield os.urandom(CHUNK)
        yield upload_tail()

    async def send() -> httpx.Response | Exception:
        try:
            return await post(live, body(), timeout=60)
        except httpx.TransportError as exc:
            return exc

    uploading = asyncio.create_task(send())
    # Killed well inside the marker's 3 s, so that only maintenance after the
    # restart can remove what the upload wrote.
    await eventually(lambda: more_chunks_than(live, before), seconds=STALE_SECONDS * 0.6)
    await asyncio.to_thread(engine.kill)
    killed.set()
    try:
        outcome = await asyncio.wait_for(uploading, 60)
    finally:
        await asyncio.to_thread(engine.start)
    if isinstance(outcome, httpx.Response):
        assert outcome.status_code >= 500, outcome.text
    await eventually(lambda: live.stored.totals() == before)
    assert (await asyncio.to_thread(owner_markers, live)) == 0
    # The app answers again without a restart.
    again = await post(live, upload_head(live.dataset_id, "after.bin") + b"fine" + upload_tail())
    assert again.status_code == 201, again.text


# ---------------------------------------------------------------- slow uploads


@dataclass(frozen=True)
class SlowFile:
    """A file sent as a burst of `burst` bytes, then a trickle for `trickle_seconds`."""

    filename: str
    burst: int
    trickle_seconds: float


async def slow_upload(live: Live, files: list[SlowFile]) -> tuple[httpx.Response, list[str]]:
    """Upload `files` at their pace in one request; the answer and each file's SHA-256."""
    hashes = [hashlib.sha256() for _ in files]

    async def body() -> AsyncIterator[bytes]:
        yield dataset_head(live.dataset_id)
        for number, (slow, sha) in enumerate(zip(files, hashes, strict=True)):
            yield file_head(slow.filename, first=number == 0)
            burst = os.urandom(slow.burst)
            sha.update(burst)
            yield burst
            until = time.monotonic() + slow.trickle_seconds
            while time.monotonic() < until:
                piece = os.urandom(TRICKLE_PIECE)
                sha.update(piece)
                yield piece
                await asyncio.sleep(TRICKLE_PAUSE)
        yield upload_tail()

    response = await post(live, body())
    return response, [sha.hexdigest() for sha in hashes]


LONGER_THAN_STALE = STALE_SECONDS + 1.5


async def test_an_upload_slower_than_the_marker_staleness_keeps_every_byte(
    reaping: Live,
) -> None:
    """A steady upload renews its marker: maintenance leaves it alone however long
    it takes (its first batch of chunks is written long before the markers' age)."""
    response, [sha] = await slow_upload(
        reaping, [SlowFile("slow.bin", PAST_FIRST_BATCH, LONGER_THAN_STALE)]
    )
    assert response.status_code == 201, response.text
    entry = response.json()["data"]
    assert entry["sha256"] == sha
    assert await asyncio.to_thread(stored_sha256, reaping, entry["id"]) == sha


async def test_the_first_file_of_a_slow_multi_file_upload_keeps_every_byte(
    reaping: Live,
) -> None:
    """The markers of the files already received are renewed with the one arriving."""
    files = [
        SlowFile("first.bin", PAST_FIRST_BATCH, 0),
        SlowFile("second.bin", TRICKLE_PIECE, LONGER_THAN_STALE),
    ]
    response, hashes = await slow_upload(reaping, files)
    assert response.status_code == 201, response.text
    entries = response.json()["entries"]
    for entry, sha in zip(entries, hashes, strict=True):
        assert await asyncio.to_thread(stored_sha256, reaping, entry["id"]) == sha


async def test_an_upload_paused_longer_than_the_marker_staleness_is_given_up_with_408(
    reaping: Live,
) -> None:
    """A client silent for longer than the markers' age is taken for dead: maintenance
    removes what it wrote, and when it sends again it is told so."""
    live = reaping
    before = await asyncio.to_thread(live.stored.totals)
    late, tail = os.urandom(TRICKLE_PIECE), upload_tail()
    declared = len(upload_head(live.dataset_id, "cut.bin")) + PAST_FIRST_BATCH
    reader, writer = await raw_upload_start(live, declared=declared + len(late) + len(tail))
    writer.write(os.urandom(PAST_FIRST_BATCH))
    await writer.drain()
    await eventually(lambda: owner_markers(live) == 1 and more_chunks_than(live, before))
    await eventually(lambda: live.stored.totals() == before, seconds=STALE_SECONDS * 4)
    writer.write(late + tail)
    await writer.drain()
    status, body = await asyncio.wait_for(raw_answer(reader), 30)
    writer.close()
    assert (status, body["error_code"]) == (408, "UPLOAD_STALLED")
    await eventually(lambda: live.stored.totals() == before)
