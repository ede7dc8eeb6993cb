"""X-Request-ID: echoed when sane, generated otherwise, present in error bodies."""

from __future__ import annotations

import uuid

import httpx


async def test_client_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "abc-123.x"})
    assert response.headers["x-request-id"] == "abc-123.x"


async def test_missing_request_id_is_generated_as_uuid4(client: httpx.AsyncClient) -> None:
    first = (await client.get("/health")).headers["x-request-id"]
    second = (await client.get("/health")).headers["x-request-id"]
    assert uuid.UUID(first).version == 4
    assert first != second


async def test_insane_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/nope", headers={"X-Request-ID": "bad id\twith spaces" + "x" * 200}
    )
    generated = response.headers["x-request-id"]
    assert uuid.UUID(generated).version == 4
    assert response.json()["request_id"] == generated
