"""The write door's cost and what it buys (`python -m bench writes`), on a fresh
embedded engine of its own, Quarry's database layer (`app.db` with the engine's
adapter and its door, as a server has it) beside the raw driver on the same
engine (FerretDB alone — how every write went before the door):

1. a single-document `$inc` by `_id`, one client, `ROUNDS` alternating blocks of
   `BLOCK` writes: p50 and p99 in ms, ratio door / raw (goal: p50 within 1.5x);
2. an int32 counter 10,000,000 below the top of the int32 range (the door
   checks it would not overflow) — p50;
3. 20 clients x 50 `$inc` of one counter: increments kept, writes/s;
4. 16 racers x `CAS_TRIALS` trials of "set `version` to 1 only if it is 0":
   trials with exactly one winner.

Skipped when `QUARRY_BENCH_MONGODB_URL` is set (MongoDB's writes are atomic).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

from pymongo import AsyncMongoClient

from app.db import Database
from app.engine import EngineSql, choose_adapter
from bench.harness import BACKEND, Row, embedded_engine

ROUNDS = 6
BLOCK = 200
CLIENTS, EACH = 20, 50
RACERS, CAS_TRIALS = 16, 50


async def _timed(calls: Any, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await calls()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def _measure(url: str, conninfo: str) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    database = Database(
        client=client, control_db_name="bench_writes", choose_adapter=choose_adapter
    )
    database.engine_reads = EngineSql(conninfo)
    try:
        door = database.db("bench_writes")["counters"]
        raw = client["bench_writes"]["counters"]
        await raw.insert_many([{"_id": "door", "n": 0}, {"_id": "raw", "n": 0},
                               {"_id": "near", "n": 2**31 - 10_000_000}])  # fmt: skip
        by_door: list[float] = []
        by_raw: list[float] = []
        near: list[float] = []
        for round_ in range(ROUNDS):
            sides = [
                (by_door, lambda: door.update_one({"_id": "door"}, {"$inc": {"n": 1}})),
                (by_raw, lambda: raw.update_one({"_id": "raw"}, {"$inc": {"n": 1}})),
            ]
            for latencies, call in sides if round_ % 2 == 0 else reversed(sides):
                latencies += await _timed(call, BLOCK)
            near += await _timed(
                lambda: door.update_one({"_id": "near"}, {"$inc": {"n": 1}}), BLOCK // 2
            )

        async def race(collection: Any, name: str) -> tuple[int, float]:
            await collection.update_one({"_id": name}, {"$set": {"n": 0}}, upsert=True)
            started = time.perf_counter()

            async def one() -> None:
                for _ in range(EACH):
                    await collection.update_one({"_id": name}, {"$inc": {"n": 1}})

            await asyncio.gather(*(one() for _ in range(CLIENTS)))
            seconds = time.perf_counter() - started
            stored = await raw.find_one({"_id": name})
            return int(stored["n"]), CLIENTS * EACH / seconds

        kept_door, rate_door = await race(door, "race-door")
        kept_raw, rate_raw = await race(raw, "race-raw")

        async def cas(collection: Any) -> int:
            exact = 0
            for trial in range(CAS_TRIALS):
                key = f"cas-{id(collection)}-{trial}"
                await raw.insert_one({"_id": key, "version": 0})
                results = await asyncio.gather(
                    *(
                        collection.update_one({"_id": key, "version": 0}, {"$set": {"version": 1}})
                        for _ in range(RACERS)
                    )
                )
                exact += sum(r.modified_count for r in results) == 1
            return exact

        return {
            "update_p50_ms": {"door": statistics.median(by_door), "raw": statistics.median(by_raw)},
            "update_p99_ms": {
                "door": statistics.quantiles(by_door, n=100)[98],
                "raw": statistics.quantiles(by_raw, n=100)[98],
            },
            "int32_increment_p50_ms": statistics.median(near),
            "race": {
                "expected": CLIENTS * EACH,
                "door": {"kept": kept_door, "writes_per_s": rate_door},
                "raw": {"kept": kept_raw, "writes_per_s": rate_raw},
            },
            "cas_exactly_one_winner": {
                "door": await cas(door),
                "raw": await cas(raw),
                "trials": CAS_TRIALS,
            },
        }
    finally:
        await database.close()
        await client.close()


def run_all(mongodb_url: str = "") -> tuple[list[Row], dict[str, Any]]:
    if os.environ.get("QUARRY_BENCH_MONGODB_URL"):
        return [Row("write door", "skipped (QUARRY_BENCH_MONGODB_URL is set)", "", "", "")], {}
    with embedded_engine(BACKEND) as engine:
        conninfo = engine.postgres_conninfo()
        assert conninfo, "the write door needs the engine's PostgreSQL"
        figures = asyncio.run(_measure(engine.url, conninfo))
    p50 = figures["update_p50_ms"]
    race = figures["race"]
    cas = figures["cas_exactly_one_winner"]
    rows = [
        Row(
            "single-document $inc by _id, p50 (door vs FerretDB alone)",
            f"{p50['door']:.2f} ms",
            f"{p50['raw']:.2f} ms",
            f"{p50['door'] / p50['raw']:.2f}x time",
            "≤ 1.5x",
        ),
        Row(
            "int32 $inc near the top (overflow check), p50",
            f"{figures['int32_increment_p50_ms']:.2f} ms",
            "",
            "",
            "",
        ),
        Row(
            f"{CLIENTS} clients x {EACH} $inc of one counter: kept",
            f"{race['door']['kept']} ({race['door']['writes_per_s']:.0f}/s)",
            f"{race['raw']['kept']} ({race['raw']['writes_per_s']:.0f}/s)",
            "",
            f"= {race['expected']}",
        ),
        Row(
            f"{RACERS} racers on one compare-and-set: trials with one winner",
            f"{cas['door']}/{cas['trials']}",
            f"{cas['raw']}/{cas['trials']}",
            "",
            f"= {cas['trials']}",
        ),
    ]
    return rows, {"writes": figures}
