"""`python -m bench.planner`: reads of 100,000 documents through the embedded
engine's adapter (the read planner's SQL over the typed indexes) beside the raw
driver (FerretDB evaluating the same query itself), on a fresh engine of its own.

Prints one line per query: the adapter's median of five runs, the raw driver's
time (one run: it takes seconds), and whether both answered the same `_id`s.
`QUARRY_BENCH_PLANNER_DOCUMENTS` changes the collection's size.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient

from app.db import Database
from app.engine import EmbeddedEngine, EngineSql, choose_adapter, default_binary

DOCUMENTS = int(os.environ.get("QUARRY_BENCH_PLANNER_DOCUMENTS", "100000"))
TYPES = {"price": "float", "qty": "int", "name": "string", "when": "date", "category": "string"}
START = datetime(2020, 1, 1, tzinfo=UTC)


def documents(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "price": round(rng.uniform(0, 1000), 2),
            "qty": rng.randint(0, 10_000),
            "name": f"item {rng.randint(0, DOCUMENTS // 2):06d}",
            "when": START + timedelta(seconds=rng.randint(0, 10**8)),
            "category": f"c{rng.randint(0, 20)}",
            "text": "lorem ipsum " * rng.randint(1, 8),
        }
        for _ in range(DOCUMENTS)
    ]


FINDS: list[tuple[str, dict[str, Any], list[tuple[str, int]], int, int]] = [
    ("sort by price, limit 20", {}, [("price", 1), ("_id", 1)], 0, 20),
    (
        "sort by price desc, qty range",
        {"qty": {"$gte": 100, "$lt": 200}},
        [("price", -1), ("_id", 1)],
        0,
        20,
    ),
    ("price range, sort _id", {"price": {"$gte": 100, "$lt": 110}}, [("_id", 1)], 0, 20),
    (
        "$in of 5 names",
        {"name": {"$in": [f"item {n:06d}" for n in (1, 7, 99, 1234, 4321)]}},
        [("_id", 1)],
        0,
        20,
    ),
    (
        "$or category / price",
        {"$or": [{"category": "c3"}, {"price": {"$lt": 5}}]},
        [("when", -1), ("_id", 1)],
        0,
        20,
    ),
    ("page 200 by date desc", {}, [("when", -1), ("_id", 1)], 199 * 20, 20),
    (
        "cursor page after price 500",
        {
            "$or": [
                {"price": {"$gt": 500.0}},
                {"$and": [{"price": {"$eq": 500.0}}, {"_id": {"$gt": ObjectId("0" * 24)}}]},
            ]
        },
        [("price", 1), ("_id", 1)],
        0,
        21,
    ),
    (
        "$nor, sort qty",
        {"$nor": [{"category": {"$in": ["c1", "c2"]}}, {"qty": {"$lt": 5000}}]},
        [("qty", 1), ("_id", 1)],
        0,
        20,
    ),
]
COUNTS: list[tuple[str, dict[str, Any]]] = [
    ("count price < 50", {"price": {"$lt": 50}}),
    ("count category in 3", {"category": {"$in": ["c1", "c2", "c3"]}}),
    ("count date range", {"when": {"$gte": START, "$lt": START + timedelta(days=30)}}),
]


async def timed(call: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, Any]:
    times, answer = [], None
    for _ in range(runs):
        started = time.perf_counter()
        answer = await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), answer


async def run(engine: EmbeddedEngine) -> None:
    conninfo = engine.postgres_conninfo()
    assert conninfo
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        engine.url, tz_aware=True, uuidRepresentation="standard"
    )
    database = Database(
        client=client, control_db_name="bench_control", choose_adapter=choose_adapter
    )
    sql = EngineSql(conninfo, owner_conninfo=engine.superuser_conninfo())
    database.engine_reads = sql
    raw = client["bench_planner"]["items"]
    handle = database.db("bench_planner")["items"]
    started = time.perf_counter()
    rows = documents(random.Random(25))
    for start in range(0, len(rows), 10_000):
        await raw.insert_many(rows[start : start + 10_000])
    print(f"inserted {DOCUMENTS:,} documents in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    await handle.declare_fields(TYPES)
    await sql.indexes_settled()
    print(f"typed indexes built in {time.perf_counter() - started:.1f} s")
    print(f"{'query':40} {'adapter':>10} {'raw driver':>12}  same")
    for name, filter, sort, skip, limit in FINDS:
        ours, mine = await timed(
            lambda f=filter, s=sort, k=skip, n=limit: handle.find(
                f, sort=s, skip=k, limit=n
            ).to_list(),
            5,
        )
        theirs, expected = await timed(
            lambda f=filter, s=sort, k=skip, n=limit: raw.find(f, sort=s, skip=k, limit=n).to_list(
                None
            ),
            1,
        )
        same = [d["_id"] for d in mine] == [d["_id"] for d in expected]
        print(f"{name:40} {ours * 1000:8.1f}ms {theirs * 1000:10.0f}ms  {same}")
    for name, filter in COUNTS:
        ours, mine = await timed(lambda f=filter: handle.count_documents(f), 5)
        theirs, expected = await timed(lambda f=filter: raw.count_documents(f), 1)
        print(f"{name:40} {ours * 1000:8.1f}ms {theirs * 1000:10.0f}ms  {mine == expected}")
    print("planner:", dict(sql.planner_stats.of("bench_planner")))
    await database.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="quarry-bench-planner-") as root:
        engine = EmbeddedEngine.start(binary=default_binary(), data_dir=Path(root) / "pg")
        try:
            asyncio.run(run(engine))
        finally:
            engine.stop()


if __name__ == "__main__":
    main()
