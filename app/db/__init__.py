"""The database layer features talk to.

- `database`: `Database`, the app's driver client and its engine's adapter, and
  the handles (`database.db(name)[collection]`, `database.control[...]`).
- `handles`: `DatabaseHandle`, `Collection`, `Cursor` — the driver's method
  names, every call going to the adapter.
- `adapter`: `EngineAdapter`, the one interface for every operation that differs
  between engines (reads, counts, pages, writes, index management), and
  `Capabilities`; `mongo`: its MongoDB implementation (the embedded engine's
  lives in `app.engine`, chosen once at start by the composition root).
- `field_guards`: the types each schema type holds, the filter of documents
  holding another type, and `FieldGuard`, an indexed field's guard state.
- `page_query`: sorted pages with totals; `undo`: taking back a failed write;
  `driver_errors`: what a driver error means on either engine.

Imports only `app.kit`, `app.errors`, `app.settings`; never a feature or the
engine.
"""

from app.db.adapter import (
    Capabilities,
    Document,
    EngineAdapter,
    EngineReads,
    FindSpec,
    Namespace,
    RawCursor,
)
from app.db.database import (
    UNKEEPABLE_DATABASE_PREFIXES,
    AdapterChooser,
    Database,
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
from app.db.field_guards import (
    FieldGuard,
    GuardState,
    violation_filter,
)
from app.db.handles import Collection, Cursor, DatabaseHandle
from app.db.mongo import MongoAdapter
from app.db.page_query import (
    After,
    Before,
    Condition,
    Contains,
    Eq,
    IdIn,
    PageQuery,
    page_filter,
    page_sort,
)
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
    "AdapterChooser",
    "After",
    "Before",
    "Capabilities",
    "Collection",
    "Condition",
    "Contains",
    "Cursor",
    "Database",
    "DatabaseHandle",
    "Document",
    "EngineAdapter",
    "EngineReads",
    "Eq",
    "FieldGuard",
    "FindSpec",
    "GuardState",
    "IdIn",
    "MongoAdapter",
    "Namespace",
    "PageQuery",
    "RawCursor",
    "UndoReport",
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
    "page_filter",
    "page_sort",
    "restore_into",
    "undo_update",
    "violation_filter",
]
