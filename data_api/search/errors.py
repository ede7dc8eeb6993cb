"""Domain exceptions of keyword search (`spec/entries.md`)."""

from __future__ import annotations

from app.errors import ErrorCode, QuarryError


class InvalidQuery(QuarryError):
    status_code = 400
    error_code = ErrorCode.INVALID_QUERY

    def __init__(self, message: str, position: int | None) -> None:
        super().__init__(
            f"The query is not valid: {message}.",
            details=[
                {
                    "loc": ["body", "query"],
                    "msg": message,
                    "type": "query_syntax",
                    "position": position,
                }
            ],
        )


class ResultWindowTooLarge(QuarryError):
    status_code = 400
    error_code = ErrorCode.BAD_REQUEST

    def __init__(self, limit: int) -> None:
        super().__init__(f"page * page_size may be at most {limit}; narrow the query instead.")


class IndexRebuilding(QuarryError):
    status_code = 503
    error_code = ErrorCode.DATABASE_UNAVAILABLE
    message = "The search index is being rebuilt; retry shortly."
