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


async def test_every_answer_carries_the_security_headers(client) -> None:
    for response in (await client.get("/health"), await client.get("/no/such/path")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        # Plain HTTP here: HSTS only over HTTPS.
        assert "strict-transport-security" not in response.headers


async def test_hsts_is_sent_over_https(app) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        response = await http.get("/health")
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")


async def test_docs_can_be_turned_off(make_client) -> None:
    async with make_client(docs_enabled=False) as (_, http):
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await http.get(path)).status_code == 404
        assert (await http.get("/health")).status_code == 200
    async with make_client() as (_, http):
        assert (await http.get("/openapi.json")).status_code == 200
