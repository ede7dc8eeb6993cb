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


def _resolve(document: dict, schema: dict) -> dict:  # type: ignore[type-arg]
    ref = schema.get("$ref")
    if ref:
        return document["components"]["schemas"][ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]
    return schema


async def test_every_dataset_tag_share_audit_entry_search_and_rows_endpoint_is_documented(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    prefixes = (
        "/api/v1/datasets",
        "/api/v1/tags",
        "/api/v1/access",
        "/api/v1/audit",
        "/api/v1/entries",
        "/api/v1/search",
        "/api/v1/rows",
        "/api/v1/columns",
    )
    tags = {"datasets", "tags", "shares", "audit", "entries", "search", "rows"}
    checked = 0
    for path, operations in document["paths"].items():
        if not path.startswith(prefixes):
            continue
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            checked += 1
            assert operation.get("summary"), where
            assert set(operation["tags"]) <= tags, where
            assert {"401", "429", "503"} <= set(operation["responses"]), where
            if "{dataset_id}" in path or "{entry_id}" in path or path.startswith(prefixes[-2:]):
                assert "404" in operation["responses"], where
            success = next(code for code in operation["responses"] if code.startswith("2"))
            content = operation["responses"][success].get("content", {})
            if success == "204" or "application/json" not in content:
                # No body, or bytes (a download, a text): the media type is the schema.
                assert success == "204" or content, where
            else:
                media = content["application/json"]
                schema = _resolve(document, media.get("schema", {}))
                assert "example" in schema or "examples" in schema or "example" in media, where
            body = operation.get("requestBody")
            if body is not None:
                if "multipart/form-data" in body["content"]:
                    schema = body["content"]["multipart/form-data"]["schema"]
                    assert schema["properties"]["file"]["items"]["format"] == "binary", where
                    continue
                media = body["content"]["application/json"]
                schema = _resolve(document, media["schema"])
                examples = (
                    "example" in media
                    or "examples" in media
                    or "example" in schema
                    or "examples" in schema
                    or any("examples" in p for p in schema.get("properties", {}).values())
                )
                assert examples, f"{where}: request body without an example"
    assert checked >= 51
