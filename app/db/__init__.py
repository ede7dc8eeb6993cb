"""The database layer features talk to (being assembled)."""

from app.db.driver_errors import (
    DUPLICATE_KEY_CODES,
    NOT_IMPLEMENTED_CODE,
    duplicate_index,
    engine_message,
    is_duplicate_key,
    is_duplicate_key_message,
    is_too_many_parameters,
    is_transient,
    outcome_unknown,
)

__all__ = [
    "DUPLICATE_KEY_CODES",
    "NOT_IMPLEMENTED_CODE",
    "duplicate_index",
    "engine_message",
    "is_duplicate_key",
    "is_duplicate_key_message",
    "is_too_many_parameters",
    "is_transient",
    "outcome_unknown",
]
