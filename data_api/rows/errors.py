"""Domain exceptions of rows and columns (`spec/rows.md`)."""

from __future__ import annotations

from typing import Any

from app.errors import ErrorCode, QuarryError


class RowExists(QuarryError):
    status_code = 409
    error_code = ErrorCode.ROW_EXISTS

    def __init__(self, timestamps: list[str]) -> None:
        shown = ", ".join(timestamps[:5])
        more = f" (and {len(timestamps) - 5} more)" if len(timestamps) > 5 else ""
        super().__init__(
            f"A row exists at {shown}{more}; nothing was written "
            "(on_conflict=skip or replace to keep going).",
            details=[
                {"loc": ["timestamp"], "msg": f"a row exists at {t}", "type": "conflict"}
                for t in timestamps
            ],
        )


class ColumnExists(QuarryError):
    status_code = 409
    error_code = ErrorCode.COLUMN_EXISTS

    def __init__(self, name: str) -> None:
        super().__init__(f"The dataset already has a column named {name!r}.")


class ColumnNotFound(QuarryError):
    status_code = 404
    error_code = ErrorCode.COLUMN_NOT_FOUND
    message = "Column not found."


class InvalidTimestamp(QuarryError):
    status_code = 422
    error_code = ErrorCode.INVALID_TIMESTAMP

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, details=details)


class RowValidationError(QuarryError):
    """Rows that cannot be stored; `details` names each row (and key)."""

    status_code = 422
    error_code = ErrorCode.VALIDATION_ERROR

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message, details=details)


class TooManyStreams(QuarryError):
    status_code = 429
    error_code = ErrorCode.TOO_MANY_STREAMS

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"At most {limit} row streams may be open per user (QUARRY_MAX_STREAMS_PER_USER); "
            "close one first.",
            headers={"Retry-After": "5"},
        )


class TooManyRows(QuarryError):
    status_code = 413
    error_code = ErrorCode.PAYLOAD_TOO_LARGE

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"A JSON bulk_insert takes at most {limit} rows (QUARRY_MAX_BULK_ROWS); "
            "send application/x-ndjson to load more in one request."
        )
