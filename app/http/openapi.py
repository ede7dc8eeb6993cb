"""The OpenAPI document: metadata, security schemes and the real error shape.

The security schemes are declared once here (`BearerAuth`, `ApiKeyAuth`,
`ApiKeyHeader`) so that endpoints only reference them by name and "Authorize" in
Swagger UI works. FastAPI documents 422 answers with its own
`HTTPValidationError`; Quarry answers every error with the envelope, so the
document says so.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app.errors import ErrorEnvelope

DESCRIPTION = """\
Quarry is a self-hosted document database platform on MongoDB: sign up, create
logical databases whose collections have field schemas, bulk-import JSON files and
do CRUD over HTTP with API keys.

Every success answer is a JSON object with `"success": true`; every error answer is
the envelope `{"success": false, "error_code", "message", "details", "request_id"}`.
Authenticate with `Authorization: Bearer <access token>` (from `/core/login`) or with
an API key in `Authorization: Api-Key <key>` or `X-API-Key: <key>`.
"""

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "BearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from `POST /core/login`.",
    },
    "ApiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Api-Key <key>`: a key from `POST /api/api_keys`.",
    },
    "ApiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The bare key, for clients that cannot set `Authorization`.",
    },
}

_ERROR_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}
_RATE_LIMITED = {
    "description": "Over the caller's rate limit (RATE_LIMITED); nothing was done",
    "headers": {
        "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}},
    },
    "content": {"application/json": {"schema": _ERROR_REF}},
}


#: Models a route documents by hand (a request body read without FastAPI's parsing,
#: e.g. rows' bulk_insert, which takes JSON or NDJSON): put in the components too.
_EXTRA_MODELS: list[type[BaseModel]] = []


def register_schema(model: type[BaseModel]) -> str:
    """Put `model` in the document's components; returns its `$ref`."""
    _EXTRA_MODELS.append(model)
    return f"#/components/schemas/{model.__name__}"


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    schemas = components.setdefault("schemas", {})
    schemas["ErrorEnvelope"] = ErrorEnvelope.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    schemas.update(schemas["ErrorEnvelope"].pop("$defs", {}))
    for model in _EXTRA_MODELS:
        schemas[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        schemas.update(schemas[model.__name__].pop("$defs", {}))
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            response = responses.get("422")
            if response is not None:
                response["description"] = "Validation error"
                response["content"] = {"application/json": {"schema": _ERROR_REF}}
            if operation.get("security"):
                # Any authenticated request can be over its rate limit (app/limits/rate_limit.py).
                responses.setdefault("429", copy.deepcopy(_RATE_LIMITED))
            if "requestBody" in operation:
                # Any body can be unreadable (400) or over the size limit (413).
                for status in (400, 413):
                    responses.setdefault(
                        str(status),
                        {
                            "description": _STATUS_TEXT[status],
                            "content": {"application/json": {"schema": _ERROR_REF}},
                        },
                    )
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    app.openapi_schema = schema
    return schema


_STATUS_TEXT = {
    400: "Bad request",
    401: "Missing or invalid credentials",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    408: "The upload stalled and was given up",
    413: "Body too large",
    422: "Validation error",
    429: "Too many attempts",
    501: "Not supported by this engine",
    503: "Database unavailable",
    504: "The database did not finish in time (QUERY_TIMEOUT, OPERATION_TIMEOUT)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all with the envelope body."""
    return {
        status: {"model": ErrorEnvelope, "description": _STATUS_TEXT.get(status, "Error")}
        for status in (*statuses, 503, 504)
    }
