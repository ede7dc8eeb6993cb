"""Request overhead: `GET /health` (one `ping` to the engine behind the full
middleware stack) against the raw driver's `ping` at the same concurrency."""

from __future__ import annotations

import asyncio

from pymongo import AsyncMongoClient

from bench.harness import HttpConnection, LoadResult, Row, closed_loop

CONCURRENCY = 32
SECONDS = 10.0


async def run(api: str, mongodb_url: str) -> tuple[list[Row], dict[str, LoadResult]]:
    connections = [await HttpConnection.open(api) for _ in range(CONCURRENCY)]
    idle = asyncio.Queue[HttpConnection]()
    for connection in connections:
        idle.put_nowait(connection)

    async def via_api() -> None:
        connection = await idle.get()
        status, _ = await connection.request("GET", "/health")
        idle.put_nowait(connection)
        assert status == 200

    try:
        quarry = await closed_loop(via_api, concurrency=CONCURRENCY, seconds=SECONDS)
    finally:
        for connection in connections:
            await connection.close()

    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        mongodb_url, maxPoolSize=CONCURRENCY
    )
    try:

        async def via_driver() -> None:
            await client.admin.command("ping")

        raw = await closed_loop(via_driver, concurrency=CONCURRENCY, seconds=SECONDS)
    finally:
        await client.close()

    rows = [
        Row(
            f"health req/s ({CONCURRENCY} clients)",
            f"{quarry.throughput:.0f}",
            f"{raw.throughput:.0f}",
            f"{quarry.throughput / raw.throughput:.2f}",
            "(reference)",
        ),
        Row(
            "health p50 / p99 ms",
            f"{quarry.p50_ms:.1f} / {quarry.p99_ms:.1f}",
            f"{raw.p50_ms:.1f} / {raw.p99_ms:.1f}",
            "",
            "",
        ),
    ]
    return rows, {"health_api": quarry, "health_raw": raw}
