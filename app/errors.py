"""The one error vocabulary: stable codes, the envelope's model, and the domain
exception base every feature subclasses.

Every failure a client can see leaves the server as

    {"success": false, "error_code": "...", "message": "...", "details": ..., "request_id": "..."}

Services raise subclasses of `QuarryError` (each feature package's `errors.py`
defines its own) carrying `status_code` and `error_code`; `app.http` renders them
(and everything else that can go wrong on a request) as that envelope. What a
driver error means (a duplicate key, a transient failure) is `app.db`'s to say.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


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
