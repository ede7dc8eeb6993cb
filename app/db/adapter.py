"""The one interface for every operation whose implementation differs between
engines, and what an engine can and cannot do.

Quarry runs on MongoDB or on its embedded engine (FerretDB 1.24 on PostgreSQL or
SQLite). Both speak MongoDB's wire protocol, but the embedded engine evaluates
some filters wrongly when it pushes them down to SQL, decodes a whole collection
for a count, a sort or a range, cannot delete more matches than one SQL
statement has parameters, and has no change streams, Decimal128, `$bucket` or
`$facet`. Services never ask which engine runs: they call `app.db`'s collection
handles, which hand every read, count, write and index operation to one
`EngineAdapter`, chosen once when the database is first reached
(`Database.adapter`): `app.db.mongo.MongoAdapter` on MongoDB,
`app.engine.adapter.EmbeddedAdapter` on the embedded engine. What an engine
lacks is stated in its `Capabilities`, which features read to refuse a request
with 501 `ENGINE_UNSUPPORTED` (or to take another path) instead of testing the
engine's name.

Every operation names its collection by `Namespace` (database, collection) and
speaks MongoDB: filters, updates and pipelines are MongoDB's, results are the
driver's result types, and failures are the driver's exceptions (a duplicate
key is a `DuplicateKeyError` / `OperationFailure` on every engine).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from pymongo import IndexModel
from pymongo.results import DeleteResult, InsertManyResult, InsertOneResult, UpdateResult

from app.db.field_guards import FieldGuard

if TYPE_CHECKING:
    from app.db.page_query import PageQuery

Document = dict[str, Any]
#: A sort as the driver takes it: `[(field, 1 | -1), ...]`.
SortSpec = list[tuple[str, int]]


class Namespace(NamedTuple):
    """One collection: the physical database's name and the collection's."""

    database: str
    collection: str


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do, for features to decide what to offer."""

    #: The engine's name in messages: "MongoDB", "embedded FerretDB (PostgreSQL)".
    label: str
    #: Its short name in messages about a missing capability: "embedded FerretDB".
    short_label: str
    #: Decimal128 values can be stored (else `app.kit.ejson` refuses them).
    decimal128: bool = True
    #: `$push` honours `$position`, `$slice` and `$sort` (FerretDB ignores them).
    push_modifiers: bool = True
    #: Aggregation stages the engine does not have.
    missing_stages: frozenset[str] = field(default_factory=frozenset)
    #: Change streams can be opened (a replica set is still needed on MongoDB).
    change_streams: bool = True
    #: A unique index counts a missing dotted key as null, as MongoDB does (the
    #: embedded engine's shadow indexes cover top-level keys only).
    dotted_missing_as_null: bool = True


@dataclass
class FindSpec:
    """A find's options, gathered by `app.db.handles.Cursor` before it runs."""

    filter: Document
    projection: Mapping[str, Any] | None = None
    sort: SortSpec | None = None
    skip: int = 0
    limit: int = 0
    batch_size: int | None = None
    max_time_ms: int | None = None
    #: Without a sort, any `limit` matches will do (not the engine's natural order's
    #: first ones): an engine may then read them in an order of its choosing.
    any_order: bool = False


class RawCursor(Protocol):
    """What an adapter's find or aggregate returns (the driver's cursors are one)."""

    def __aiter__(self) -> AsyncIterator[Document]: ...

    async def to_list(self, length: int | None = None) -> list[Document]: ...

    async def close(self) -> None: ...


class EngineReads(Protocol):
    """A faster read path an engine may hand to `Database.engine_reads` at start
    (the embedded engine's SQL on PostgreSQL); each answers None when it cannot,
    and the adapter asks the engine itself instead."""

    async def count(self, db_name: str, collection: str) -> int | None: ...

    async def find(self, db_name: str, collection: str, spec: FindSpec) -> list[Any] | None: ...

    async def count_matching(
        self, db_name: str, collection: str, filter: Document
    ) -> int | None: ...

    def declare_fields(self, db_name: str, collection: str, fields: dict[str, str]) -> None: ...

    async def close(self) -> None: ...


