"""The only place the management package talks to MongoDB.

Control database (`QUARRY_CONTROL_DB`):
- `databases` — one document per logical database: `user_id`, `displayName`,
  `dbName` (the physical database), `state` (`creating` → `ready` → `dropping`),
  `collections` (a list of `{name, fields, strict, indexes, schema_version,
  state, created_at}`), `created_at`, `updated_at`. Unique on
  (`user_id`, `displayName`) and on `dbName`.
- `locks` — short leases (`_id` = `database:<id>`) that serialise changes to one
  database's collection list across requests and workers. A lease is taken by
  inserting its `_id` (unique: atomic on every engine, including the embedded
  one, whose updates are not) and expires so that a crashed holder cannot block.

Physical databases hold the users' documents; their collections and indexes are
created and dropped here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, IndexModel
from pymongo.errors import (
    CollectionInvalid,
    DuplicateKeyError,
    OperationFailure,
    WriteError,
)
from pymongo.results import InsertManyResult

from app.clock import utc_now
from app.db import (
    Database,
    DatabaseHandle,
    Document,
    FieldGuard,
    UndoReport,
    delete_if_written,
    drop_stale_scratch,
    is_duplicate_key,
    restore_into,
    undo_update,
)

DATABASES = "databases"
LOCKS = "locks"
LOCK_LEASE_SECONDS = 60
LOCK_WAIT_SECONDS = 10.0


async def ensure_indexes(*, db: DatabaseHandle) -> None:
    await db[DATABASES].create_indexes(
        [
            IndexModel(
                [("user_id", ASCENDING), ("displayName", ASCENDING)],
                unique=True,
                name="owner_name_unique",
            ),
            IndexModel([("dbName", ASCENDING)], unique=True, name="db_name_unique"),
            IndexModel([("state", ASCENDING)], name="state"),
        ],
    )


# ----------------------------------------------------------------- control plane


async def insert_database(*, db: DatabaseHandle, record: Document) -> None:
    """Raises `DuplicateKeyError` on a taken (owner, name) or physical name."""
    await db[DATABASES].insert_one(record)


async def name_taken(*, db: DatabaseHandle, user_id: ObjectId, name: str) -> bool:
    found = await db[DATABASES].find_one(
        {"user_id": user_id, "displayName": name}, projection={"_id": 1}
    )
    return found is not None


async def find_database(
    *, db: DatabaseHandle, user_id: ObjectId, database_id: ObjectId
) -> Document | None:
    # `_id` alone: the embedded engine pushes only a single-key `_id` equality down to
    # SQLite and scans for anything else, so owner and state are checked here.
    record = await db[DATABASES].find_one({"_id": database_id})
    if record is None or record.get("user_id") != user_id or record.get("state") != "ready":
        return None
    return record


async def list_databases(
    *,
    db: DatabaseHandle,
    user_id: ObjectId,
    search: str | None,
    skip: int,
    limit: int,
) -> tuple[list[Document], int]:
    query: Document = {"user_id": user_id, "state": "ready"}
    if search:
        query["displayName"] = {"$regex": re.escape(search), "$options": "i"}
    total = await db[DATABASES].count_documents(query)
    cursor = (
        db[DATABASES]
        .find(query, projection={"displayName": 1, "collections.state": 1, "created_at": 1})
        .sort([("displayName", ASCENDING), ("_id", ASCENDING)])
        .skip(skip)
        .limit(limit)
    )
    return await cursor.to_list(), total


async def set_database_state(*, db: DatabaseHandle, database_id: ObjectId, state: str) -> None:
    await db[DATABASES].update_one(
        {"_id": database_id}, {"$set": {"state": state, "updated_at": utc_now()}}
    )


async def delete_database_record(*, db: DatabaseHandle, database_id: ObjectId) -> None:
    await db[DATABASES].delete_one({"_id": database_id})


async def save_collections(
    *, db: DatabaseHandle, database_id: ObjectId, collections: list[Document]
) -> None:
    """Replace the collection list; callers hold the database's lock."""
    await db[DATABASES].update_one(
        {"_id": database_id},
        {"$set": {"collections": collections, "updated_at": utc_now()}},
    )


async def reload_database(*, db: DatabaseHandle, database_id: ObjectId) -> Document | None:
    return await db[DATABASES].find_one({"_id": database_id})


async def stale_databases(*, db: DatabaseHandle, older_than: datetime) -> list[Document]:
    """Databases left `creating`/`dropping` by a failed request, or with a collection
    left `creating`/`dropping`, for the maintenance task to finish."""
    query = {
        "updated_at": {"$lt": older_than},
        "$or": [
            {"state": {"$in": ["creating", "dropping"]}},
            {"collections.state": {"$in": ["creating", "dropping"]}},
        ],
    }
    return await db[DATABASES].find(query).to_list(100)


