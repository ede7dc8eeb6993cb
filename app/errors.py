"""The one error envelope: codes, the domain exception base, and the handlers.

Every failure a client can see — a domain error raised by a service, FastAPI's
request validation, malformed JSON, an unknown route or method, an unreachable
database, an unexpected exception — leaves the server as

    {"success": false, "error_code": "...", "message": "...", "details": ..., "request_id": "..."}

Services raise subclasses of `QuarryError` (each feature package's `errors.py`
defines its own); the handler registered here on the base class renders them,
since Starlette looks handlers up along the exception's MRO. Unexpected
exceptions are rendered by `app.middleware.RequestContextMiddleware`, which sits
outside Starlette's own error middleware so that even a 500 carries the request
id header.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.request_context import current_request_id

logger = logging.getLogger("quarry.errors")


class ErrorCode(StrEnum):
    """Stable codes clients and tests compare; never renamed once released."""

    # Generic request problems.
    BAD_REQUEST = "BAD_REQUEST"
    MALFORMED_JSON = "MALFORMED_JSON"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    INVALID_ID = "INVALID_ID"
    INVALID_NAME = "INVALID_NAME"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    QUERY_TIMEOUT = "QUERY_TIMEOUT"
    OPERATION_TIMEOUT = "OPERATION_TIMEOUT"
    ENGINE_UNSUPPORTED = "ENGINE_UNSUPPORTED"

    # Accounts, tokens, keys (auth.md).
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    EMAIL_NOT_VERIFIED = "EMAIL_NOT_VERIFIED"
    VERIFY_TOKEN_INVALID = "VERIFY_TOKEN_INVALID"
    RESET_TOKEN_INVALID = "RESET_TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    API_KEY_INVALID = "API_KEY_INVALID"
    API_KEY_LIMIT = "API_KEY_LIMIT"
    API_KEY_NOT_FOUND = "API_KEY_NOT_FOUND"
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
    TOO_MANY_IMPORTS = "TOO_MANY_IMPORTS"
    FORBIDDEN = "FORBIDDEN"

    # Databases, collections, import (management.md).
    DATABASE_NOT_FOUND = "DATABASE_NOT_FOUND"
    DATABASE_EXISTS = "DATABASE_EXISTS"
    COLLECTION_NOT_FOUND = "COLLECTION_NOT_FOUND"
    COLLECTION_EXISTS = "COLLECTION_EXISTS"
    CONFIRMATION_MISMATCH = "CONFIRMATION_MISMATCH"
    INVALID_IMPORT_FILE = "INVALID_IMPORT_FILE"
    DATABASE_BUSY = "DATABASE_BUSY"

    # Documents (crud.md).
    DOCUMENT_NOT_FOUND = "DOCUMENT_NOT_FOUND"
    DUPLICATE_KEY = "DUPLICATE_KEY"
    INVALID_FILTER = "INVALID_FILTER"
    INVALID_PIPELINE = "INVALID_PIPELINE"
    INVALID_CURSOR = "INVALID_CURSOR"
    FILTER_REQUIRED = "FILTER_REQUIRED"
    INVALID_UPDATE = "INVALID_UPDATE"
    INVALID_SORT = "INVALID_SORT"
    INVALID_PROJECTION = "INVALID_PROJECTION"
    RESULT_TOO_LARGE = "RESULT_TOO_LARGE"

    # Datasets, tags, shares, items (datasets.md).
    DATASET_NOT_FOUND = "DATASET_NOT_FOUND"
    INSUFFICIENT_PERMISSION = "INSUFFICIENT_PERMISSION"
    NO_VALID_ENTRIES = "NO_VALID_ENTRIES"
    NOT_IN_SOURCE = "NOT_IN_SOURCE"
    TAG_NOT_FOUND = "TAG_NOT_FOUND"
    TAG_EXISTS = "TAG_EXISTS"
    INVALID_TAG_SECRET = "INVALID_TAG_SECRET"
    SHARE_EXISTS = "SHARE_EXISTS"
    SHARE_NOT_FOUND = "SHARE_NOT_FOUND"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    RATE_LIMITED = "RATE_LIMITED"
    INVALID_AUDIT_CURSOR = "INVALID_AUDIT_CURSOR"

    # Entries and keyword search (entries.md).
    ENTRY_NOT_FOUND = "ENTRY_NOT_FOUND"
    TEXT_NOT_READY = "TEXT_NOT_READY"
    INVALID_QUERY = "INVALID_QUERY"
    RANGE_NOT_SATISFIABLE = "RANGE_NOT_SATISFIABLE"
    UPLOAD_STALLED = "UPLOAD_STALLED"

    # Timeseries rows and columns (rows.md).
    ROW_EXISTS = "ROW_EXISTS"
    COLUMN_EXISTS = "COLUMN_EXISTS"
    COLUMN_NOT_FOUND = "COLUMN_NOT_FOUND"
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(default_factory=list)
    msg: str
    type: str


class ErrorEnvelope(BaseModel):
    """The body of every error answer; referenced by every endpoint's OpenAPI responses."""

    success: bool = False
    error_code: ErrorCode
    message: str
    details: list[dict[str, Any]] | None = None
    request_id: str | None = None

    model_config = {
        "json_schema_extra": {
            "example": {
                "success": False,
                "error_code": "DATABASE_NOT_FOUND",
                "message": "Database 60c72b2f9b1d8b1a2d3e4567 not found.",
                "details": None,
                "request_id": "b3f1c0de-5a8e-4f52-9d7c-0f6e1e2a9b11",
            }
        }
    }


