"""Entry and search figures (issue 15), beside the raw driver on the same engine:

1. seed 000's batch call: `POST /api/v1/entries/batch {dataset_id, limit: 50}`
   over a dataset of 50 entries, 1 client, p50/p99 (seed: ~250 ms; goal < 50 ms).
   Raw: the 50 entry records by `dataset_id` with the driver;
2. upload throughput, MB/s: 1,000 small files (4 KiB each) in one multipart
   request, and one large file (`QUARRY_BENCH_BIG_MB`, default 500 MB) streamed;
   raw: the driver's `AsyncGridFSBucket.upload_from_stream` of the same bytes
   (default 255 KiB chunks; goal >= 0.7x);
3. indexing rate: `QUARRY_BENCH_SEARCH_ENTRIES` (default 10,000) entries of 10 KB
   of text (100 MB) written as the service writes them and queued for the
   server's search indexer; MB/s of text until the queue is drained and the
   last entry is searchable (goal ≥ 5 MB/s); and tantivy alone (the index
   writes without MongoDB) for comparison;
4. query latency over them: a two-word query, `POST /api/v1/search`, 1 and 8
   clients, p50/p99 (goal at 8: p50 < 20 ms, p99 < 100 ms).

`QUARRY_BENCH_ENTRIES_WORKERS` (default 1) serves the API with that many worker
processes.

The text is pseudo-words from a fixed 20,000-word vocabulary with a Zipf-like
frequency (a seeded RNG), so posting lists have realistic lengths.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from bson import ObjectId
from gridfs import AsyncGridFSBucket
from pymongo import AsyncMongoClient

from app.clock import utc_now
from bench.harness import (
    BACKEND,
    HttpConnection,
    Row,
    bench_user,
    closed_loop,
    control_db,
    embedded_engine,
    engine_env,
    served_api,
)
from data_api.search.index import IndexedEntry, SearchIndexes

SECONDS = float(os.environ.get("QUARRY_BENCH_SECONDS", "10"))
BIG_MB = int(os.environ.get("QUARRY_BENCH_BIG_MB", "500"))
SEARCH_ENTRIES = int(os.environ.get("QUARRY_BENCH_SEARCH_ENTRIES", "10000"))
#: Server worker processes (`quarry serve --workers`).
WORKERS = int(os.environ.get("QUARRY_BENCH_ENTRIES_WORKERS", "1"))
TEXT_BYTES = 10_000
SMALL_FILES = 1000
SMALL_BYTES = 4096
VOCABULARY = 20_000


def _words(seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        "".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(VOCABULARY)
    ]


def _text(rng: random.Random, words: list[str], weights: list[float]) -> str:
    out: list[str] = []
    size = 0
    while size < TEXT_BYTES:
        chunk = rng.choices(words, weights=weights, k=64)
        out.extend(chunk)
        size += sum(len(w) + 1 for w in chunk)
    return " ".join(out)[:TEXT_BYTES]


async def _dataset(http: httpx.AsyncClient, headers: dict[str, str], name: str) -> str:
    created = await http.post("/api/v1/datasets", json={"name": name}, headers=headers)
    assert created.status_code == 201, created.text
    return str(created.json()["data"]["id"])


# ------------------------------------------------------------------------ batch


async def _batch(
    http: httpx.AsyncClient, api: str, headers: dict[str, str], client: Any, owner: ObjectId
) -> tuple[Row, dict[str, Any]]:
    dataset = await _dataset(http, headers, "batch")
    files = [
        ("file", (f"f{n:02}.txt", f"entry {n} text".encode(), "text/plain")) for n in range(50)
    ]
    uploaded = await http.post(
        "/api/v1/entries", data={"dataset_id": dataset}, files=files, headers=headers
    )
    assert uploaded.status_code == 201, uploaded.text
    body = json.dumps({"dataset_id": dataset, "limit": 50}).encode()
    connection = await HttpConnection.open(api)
    request_headers = {**headers, "Content-Type": "application/json"}

    async def one() -> None:
        status, answer = await connection.request(
            "POST", "/api/v1/entries/batch", body=body, headers=request_headers
        )
        assert status == 200 and len(json.loads(answer)["data"]) == 50, answer[:300]

    await one()
    api_result = await closed_loop(one, concurrency=1, seconds=SECONDS)
    await connection.close()
    tenant = client[f"qt_{owner}"]
    ds = ObjectId(dataset)

    async def raw() -> None:
        found = await tenant["entries"].find({"dataset_id": ds}).limit(50).to_list(None)
        assert len(found) == 50

    raw_result = await closed_loop(raw, concurrency=1, seconds=SECONDS)
    row = Row(
        "entries batch of 50 (seed 000: ~250 ms), 1 client p50/p99",
        f"{api_result.p50_ms:.1f}/{api_result.p99_ms:.1f} ms",
        f"{raw_result.p50_ms:.1f}/{raw_result.p99_ms:.1f} ms",
        f"{api_result.p50_ms / raw_result.p50_ms:.2f}x",
        "p50 < 50 ms",
    )
    return row, {"batch_50": {"api": vars(api_result), "raw": vars(raw_result)}}


# ------------------------------------------------------------------------ uploads


async def _upload_small(
    http: httpx.AsyncClient, headers: dict[str, str], client: Any
) -> tuple[Row, dict[str, Any]]:
    dataset = await _dataset(http, headers, "small files")
    rng = random.Random(3)
    payloads = [rng.randbytes(SMALL_BYTES) for _ in range(SMALL_FILES)]
    total_mb = SMALL_FILES * SMALL_BYTES / 1e6
    files = [
        ("file", (f"s{n:04}.bin", p, "application/octet-stream")) for n, p in enumerate(payloads)
    ]
    started = time.perf_counter()
    uploaded = await http.post(
        "/api/v1/entries", data={"dataset_id": dataset}, files=files, headers=headers
    )
    api_seconds = time.perf_counter() - started
    assert uploaded.status_code == 201, uploaded.text[:300]
    bucket = AsyncGridFSBucket(client[f"bench_raw_{ObjectId()}"], bucket_name="raw")
    started = time.perf_counter()
    for n, payload in enumerate(payloads):
        await bucket.upload_from_stream(f"s{n:04}.bin", payload)
    raw_seconds = time.perf_counter() - started
    api_rate, raw_rate = total_mb / api_seconds, total_mb / raw_seconds
    row = Row(
        f"upload {SMALL_FILES:,} files of {SMALL_BYTES // 1024} KiB (one request), MB/s",
        f"{api_rate:.2f} MB/s ({api_seconds:.2f} s)",
        f"{raw_rate:.2f} MB/s ({raw_seconds:.2f} s, GridFS bucket)",
        f"{api_rate / raw_rate:.2f}x",
        ">= 0.7x",
    )
    return row, {"upload_small": {"api_s": api_seconds, "raw_s": raw_seconds, "mb": total_mb}}


async def _big_stream(size: int, digest: Any) -> AsyncIterator[bytes]:
    block = random.Random(5).randbytes(1 << 20)
    sent = 0
    while sent < size:
        piece = block[: min(len(block), size - sent)]
        digest.update(piece)
        sent += len(piece)
        yield piece


async def _upload_big(
    api: str, headers: dict[str, str], client: Any, http: httpx.AsyncClient
) -> tuple[Row, dict[str, Any]]:
    dataset = await _dataset(http, headers, "big file")
    size = BIG_MB * 1_000_000
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="dataset_id"\r\n\r\n{dataset}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        yield head
        async for piece in _big_stream(size, digest):
            yield piece
        yield tail

    async with httpx.AsyncClient(base_url=api, timeout=3600) as streaming:
        started = time.perf_counter()
        uploaded = await streaming.post(
            "/api/v1/entries",
            content=body(),
            headers={
                **headers,
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + size + len(tail)),
            },
        )
        api_seconds = time.perf_counter() - started
    assert uploaded.status_code == 201, uploaded.text[:300]
    assert uploaded.json()["data"]["sha256"] == digest.hexdigest()

    rates: dict[str, float] = {}
    for label, chunk in (("255 KiB chunks", 255 * 1024), ("1 MiB chunks", 1 << 20)):
        bucket = AsyncGridFSBucket(
            client[f"bench_raw_{ObjectId()}"], bucket_name="raw", chunk_size_bytes=chunk
        )
        started = time.perf_counter()
        async with bucket.open_upload_stream("big.bin") as grid_in:
            async for piece in _big_stream(size, hashlib.sha256()):
                await grid_in.write(piece)
        rates[label] = size / 1e6 / (time.perf_counter() - started)
    api_rate = size / 1e6 / api_seconds
    best_raw = max(rates.values())
    row = Row(
        f"upload one {BIG_MB} MB file (streamed), MB/s",
        f"{api_rate:.1f} MB/s ({api_seconds:.1f} s)",
        ", ".join(f"{v:.1f} MB/s ({k})" for k, v in rates.items()),
        f"{api_rate / best_raw:.2f}x (vs the faster)",
        ">= 0.7x",
    )
    return row, {"upload_big": {"api_mb_s": api_rate, "raw_mb_s": rates}}


# ------------------------------------------------------------------------ search


async def _search_corpus(
    client: Any, control: str, owner: ObjectId, dataset: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries, texts and items of `SEARCH_ENTRIES` entries, written as the
    service writes them, then queued for the indexer. Returns them and the words."""
    words = _words(11)
    weights = [1 / (rank + 10) for rank in range(VOCABULARY)]
    rng = random.Random(13)
    now = utc_now()
    ds = ObjectId(dataset)
    tenant = client[f"qt_{owner}"]
    entries, texts, items, homes, queue = [], [], [], [], []
    for n in range(SEARCH_ENTRIES):
        entry_id = ObjectId()
        text = _text(rng, words, weights)
        entries.append(
            {
                "_id": entry_id, "dataset_id": ds, "name": f"doc {n}.txt",
                "filename": f"doc {n}.txt", "content_type": "text/plain", "file_type": "txt",
                "size": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest(),
                "metadata": {}, "text_status": "done", "text_chars": len(text),
                "text_pieces": 1, "text_error": None, "pages": None,
                "created_at": now - timedelta(seconds=n), "updated_at": now, "created_by": owner,
            }
        )  # fmt: skip
        texts.append({"_id": f"{entry_id}:0", "entry_id": entry_id, "n": 0, "text": text})
        items.append(
            {
                "_id": f"{ds}:{entry_id}", "dataset_id": ds, "entry_id": entry_id,
                "home_dataset_id": ds, "entry_owner_id": owner, "added_at": now,
                "added_by": owner, "notes": None,
            }
        )  # fmt: skip
        homes.append({"_id": entry_id, "owner_id": owner, "home_dataset_id": ds,
                      "linked_owner_ids": [owner]})  # fmt: skip
        queue.append({"_id": ObjectId(), "tenant": owner, "entry_id": entry_id})
    for start in range(0, SEARCH_ENTRIES, 1000):
        window = slice(start, start + 1000)
        await client[control]["entry_homes"].insert_many(homes[window])
        await tenant["entries"].insert_many(entries[window])
        await tenant["entry_texts"].insert_many(texts[window])
        await tenant["items"].insert_many(items[window])
    return queue, words