# ------------------------------------------------------------------------- locks


async def acquire_lock(
    *, db: DatabaseHandle, name: str, wait_seconds: float = LOCK_WAIT_SECONDS
) -> str | None:
    """A lease token, or None when the lock stayed taken for `wait_seconds`."""
    token = uuid.uuid4().hex
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        now = utc_now()
        try:
            await db[LOCKS].insert_one(
                {
                    "_id": name,
                    "token": token,
                    "expires_at": now + timedelta(seconds=LOCK_LEASE_SECONDS),
                }
            )
            return token
        except DuplicateKeyError:
            await db[LOCKS].delete_one({"_id": name, "expires_at": {"$lt": now}})
        if asyncio.get_running_loop().time() >= deadline:
            return None
        await asyncio.sleep(0.05)


async def release_lock(*, db: DatabaseHandle, name: str, token: str) -> None:
    await db[LOCKS].delete_one({"_id": name, "token": token})


# ---------------------------------------------------------------- import leases

IMPORT_LEASES = "import_leases"


async def take_import_lease(
    *, db: DatabaseHandle, user_id: ObjectId, limit: int, seconds: float
) -> str | None:
    """One of the user's `limit` import leases (`<user>:<n>`), or None if all are
    held; an expired lease is taken over (management/import_quota.py)."""
    now = utc_now()
    for number in range(limit):
        lease = f"{user_id}:{number}"
        for _ in range(2):
            try:
                await db[IMPORT_LEASES].insert_one(
                    {"_id": lease, "expires_at": now + timedelta(seconds=seconds)}
                )
                return lease
            except DuplicateKeyError:
                result = await db[IMPORT_LEASES].delete_one(
                    {"_id": lease, "expires_at": {"$lt": now}}
                )
                if result.deleted_count == 0:
                    break
    return None


async def renew_import_lease(*, db: DatabaseHandle, lease: str, seconds: float) -> None:
    await db[IMPORT_LEASES].update_one(
        {"_id": lease}, {"$set": {"expires_at": utc_now() + timedelta(seconds=seconds)}}
    )


async def release_import_lease(*, db: DatabaseHandle, lease: str) -> None:
    await db[IMPORT_LEASES].delete_one({"_id": lease})


# ------------------------------------------------------------------- data plane


async def create_collection(*, database: Database, db_name: str, name: str) -> None:
    """Create the physical collection; an existing one is left as it is."""
    with contextlib.suppress(CollectionInvalid):  # already there: a retried creation
        await database.db(db_name).create_collection(name)


async def create_index(
    *,
    database: Database,
    db_name: str,
    collection: str,
    keys: list[tuple[str, int]],
    unique: bool,
    name: str,
) -> None:
    """`keys`: `[(field, 1 | -1), ...]`. Raises `OperationFailure` (e.g. duplicates
    for a unique index)."""
    await database.db(db_name)[collection].create_index(keys, unique=unique, name=name)


async def declare_fields(
    *, database: Database, db_name: str, collection: str, fields: dict[str, str]
) -> None:
    """Tell the engine the collection's indexed fields and their types (its typed
    indexes for fast reads are built in the background)."""
    await database.db(db_name)[collection].declare_fields(fields)


async def field_guards(
    *, database: Database, db_name: str, collection: str, fields: dict[str, str]
) -> dict[str, FieldGuard]:
    """The engine's type guard of each indexed field (name → schema type)."""
    return await database.db(db_name)[collection].field_guards(fields)


async def find_violations(
    *,
    database: Database,
    db_name: str,
    collection: str,
    query: Document,
    field: str,
    skip: int,
    limit: int,
) -> list[Document]:
    """Matching documents' `_id` and `field`, in `_id` order, within the read time
    limit (`QUARRY_QUERY_TIMEOUT_MS`: 504 `QUERY_TIMEOUT` past it)."""
    cursor = database.db(db_name)[collection].find(
        query,
        projection={"_id": 1, field: 1},
        sort=[("_id", ASCENDING)],
        skip=skip,
        limit=limit,
        max_time_ms=database.query_time_ms,
    )
    return await cursor.to_list()


async def count_matching(
    *, database: Database, db_name: str, collection: str, query: Document
) -> int:
    """Within the read time limit (`Database.count_limited`)."""
    return await database.count_limited(db_name, collection, query)


