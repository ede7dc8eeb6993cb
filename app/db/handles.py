"""Database and collection handles: what features hold instead of driver objects.

`database.db(name)["orders"]` (or `database.control["users"]`) is a `Collection`
with the driver's familiar method names; each call goes to the engine's adapter
(`app.db.adapter`), chosen once when the database is first reached. A `find`
returns a lazy `Cursor` that gathers `sort`/`skip`/`limit`/`batch_size`/
`max_time_ms` and runs when it is iterated or listed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from pymongo import IndexModel, ReturnDocument
from pymongo.results import DeleteResult, InsertManyResult, InsertOneResult, UpdateResult

from app.db.adapter import Document, EngineAdapter, FindSpec, Namespace, RawCursor, SortSpec
from app.db.field_guards import FieldGuard

if TYPE_CHECKING:
    from app.db.database import Database


class DatabaseHandle:
    """One physical database: its collections, created and dropped."""

    def __init__(self, database: Database, name: str) -> None:
        self._database = database
        self.name = name

    def __getitem__(self, collection: str) -> Collection:
        return Collection(self._database, Namespace(self.name, collection))

    async def create_collection(self, name: str) -> None:
        await (await self._database.adapter()).create_collection(Namespace(self.name, name))

    async def drop_collection(self, name: str) -> None:
        await (await self._database.adapter()).drop_collection(Namespace(self.name, name))

    async def list_collection_names(self) -> list[str]:
        return await (await self._database.adapter()).list_collection_names(self.name)


class Collection:
    """One collection; every operation is the engine adapter's."""

    def __init__(self, database: Database, namespace: Namespace) -> None:
        self._database = database
        self.namespace = namespace

    @property
    def name(self) -> str:
        return self.namespace.collection

    @property
    def database_name(self) -> str:
        return self.namespace.database

    async def _adapter(self) -> EngineAdapter:
        return await self._database.adapter()

    # ------------------------------------------------------------------ reads

    def find(
        self,
        filter: Document | None = None,
        projection: Mapping[str, Any] | None = None,
        *,
        sort: SortSpec | None = None,
        skip: int = 0,
        limit: int = 0,
        batch_size: int | None = None,
        max_time_ms: int | None = None,
        any_order: bool = False,
    ) -> Cursor:
        spec = FindSpec(
            filter=filter or {},
            projection=projection,
            sort=sort,
            skip=skip,
            limit=limit,
            batch_size=batch_size,
            max_time_ms=max_time_ms,
            any_order=any_order,
        )
        return Cursor(self, spec)

    async def find_one(
        self, filter: Document | None = None, projection: Mapping[str, Any] | None = None
    ) -> Document | None:
        return await (await self._adapter()).find_one(self.namespace, filter or {}, projection)

    async def count_documents(self, filter: Document, *, max_time_ms: int | None = None) -> int:
        adapter = await self._adapter()
        return await adapter.count_documents(self.namespace, filter, max_time_ms=max_time_ms)

    async def aggregate(
        self, pipeline: list[Document], *, max_time_ms: int | None = None
    ) -> RawCursor:
        adapter = await self._adapter()
        return await adapter.aggregate(self.namespace, pipeline, max_time_ms=max_time_ms)

    async def watch(
        self, pipeline: list[Document]
    ) -> AbstractAsyncContextManager[AsyncIterator[Document]]:
        return await (await self._adapter()).watch(self.namespace, pipeline)

    # ----------------------------------------------------------------- writes

    async def insert_one(self, document: Document) -> InsertOneResult:
        return await (await self._adapter()).insert_one(self.namespace, document)

    async def insert_many(
        self, documents: Sequence[Document], *, ordered: bool = True
    ) -> InsertManyResult:
        adapter = await self._adapter()
        return await adapter.insert_many(self.namespace, documents, ordered=ordered)

    async def update_one(
        self, filter: Document, update: Document, *, upsert: bool = False
    ) -> UpdateResult:
        adapter = await self._adapter()
        return await adapter.update_one(self.namespace, filter, update, upsert=upsert)

    async def update_many(
        self, filter: Document, update: Document, *, upsert: bool = False
    ) -> UpdateResult:
        adapter = await self._adapter()
        return await adapter.update_many(self.namespace, filter, update, upsert=upsert)

    async def replace_one(
        self, filter: Document, replacement: Document, *, upsert: bool = False
    ) -> UpdateResult:
        adapter = await self._adapter()
        return await adapter.replace_one(self.namespace, filter, replacement, upsert=upsert)

    async def find_one_and_update(
        self,
        filter: Document,
        update: Document,
        *,
        projection: Mapping[str, Any] | None = None,
        upsert: bool = False,
        return_document: ReturnDocument = ReturnDocument.BEFORE,
    ) -> Document | None:
        adapter = await self._adapter()
        return await adapter.find_one_and_update(
            self.namespace,
            filter,
            update,
            projection=projection,
            upsert=upsert,
            return_after=bool(return_document),
        )

    async def delete_one(self, filter: Document) -> DeleteResult:
        return await (await self._adapter()).delete_one(self.namespace, filter)

    async def delete_many(self, filter: Document) -> DeleteResult:
        return await (await self._adapter()).delete_many(self.namespace, filter)

    # ---------------------------------------------------------------- indexes

    async def create_index(self, keys: Any, **options: Any) -> None:
        """One index (`keys` and options as `pymongo.IndexModel` takes them)."""
        await self.create_indexes([IndexModel(keys, **options)])

    async def create_indexes(self, indexes: Sequence[IndexModel]) -> None:
        await (await self._adapter()).create_indexes(self.namespace, indexes)

    async def drop_index(self, name: str) -> None:
        await (await self._adapter()).drop_index(self.namespace, name)

    async def index_names(self) -> set[str]:
        return await (await self._adapter()).index_names(self.namespace)

    async def declare_fields(self, fields: Mapping[str, str]) -> None:
        """The indexed top-level fields and their schema types (see
        `EngineAdapter.declare_fields`)."""
        await (await self._adapter()).declare_fields(self.namespace, fields)

    async def field_guards(self, fields: Mapping[str, str]) -> dict[str, FieldGuard]:
        """The type guard of each indexed field (see `EngineAdapter.field_guards`)."""
        return await (await self._adapter()).field_guards(self.namespace, fields)

    async def drop(self) -> None:
        await (await self._adapter()).drop_collection(self.namespace)


