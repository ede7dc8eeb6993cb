"""End-to-end load (issue #6): 64 clients for 60 s, 80% reads / 20% writes,
against the served API and, beside it, the raw driver on the same engine.

- read: `GET /api/crud/{id}` of a random document of a 10,000-document
  collection (API key); raw: `find_one({"_id": ...})`.
- write: `POST /api/crud` of one new document (unique `email` index, schema
  validation); raw: `insert_one` of the same document, already typed.

Each client picks read or write at random (seeded, 80/20) and runs back to back
(a closed loop). Figures: requests/s overall and p50/p99 per kind.
`QUARRY_BENCH_LOAD_SECONDS` (default 60), `QUARRY_BENCH_LOAD_CLIENTS` (default
64), `QUARRY_BENCH_LOAD_DOCS` (default 10,000).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from typing import Any

import httpx
from bson import ObjectId
from pymongo import AsyncMongoClient

from app.schema import compile_schema
from bench.crud import FIELDS, create_account, make_document, physical_name
from bench.harness import HttpConnection, Row, control_db, served_api

SECONDS = float(os.environ.get("QUARRY_BENCH_LOAD_SECONDS", "60"))
CLIENTS = int(os.environ.get("QUARRY_BENCH_LOAD_CLIENTS", "64"))
DOCS = int(os.environ.get("QUARRY_BENCH_LOAD_DOCS", "10000"))
READ_SHARE = 0.8


class Mix:
    """Latencies per kind of operation for one closed-loop run."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {"read": [], "write": []}
        self.elapsed = 0.0

    async def run(self, read: Any, write: Any) -> None:
        deadline = time.perf_counter() + SECONDS
        chooser = random.Random(6)

        async def client() -> None:
            while time.perf_counter() < deadline:
                kind = "read" if chooser.random() < READ_SHARE else "write"
                started = time.perf_counter()
                await (read() if kind == "read" else write())
                self.latencies[kind].append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        self.elapsed = time.perf_counter() - started

    @property
    def throughput(self) -> float:
        return sum(len(values) for values in self.latencies.values()) / self.elapsed

    def percentiles(self, kind: str) -> tuple[float, float]:
        values = sorted(self.latencies[kind])
        return statistics.median(values) * 1000, values[max(0, int(len(values) * 0.99) - 1)] * 1000

    def summary(self) -> dict[str, Any]:
        return {
            "throughput": self.throughput,
            "seconds": self.elapsed,
            **{f"{kind}_count": len(values) for kind, values in self.latencies.items()},
            **{f"{kind}_p50_p99_ms": self.percentiles(kind) for kind in self.latencies},
        }


async def _run(api: str, mongodb_url: str, control: str) -> tuple[list[Row], dict[str, Any]]:
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        database_id, headers = await create_account(http)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_url, maxPoolSize=CLIENTS, tz_aware=True
    )
    db_name = await physical_name(client, control, database_id)
    schema = compile_schema(FIELDS)
    api_ids, raw_ids = [], []
    for collection, prefix, ids in (("users", "api", api_ids), ("users_raw", "raw", raw_ids)):
        typed = [
            {"_id": ObjectId(), **(schema.validate(make_document(i, prefix))[0] or {})}
            for i in range(DOCS)
        ]
        await client[db_name][collection].insert_many(typed)
        ids.extend(str(document["_id"]) for document in typed)
    await client[db_name]["users_raw"].create_index("email", unique=True)
    counter = iter(range(DOCS, 10**9))

    idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
    for _ in range(CLIENTS):
        idle.put_nowait(await HttpConnection.open(api))
    target = f"database_id={database_id}&collection_name=users"

    async def api_read() -> None:
        connection = await idle.get()
        status, body = await connection.request(
            "GET", f"/api/crud/{random.choice(api_ids)}?{target}", headers=headers
        )
        idle.put_nowait(connection)
        assert status == 200, body[:200]

    async def api_write() -> None:
        body = json.dumps(
            {
                "database_id": database_id,
                "collection_name": "users",
                "data": make_document(next(counter), "api"),
            }
        ).encode()
        connection = await idle.get()
        status, answer = await connection.request(
            "POST",
            "/api/crud",
            body=body,
            headers={**headers, "Content-Type": "application/json"},
        )
        idle.put_nowait(connection)
        assert status == 201, answer[:200]

    quarry = Mix()
    await quarry.run(api_read, api_write)
    while not idle.empty():
        await idle.get_nowait().close()

    raw_users = client[db_name]["users_raw"]

    async def raw_read() -> None:
        assert await raw_users.find_one({"_id": ObjectId(random.choice(raw_ids))}) is not None

    async def raw_write() -> None:
        document, _ = schema.validate(make_document(next(counter), "raw"))
        await raw_users.insert_one(dict(document or {}))

    raw = Mix()
    await raw.run(raw_read, raw_write)
    await client.close()
    rows = [
        Row(
            f"mixed load 80% GET by id / 20% POST, req/s ({CLIENTS} clients, {SECONDS:.0f} s)",
            f"{quarry.throughput:,.0f}",
            f"{raw.throughput:,.0f}",
            f"{quarry.throughput / raw.throughput:.2f}",
            "≥ 0.60",
        ),
    ]
    for kind in ("read", "write"):
        q50, q99 = quarry.percentiles(kind)
        r50, r99 = raw.percentiles(kind)
        rows.append(
            Row(
                f"mixed load {kind} p50 / p99 ms",
                f"{q50:.1f} / {q99:.1f}",
                f"{r50:.1f} / {r99:.1f}",
                "",
                "",
            )
        )
    return rows, {"load_api": quarry.summary(), "load_raw": raw.summary()}


def run_all(mongodb_url: str) -> tuple[list[Row], dict[str, Any]]:
    with served_api(mongodb_url) as api:
        control = control_db(api)
        return asyncio.run(_run(api, mongodb_url, control))
