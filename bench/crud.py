"""CRUD figures (issue #5), each beside the raw driver on the same engine:

1. single-document reads by a unique indexed field: `GET /api/crud?filters=
   {"email": ...}` with an API key at 32 concurrent clients vs `find_one` at the
   same concurrency (throughput, p50, p99);
2. inserts of 10,000-document batches: `POST /api/crud` vs `insert_many` of the
   same (already typed) documents;
3. cursor pagination: page 1 vs page 1,000 (page size 100) of a 100,000-document
   collection, and offset page 1,000 for reference. The page-1,000 cursor is the
   one the server hands out after page 999, made with the server's key here so
   that the benchmark does not have to walk 999 pages first.

Sizes: `QUARRY_BENCH_READ_DOCS` (documents in the read collection, default
10,000), `QUARRY_BENCH_INSERT_BATCHES` (default 5), `QUARRY_BENCH_PAGE_DOCS`
(default 100,000), `QUARRY_BENCH_SECONDS` (load duration, default 10).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from bson import ObjectId
from pymongo import AsyncMongoClient

from app.schema import compile_schema
from bench.harness import HttpConnection, LoadResult, Row, closed_loop, control_db, served_api
from data_api.documents.query import CursorCodec

CONCURRENCY = 32
READ_DOCS = int(os.environ.get("QUARRY_BENCH_READ_DOCS", "10000"))
INSERT_BATCHES = int(os.environ.get("QUARRY_BENCH_INSERT_BATCHES", "5"))
PAGE_DOCS = int(os.environ.get("QUARRY_BENCH_PAGE_DOCS", "100000"))
SECONDS = float(os.environ.get("QUARRY_BENCH_SECONDS", "10"))
BATCH = 10_000
PAGE_SIZE = 100
FIELDS = [
    {"name": "email", "type": "string", "required": True, "unique": True},
    {"name": "name", "type": "string"},
    {"name": "age", "type": "int"},
    {"name": "score", "type": "float"},
    {"name": "signup_date", "type": "date"},
]
PLAIN_FIELDS = [{**field, "unique": False} for field in FIELDS]


@dataclass(frozen=True)
class Setup:
    """The served API, the raw client, and the benchmark's database and API key."""

    api: str
    client: AsyncMongoClient[dict[str, Any]]
    db_name: str
    database_id: str
    headers: dict[str, str]

    def unpack(self) -> tuple[str, AsyncMongoClient[dict[str, Any]], str, str, dict[str, str]]:
        return self.api, self.client, self.db_name, self.database_id, self.headers


def make_document(i: int, prefix: str = "user") -> dict[str, Any]:
    return {
        "email": f"{prefix}{i:07d}@example.com",
        "name": f"User Number {i:07d}",
        "age": 18 + i % 70,
        "score": i * 0.37 % 100,
        "signup_date": f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}T10:{i % 60:02d}:00Z",
    }


CRUD_COLLECTIONS = [
    {"name": "users", "fields": FIELDS},
    {"name": "events", "fields": PLAIN_FIELDS},
    {"name": "pages", "fields": PLAIN_FIELDS},
]


async def create_account(
    http: httpx.AsyncClient,
    *,
    db_name: str = "crud_bench",
    collections: list[dict[str, Any]] | None = None,
) -> tuple[str, dict[str, str]]:
    """A new account with one database of `collections` (default: the CRUD
    benchmark's): the database's id and API-key headers."""
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    await http.post(
        "/core/register",
        json={"email": email, "firstName": "B", "lastName": "M", "password": "benchmark-pass"},
    )
    login = await http.post("/core/login", json={"email": email, "password": "benchmark-pass"})
    bearer = {"Authorization": f"Bearer {login.json()['access']}"}
    created = await http.post(
        "/api/create_database",
        json={"db_name": db_name, "collections": collections or CRUD_COLLECTIONS},
        headers=bearer,
    )
    assert created.status_code == 201, created.text
    key = await http.post("/api/api_keys", json={"name": "bench"}, headers=bearer)
    return created.json()["database"]["id"], {
        "Authorization": f"Api-Key {key.json()['data']['key']}"
    }


