"""OpenAPI document and docs pages."""

from __future__ import annotations

import httpx


async def test_openapi_declares_metadata_and_security_schemes(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "Quarry"
    assert schema["info"]["version"] == "0.1.0"
    assert "envelope" in schema["info"]["description"]
    schemes = schema["components"]["securitySchemes"]
    assert schemes["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["BearerAuth"]["description"],
    }
    assert (
        schemes["ApiKeyAuth"]["in"] == "header" and schemes["ApiKeyAuth"]["name"] == "Authorization"
    )
    assert schemes["ApiKeyHeader"]["name"] == "X-API-Key"


async def test_validation_errors_are_documented_as_the_envelope(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    echo = schema["paths"]["/_test/echo"]["post"]["responses"]["422"]
    assert echo["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorEnvelope"
    }
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    envelope = schema["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["properties"]) == {
        "success",
        "error_code",
        "message",
        "details",
        "request_id",
    }


async def test_health_is_documented(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths["/health"]["get"]["responses"]) >= {"200", "503"}
    assert "/api/v1/health" in paths


async def test_docs_pages_are_served(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