async def set_value_if_unchanged(
    *,
    database: Database,
    db_name: str,
    collection: str,
    document_id: Any,
    field: str,
    old: Any,
    new: Any,
) -> bool:
    """Set `field` to `new` where it still holds `old`: one conditional update, so a
    write that changed the document meanwhile is never overwritten (on the embedded
    engine it runs under the write door's lock, as every update). False when the
    document no longer matched.

    `{field: old}` alone would also match an array holding `old` (and a dotted
    path through an array), so the condition excludes arrays at every level of the
    path; a write that made a parent a scalar meanwhile fails the `$set` itself
    (WriteError), which is a change too. Raises `OperationFailure` (`is_duplicate_key`)
    when the new value collides in a unique index."""
    condition: Document = {"_id": document_id}
    parts = field.split(".")
    for depth in range(1, len(parts)):
        condition[".".join(parts[:depth])] = {"$not": {"$type": "array"}}
    condition[field] = {"$eq": old, "$not": {"$type": "array"}}
    try:
        result = await database.db(db_name)[collection].update_one(
            condition, {"$set": {field: new}}
        )
    except OperationFailure as exc:
        if is_duplicate_key(exc) or not isinstance(exc, WriteError):
            raise  # a unique index's conflict is not a change: the caller counts it
        return False
    return result.modified_count == 1


async def ready_databases(*, db: DatabaseHandle) -> list[Document]:
    """Every ready database's physical name and collections (a pass at start)."""
    return await (
        db[DATABASES]
        .find({"state": "ready"}, projection={"dbName": 1, "collections": 1})
        .to_list(None)
    )


async def index_names(*, database: Database, db_name: str, collection: str) -> set[str]:
    """The names of the collection's indexes on the engine (one `listIndexes`)."""
    return await database.db(db_name)[collection].index_names()


async def drop_index(*, database: Database, db_name: str, collection: str, name: str) -> None:
    try:
        await database.db(db_name)[collection].drop_index(name)
    except OperationFailure as exc:
        if exc.code != 27:  # IndexNotFound: already gone
            raise


async def drop_collection(*, database: Database, db_name: str, name: str) -> None:
    await database.db(db_name).drop_collection(name)


async def drop_physical_database(*, database: Database, db_name: str) -> None:
    await database.drop_database(db_name)


async def physical_database_names(*, database: Database) -> list[str]:
    return await database.list_database_names()


async def count_documents(*, database: Database, db_name: str, collection: str) -> int:
    return await database.collection_size(db_name, collection)


async def insert_raw_documents(
    *, database: Database, db_name: str, collection: str, documents: Sequence[RawBSONDocument]
) -> InsertManyResult:
    """Unordered insert of already-encoded documents; raises `BulkWriteError` per record."""
    return await database.db(db_name)[collection].insert_many(documents, ordered=False)


async def existing_ids(
    *, database: Database, db_name: str, collection: str, ids: list[Any]
) -> set[Any]:
    cursor = database.db(db_name)[collection].find({"_id": {"$in": ids}}, projection={"_id": 1})
    return {document["_id"] async for document in cursor}


async def delete_id_range(
    *, database: Database, db_name: str, collection: str, low: ObjectId, high: ObjectId
) -> int:
    result = await database.db(db_name)[collection].delete_many(
        {"_id": {"$gte": low, "$lte": high}}
    )
    return result.deleted_count


async def delete_ids(*, database: Database, db_name: str, collection: str, ids: list[Any]) -> int:
    result = await database.db(db_name)[collection].delete_many({"_id": {"$in": ids}})
    return result.deleted_count


async def restore_documents(
    *, database: Database, db_name: str, collection: str, documents: Sequence[Document]
) -> None:
    await restore_into(database.db(db_name)[collection], documents)


async def undo_update_of(
    *,
    database: Database,
    db_name: str,
    collection: str,
    pre_images: Sequence[Document],
    update: Document,
) -> UndoReport:
    return await undo_update(
        database.db(db_name)[collection], pre_images, update, scratch_db=database.control
    )


async def delete_written(
    *, database: Database, db_name: str, collection: str, documents: Sequence[Document]
) -> int:
    return await delete_if_written(database.db(db_name)[collection], documents)


async def drop_stale_undo_scratch(*, database: Database) -> int:
    return await drop_stale_scratch(database.control)


async def stream_documents(
    *, database: Database, db_name: str, collection: str, query: Document, batch_size: int
) -> AsyncIterator[list[Document]]:
    """The matching documents in natural order, a batch at a time (never all at once).

    No sort: the embedded engine sorts in memory, which a large export must not need.
    """
    cursor = database.db(db_name)[collection].find(query).batch_size(batch_size)
    batch: list[Document] = []
    async with cursor:
        async for document in cursor:
            batch.append(document)
            if len(batch) >= batch_size:
                yield batch
                batch = []
    if batch:
        yield batch
