"""The error envelope on the wire: `error_response` and the exception handlers.

Every failure a client can see — a domain error raised by a service, FastAPI's
request validation, malformed JSON, an unknown route or method, an unreachable
database, an unexpected exception — leaves the server as

    {"success": false, "error_code": "...", "message": "...", "details": ..., "request_id": "..."}

The handler registered here on `QuarryError` renders every domain exception,
since Starlette looks handlers up along the exception's MRO. Unexpected
exceptions are rendered by `app.http.middleware.RequestContextMiddleware`, which
sits outside Starlette's own error middleware so that even a 500 carries the
request id header.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.db.driver_errors import NOT_IMPLEMENTED_CODE, engine_message, is_transient
from app.errors import (
    DatabaseUnavailable,
    EngineUnsupported,
    ErrorCode,
    OperationTimeout,
    QuarryError,
    QueryTimeout,
)
from app.kit.request_context import current_request_id
from app.wiring import state_of

logger = logging.getLogger("quarry.errors")


def error_response(
    status_code: int,
    error_code: ErrorCode,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "success": False,
        "error_code": error_code.value,
        "message": message,
        "details": details,
        "request_id": current_request_id(),
    }
    return JSONResponse(body, status_code=status_code, headers=headers)


_HTTP_STATUS_CODES: dict[int, tuple[ErrorCode, str]] = {
    400: (ErrorCode.BAD_REQUEST, "The request could not be processed."),
    404: (ErrorCode.NOT_FOUND, "No such endpoint: {method} {path}."),
    405: (ErrorCode.METHOD_NOT_ALLOWED, "Method {method} is not allowed on {path}."),
    413: (ErrorCode.PAYLOAD_TOO_LARGE, "The request body is too large."),
    415: (ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Unsupported content type."),
}


async def _quarry_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QuarryError)
    headers = dict(exc.headers)
    if exc.status_code == 503:
        headers.setdefault("Retry-After", str(state_of(request.app).settings.retry_after_seconds))
    return error_response(
        exc.status_code, exc.error_code, exc.message, details=exc.details, headers=headers
    )


# FastAPI's answer when it cannot decode a body at all (invalid UTF-8 in a JSON
# body, nesting deeper than the parser's recursion limit, a broken multipart
# stream): said plainly, with the JSON code for JSON.
_UNPARSABLE_BODY = "There was an error parsing the body"


def _unparsable_body(request: Request) -> JSONResponse:
    content_type = request.headers.get("content-type", "").lower()
    if "json" in content_type:
        return error_response(
            400,
            ErrorCode.MALFORMED_JSON,
            "Malformed JSON body: it could not be decoded (it is not valid UTF-8, or it nests "
            "deeper than the parser allows).",
        )
    return error_response(
        400,
        ErrorCode.BAD_REQUEST,
        f"The request body could not be read as {content_type.split(';')[0] or 'a form'}.",
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        return _unparsable_body(request)
    code, template = _HTTP_STATUS_CODES.get(
        exc.status_code, (ErrorCode.BAD_REQUEST, "The request could not be processed.")
    )
    if exc.status_code in (404, 405):
        message = template.format(method=request.method, path=request.url.path)
    elif isinstance(exc.detail, str) and exc.detail and exc.status_code < 500:
        message = exc.detail if exc.detail.endswith(".") else exc.detail + "."
    else:
        message = template
    return error_response(exc.status_code, code, message, headers=exc.headers)


def _json_position(error: dict[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    detail = ctx.get("error", "")
    loc = error.get("loc", ())
    position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    where = f" at byte {position}" if position is not None else ""
    return f"Malformed JSON body{where}: {detail}." if detail else f"Malformed JSON body{where}."


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    malformed = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if malformed is not None:
        return error_response(400, ErrorCode.MALFORMED_JSON, _json_position(malformed))
    details = [
        {
            "loc": [part for part in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]
    count = len(details)
    noun = "problem" if count == 1 else "problems"
    return error_response(
        422,
        ErrorCode.VALIDATION_ERROR,
        f"The request is invalid: {count} {noun}, see details.",
        details=details,
    )


async def _database_unreachable(request: Request, exc: Exception) -> JSONResponse:
    # The driver's message names hosts and internals; it goes to the log, not the client.
    logger.warning("database unreachable: %s", type(exc).__name__)
    return await _quarry_error(request, DatabaseUnavailable())


async def _operation_timeout(request: Request, exc: Exception) -> JSONResponse:
    """A read stopped by its server-side limit, or no answer within a configured socket
    timeout: the server is up, so this is not an outage (and not retried blindly)."""
    settings = state_of(request.app).settings
    if isinstance(exc, ExecutionTimeout):
        logger.warning("query timed out: %s", type(exc).__name__)
        return await _quarry_error(
            request,
            QueryTimeout(
                f"The query ran longer than {settings.query_timeout_ms / 1000:g} s and was "
                "stopped by the database; narrow the filter, page through it with a cursor, "
                "or use a field with an index."
            ),
        )
    if not settings.mongodb_socket_timeout_ms:
        # No socket timeout configured: a timeout while connecting, i.e. an outage.
        return await _database_unreachable(request, exc)
    message = (
        f"The database did not answer within {settings.mongodb_socket_timeout_ms / 1000:g} s "
        "(QUARRY_MONGODB_SOCKET_TIMEOUT_MS) and the request was abandoned; a "
        "multi-document write is taken back by the maintenance task, a single-document "
        "write may have been applied."
    )
    logger.warning("operation timed out: %s", type(exc).__name__)
    return await _quarry_error(request, OperationTimeout(message))


async def _operation_failure(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OperationFailure)
    if is_transient(exc):
        return await _database_unreachable(request, exc)
    if exc.code == NOT_IMPLEMENTED_CODE:
        engine = state_of(request.app).database.engine_label
        return await _quarry_error(
            request,
            EngineUnsupported(
                f"The {engine} engine cannot do this: {engine_message(exc)}. "
                "Run Quarry on MongoDB for it."
            ),
        )
    logger.error("unexpected database error (code %s)", exc.code, exc_info=exc)
    return error_response(500, ErrorCode.INTERNAL_ERROR, "An unexpected error occurred.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(QuarryError, _quarry_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ConnectionFailure, _database_unreachable)
    app.add_exception_handler(NetworkTimeout, _operation_timeout)
    app.add_exception_handler(ExecutionTimeout, _operation_timeout)
    app.add_exception_handler(OperationFailure, _operation_failure)