class EngineAdapter(ABC):
    """Every operation that differs between engines; one implementation per engine."""

    #: `mongodb`, `ferretdb-postgresql`, `ferretdb-sqlite` (what `/health` says).
    name: str
    capabilities: Capabilities

    # ------------------------------------------------------------------ reads

    @abstractmethod
    def find(self, ns: Namespace, spec: FindSpec) -> RawCursor:
        """The matching documents, read as the cursor is consumed."""

    @abstractmethod
    async def find_one(
        self, ns: Namespace, filter: Document, projection: Mapping[str, Any] | None
    ) -> Document | None: ...

    @abstractmethod
    async def count_documents(
        self, ns: Namespace, filter: Document, *, max_time_ms: int | None
    ) -> int: ...

    @abstractmethod
    async def collection_size(self, ns: Namespace) -> int:
        """The live number of documents (an unfiltered count, answered cheaply)."""

    @abstractmethod
    async def aggregate(
        self, ns: Namespace, pipeline: list[Document], *, max_time_ms: int | None
    ) -> RawCursor: ...

    @abstractmethod
    async def find_page(self, ns: Namespace, query: PageQuery) -> tuple[list[Document], int]:
        """One sorted page and the number of matches (`app.db.page_query`)."""

    @abstractmethod
    async def lookups(
        self, db_name: str, wanted: list[tuple[str, str, Any]]
    ) -> list[list[Document]]:
        """For each `(collection, field, value)`, the documents whose top-level
        `field` equals `value`."""

    @abstractmethod
    async def by_ids(self, ns: Namespace, ids: list[Any]) -> list[Document]:
        """The documents with these `_id`s (any order; unknown ids are absent)."""

    @abstractmethod
    async def watch(
        self, ns: Namespace, pipeline: list[Document]
    ) -> AbstractAsyncContextManager[AsyncIterator[Document]]:
        """A change stream (see `Capabilities.change_streams`)."""

    # ----------------------------------------------------------------- writes

    @abstractmethod
    async def insert_one(self, ns: Namespace, document: Document) -> InsertOneResult: ...

    @abstractmethod
    async def insert_many(
        self, ns: Namespace, documents: Sequence[Document], *, ordered: bool
    ) -> InsertManyResult: ...

    @abstractmethod
    async def update_one(
        self, ns: Namespace, filter: Document, update: Document, *, upsert: bool
    ) -> UpdateResult: ...

    @abstractmethod
    async def update_many(
        self, ns: Namespace, filter: Document, update: Document, *, upsert: bool
    ) -> UpdateResult: ...

    @abstractmethod
    async def replace_one(
        self, ns: Namespace, filter: Document, replacement: Document, *, upsert: bool
    ) -> UpdateResult: ...

    @abstractmethod
    async def find_one_and_update(
        self,
        ns: Namespace,
        filter: Document,
        update: Document,
        *,
        projection: Mapping[str, Any] | None,
        upsert: bool,
        return_after: bool,
    ) -> Document | None:
        """The document before (or with `return_after`, after) the update."""

    @abstractmethod
    async def delete_one(self, ns: Namespace, filter: Document) -> DeleteResult: ...

    @abstractmethod
    async def delete_many(self, ns: Namespace, filter: Document) -> DeleteResult: ...

    # ---------------------------------------------------- namespaces, indexes

    @abstractmethod
    async def create_indexes(self, ns: Namespace, indexes: Sequence[IndexModel]) -> None:
        """Create `indexes`; those that exist already are left as they are."""

    @abstractmethod
    async def drop_index(self, ns: Namespace, name: str) -> None: ...

    @abstractmethod
    async def index_names(self, ns: Namespace) -> set[str]:
        """The names of the collection's indexes on the engine (none: no collection)."""

    async def declare_fields(self, ns: Namespace, fields: Mapping[str, str]) -> None:
        """Every field an index of the collection keys, with its schema type (name →
        `string`, `int`, `date`, ...), told after every schema change: an engine
        that needs indexes of its own to read them fast builds them (the embedded
        engine's typed keys). On MongoDB the indexes `create_indexes` made serve."""
        return None

    @abstractmethod
    async def field_guards(self, ns: Namespace, fields: Mapping[str, str]) -> dict[str, FieldGuard]:
        """The type guard of each of these indexed fields (name → schema type): is
        its index serving, being built, or off (and why), and how many documents
        hold a type it does not let pass (`app.db.field_guards`)."""

    @abstractmethod
    async def create_collection(self, ns: Namespace) -> None: ...

    @abstractmethod
    async def drop_collection(self, ns: Namespace) -> None: ...

    @abstractmethod
    async def list_collection_names(self, db_name: str) -> list[str]: ...

    @abstractmethod
    async def list_database_names(self) -> list[str]: ...

    @abstractmethod
    async def drop_database(self, db_name: str) -> None: ...
