"""The only place entries talk to MongoDB (layout: `data_api/datasets/repository.py`).

Bytes are GridFS in the owner's tenant database, bucket `entries`: a file is
`entries.files` `{_id, length, chunkSize, uploadDate, filename, metadata}` plus
`entries.chunks` `{files_id, n, data}`, so any GridFS reader (the driver's
`AsyncGridFSBucket`, `mongofiles`) reads them. Quarry writes and reads the
chunks itself: writing, to batch the chunk inserts of many small files into a
few `insert_many` calls; reading, because the driver's reader asks for chunks
with a range and a sort, which the embedded engine answers by reading and
sorting every chunk of the file, while `{files_id, n}` equality is one indexed
lookup per chunk.

An upload holds a marker in the catalogue's `uploads` (`_id` = the file id,
written before the first chunk, its `heartbeat_at` renewed while bytes
arrive): a marker whose heartbeat is stale names an upload that died —
client, server or engine — and maintenance removes whatever it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from bson.binary import Binary
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from app.db import Document
from data_api.datasets.repository import (
    ENTRIES,
    ENTRY_CHUNKS,
    ENTRY_FILES,
    ENTRY_HOMES,
    ENTRY_TEXTS,
    EXTRACTION_JOBS,
    ITEMS,
    SEARCH_QUEUE,
    UPLOADS,
    Catalogue,
    tenant_db_name,
)

#: The heartbeat of an abandoned upload's marker: stale for ever.
ABANDONED_AT = datetime(1970, 1, 1, tzinfo=UTC)
#: GridFS chunk size: large enough that a 500 MB file is 500 inserts, small
#: enough that a `Range` read fetches little it does not send.
CHUNK_BYTES = 1 << 20
#: Chunks are inserted in batches of about this many bytes (what an upload holds
#: in memory at most is a small multiple of it).
FLUSH_BYTES = 2 << 20
#: Extracted text is stored in documents of at most this many characters
#: (4 MB of UTF-8 at worst, well under the 16 MiB document limit).
TEXT_CHUNK_CHARS = 1_000_000
#: `_id`s asked for in one statement, and texts (up to 4 MB each) in one.
BY_ID_BATCH = 1000
TEXT_BATCH = 250


class ChunkSink:
    """GridFS chunks of the files of one upload, written in batches as bytes arrive."""

    def __init__(self, store: EntryStore, owner_id: ObjectId) -> None:
        self.store = store
        self.owner_id = owner_id
        self.pending: list[Document] = []
        self.pending_bytes = 0
        self.file_id: ObjectId | None = None
        self.buffer = bytearray()
        self.n = 0
        self.length = 0

    def start(self, file_id: ObjectId) -> None:
        self.file_id, self.buffer, self.n, self.length = file_id, bytearray(), 0, 0

    async def write(self, data: bytes) -> None:
        self.buffer += data
        self.length += len(data)
        while len(self.buffer) >= CHUNK_BYTES:
            self._emit(bytes(self.buffer[:CHUNK_BYTES]))
            del self.buffer[:CHUNK_BYTES]
        if self.pending_bytes >= FLUSH_BYTES:
            await self.flush()

    async def end_file(self) -> int:
        """Close the current file (its last, short chunk); its length in bytes."""
        if self.buffer:
            self._emit(bytes(self.buffer))
            self.buffer = bytearray()
        return self.length

    def _emit(self, data: bytes) -> None:
        self.pending.append(
            {"_id": ObjectId(), "files_id": self.file_id, "n": self.n, "data": Binary(data)}
        )
        self.pending_bytes += len(data)
        self.n += 1

    async def flush(self) -> None:
        if self.pending:
            chunks, self.pending, self.pending_bytes = self.pending, [], 0
            await self.store.tenant(self.owner_id)[ENTRY_CHUNKS].insert_many(chunks)


class EntryStore:
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    @property
    def control(self) -> Any:
        return self.catalogue.control

    def tenant(self, owner_id: ObjectId) -> Any:
        return self.catalogue.tenant(owner_id)

    # ---------------------------------------------------------------- uploads

    async def begin_uploads(
        self, *, file_ids: Sequence[ObjectId], owner_id: ObjectId, now: datetime
    ) -> None:
        await self.control[UPLOADS].insert_many(
            [
                {"_id": f, "owner_id": owner_id, "started_at": now, "heartbeat_at": now}
                for f in file_ids
            ]
        )

    async def heartbeat(self, *, file_ids: Sequence[ObjectId], now: datetime) -> bool:
        """Renew the uploads' markers; False if any is gone (maintenance gave the
        upload up as stale and removed what it wrote)."""
        result = await self.control[UPLOADS].update_many(
            {"_id": {"$in": list(file_ids)}, "abandoned": {"$ne": True}},
            {"$set": {"heartbeat_at": now}},
        )
        return result.matched_count == len(set(file_ids))

    async def end_uploads(self, *, file_ids: Sequence[ObjectId]) -> None:
        for file_id in file_ids:
            await self.control[UPLOADS].delete_one({"_id": file_id})

    async def stale_uploads(self, *, before: datetime) -> list[Document]:
        return await self.control[UPLOADS].find({"heartbeat_at": {"$lt": before}}).to_list(None)

    async def give_up_upload(self, *, file_id: ObjectId, before: datetime) -> bool:
        """Mark a stale upload abandoned — only if it is still stale: an upload that
        renewed its marker meanwhile is left alone; one that did not can no longer
        renew it (it answers 408). The marker stays, stale, until `discard_upload`
        has removed everything, so a discard cut short is retried."""
        result = await self.control[UPLOADS].update_one(
            {"_id": file_id, "heartbeat_at": {"$lt": before}},
            {"$set": {"abandoned": True, "heartbeat_at": ABANDONED_AT}},
        )
        return result.matched_count == 1

    async def discard_upload(self, *, owner_id: ObjectId, file_id: ObjectId) -> None:
        """Everything an unfinished upload wrote, its marker last (idempotent)."""
        await self.catalogue.delete_entry(entry_id=file_id)
        await self.catalogue.delete_entry_content(owner_id=owner_id, entry_id=file_id)
        await self.control[UPLOADS].delete_one({"_id": file_id})

    async def commit_entries(
        self,
        *,
        owner_id: ObjectId,
        files: list[Document],
        entries: list[Document],
        items: list[Document],
    ) -> None:
        """The files' GridFS documents, catalogue rows (first: an entry is never in a
        tenant unlocatable), records, home items and extraction jobs — a handful of
        batched inserts however many files the upload held."""
        await self.catalogue.ensure_tenant(owner_id)
        db = self.tenant(owner_id)
        await self.control[ENTRY_HOMES].insert_many(
            [
                {
                    "_id": e["_id"],
                    "owner_id": owner_id,
                    "home_dataset_id": e["dataset_id"],
                    "linked_owner_ids": [owner_id],
                }
                for e in entries
            ]
        )
        await db[ENTRY_FILES].insert_many(files)
        await db[ENTRIES].insert_many(entries)
        await db[ITEMS].insert_many(items)
        jobs = [
            {"_id": e["_id"], "owner_id": owner_id, "lease_until": e["created_at"], "attempts": 0}
            for e in entries
            if e["text_status"] == "pending"
        ]
        if jobs:
            await self.control[EXTRACTION_JOBS].insert_many(jobs)

    # ---------------------------------------------------------------- bytes

    async def read_chunk(self, *, owner_id: ObjectId, file_id: ObjectId, n: int) -> bytes:
        chunk = await self.tenant(owner_id)[ENTRY_CHUNKS].find_one({"files_id": file_id, "n": n})
        if chunk is None:
            raise LookupError(f"chunk {n} of {file_id} is missing")
        return bytes(chunk["data"])

    # ---------------------------------------------------------------- records

    async def entry_home(self, *, entry_id: ObjectId) -> Document | None:
        return await self.catalogue.entry_home(entry_id=entry_id)

    async def _by_id(
        self, db_name: str, collection: str, ids: Sequence[Any]
    ) -> dict[Any, Document]:
        """Documents by `_id`, `BY_ID_BATCH` to a statement on the embedded engine."""
        found: dict[Any, Document] = {}
        for start in range(0, len(ids), BY_ID_BATCH):
            rows = await self.catalogue.database.by_ids(
                db_name, collection, list(ids[start : start + BY_ID_BATCH])
            )
            found.update((row["_id"], row) for row in rows)
        return found

    async def entry_homes(self, *, entry_ids: Sequence[ObjectId]) -> dict[ObjectId, Document]:
        return await self._by_id(self.catalogue.database.control_db_name, ENTRY_HOMES, entry_ids)

    async def find_entry(self, *, owner_id: ObjectId, entry_id: ObjectId) -> Document | None:
        return await self.tenant(owner_id)[ENTRIES].find_one({"_id": entry_id})

    async def entries_by_id(
        self, *, owner_id: ObjectId, entry_ids: Sequence[ObjectId]
    ) -> dict[ObjectId, Document]:
        """Several entry records of one tenant in one find (`_id` batches)."""
        return await self._by_id(tenant_db_name(owner_id), ENTRIES, entry_ids)

    async def items_by_id(
        self, *, owner_id: ObjectId, item_ids: Sequence[str]
    ) -> dict[str, Document]:
        return await self._by_id(tenant_db_name(owner_id), ITEMS, item_ids)

    async def update_entry(
        self,
        *,
        owner_id: ObjectId,
        entry_id: ObjectId,
        update: Document,
        only_if: Document | None = None,
    ) -> Document | None:
        return await self.tenant(owner_id)[ENTRIES].find_one_and_update(
            {"_id": entry_id, **(only_if or {})}, update, return_document=ReturnDocument.AFTER
        )

    # ---------------------------------------------------------------- text

    async def save_text(self, *, owner_id: ObjectId, entry_id: ObjectId, text: str) -> int:
        """The text in `TEXT_CHUNK_CHARS` pieces (idempotent); how many pieces."""
        db = self.tenant(owner_id)
        pieces = max(1, math.ceil(len(text) / TEXT_CHUNK_CHARS))
        await db[ENTRY_TEXTS].delete_many({"entry_id": entry_id})
        for n in range(pieces):
            piece = text[n * TEXT_CHUNK_CHARS : (n + 1) * TEXT_CHUNK_CHARS]
            # A second extraction of the same entry may have raced us: same text.
            with contextlib.suppress(DuplicateKeyError):
                await db[ENTRY_TEXTS].insert_one(
                    {"_id": f"{entry_id}:{n}", "entry_id": entry_id, "n": n, "text": piece}
                )
        return pieces

    async def drop_text(self, *, owner_id: ObjectId, entry_id: ObjectId) -> None:
        await self.tenant(owner_id)[ENTRY_TEXTS].delete_many({"entry_id": entry_id})

    async def read_text(
        self, *, owner_id: ObjectId, entry_id: ObjectId, pieces: int, max_chars: int | None = None
    ) -> str:
        wanted = (
            pieces if max_chars is None else min(pieces, math.ceil(max_chars / TEXT_CHUNK_CHARS))
        )
        db = self.tenant(owner_id)
        found = await asyncio.gather(
            *(db[ENTRY_TEXTS].find_one({"_id": f"{entry_id}:{n}"}) for n in range(max(1, wanted)))
        )
        text = "".join(doc["text"] for doc in found if doc is not None)
        return text if max_chars is None else text[:max_chars]

    async def read_texts(
        self, *, owner_id: ObjectId, entries: Sequence[Document]
    ) -> dict[ObjectId, str]:
        """The whole text of several entries: those of one piece (nearly all) read
        `TEXT_BATCH` to a statement (a few MB) on the embedded engine."""
        texts: dict[ObjectId, str] = {}
        single = [e for e in entries if e.get("text_pieces", 1) <= 1]
        for start in range(0, len(single), TEXT_BATCH):
            batch = single[start : start + TEXT_BATCH]
            found = await self._by_id(
                tenant_db_name(owner_id), ENTRY_TEXTS, [f"{e['_id']}:0" for e in batch]
            )
            for entry in batch:
                piece = found.get(f"{entry['_id']}:0")
                texts[entry["_id"]] = piece["text"] if piece else ""
        for entry in entries:
            if entry.get("text_pieces", 1) > 1:
                texts[entry["_id"]] = await self.read_text(
                    owner_id=owner_id, entry_id=entry["_id"], pieces=entry["text_pieces"]
                )
        return texts

    # ---------------------------------------------------------------- extraction jobs

    async def due_jobs(self, *, now: datetime, limit: int) -> list[Document]:
        return (
            await self.control[EXTRACTION_JOBS]
            .find({"lease_until": {"$lte": now}})
            .limit(limit)
            .to_list(None)
        )

    async def claim_job(self, *, job: Document, until: datetime) -> bool:
        """Take a due job (compare-and-set on its lease: one worker wins)."""
        result = await self.control[EXTRACTION_JOBS].update_one(
            {"_id": job["_id"], "lease_until": job["lease_until"]},
            {"$set": {"lease_until": until}, "$inc": {"attempts": 1}},
        )
        return result.modified_count == 1

    async def return_job(self, *, entry_id: ObjectId, now: datetime) -> None:
        await self.control[EXTRACTION_JOBS].update_one(
            {"_id": entry_id}, {"$set": {"lease_until": now}, "$inc": {"attempts": -1}}
        )

    async def finish_job(self, *, entry_id: ObjectId) -> None:
        await self.control[EXTRACTION_JOBS].delete_one({"_id": entry_id})

    # ---------------------------------------------------------------- search queue

    async def queue_for_search(self, *, owner_id: ObjectId, entry_ids: list[ObjectId]) -> None:
        await self.catalogue.queue_for_search(owner_id=owner_id, entry_ids=entry_ids)

    async def search_queue(self, *, limit: int) -> list[Document]:
        return await self.control[SEARCH_QUEUE].find({}).limit(limit).to_list(None)

    async def drop_from_search_queue(self, *, ids: list[ObjectId]) -> None:
        # One `$in` over the (short) queue beats one round trip per row.
        if ids:
            await self.control[SEARCH_QUEUE].delete_many({"_id": {"$in": ids}})
