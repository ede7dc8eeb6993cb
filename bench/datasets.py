"""Dataset figures (issue 14), beside the raw driver on the same engine:

1. listing the datasets a user can read, `GET /api/v1/datasets` (page of 20),
   with a catalogue of `QUARRY_BENCH_DATASETS` (default 10,000) datasets of 100
   owners, some public, some shared with the user, some carrying a tag the user
   holds — at 1 and 16 clients (p50/p99; goal p50 < 20 ms). The raw column is
   the same indexed lookups done with the driver (owned, public, the user's
   shares and tags), without merging, sorting or serializing: the floor;
2. the access check on a hot dataset read: `AccessResolver.resolve` (dataset by
   `_id`, then share, role and held tags concurrently) vs reading the dataset by
   `_id` alone, in-process on the async driver, alternating blocks; the
   difference of the medians is what the check adds (goal < 1 ms).

The catalogue is written with the raw driver (the API would spend minutes on
10,000 creates that measure nothing new); rows have the shape the service writes.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from datetime import timedelta
from typing import Any

import httpx
from bson import ObjectId
from pymongo import AsyncMongoClient

from app.clock import utc_now
from app.db import Database
from app.engine import EngineSql, choose_adapter
from bench.harness import (
    BACKEND,
    HttpConnection,
    LoadResult,
    Row,
    bench_user,
    closed_loop,
    control_db,
    embedded_engine,
    engine_env,
    served_api,
)
from data_api.datasets.access import AccessResolver
from data_api.datasets.repository import Catalogue

DATASETS = int(os.environ.get("QUARRY_BENCH_DATASETS", "10000"))
OWNERS = 100
SECONDS = float(os.environ.get("QUARRY_BENCH_SECONDS", "10"))
CHECKS = int(os.environ.get("QUARRY_BENCH_ACCESS_CHECKS", "2000"))


async def _catalogue(
    client: AsyncMongoClient[dict[str, Any]], control: str, user_id: ObjectId
) -> ObjectId:
    """10,000 datasets of 100 owners (the user is one of them); 5 % public, 200
    shared with the user, two tags the user holds on 100 datasets each. Returns a
    dataset shared with the user (the hot one)."""
    db = client[control]
    rng = random.Random(7)
    owners = [user_id, *(ObjectId() for _ in range(OWNERS - 1))]
    tag_ids = [ObjectId(), ObjectId()]
    now = utc_now()
    rows = []
    for n in range(DATASETS):
        owner = owners[n % OWNERS]
        rows.append(
            {
                "_id": ObjectId(),
                "name": f"dataset {n}",
                "description": f"benchmark dataset number {n}",
                "metadata": {"n": n, "year": 2020 + n % 6},
                "owner_id": owner,
                "is_public": rng.random() < 0.05,
                "acl_override_enabled": False,
                "tags": [tag_ids[(n // 50) % 2]] if n % 50 == 1 else [],
                "source_query": None,
                "created_at": now - timedelta(seconds=n),
                "updated_at": now - timedelta(seconds=n),
                "expires_at": now + timedelta(days=90),
                "state": "live",
            }
        )
    await db["datasets"].insert_many(rows)
    others = [r for r in rows if r["owner_id"] != user_id]
    shared = rng.sample(others, 200)
    await db["shares"].insert_many(
        [
            {
                "_id": ObjectId(),
                "key": f"{r['_id']}:{user_id}",
                "dataset_id": r["_id"],
                "target": {"type": "user", "id": user_id},
                "user_id": user_id,
                "permission": "read",
                "expires_at": None,
                "created_at": now,
                "created_by": r["owner_id"],
            }
            for r in shared
        ]
    )
    await db["tags"].insert_many(
        [
            {"_id": t, "name": f"bench-{i}", "description": "", "is_public": True, "metadata": {},
             "created_at": now, "updated_at": now}
            for i, t in enumerate(tag_ids)
        ]
    )  # fmt: skip
    await db["user_tags"].insert_many(
        [{"_id": f"{user_id}:{t}", "user_id": user_id, "tag_id": t, "at": now} for t in tag_ids]
    )
    return ObjectId(shared[0]["_id"])


async def _raw_listing(db: Any, user_id: ObjectId) -> None:
    shares, tags = await asyncio.gather(
        db["shares"].find({"user_id": user_id}).to_list(None),
        db["user_tags"].find({"user_id": user_id}).to_list(None),
    )
    await asyncio.gather(
        db["datasets"].find({"owner_id": user_id}).to_list(None),
        db["datasets"].find({"is_public": True}).to_list(None),
        *(db["datasets"].find({"tags": t["tag_id"]}).to_list(None) for t in tags),
        *(db["datasets"].find_one({"_id": s["dataset_id"]}) for s in shares),
    )


async def _listing(api: str, headers: dict[str, str], clients: int) -> LoadResult:
    connections = [await HttpConnection.open(api) for _ in range(clients)]
    free = list(connections)

    async def one() -> None:
        connection = free.pop()
        try:
            status, body = await connection.request(
                "GET", "/api/v1/datasets?page_size=20", headers=headers
            )
            assert status == 200, body[:300]
        finally:
            free.append(connection)

    await one()
    try:
        return await closed_loop(one, concurrency=clients, seconds=SECONDS)
    finally:
        for connection in connections:
            await connection.close()


async def _access_check(
    client: AsyncMongoClient[dict[str, Any]],
    control: str,
    user_id: ObjectId,
    hot: ObjectId,
    conninfo: str | None,
) -> tuple[float, float]:
    """Median ms of (dataset by `_id` alone, the full access check), with the engine's
    SQL as a server on its own data directory has it."""
    database = Database(
        client=client, control_db_name=control, choose_adapter=choose_adapter,
        query_timeout=10.0,
    )  # fmt: skip
    if conninfo:
        database.engine_reads = EngineSql(conninfo)
    catalogue = Catalogue(database)
    resolver = AccessResolver(catalogue)
    plain: list[float] = []
    checked: list[float] = []
    for block in range(CHECKS // 100):
        sides = [(plain, False), (checked, True)]
        for latencies, check in sides if block % 2 == 0 else reversed(sides):
            for _ in range(100):
                started = time.perf_counter()
                if check:
                    await resolver.resolve(hot, user_id, utc_now())
                else:
                    await catalogue.find_dataset(dataset_id=hot)
                latencies.append(time.perf_counter() - started)
    if database.engine_reads is not None:
        await database.engine_reads.close()
    return statistics.median(plain) * 1000, statistics.median(checked) * 1000


async def _run(
    api: str, mongodb_url: str, control: str, conninfo: str | None = None
) -> tuple[list[Row], dict[str, Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    try:
        async with httpx.AsyncClient(base_url=api, timeout=600) as http:
            user_id, headers = await bench_user(http)
            hot = await _catalogue(client, control, user_id)
        readable = await _count(api, headers)
        rows: list[Row] = []
        figures: dict[str, Any] = {"datasets_readable_by_user": readable}
        for clients in (1, 16):
            api_result = await _listing(api, headers, clients)
            raw_result = await closed_loop(
                lambda: _raw_listing(client[control], user_id),
                concurrency=clients,
                seconds=SECONDS,
            )
            figures[f"list_{clients}"] = {"api": vars(api_result), "raw": vars(raw_result)}
            rows.append(
                Row(
                    f"list readable datasets ({DATASETS:,} in catalogue, {readable:,} readable), "
                    f"{clients} client(s) p50/p99",
                    f"{api_result.p50_ms:.1f}/{api_result.p99_ms:.1f} ms",
                    f"{raw_result.p50_ms:.1f}/{raw_result.p99_ms:.1f} ms",
                    f"{api_result.p50_ms / raw_result.p50_ms:.2f}x",
                    "p50 < 20 ms",
                )
            )
        plain, checked = await _access_check(client, control, user_id, hot, conninfo)
        figures["access_check_ms"] = {"dataset_by_id": plain, "with_access_check": checked}
        rows.append(
            Row(
                "access check on a hot dataset read: median added",
                f"{checked - plain:.2f} ms ({checked:.2f} with check)",
                f"{plain:.2f} ms (by _id)",
                f"{checked / plain:.2f}x",
                "< 1 ms added",
            )
        )
        return rows, figures
    finally:
        await client.close()


async def _count(api: str, headers: dict[str, str]) -> int:
    async with httpx.AsyncClient(base_url=api, timeout=600) as http:
        listed = await http.get("/api/v1/datasets?page_size=1", headers=headers)
        assert listed.status_code == 200, listed.text
        return int(listed.json()["pagination"]["total_items"])


def run_all(mongodb_url: str) -> tuple[list[Row], dict[str, Any]]:
    """On `QUARRY_BENCH_MONGODB_URL` when set; else on an embedded engine of its own
    that the API serves as its data directory's, as `quarry serve` does — with the
    engine's SQL (`app.engine.sql`) that the listing uses."""
    if os.environ.get("QUARRY_BENCH_MONGODB_URL"):
        with served_api(mongodb_url) as api:
            return asyncio.run(_run(api, mongodb_url, control_db(api)))
    with (
        embedded_engine(BACKEND) as engine,
        served_api(engine.url, extra_env=engine_env(engine)) as api,
    ):
        return asyncio.run(_run(api, engine.url, control_db(api), engine.postgres_conninfo()))