async def physical_name(
    client: AsyncMongoClient[dict[str, Any]], control: str, database_id: str
) -> str:
    record = await client[control]["databases"].find_one({"_id": ObjectId(database_id)})
    assert record is not None
    return str(record["dbName"])


async def _reads(setup: Setup) -> tuple[LoadResult, LoadResult]:
    api, client, db_name, database_id, headers = setup.unpack()
    async with httpx.AsyncClient(base_url=api, timeout=600) as http:
        for start in range(0, READ_DOCS, BATCH):
            response = await http.post(
                "/api/crud",
                json={
                    "database_id": database_id,
                    "collection_name": "users",
                    "data": [make_document(i) for i in range(start, min(start + BATCH, READ_DOCS))],
                },
                headers=headers,
            )
            assert response.status_code == 201, response.text
    idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
    for _ in range(CONCURRENCY):
        idle.put_nowait(await HttpConnection.open(api))
    base = f"/api/crud?database_id={database_id}&collection_name=users&filters="

    async def api_read() -> None:
        email = f"user{random.randrange(READ_DOCS):07d}@example.com"
        connection = await idle.get()
        status, body = await connection.request(
            "GET", base + quote(json.dumps({"email": email})), headers=headers
        )
        idle.put_nowait(connection)
        assert status == 200 and email.encode() in body, body[:200]

    api_result = await closed_loop(api_read, concurrency=CONCURRENCY, seconds=SECONDS)
    while not idle.empty():
        await idle.get_nowait().close()
    users = client[db_name]["users"]

    async def raw_read() -> None:
        email = f"user{random.randrange(READ_DOCS):07d}@example.com"
        assert await users.find_one({"email": email}) is not None

    raw_result = await closed_loop(raw_read, concurrency=CONCURRENCY, seconds=SECONDS)
    return api_result, raw_result


async def _inserts(setup: Setup) -> tuple[list[float], list[float]]:
    api, client, db_name, database_id, headers = setup.unpack()
    schema = compile_schema(PLAIN_FIELDS)
    api_times, raw_times = [], []
    async with httpx.AsyncClient(base_url=api, timeout=600) as http:
        for batch in range(INSERT_BATCHES):
            documents = [make_document(batch * BATCH + i, "api") for i in range(BATCH)]
            body = json.dumps(
                {"database_id": database_id, "collection_name": "events", "data": documents}
            )
            started = time.perf_counter()
            response = await http.post(
                "/api/crud", content=body, headers={**headers, "Content-Type": "application/json"}
            )
            api_times.append(time.perf_counter() - started)
            assert response.status_code == 201, response.text
            typed = [
                schema.validate(make_document(batch * BATCH + i, "raw"))[0] for i in range(BATCH)
            ]
            started = time.perf_counter()
            await client[db_name]["events_raw"].insert_many(typed, ordered=True)
            raw_times.append(time.perf_counter() - started)
    return api_times, raw_times


