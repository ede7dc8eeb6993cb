"""Health answers and the database outage: 503 while down, recovery without restart."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from app.errors import ErrorCode
from tests.fixtures.engine import TEST_BACKEND
from tests.fixtures.envelopes import assert_envelope


@pytest.mark.parametrize("path", ["/health", "/api/v1/health"])
@pytest.mark.smoke
async def test_health_reports_connected_engine(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["database"] == "connected"
    assert body["engine"] in {"ferretdb-postgresql", "ferretdb-sqlite", "mongodb"}
    assert body["version"] == "0.1.0"
    assert body["time"].endswith("Z")


@pytest.mark.smoke
async def test_health_names_the_embedded_engine(client: httpx.AsyncClient, database_server) -> None:
    if not database_server.stoppable:
        pytest.skip("running against an external server")
    engine = database_server.engine.name
    assert engine == f"ferretdb-{TEST_BACKEND}"
    assert (await client.get("/health")).json()["engine"] == engine


async def _wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("condition not reached in time")


async def test_outage_answers_503_then_recovers_without_restart(
    client: httpx.AsyncClient, database_server
) -> None:
    if not database_server.stoppable:
        pytest.skip("needs the embedded engine to stop and start it")
    assert (
        await client.post("/_test/notes", json={"name": "before", "count": 1})
    ).status_code == 200

    await asyncio.to_thread(database_server.stop)
    try:
        started = time.monotonic()
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json()["database"] == "unreachable"
        assert health.json()["status"] == "unhealthy"
        assert health.headers["retry-after"] == "3"

        touching = await client.get("/_test/notes")
        body = assert_envelope(touching, 503, ErrorCode.DATABASE_UNAVAILABLE)
        assert touching.headers["retry-after"] == "3"
        assert "127.0.0.1" not in body["message"]
        # Short server-selection timeout: the outage is reported quickly, nothing hangs.
        assert time.monotonic() - started < 10
    finally:
        await asyncio.to_thread(database_server.start)

    async def healthy() -> bool:
        return (await client.get("/health")).status_code == 200

    await _wait_until(healthy)
    response = await client.get("/_test/notes")
    assert response.status_code == 200
    assert response.json()["count"] == 1
