"""Domain exceptions of document CRUD (crud.md). Filter errors are
`app.schema.InvalidFilter`; database and collection lookups raise the
management package's `DatabaseNotFound` / `CollectionNotFound`."""

from __future__ import annotations

from typing import Any

from app.errors import ErrorCode, QuarryError


class DocumentNotFound(QuarryError):
    status_code = 404
    error_code = ErrorCode.DOCUMENT_NOT_FOUND

    def __init__(self, document_id: str) -> None:
        super().__init__(f"Document {document_id} not found in this collection.")


class DocumentsInvalid(QuarryError):
    """Documents or update values the collection schema refuses; `details` lists each."""

    status_code = 422
    error_code = ErrorCode.VALIDATION_ERROR

    def __init__(self, problems: list[dict[str, Any]], *, what: str = "document") -> None:
        count = len(problems)
        shown = problems[:200]
        noun = "problem" if count == 1 else "problems"
        super().__init__(
            f"The {what} does not match the collection schema: {count} {noun}, see details;"
            " nothing was written.",
            details=shown,
        )


class InvalidUpdate(QuarryError):
    status_code = 400
    error_code = ErrorCode.INVALID_UPDATE

    def __init__(self, message: str, *, operator: str | None = None) -> None:
        details = None
        if operator is not None:
            details = [
                {
                    "loc": ["update_data", operator],
                    "msg": "operator not allowed",
                    "type": "operator",
                }
            ]
        super().__init__(message, details=details)


class DuplicateKey(QuarryError):
    status_code = 409
    error_code = ErrorCode.DUPLICATE_KEY

    def __init__(
        self, *, field: str | None, index: str | None, loc: list[str | int], value: Any = None
    ) -> None:
        if field is None:
            message = "A unique index refused the write; nothing was written."
        else:
            message = (
                f"Duplicate value for unique field '{field}' (index '{index}'); "
                "nothing was written."
            )
        super().__init__(
            message,
            details=[
                {
                    "loc": [*loc, field] if field else loc,
                    "msg": "duplicate key",
                    "type": "duplicate",
                    "index": index,
                    "field": field,
                }
            ],
        )


class FilterRequired(QuarryError):
    status_code = 400
    error_code = ErrorCode.FILTER_REQUIRED

    def __init__(self, verb: str) -> None:
        super().__init__(
            f"Refusing to {verb} every document without a filter; send filters, "
            'or "all": true to mean the whole collection.'
        )


class TooManyDocuments(QuarryError):
    status_code = 413
    error_code = ErrorCode.PAYLOAD_TOO_LARGE

    def __init__(self, *, count: int, limit: int, what: str = "documents in one insert") -> None:
        super().__init__(f"At most {limit:,} {what} are allowed; got {count:,}.")


class InvalidSort(QuarryError):
    status_code = 400
    error_code = ErrorCode.INVALID_SORT


class InvalidProjection(QuarryError):
    status_code = 400
    error_code = ErrorCode.INVALID_PROJECTION


class InvalidCursor(QuarryError):
    status_code = 400
    error_code = ErrorCode.INVALID_CURSOR
    message = (
        "The cursor is malformed, was issued for another query, or was tampered with; "
        "start again from the first page."
    )


class InvalidPipeline(QuarryError):
    status_code = 400
    error_code = ErrorCode.INVALID_PIPELINE

    def __init__(self, message: str, *, loc: list[str | int] | None = None) -> None:
        details = None
        if loc is not None:
            details = [{"loc": ["pipeline", *loc], "msg": message, "type": "pipeline"}]
        super().__init__(message, details=details)


class ResultTooLarge(QuarryError):
    status_code = 422
    error_code = ErrorCode.RESULT_TOO_LARGE


class WriteRefused(QuarryError):
    """The engine refused a write the schema allowed (e.g. `$inc` on a text value of an
    untyped field); the request's earlier writes were undone."""

    status_code = 422
    error_code = ErrorCode.VALIDATION_ERROR