async def _pages(setup: Setup, codec: CursorCodec) -> dict[str, float]:
    api, client, db_name, database_id, headers = setup.unpack()
    schema = compile_schema(PLAIN_FIELDS)
    pages = client[db_name]["pages"]
    for start in range(0, PAGE_DOCS, BATCH):
        typed = [
            {"_id": ObjectId(), **(schema.validate(make_document(i, "page"))[0] or {})}
            for i in range(start, min(start + BATCH, PAGE_DOCS))
        ]
        await pages.insert_many(typed, ordered=False)
    deep = min(1000, PAGE_DOCS // PAGE_SIZE)
    position = PAGE_SIZE * (deep - 1) - 1  # the last document of the page before
    last = await pages.find({}, {"_id": 1}).sort("_id", 1).skip(position).limit(1).to_list()
    fingerprint = codec.fingerprint(database_id, "pages", {}, [("_id", 1)])
    cursor = codec.encode(fingerprint=fingerprint, values=[last[0]["_id"]])
    params = {"database_id": database_id, "collection_name": "pages", "page_size": PAGE_SIZE}
    figures: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=api, timeout=600) as http:

        async def timed(extra: dict[str, Any]) -> float:
            times = []
            for _ in range(5):
                started = time.perf_counter()
                response = await http.get("/api/crud", params={**params, **extra}, headers=headers)
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
                assert len(response.json()["data"]) == PAGE_SIZE
            return statistics.median(times) * 1000

        figures["page1_cursor_ms"] = await timed({"after": ""})
        figures["page1000_cursor_ms"] = await timed({"after": cursor})
        figures["page1000_offset_ms"] = await timed({"page": deep})
    raw_times = []
    for _ in range(5):
        started = time.perf_counter()
        await pages.find({}).sort("_id", 1).limit(PAGE_SIZE).to_list()
        raw_times.append(time.perf_counter() - started)
    figures["raw_page1_ms"] = statistics.median(raw_times) * 1000
    return figures


async def _run(
    api: str, mongodb_url: str, control: str, codec: CursorCodec
) -> tuple[list[Row], dict[str, Any]]:
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        database_id, headers = await create_account(http)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_url, maxPoolSize=CONCURRENCY, tz_aware=True
    )
    db_name = await physical_name(client, control, database_id)
    setup = Setup(api, client, db_name, database_id, headers)
    read_api, read_raw = await _reads(setup)
    api_times, raw_times = await _inserts(setup)
    pages = await _pages(setup, codec)
    await client.close()
    api_rate = BATCH / statistics.median(api_times)
    raw_rate = BATCH / statistics.median(raw_times)
    rows = [
        Row(
            f"GET /api/crud by unique field req/s ({CONCURRENCY} clients, {READ_DOCS:,} docs)",
            f"{read_api.throughput:.0f}",
            f"{read_raw.throughput:.0f}",
            f"{read_api.throughput / read_raw.throughput:.2f}",
            "≥ 0.60",
        ),
        Row(
            "GET /api/crud by unique field p50 / p99 ms",
            f"{read_api.p50_ms:.1f} / {read_api.p99_ms:.1f}",
            f"{read_raw.p50_ms:.1f} / {read_raw.p99_ms:.1f}",
            "",
            "p99 < 25",
        ),
        Row(
            f"POST /api/crud 10,000-doc batches, docs/s (median of {INSERT_BATCHES})",
            f"{api_rate:,.0f}",
            f"{raw_rate:,.0f}",
            f"{api_rate / raw_rate:.2f}",
            "≥ 0.80",
        ),
        Row(
            f"cursor page 1 vs page 1,000 ms ({PAGE_DOCS:,} docs, {PAGE_SIZE}/page)",
            f"{pages['page1_cursor_ms']:.0f} vs {pages['page1000_cursor_ms']:.0f}",
            f"{pages['raw_page1_ms']:.0f} (raw page 1)",
            f"{pages['page1000_cursor_ms'] / pages['page1_cursor_ms']:.2f}",
            "≈ 1.00",
        ),
        Row(
            "offset page 1,000 ms (reference)",
            f"{pages['page1000_offset_ms']:.0f}",
            "",
            "",
            "",
        ),
    ]
    return rows, {
        "crud_read_api": read_api,
        "crud_read_raw": read_raw,
        "crud_insert_api_s": api_times,
        "crud_insert_raw_s": raw_times,
        "crud_pages_ms": pages,
    }


def run_all(mongodb_url: str) -> tuple[list[Row], dict[str, Any]]:
    """Its own server, with a known secret so that the page-1,000 cursor can be made."""
    secret = secrets.token_urlsafe(48)
    codec = CursorCodec.from_secret(secret)
    with served_api(mongodb_url, extra_env={"QUARRY_SECRET_KEY": secret}) as api:
        control = control_db(api)
        return asyncio.run(_run(api, mongodb_url, control, codec))