class Cursor:
    """A find, run when first iterated or listed (once, like the driver's cursor);
    the option methods return the cursor. `async with cursor:` lets go of the
    server-side cursor when a read stops before its end."""

    def __init__(self, collection: Collection, spec: FindSpec) -> None:
        self._collection = collection
        self.spec = spec
        self._raw: RawCursor | None = None
        self._rows: AsyncIterator[Document] | None = None

    def sort(self, key: str | SortSpec | Mapping[str, int], direction: int = 1) -> Cursor:
        if isinstance(key, str):
            self.spec.sort = [(key, direction)]
        elif isinstance(key, Mapping):
            self.spec.sort = list(key.items())
        else:
            self.spec.sort = list(key)
        return self

    def skip(self, count: int) -> Cursor:
        self.spec.skip = count
        return self

    def limit(self, count: int) -> Cursor:
        self.spec.limit = count
        return self

    def batch_size(self, count: int) -> Cursor:
        self.spec.batch_size = count
        return self

    def max_time_ms(self, milliseconds: int | None) -> Cursor:
        self.spec.max_time_ms = milliseconds
        return self

    async def _open(self) -> RawCursor:
        if self._raw is None:
            adapter = await self._collection._adapter()
            self._raw = adapter.find(self._collection.namespace, self.spec)
            self._rows = aiter(self._raw)
        return self._raw

    async def to_list(self, length: int | None = None) -> list[Document]:
        return await (await self._open()).to_list(length)

    def __aiter__(self) -> Cursor:
        return self

    async def __anext__(self) -> Document:
        raw = await self._open()
        assert self._rows is not None
        try:
            return await anext(self._rows)
        except StopAsyncIteration:
            await raw.close()
            raise

    async def close(self) -> None:
        """Let go of the server-side cursor (a read stopped before its end)."""
        if self._raw is not None:
            await self._raw.close()

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
