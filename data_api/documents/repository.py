"""The only place document CRUD talks to MongoDB: the users' physical databases.

Functions take keyword-only arguments and return plain values (lists of
documents, counts, small result tuples), never driver cursors. Reads are
bounded by the caller's limit; nothing here loads a whole collection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from app.db import Collection, Database, Document, UndoReport, delete_if_written, restore_into
from app.db import undo_update as undo_update_in


@dataclass(frozen=True)
class Target:
    """One physical collection."""

    database: Database
    db_name: str
    collection: str

    @property
    def handle(self) -> Collection:
        return self.database.db(self.db_name)[self.collection]


@dataclass(frozen=True)
class UpdateOutcome:
    matched_count: int
    modified_count: int
    upserted_id: Any


async def insert_documents(*, target: Target, documents: Sequence[Document]) -> None:
    """Ordered insert (stops at the first refused document); raises `BulkWriteError`."""
    await target.handle.insert_many(documents, ordered=True)


async def find_documents(
    *,
    target: Target,
    query: Document,
    sort: list[tuple[str, int]] | None,
    projection: dict[str, int] | None,
    skip: int,
    limit: int,
    time_limited: bool = True,
    any_order: bool = False,
) -> list[Document]:
    """`time_limited=False` for the read a write depends on (an update's pre-images):
    a write is waited for however long it takes. `any_order`: unsorted, any `limit`
    matches will do (`FindSpec.any_order`)."""
    max_time = target.database.query_time_ms if time_limited else None
    cursor = target.handle.find(
        query,
        projection=projection,
        skip=skip,
        limit=limit,
        max_time_ms=max_time,
        any_order=any_order,
    )
    if sort:
        cursor = cursor.sort(sort)
    return await cursor.to_list(length=limit)


async def find_document(
    *, target: Target, query: Document, projection: dict[str, int] | None = None
) -> Document | None:
    return await target.handle.find_one(query, projection=projection)


async def count_documents(*, target: Target, query: Document) -> int:
    """Raises `QueryTimeout` past `QUARRY_QUERY_TIMEOUT_MS`: the server's `maxTimeMS`
    where it honours it, else (FerretDB's count) the client gives up shortly after."""
    if not query:
        return await target.database.collection_size(target.db_name, target.collection)
    return await target.database.count_limited(target.db_name, target.collection, query)


async def update_documents(
    *, target: Target, query: Document, update: Document, multi: bool, upsert: bool
) -> UpdateOutcome:
    if multi:
        result = await target.handle.update_many(query, update, upsert=upsert)
    else:
        result = await target.handle.update_one(query, update, upsert=upsert)
    return UpdateOutcome(result.matched_count, result.modified_count, result.upserted_id)


async def delete_documents(*, target: Target, query: Document, multi: bool) -> int:
    if multi:
        result = await target.handle.delete_many(query)
    else:
        result = await target.handle.delete_one(query)
    return result.deleted_count


async def delete_by_ids(*, target: Target, ids: Sequence[Any]) -> int:
    """Delete documents by `_id`, one at a time: a single-key `_id` equality is the only
    lookup the embedded engine does not scan for (an `$in` of n ids costs n scans)."""
    deleted = 0
    for document_id in ids:
        result = await target.handle.delete_one({"_id": document_id})
        deleted += result.deleted_count
    return deleted


async def delete_id_range(*, target: Target, low: ObjectId, high: ObjectId) -> int:
    result = await target.handle.delete_many({"_id": {"$gte": low, "$lte": high}})
    return result.deleted_count


async def existing_ids(*, target: Target, ids: list[Any]) -> list[Any]:
    """Which of these `_id`s the collection holds already."""
    cursor = target.handle.find({"_id": {"$in": ids}}, projection={"_id": 1})
    return [document["_id"] async for document in cursor]


async def restore_documents(*, target: Target, documents: Sequence[Document]) -> None:
    """Put documents back exactly as they were (re-inserting deleted ones)."""
    await restore_into(target.handle, documents)


async def delete_written(*, target: Target, documents: Sequence[Document]) -> int:
    """Delete these documents where they are stored exactly as written (app.db.undo)."""
    return await delete_if_written(target.handle, documents)


async def undo_update(
    *, target: Target, pre_images: Sequence[Document], update: Document
) -> UndoReport:
    """Take back what `update` wrote to these documents and nothing written since."""
    return await undo_update_in(
        target.handle, pre_images, update, scratch_db=target.database.control
    )


async def aggregate(*, target: Target, pipeline: list[Document], limit: int) -> list[Document]:
    cursor = await target.handle.aggregate(pipeline, max_time_ms=target.database.query_time_ms)
    return await cursor.to_list(length=limit)


async def any_other_with(*, target: Target, field: str, value: Any, exclude_id: Any) -> bool:
    """Whether a document other than `exclude_id` has `field` equal to `value`."""
    query: Document = {field: {"$eq": value}}
    if exclude_id is not None:
        query["_id"] = {"$ne": exclude_id}
    return await target.handle.find_one(query, projection={"_id": 1}) is not None
