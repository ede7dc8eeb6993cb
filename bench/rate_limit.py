"""What the per-user rate limiter (app/limits/rate_limit.py) adds to a request: the same
authenticated `GET /core/me` (JWT check + one `find_one`) against a server with
the limits on and one with `QUARRY_RATE_LIMIT_PER_MINUTE=0`, side by side on one
engine (the "Quarry" column is on, the "raw driver" column off). On, the
limits are set out of reach (`LIMITS_OUT_OF_REACH`), so every
request pays the limiter (one slot insert) and none is refused.

One client, one request at a time: this is latency, not throughput. The servers
are measured in alternating blocks (on, off, off, on, …) so that drift of the
machine or the engine falls on both sides alike; figures are the median and
p99 over all blocks, at least 2,000 requests per side. `QUARRY_BENCH_RATE_LIMIT_
REQUESTS` sets the count per side (default 2,000), and the same pair is measured
with two workers serving one user, where requests collide on slots.

The other suites run with `LIMITS_OUT_OF_REACH` too (bench/__main__.py): one
benchmark user sends far more than the default 600 requests a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from bench.harness import HttpConnection, Row, served_api

#: Limits that hold every benchmark client back by nothing but the limiter's cost:
#: a burst of 100,000 refilled every 6 µs.
LIMITS_OUT_OF_REACH = {
    "QUARRY_RATE_LIMIT_PER_MINUTE": "10000000",
    "QUARRY_RATE_LIMIT_BURST": "100000",
    "QUARRY_RATE_LIMIT_DATASET_CREATE": "10000000",
    "QUARRY_RATE_LIMIT_SEARCH": "10000000",
    "QUARRY_RATE_LIMIT_ITEMS": "10000000",
}
LIMITS_OFF = {"QUARRY_RATE_LIMIT_PER_MINUTE": "0"}
REQUESTS = int(os.environ.get("QUARRY_BENCH_RATE_LIMIT_REQUESTS", "2000"))
BLOCK = 100
WARM_UP = 100
#: Connections per side: with two workers, each gets some of them.
CONNECTIONS = 4
PASSWORD = "benchmark-password-123"


@dataclass
class Side:
    """One server: its connections and the latencies measured on it."""

    connections: list[HttpConnection]
    headers: dict[str, str]
    latencies: list[float]
    turn: int = 0

    async def request(self) -> None:
        connection = self.connections[self.turn % len(self.connections)]
        self.turn += 1
        started = time.perf_counter()
        status, _ = await connection.request("GET", "/core/me", headers=self.headers)
        elapsed = time.perf_counter() - started
        assert status == 200, status
        self.latencies.append(elapsed)

    async def block(self, count: int) -> None:
        for _ in range(count):
            await self.request()


async def _open_side(api: str) -> Side:
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        deadline = time.monotonic() + 30
        while True:
            # 503 while a worker that lost the start-up index race retries its indexes.
            registered = await http.post(
                "/core/register",
                json={"email": email, "firstName": "B", "lastName": "M", "password": PASSWORD},
            )
            if registered.status_code != 503 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert registered.status_code == 201, registered.text
        login = await http.post("/core/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
    connections = [await HttpConnection.open(api) for _ in range(CONNECTIONS)]
    headers = {"Authorization": f"Bearer {login.json()['access']}"}
    return Side(connections=connections, headers=headers, latencies=[])


async def _measure(on_api: str, off_api: str) -> tuple[list[float], list[float]]:
    on, off = await _open_side(on_api), await _open_side(off_api)
    try:
        for side in (on, off):
            await side.block(WARM_UP)
            side.latencies.clear()
        blocks = math.ceil(REQUESTS / BLOCK)
        for number in range(blocks):
            order = (on, off) if number % 2 == 0 else (off, on)
            for side in order:
                await side.block(BLOCK)
    finally:
        for side in (on, off):
            for connection in side.connections:
                await connection.close()
    return on.latencies, off.latencies


def _p50_p99(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    p99 = ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)]
    return statistics.median(ordered) * 1000, p99 * 1000


@contextlib.contextmanager
def _pair(mongodb_url: str, workers: int) -> Iterator[tuple[str, str]]:
    with (
        served_api(mongodb_url, workers=workers, extra_env=LIMITS_OUT_OF_REACH) as on_api,
        served_api(mongodb_url, workers=workers, extra_env=LIMITS_OFF) as off_api,
    ):
        yield on_api, off_api


def run_all(mongodb_url: str) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    for workers in (1, 2):
        with _pair(mongodb_url, workers) as (on_api, off_api):
            on, off = asyncio.run(_measure(on_api, off_api))
        (on_p50, on_p99), (off_p50, off_p99) = _p50_p99(on), _p50_p99(off)
        noun = "worker" if workers == 1 else "workers"
        rows += [
            Row(
                f"GET /core/me p50 / p99 ms, limits on | off ({workers} {noun}, 1 client)",
                f"{on_p50:.2f} / {on_p99:.2f}",
                f"{off_p50:.2f} / {off_p99:.2f}",
                f"{on_p50 / off_p50:.2f}",
                "(reference)",
            ),
            Row(
                f"rate limiter's added p50 / p99 ms ({workers} {noun})",
                f"{on_p50 - off_p50:+.2f} / {on_p99 - off_p99:+.2f}",
                "",
                "",
                "",
            ),
        ]
        figures[f"rate_limit_{workers}w"] = {
            "requests_per_side": len(on),
            "on_p50_ms": on_p50,
            "on_p99_ms": on_p99,
            "off_p50_ms": off_p50,
            "off_p99_ms": off_p99,
            "added_p50_ms": on_p50 - off_p50,
            "added_p99_ms": on_p99 - off_p99,
        }
    return rows, figures
