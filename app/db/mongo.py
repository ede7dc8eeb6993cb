"""`MongoAdapter`: every operation of `app.db.adapter.EngineAdapter` as PyMongo's
async driver does it against MongoDB.

It is also the base of the embedded engine's adapter, since FerretDB speaks the
same wire protocol: that one overrides only what its engine does differently.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from pymongo import IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.results import DeleteResult, InsertManyResult, InsertOneResult, UpdateResult

from app.db.adapter import (
    Capabilities,
    Document,
    EngineAdapter,
    FindSpec,
    Namespace,
    RawCursor,
)
from app.db.field_guards import FieldGuard
from app.db.page_query import PageQuery, find_page_mongo

if TYPE_CHECKING:
    from app.db.database import Database

MONGODB = Capabilities(label="MongoDB", short_label="MongoDB")


class MongoAdapter(EngineAdapter):
    name = "mongodb"
    capabilities = MONGODB

    def __init__(self, database: Database) -> None:
        self.database = database
        self.client = database.client

    def collection(self, ns: Namespace) -> AsyncCollection[Document]:
        return self.client[ns.database][ns.collection]

    # ------------------------------------------------------------------ reads

    def find(self, ns: Namespace, spec: FindSpec) -> RawCursor:
        cursor = self.collection(ns).find(
            spec.filter,
            spec.projection,
            skip=spec.skip,
            limit=spec.limit,
            max_time_ms=spec.max_time_ms,
        )
        if spec.sort:
            cursor = cursor.sort(spec.sort)
        if spec.batch_size is not None:
            cursor = cursor.batch_size(spec.batch_size)
        return cursor

    async def find_one(
        self, ns: Namespace, filter: Document, projection: Mapping[str, Any] | None
    ) -> Document | None:
        return await self.collection(ns).find_one(filter, projection)

    async def count_documents(
        self, ns: Namespace, filter: Document, *, max_time_ms: int | None
    ) -> int:
        options = {} if max_time_ms is None else {"maxTimeMS": max_time_ms}
        return await self.collection(ns).count_documents(filter, **options)

    async def collection_size(self, ns: Namespace) -> int:
        """The collection's metadata count."""
        return await self.collection(ns).estimated_document_count()

    async def aggregate(
        self, ns: Namespace, pipeline: list[Document], *, max_time_ms: int | None
    ) -> RawCursor:
        options = {} if max_time_ms is None else {"maxTimeMS": max_time_ms}
        return await self.collection(ns).aggregate(pipeline, **options)

    async def find_page(self, ns: Namespace, query: PageQuery) -> tuple[list[Document], int]:
        return await find_page_mongo(
            self.client[ns.database],
            ns.collection,
            query,
            max_time_ms=self.database.query_time_ms,
        )

    async def lookups(
        self, db_name: str, wanted: list[tuple[str, str, Any]]
    ) -> list[list[Document]]:
        """Concurrent finds, one per lookup (this adapter's finds: the embedded
        engine's are planned)."""
        return list(
            await asyncio.gather(
                *(
                    self.find(Namespace(db_name, c), FindSpec(filter={field: value})).to_list(None)
                    for c, field, value in wanted
                )
            )
        )

    async def by_ids(self, ns: Namespace, ids: list[Any]) -> list[Document]:
        """One `$in` find (this adapter's: the embedded engine's is planned)."""
        if not ids:
            return []
        return await self.find(ns, FindSpec(filter={"_id": {"$in": ids}})).to_list(None)

    async def watch(
        self, ns: Namespace, pipeline: list[Document]
    ) -> AbstractAsyncContextManager[AsyncIterator[Document]]:
        return await self.collection(ns).watch(pipeline)

    # ----------------------------------------------------------------- writes

    async def insert_one(self, ns: Namespace, document: Document) -> InsertOneResult:
        return await self.collection(ns).insert_one(document)

    async def insert_many(
        self, ns: Namespace, documents: Sequence[Document], *, ordered: bool
    ) -> InsertManyResult:
        return await self.collection(ns).insert_many(documents, ordered=ordered)

    async def update_one(
        self, ns: Namespace, filter: Document, update: Document, *, upsert: bool
    ) -> UpdateResult:
        return await self.collection(ns).update_one(filter, update, upsert=upsert)

    async def update_many(
        self, ns: Namespace, filter: Document, update: Document, *, upsert: bool
    ) -> UpdateResult:
        return await self.collection(ns).update_many(filter, update, upsert=upsert)

    async def replace_one(
        self, ns: Namespace, filter: Document, replacement: Document, *, upsert: bool
    ) -> UpdateResult:
        return await self.collection(ns).replace_one(filter, replacement, upsert=upsert)

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
        return await self.collection(ns).find_one_and_update(
            filter,
            update,
            projection=projection,
            upsert=upsert,
            return_document=ReturnDocument.AFTER if return_after else ReturnDocument.BEFORE,
        )

    async def delete_one(self, ns: Namespace, filter: Document) -> DeleteResult:
        return await self.collection(ns).delete_one(filter)

    async def delete_many(self, ns: Namespace, filter: Document) -> DeleteResult:
        return await self.collection(ns).delete_many(filter)

    # ---------------------------------------------------- namespaces, indexes

    async def create_indexes(self, ns: Namespace, indexes: Sequence[IndexModel]) -> None:
        """One `createIndexes` per index: an index that exists already is then a
        no-op on every engine (FerretDB 1.24 drops the connection when one command
        names two or more indexes that all exist, which is every start of a server
        on existing data)."""
        collection = self.collection(ns)
        for index in indexes:
            await collection.create_indexes([index])

    async def drop_index(self, ns: Namespace, name: str) -> None:
        await self.collection(ns).drop_index(name)

    async def index_names(self, ns: Namespace) -> set[str]:
        cursor = await self.collection(ns).list_indexes()
        return {index["name"] async for index in cursor}

    async def field_guards(self, ns: Namespace, fields: Mapping[str, str]) -> dict[str, FieldGuard]:
        """Always valid: MongoDB's own indexes serve whatever types the documents
        hold. Not counted (None): a `$type` query cannot use the index, and
        get_metadata must not scan every collection; `GET /api/index_violations`
        lists them on request."""
        return {name: FieldGuard("valid", None, None) for name in fields}

    async def create_collection(self, ns: Namespace) -> None:
        await self.client[ns.database].create_collection(ns.collection)

    async def drop_collection(self, ns: Namespace) -> None:
        await self.client[ns.database].drop_collection(ns.collection)

    async def list_collection_names(self, db_name: str) -> list[str]:
        return await self.client[db_name].list_collection_names()

    async def list_database_names(self) -> list[str]:
        return await self.client.list_database_names()

    async def drop_database(self, db_name: str) -> None:
        await self.client.drop_database(db_name)