class QuarryError(Exception):
    """Base of every domain exception; subclasses set `status_code` and `error_code`."""

    status_code: int = 400
    error_code: ErrorCode = ErrorCode.BAD_REQUEST
    message: str = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.details = details
        self.headers = headers or {}
        super().__init__(self.message)


class DatabaseUnavailable(QuarryError):
    status_code = 503
    error_code = ErrorCode.DATABASE_UNAVAILABLE
    message = "The database is unavailable; retry shortly."


class QueryTimeout(QuarryError):
    """A read ran past `QUARRY_QUERY_TIMEOUT_MS` and was stopped (504)."""

    status_code = 504
    error_code = ErrorCode.QUERY_TIMEOUT


class OperationTimeout(QuarryError):
    """No answer within the configured socket timeout; the outcome is unknown (504)."""

    status_code = 504
    error_code = ErrorCode.OPERATION_TIMEOUT


class EngineUnsupported(QuarryError):
    status_code = 501
    error_code = ErrorCode.ENGINE_UNSUPPORTED


class InvalidId(QuarryError):
    status_code = 422
    error_code = ErrorCode.INVALID_ID


class PayloadTooLarge(QuarryError):
    status_code = 413
    error_code = ErrorCode.PAYLOAD_TOO_LARGE


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
        headers.setdefault("Retry-After", str(request.app.state.settings.retry_after_seconds))
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
    settings = request.app.state.settings
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


#: Server answers that mean "the database is going away or changing hands", not a bug.
TRANSIENT_SERVER_CODES = {6, 7, 89, 91, 189, 10107, 11600, 11602, 13435, 13436}


def outcome_unknown(exc: PyMongoError) -> bool:
    """Whether a failed operation may still have been, or still be being, carried out:
    the connection failed (or timed out) while the server may have been working, or
    the server went away mid-operation."""
    if isinstance(exc, ConnectionFailure):
        return True
    return isinstance(exc, OperationFailure) and is_transient(exc)


def is_transient(exc: OperationFailure) -> bool:
    """The server is going away or busy: a shutdown code, the embedded engine's answer
    to an operation still running when it stops (InternalError "context canceled"),
    or its SQLite backend's write lock held by another write (SQLITE_BUSY)."""
    if exc.code in TRANSIENT_SERVER_CODES:
        return True
    text = str(exc)
    return exc.code == 1 and ("context canceled" in text or "SQLITE_BUSY" in text)


#: Server error codes that mean a duplicate key (MongoDB's; the embedded engine also
#: answers some with InternalError naming the SQLite UNIQUE constraint or
#: PostgreSQL's unique_violation, SQLSTATE 23505).
DUPLICATE_KEY_CODES = {11000, 11001}
NOT_IMPLEMENTED_CODE = 238
#: The index named in a duplicate-key message: MongoDB's `index: NAME dup key`,
#: FerretDB-on-SQLite's `UNIQUE constraint failed: index 'TABLE_NAME'` and
#: FerretDB-on-PostgreSQL's `violates unique constraint "TABLE_NAME_HASH_idx"`.
_DUPLICATE_INDEX = re.compile(
    r"index: (\S+) dup key|UNIQUE constraint failed: index '([^']+)'"
    r'|violates unique constraint "([^"]+)"'
)


def is_too_many_parameters(exc: OperationFailure) -> bool:
    """The embedded engine deletes matched documents in one SQL statement with a bound
    parameter per document: SQLite refuses more than 32,766, PostgreSQL's protocol
    more than 65,535, and nothing is deleted."""
    text = str(exc)
    return "too many SQL variables" in text or "extended protocol limited to" in text


def is_duplicate_key_message(code: object, message: str) -> bool:
    return (
        code in DUPLICATE_KEY_CODES or "UNIQUE constraint" in message or "SQLSTATE 23505" in message
    )


def is_duplicate_key(exc: OperationFailure) -> bool:
    return is_duplicate_key_message(exc.code, str(exc))


def duplicate_index(message: str, index_names: Iterable[str]) -> str | None:
    """Which of `index_names` a duplicate-key message names (the longest that fits:
    the engines decorate index names with table names and hashes)."""
    match = _DUPLICATE_INDEX.search(message)
    if match is None:
        return None
    raw = next(group for group in match.groups() if group)
    fitting = [
        name
        for name in index_names
        if raw == name or raw.endswith("_" + name) or f"_{name}_" in raw
    ]
    return max(fitting, key=len, default=None)


def engine_message(exc: OperationFailure) -> str:
    """The server's own one-line message, without the driver's "full error" dump."""
    details = exc.details or {}
    message = str(details.get("errmsg") or exc).split(", full error:")[0].strip()
    return message[:300]


async def _operation_failure(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OperationFailure)
    if is_transient(exc):
        return await _database_unreachable(request, exc)
    if exc.code == NOT_IMPLEMENTED_CODE:
        engine = request.app.state.database.engine_label
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