async def _indexing(
    http: httpx.AsyncClient, headers: dict[str, str], client: Any, control: str, owner: ObjectId
) -> tuple[list[Row], dict[str, Any], list[str]]:
    dataset = await _dataset(http, headers, "search corpus")
    queue, words = await _search_corpus(client, control, owner, dataset)
    megabytes = SEARCH_ENTRIES * TEXT_BYTES / 1e6
    started = time.perf_counter()
    await client[control]["search_queue"].insert_many(queue)
    while await client[control]["search_queue"].count_documents({}) > 0:  # noqa: ASYNC110 - polling another process
        await asyncio.sleep(0.1)
    pipeline_seconds = time.perf_counter() - started
    probe = {"query": "doc", "page_size": 1}
    found = await http.post("/api/v1/search", json=probe, headers=headers)
    total = found.json()["pagination"]["total_items"] if found.status_code == 200 else 0

    # tantivy alone: the same documents, no MongoDB.
    rng, weights = random.Random(13), [1 / (rank + 10) for rank in range(VOCABULARY)]
    now = utc_now()
    docs = [
        IndexedEntry(str(ObjectId()), dataset, f"doc {n}.txt", "txt", now, TEXT_BYTES,
                     _text(rng, words, weights))
        for n in range(SEARCH_ENTRIES)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        indexes = SearchIndexes(Path(tmp))
        started = time.perf_counter()
        indexes.rebuild("bench", [])
        for start in range(0, len(docs), 500):
            indexes.write("bench", upserts=docs[start : start + 500], deletes=[])
        tantivy_seconds = time.perf_counter() - started
    rows = [
        Row(
            f"indexing {SEARCH_ENTRIES:,} entries / {megabytes:.0f} MB of text, "
            "queue to searchable",
            f"{megabytes / pipeline_seconds:.1f} MB/s ({pipeline_seconds:.1f} s)",
            f"{megabytes / tantivy_seconds:.1f} MB/s (tantivy alone, batches of 500)",
            f"{tantivy_seconds / pipeline_seconds:.2f}x",
            ">= 5 MB/s",
        )
    ]
    figures = {
        "indexing": {
            "pipeline_s": pipeline_seconds,
            "tantivy_s": tantivy_seconds,
            "mb": megabytes,
            "searchable_after": total,
        }
    }
    return rows, figures, words


async def _queries(
    api: str, headers: dict[str, str], words: list[str]
) -> tuple[list[Row], dict[str, Any]]:
    rng = random.Random(17)
    # Words of middling frequency: their posting lists are long but not all.
    pool = words[50:2000]
    request_headers = {**headers, "Content-Type": "application/json"}
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    for clients in (1, 8):
        connections = [await HttpConnection.open(api) for _ in range(clients)]
        free = list(connections)

        async def one(free: list[HttpConnection] = free) -> None:
            body = json.dumps({"query": f"{rng.choice(pool)} {rng.choice(pool)}"}).encode()
            connection = free.pop()
            try:
                status, answer = await connection.request(
                    "POST", "/api/v1/search", body=body, headers=request_headers
                )
                assert status == 200, answer[:300]
            finally:
                free.append(connection)

        await one()
        result = await closed_loop(one, concurrency=clients, seconds=SECONDS)
        for connection in connections:
            await connection.close()
        rows.append(
            Row(
                f"two-word search over {SEARCH_ENTRIES:,} entries, {clients} client(s) p50/p99",
                f"{result.p50_ms:.1f}/{result.p99_ms:.1f} ms ({result.throughput:.0f} req/s)",
                "",
                "",
                "p50 < 20 ms, p99 < 100 ms" if clients == 8 else "",
            )
        )
        figures[f"query_{clients}_clients"] = vars(result)
    return rows, figures


async def _run(api: str, mongodb_url: str, control: str) -> tuple[list[Row], dict[str, Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=api, timeout=3600) as http:
            owner, headers = await bench_user(http)
            for step in (
                _batch(http, api, headers, client, owner),
                _upload_small(http, headers, client),
                _upload_big(api, headers, client, http),
            ):
                row, more = await step
                rows.append(row)
                figures.update(more)
            index_rows, more, words = await _indexing(http, headers, client, control, owner)
            rows += index_rows
            figures.update(more)
            query_rows, more = await _queries(api, headers, words)
            rows += query_rows
            figures.update(more)
        return rows, figures
    finally:
        await client.close()


def run_all(mongodb_url: str) -> tuple[list[Row], dict[str, Any]]:
    """On `QUARRY_BENCH_MONGODB_URL` when set; else on an embedded engine of its own
    that the API serves as its data directory's (as `quarry serve` does)."""
    if os.environ.get("QUARRY_BENCH_MONGODB_URL"):
        with served_api(mongodb_url, workers=WORKERS) as api:
            return asyncio.run(_run(api, mongodb_url, control_db(api)))
    with (
        embedded_engine(BACKEND) as engine,
        served_api(engine.url, workers=WORKERS, extra_env=engine_env(engine)) as api,
    ):
        return asyncio.run(_run(api, engine.url, control_db(api)))
