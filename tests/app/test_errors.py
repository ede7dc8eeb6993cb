"""Every failure answers with the one error envelope (conventions.md)."""

from __future__ import annotations

import httpx

from app.errors import ErrorCode
from tests.fixtures.envelopes import assert_envelope


async def test_unknown_route_is_404_envelope(client: httpx.AsyncClient) -> None:
    body = assert_envelope(await client.get("/no/such/path"), 404, ErrorCode.NOT_FOUND)
    assert "/no/such/path" in body["message"]


async def test_wrong_method_is_405_envelope_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    assert_envelope(response, 405, ErrorCode.METHOD_NOT_ALLOWED)
    assert "GET" in response.headers["allow"]


async def test_invalid_body_is_422_with_field_details(client: httpx.AsyncClient) -> None:
    response = await client.post("/_test/echo", json={"name": "", "count": "many"})
    body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    locs = {tuple(d["loc"]) for d in body["details"]}
    assert locs == {("body", "name"), ("body", "count")}
    assert all(set(d) == {"loc", "msg", "type"} for d in body["details"])


async def test_malformed_json_is_400_with_position(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/_test/echo",
        content=b'{"name": "x", "count": 1,,}',
        headers={"content-type": "application/json"},
    )
    body = assert_envelope(response, 400, ErrorCode.MALFORMED_JSON)
    assert "byte 25" in body["message"]


async def test_unexpected_exception_is_500_without_internals(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/_test/boom")
    body = assert_envelope(response, 500, ErrorCode.INTERNAL_ERROR)
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert body["details"] is None


async def test_body_over_declared_limit_is_413(make_settings, database_server) -> None:
    from app.main import create_app
    from tests.fixtures.routes import install_test_routes

    app = create_app(make_settings(max_body_bytes=1024))
    install_test_routes(app)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        response = await http.post("/_test/notes", json={"name": "x" * 2000, "count": 1})
        assert_envelope(response, 413, ErrorCode.PAYLOAD_TOO_LARGE)
        count = (await http.get("/_test/notes")).json()["count"]
    assert count == 0


async def test_streamed_body_over_limit_is_413_without_content_length(
    make_settings, database_server
) -> None:
    """A chunked upload has no Content-Length: the bytes actually received are counted."""
    from app.main import create_app
    from tests.fixtures.routes import install_test_routes

    app = create_app(make_settings(max_body_bytes=1024))
    install_test_routes(app)
    chunks_sent = 0

    async def body():
        nonlocal chunks_sent
        yield b'{"name": "'
        for _ in range(10):
            chunks_sent += 1
            yield b"x" * 500
        yield b'", "count": 1}'

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        response = await http.post(
            "/_test/notes", content=body(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in response.request.headers
        assert_envelope(response, 413, ErrorCode.PAYLOAD_TOO_LARGE)
        assert (await http.get("/_test/notes")).json()["count"] == 0


async def test_body_under_limit_is_accepted_and_stored(client: httpx.AsyncClient) -> None:
    response = await client.post("/_test/notes", json={"name": "kept", "count": 2})
    assert response.status_code == 200
    assert (await client.get("/_test/notes")).json()["count"] == 1


async def test_json_body_that_is_not_utf8_is_malformed_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/_test/echo", content=b'{"name": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    body = assert_envelope(response, 400, ErrorCode.MALFORMED_JSON)
    assert "UTF-8" in body["message"]
