"""Putting documents back: the undo of a failed write, shared by CRUD and the journal.

Two rules, on every engine (none of them has transactions here):
- `restore_into` puts pre-images back exactly, re-inserting those that are gone.
- `undo_update` takes back what one update wrote and nothing else. Whether the
  update was cut short by a refusal, a crash of the engine or a lost connection,
  its outcome per document is resolved against what is stored *now*: the
  update is replayed on copies of the pre-images (a scratch collection in the
  control database, so the same engine computes exactly what it wrote; dropped
  after use, and by the maintenance task when a crash left one behind),
  and a document is put back only when it still equals that result. A document
  still equal to its pre-image needs nothing; one that differs from both was
  changed by someone after this update, and is left as it is (counted and
  logged) rather than overwritten; one that is gone stays gone.

The comparison is by value and type (keys sorted, then BSON-encoded), so a
document whose fields an engine reorders still compares equal. Known limits: a
write landing in the milliseconds between that comparison and the restore of a
chunk is overwritten; a later write that leaves a document exactly as this
update did (a client's retry of a `$set`) cannot be told apart and is taken
back with it; a `$currentDate` timestamp (not a date) is the server's, so such
documents count as changed since and stay as they are.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import bson
from pymongo.errors import PyMongoError

from app.db.adapter import Document
from app.db.handles import Collection, DatabaseHandle
from app.kit import id_key

logger = logging.getLogger("quarry.undo")


# At most this many pre-images are put back one `replace_one` at a time (each
# atomic); more go back as one `delete_many` and one `insert_many` per chunk.
# Measured on the embedded engine's SQLite backend, a replace by `_id` (or an
# upsert, single or in a bulk_write) costs time proportional to the collection —
# 0.2 s on 10,000 documents, so 500 upserts took over two minutes, where
# deleting and re-inserting 5,000 takes 2.7 s.
REPLACE_ONE_BY_ONE = 16
RESTORE_CHUNK = 1_000
#: Scratch collections that replay an update: `undo_scratch_<unix time>_<hex>`.
SCRATCH_PREFIX = "undo_scratch_"
#: Age after which the maintenance task drops a scratch collection left behind.
SCRATCH_MAX_AGE_SECONDS = 3600


async def restore_into(handle: Collection, documents: Sequence[Document]) -> None:
    """Put documents back exactly as they were, re-inserting those that are gone.

    Between the delete and the insert of a chunk those documents are absent; a
    journalled rollback cut short there runs again from the journal (deleting
    the same ids again first, so it converges). Known limit: a value of a unique
    field that a concurrent writer took in between fails the insert.
    """
    if len(documents) <= REPLACE_ONE_BY_ONE:
        for document in documents:
            await handle.replace_one({"_id": document["_id"]}, document, upsert=True)
        return
    for start in range(0, len(documents), RESTORE_CHUNK):
        chunk = documents[start : start + RESTORE_CHUNK]
        await handle.delete_many({"_id": {"$in": [doc["_id"] for doc in chunk]}})
        await handle.insert_many(chunk, ordered=False)


@dataclass
class UndoReport:
    restored: int = 0
    unchanged: int = 0
    changed_since: int = 0
    gone: int = 0


def canonical(document: Any) -> bytes:
    """Value-and-type identity of a document, independent of key order."""
    return bson.encode({"v": _sorted(document)})


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


async def replay_update(
    scratch_db: DatabaseHandle, pre_images: Sequence[Document], update: Document
) -> dict[bytes, Document]:
    """What `update` makes of each pre-image, computed by the engine on copies."""
    scratch = scratch_db[f"{SCRATCH_PREFIX}{int(time.time())}_{uuid.uuid4().hex}"]
    try:
        await scratch.insert_many(list(pre_images), ordered=False)
        await scratch.update_many({}, update)
        return {id_key(document["_id"]): document async for document in scratch.find({})}
    finally:
        # An engine that failed here fails the undo too; its error is the one to see.
        with contextlib.suppress(PyMongoError):
            await scratch.drop()


async def drop_stale_scratch(scratch_db: DatabaseHandle) -> int:
    """Drop scratch collections a crash left behind; the number dropped."""
    dropped = 0
    cutoff = time.time() - SCRATCH_MAX_AGE_SECONDS
    for name in await scratch_db.list_collection_names():
        if not name.startswith(SCRATCH_PREFIX):
            continue
        stamp = name.removeprefix(SCRATCH_PREFIX).split("_", 1)[0]
        if stamp.isdigit() and int(stamp) < cutoff:
            await scratch_db.drop_collection(name)
            dropped += 1
    return dropped


async def delete_if_written(handle: Collection, written: Sequence[Document]) -> int:
    """Delete these documents where the collection holds them exactly as written
    (a document with one of their `_id`s that differs — one that existed before,
    or was written since — stays); the number deleted."""
    deleted = 0
    for start in range(0, len(written), RESTORE_CHUNK):
        chunk = written[start : start + RESTORE_CHUNK]
        ours = {id_key(document["_id"]): canonical(document) for document in chunk}
        stored = handle.find({"_id": {"$in": [document["_id"] for document in chunk]}})
        async for document in stored:
            if ours.get(id_key(document["_id"])) == canonical(document):
                result = await handle.delete_one({"_id": document["_id"]})
                deleted += result.deleted_count
    return deleted


async def undo_update(
    handle: Collection,
    pre_images: Sequence[Document],
    update: Document,
    *,
    scratch_db: DatabaseHandle,
) -> UndoReport:
    """Take back what `update` wrote to these documents, and only that (module doc)."""
    report = UndoReport()
    for start in range(0, len(pre_images), RESTORE_CHUNK):
        chunk = pre_images[start : start + RESTORE_CHUNK]
        ids = [document["_id"] for document in chunk]
        current = {id_key(d["_id"]): d async for d in handle.find({"_id": {"$in": ids}})}
        written = await replay_update(scratch_db, chunk, update)
        to_restore = []
        for before in chunk:
            key = id_key(before["_id"])
            now = current.get(key)
            if now is None:
                report.gone += 1
            elif canonical(now) == canonical(before):
                report.unchanged += 1
            elif key in written and canonical(now) == canonical(written[key]):
                to_restore.append(before)
            else:
                report.changed_since += 1
        await restore_into(handle, to_restore)
        report.restored += len(to_restore)
    if report.changed_since or report.gone:
        logger.warning(
            "undo of an update on %s.%s left %d documents changed since and %d deleted since "
            "as they are",
            handle.database_name,
            handle.name,
            report.changed_since,
            report.gone,
        )
    return report
