"""Keeping the tenant search indexes in step with MongoDB (`spec/entries.md`).

Whatever changes an entry's searchable state (its text is extracted, it is
renamed or deleted) adds a row to the catalogue's `search_queue`. One worker at
a time — whichever holds the `search-indexer` lease — drains the queue every
`QUARRY_SEARCH_INDEX_POLL_SECONDS`: for each queued entry it reads the entry's
current state and makes the index agree (indexed if its text is done and it is
not being deleted, absent otherwise), so the queue's order never matters and a
row handled twice is harmless. Rows are removed only after the commit, so a
worker that dies mid-round leaves them for the next holder.

A tenant whose index is missing or corrupt is rebuilt from MongoDB, by the
indexer (asked through `search_rebuilds` by a search that found no index) or by
`quarry search reindex`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from bson import ObjectId
from pymongo.errors import DuplicateKeyError, PyMongoError

from app.clock import utc_now
from app.db import Document
from data_api.datasets.repository import (
    ENTRIES,
    ENTRY_HOMES,
    Catalogue,
)
from data_api.entries.repository import EntryStore
from data_api.search.index import IndexBusy, IndexedEntry, IndexMissing, SearchIndexes

logger = logging.getLogger("quarry.search")

LEASE = "search-indexer"
LEASE_SECONDS = 10.0
BATCH = 5000
#: Entries per index commit within a batch.
COMMIT = 500
REBUILDS = "search_rebuilds"


def indexed_entry(entry: Document, text: str) -> IndexedEntry:
    """What the index holds of an entry record and its text."""
    return IndexedEntry(
        entry_id=str(entry["_id"]),
        home_dataset_id=str(entry["dataset_id"]),
        name=entry["name"],
        file_type=entry.get("file_type", ""),
        created_at=entry["created_at"],
        size=int(entry["size"]),
        text=text,
    )


class SearchIndexer:
    def __init__(
        self,
        *,
        catalogue: Catalogue,
        indexes: SearchIndexes,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.catalogue = catalogue
        self.store = EntryStore(catalogue)
        self.indexes = indexes
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{ObjectId()}"

    async def __call__(self) -> None:
        """One round (the periodic task's work)."""
        if not self.catalogue.ready:
            return
        now = self.clock()
        try:
            if not await self.catalogue.take_lease(
                name=LEASE,
                holder=self.holder,
                now=now,
                until=now + timedelta(seconds=LEASE_SECONDS),
            ):
                return
            await self._rebuild_requested()
            # A backlog is worked off in one round (no wait between batches), within
            # a part of the lease so the lease is renewed in time.
            deadline = time.monotonic() + LEASE_SECONDS / 3
            while await self.drain() >= BATCH and time.monotonic() < deadline:
                pass
        except PyMongoError as exc:
            logger.warning("search indexing round failed (%s); retrying", type(exc).__name__)

    async def release(self) -> None:
        with contextlib.suppress(PyMongoError):
            await self.catalogue.drop_lease(name=LEASE, holder=self.holder)

    async def request_rebuild(self, tenant: ObjectId) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self.catalogue.control[REBUILDS].insert_one({"_id": tenant, "at": self.clock()})

    async def _rebuild_requested(self) -> None:
        for request in await self.catalogue.control[REBUILDS].find({}).to_list(None):
            tenant = request["_id"]
            if not await asyncio.to_thread(self.indexes.healthy, str(tenant)):
                await self.rebuild(tenant)
            await self.catalogue.control[REBUILDS].delete_one({"_id": tenant})

    async def drain(self) -> int:
        """Apply the queued changes; how many queue rows were handled."""
        queued = await self.store.search_queue(limit=BATCH)
        by_tenant: dict[ObjectId, list[Document]] = {}
        for row in queued:
            by_tenant.setdefault(row["tenant"], []).append(row)
        handled = 0
        for tenant, rows in by_tenant.items():
            try:
                await self._apply(tenant, {row["entry_id"] for row in rows})
            except IndexBusy:
                continue  # a rebuild holds it: next round
            except IndexMissing:
                await self.rebuild(tenant)
            await self.store.drop_from_search_queue(ids=[row["_id"] for row in rows])
            handled += len(rows)
        return handled

    async def _apply(self, tenant: ObjectId, entry_ids: set[ObjectId]) -> None:
        """Make the tenant's index agree with these entries, `COMMIT` at a time; the
        next slice is read from MongoDB while tantivy writes the previous one."""
        ids = sorted(entry_ids)
        writing: asyncio.Future[None] | None = None
        try:
            for start in range(0, len(ids), COMMIT):
                upserts, deletes = await self._prepare(tenant, ids[start : start + COMMIT])
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(
                    asyncio.to_thread(
                        self.indexes.write, str(tenant), upserts=upserts, deletes=deletes
                    )
                )
            if writing is not None:
                await writing
        finally:
            if writing is not None and not writing.done():
                await asyncio.wait({writing})

    async def _prepare(
        self, tenant: ObjectId, ids: list[ObjectId]
    ) -> tuple[list[IndexedEntry], list[str]]:
        """(what to index, what to remove): indexed when its text is done and it is
        not being deleted, else removed."""
        homes, entries = await asyncio.gather(
            self.store.entry_homes(entry_ids=ids),
            self.store.entries_by_id(owner_id=tenant, entry_ids=ids),
        )
        indexed: list[Document] = []
        deletes: list[str] = []
        for entry_id in ids:
            home, entry = homes.get(entry_id), entries.get(entry_id)
            if (
                home is None
                or home.get("state") == "deleting"
                or entry is None
                or entry.get("text_status") != "done"
            ):
                deletes.append(str(entry_id))
            else:
                indexed.append(entry)
        texts = await self.store.read_texts(owner_id=tenant, entries=indexed)
        return [indexed_entry(e, texts.get(e["_id"], "")) for e in indexed], deletes

    async def rebuild(self, tenant: ObjectId) -> int:
        """The tenant's index, built again from its entries' text in MongoDB; the
        lease is renewed meanwhile (a big tenant takes longer than one lease)."""
        renewing = asyncio.create_task(self._renew_lease())
        try:
            return await self._rebuild(tenant)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _renew_lease(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            now = self.clock()
            with contextlib.suppress(PyMongoError):
                await self.catalogue.take_lease(
                    name=LEASE,
                    holder=self.holder,
                    now=now,
                    until=now + timedelta(seconds=LEASE_SECONDS),
                )

    async def _rebuild(self, tenant: ObjectId) -> int:
        return await rebuild_tenant(
            catalogue=self.catalogue, store=self.store, indexes=self.indexes, tenant=tenant
        )


async def rebuild_tenant(
    *, catalogue: Catalogue, store: EntryStore, indexes: SearchIndexes, tenant: ObjectId
) -> int:
    """The tenant's index built again from its entries' text in MongoDB, aside and
    swapped in whole (the indexer's rebuild, and `quarry search reindex`)."""
    entries = await catalogue.tenant(tenant)[ENTRIES].find({"text_status": "done"}).to_list(None)
    gone = {
        row["_id"]
        for row in await catalogue.control[ENTRY_HOMES]
        .find({"owner_id": tenant, "state": "deleting"}, {"_id": 1})
        .to_list(None)
    }
    entries = [e for e in entries if e["_id"] not in gone]
    texts = await store.read_texts(owner_id=tenant, entries=entries)
    built = [indexed_entry(e, texts.get(e["_id"], "")) for e in entries]
    count = await asyncio.to_thread(indexes.rebuild, str(tenant), built)
    logger.info("search index of tenant %s rebuilt: %d entries", tenant, count)
    return count
