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


AUTH_PATHS = [
    ("/core/register", "post"),
    ("/core/verify", "get"),
    ("/core/verify", "post"),
    ("/core/resend-verification", "post"),
    ("/core/login", "post"),
    ("/core/token/refresh", "post"),
    ("/core/logout", "post"),
    ("/core/logout-all", "post"),
    ("/core/password/forgot", "post"),
    ("/core/password/reset", "post"),
    ("/core/password/change", "post"),
    ("/core/me", "get"),
    ("/core/me", "patch"),
    ("/api/api_keys", "post"),
    ("/api/api_keys", "get"),
    ("/api/api_keys/{key_id}", "delete"),
]


async def test_every_auth_endpoint_is_documented_with_errors(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for path, method in AUTH_PATHS:
        operation = schema["paths"][path][method]
        assert operation["summary"], (path, method)
        errors = {
            code: r for code, r in operation["responses"].items() if code.startswith(("4", "5"))
        }
        assert errors, (path, method)
        for response in errors.values():
            assert response["content"]["application/json"]["schema"] == envelope, (path, method)


async def test_key_management_declares_bearer_only(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for method in ("get", "post"):
        assert paths["/api/api_keys"][method]["security"] == [{"BearerAuth": []}]
    assert paths["/core/login"]["post"].get("security") is None
