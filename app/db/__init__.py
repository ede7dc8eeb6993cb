"""The database layer features talk to (being assembled)."""

from app.db.database import (
    UNKEEPABLE_DATABASE_PREFIXES,
    Database,
    Document,
    create_indexes,
    open_client,
)
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
from app.db.page_query import After, Before, Condition, Contains, Eq, IdIn, PageQuery
from app.db.undo import (
    UndoReport,
    delete_if_written,
    drop_stale_scratch,
    restore_into,
    undo_update,
)

__all__ = [
    "DUPLICATE_KEY_CODES",
    "NOT_IMPLEMENTED_CODE",
    "UNKEEPABLE_DATABASE_PREFIXES",
    "After",
    "Before",
    "Condition",
    "Contains",
    "Database",
    "Document",
    "Eq",
    "IdIn",
    "PageQuery",
    "UndoReport",
    "create_indexes",
    "delete_if_written",
    "drop_stale_scratch",
    "duplicate_index",
    "engine_message",
    "is_duplicate_key",
    "is_duplicate_key_message",
    "is_too_many_parameters",
    "is_transient",
    "open_client",
    "outcome_unknown",
    "restore_into",
    "undo_update",
]
