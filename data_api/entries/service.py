"""The rules of entries (`spec/entries.md`): uploads, reads, changes, deletion.

Access is the dataset's (`data_api/datasets/access.py`): uploading, changing and
deleting need `write` on the entry's home dataset; reading needs `read` on it,
or `read` on a dataset with ACL override that links the entry (such a read is
audited). An entry the caller cannot read is a 404, as if it did not exist.

Uploads themselves are `upload.py` (all or nothing, streamed into GridFS).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId

from app.clock import utc_now
from app.db import Document, Eq, PageQuery
from app.errors import InvalidId
from app.kit import Event, parse_object_id
from app.settings import Settings
from data_api.datasets.access import Access, Level
from data_api.datasets.errors import InsufficientPermission
from data_api.datasets.repository import ENTRIES, ITEMS, tenant_db_name
from data_api.datasets.service import DatasetService
from data_api.entries.errors import (
    EntryNotFound,
    TextNotReady,
)
from data_api.entries.repository import CHUNK_BYTES, EntryStore
from data_api.entries.upload import Uploader, check_metadata

ENTRY_SORTS = ("created_at", "name", "size")
#: Characters of text one batch-content answer holds at most, all entries together.
BATCH_CONTENT_CHARS = 10_000_000


def entry_view(entry: Document) -> dict[str, Any]:
    return {
        "id": str(entry["_id"]),
        "dataset_id": str(entry["dataset_id"]),
        "name": entry["name"],
        "filename": entry.get("filename", entry["name"]),
        "content_type": entry["content_type"],
        "file_type": entry.get("file_type", ""),
        "size": entry["size"],
        "sha256": entry.get("sha256"),
        "metadata": entry.get("metadata") or {},
        "text_status": entry.get("text_status", "unsupported"),
        "text_chars": entry.get("text_chars"),
        "text_error": entry.get("text_error"),
        "pages": entry.get("pages"),
        "created_at": entry["created_at"],
        "updated_at": entry.get("updated_at", entry["created_at"]),
        "created_by": str(entry["created_by"]) if entry.get("created_by") else None,
    }


@dataclass(frozen=True)
class Readable:
    """An entry the caller may read, and how."""

    home: Document
    entry: Document
    level: Level
    through_override: ObjectId | None = None

    @property
    def owner_id(self) -> ObjectId:
        return self.home["owner_id"]


class EntryService:
    def __init__(
        self,
        *,
        store: EntryStore,
        datasets: DatasetService,
        settings: Settings,
        clock: Callable[[], datetime] = utc_now,
        wake_extractor: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.datasets = datasets
        self.settings = settings
        self.clock = clock
        self.wake_extractor = wake_extractor or (lambda: None)

    # ---------------------------------------------------------------- access

    async def readable(self, user_id: ObjectId, raw_id: str, *, audit: bool = True) -> Readable:
        """Raises EntryNotFound (unknown, being deleted, or not readable)."""
        entry_id = parse_object_id(raw_id, what="entry id")
        now = self.clock()
        home = await self.store.entry_home(entry_id=entry_id)
        if home is None or home.get("state") == "deleting":
            raise EntryNotFound()
        level = await self.datasets.home_level(home["home_dataset_id"], user_id, now)
        if level is None:  # its home dataset expired or is being deleted
            raise EntryNotFound()
        through: ObjectId | None = None
        if level < Level.read:
            through = await self._override_path(home, entry_id, user_id, now)
            if through is None:
                raise EntryNotFound()
        entry = await self.store.find_entry(owner_id=home["owner_id"], entry_id=entry_id)
        if entry is None:
            raise EntryNotFound()
        if through is not None and audit:
            await self._audit_override([entry_id], through, user_id)
        return Readable(home, entry, level, through)

    async def _override_path(
        self, home: Document, entry_id: ObjectId, user_id: ObjectId, now: datetime
    ) -> ObjectId | None:
        """A dataset with ACL override that links the entry and the caller can read."""
        for linker in {home["owner_id"], *home.get("linked_owner_ids", [])}:
            items = (
                await self.store.tenant(linker)[ITEMS].find({"entry_id": entry_id}).to_list(None)
            )
            for item in items:
                dataset = await self.datasets.catalogue.find_dataset(dataset_id=item["dataset_id"])
                if dataset is None or not dataset.get("acl_override_enabled"):
                    continue
                access = await self.datasets.access.level_on(dataset, user_id, now)
                if access.level >= Level.read:
                    return dataset["_id"]
        return None

    async def _audit_override(
        self, entry_ids: list[ObjectId], dataset_id: ObjectId, user_id: ObjectId
    ) -> None:
        await self.datasets.audit_or_refuse(
            action="entries.read_through_acl_override",
            resource_type="dataset",
            resource_id=str(dataset_id),
            dataset_id=dataset_id,
            actor_user_id=user_id,
            status=200,
            details={"entry_ids": [str(e) for e in entry_ids]},
        )

    async def writable(self, user_id: ObjectId, raw_id: str) -> Readable:
        """Raises EntryNotFound, InsufficientPermission (readable, but no `write`)."""
        found = await self.readable(user_id, raw_id, audit=False)
        if found.level < Level.write:
            raise InsufficientPermission("write")
        return found

    # ---------------------------------------------------------------- upload

    async def upload(
        self, *, user_id: ObjectId, events: AsyncIterator[Event], dataset_id: str | None
    ) -> list[dict[str, Any]]:
        """Stream the body's files into the dataset (`upload.py`); all or nothing.
        Raises what `Uploader.upload` raises."""
        uploader = Uploader(
            store=self.store, datasets=self.datasets, settings=self.settings, clock=self.clock
        )
        entries = await uploader.upload(user_id=user_id, events=events, dataset_id=dataset_id)
        self.wake_extractor()
        return [entry_view(e) for e in entries]

    # ---------------------------------------------------------------- reads

    async def get(self, *, user_id: ObjectId, entry_id: str) -> dict[str, Any]:
        return entry_view((await self.readable(user_id, entry_id)).entry)

    async def for_download(self, *, user_id: ObjectId, entry_id: str) -> Readable:
        return await self.readable(user_id, entry_id)

    async def read_bytes(self, found: Readable, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start..end` (inclusive) of an entry, one GridFS chunk at a time, the
        next chunk already on its way while one is sent."""
        if end < start:
            return
        owner_id, file_id = found.owner_id, found.entry["_id"]
        first, last = start // CHUNK_BYTES, end // CHUNK_BYTES

        def fetch(n: int) -> asyncio.Task[bytes]:
            return asyncio.ensure_future(
                self.store.read_chunk(owner_id=owner_id, file_id=file_id, n=n)
            )

        upcoming = fetch(first)
        try:
            for n in range(first, last + 1):
                data = await upcoming
                if n < last:
                    upcoming = fetch(n + 1)
                low = start - n * CHUNK_BYTES if n == first else 0
                high = end - n * CHUNK_BYTES + 1 if n == last else len(data)
                yield data[low:high]
        finally:
            if not upcoming.done():
                upcoming.cancel()

    async def text(self, *, user_id: ObjectId, entry_id: str) -> tuple[str, str]:
        """(the extracted text, the text status). Raises EntryNotFound, TextNotReady."""
        found = await self.readable(user_id, entry_id)
        status = found.entry.get("text_status", "unsupported")
        if status == "pending":
            raise TextNotReady()
        if status != "done":
            return "", status
        text = await self.store.read_text(
            owner_id=found.owner_id,
            entry_id=found.entry["_id"],
            pieces=found.entry.get("text_pieces", 1),
        )
        return text, status

    # ---------------------------------------------------------------- changes

    async def update(
        self, *, user_id: ObjectId, entry_id: str, name: str | None, metadata: dict[str, Any] | None
    ) -> dict[str, Any]:
        """`name` replaces, `metadata` merges (a null value removes that key).
        Raises EntryNotFound, InsufficientPermission, EntryValidationError."""
        found = await self.writable(user_id, entry_id)
        changes: Document = {"updated_at": self.clock()}
        removals: Document = {}
        if name is not None:
            changes["name"] = name
        if metadata is not None:
            check_metadata(metadata, ["metadata"])
            for key, value in metadata.items():
                if value is None:
                    removals[f"metadata.{key}"] = ""
                else:
                    changes[f"metadata.{key}"] = value
        update: Document = {"$set": changes}
        if removals:
            update["$unset"] = removals
        entry = await self.store.update_entry(
            owner_id=found.owner_id, entry_id=found.entry["_id"], update=update
        )
        if entry is None:
            raise EntryNotFound()
        if name is not None:
            await self.store.queue_for_search(owner_id=found.owner_id, entry_ids=[entry["_id"]])
        return entry_view(entry)

    async def delete(self, *, user_id: ObjectId, entry_id: str) -> None:
        """Bytes, text, index postings and every link. Raises EntryNotFound,
        InsufficientPermission."""
        found = await self.writable(user_id, entry_id)
        await self.datasets.catalogue.delete_entry(entry_id=found.entry["_id"])

    # ---------------------------------------------------------------- batches and lists

    async def batch(
        self,
        *,
        user_id: ObjectId,
        dataset_id: str,
        ids: list[str] | None,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int, list[str]]:
        """The dataset's entries (its items the caller sees): those named by `ids`, in
        that order, or a page of them by `offset`/`limit`. (entries, total, missing).
        Raises DatasetNotFound."""
        now = self.clock()
        access = await self.datasets.access.resolve(
            parse_object_id(dataset_id, what="dataset_id"), user_id, now
        )
        if ids is not None:
            return await self._batch_by_ids(access, user_id, ids, now)
        items, total = await self._item_page(access, user_id, offset, limit, now)
        entries = await self._entries_of_items(access, user_id, items)
        return entries, total, []

    async def _visible_homes(
        self, access: Access, user_id: ObjectId, homes: set[ObjectId], now: datetime
    ) -> tuple[set[ObjectId], set[ObjectId]]:
        """(homes whose items the caller sees, of them those seen only through the
        dataset's ACL override)."""
        d = access.dataset
        visible, override = {d["_id"]}, set()
        for home in homes - {d["_id"]}:
            level = await self.datasets.home_level(home, user_id, now)
            if level is None:
                continue  # gone with its home dataset, override or not
            if level >= Level.read:
                visible.add(home)
            elif d.get("acl_override_enabled"):
                visible.add(home)
                override.add(home)
        return visible, override

    async def _item_page(
        self, access: Access, user_id: ObjectId, offset: int, limit: int, now: datetime
    ) -> tuple[list[Document], int]:
        d = access.dataset
        if "linked_homes" not in d:  # a dataset older than `linked_homes`
            visible, _ = await self.datasets.visible_items(access, user_id, now)
            return visible[offset : offset + limit], len(visible)
        homes, _ = await self._visible_homes(access, user_id, set(d["linked_homes"]), now)
        query = PageQuery(
            clauses=(
                (Eq("dataset_id", d["_id"]),),
                tuple(Eq("home_dataset_id", h) for h in sorted(homes)),
            ),
            sort_desc="added_at",
            ascending=True,
            offset=offset,
            limit=limit,
        )
        return await self.datasets.catalogue.database.find_page(
            tenant_db_name(d["owner_id"]), ITEMS, query
        )

    async def _entries_of_items(
        self, access: Access, user_id: ObjectId, items: list[Document]
    ) -> list[dict[str, Any]]:
        d = access.dataset
        by_owner: dict[ObjectId, list[ObjectId]] = {}
        for item in items:
            by_owner.setdefault(item["entry_owner_id"], []).append(item["entry_id"])
        found: dict[ObjectId, Document] = {}
        for owner_id, entry_ids in by_owner.items():
            found.update(await self.store.entries_by_id(owner_id=owner_id, entry_ids=entry_ids))
        if d.get("acl_override_enabled"):
            homes = {i["home_dataset_id"] for i in items}
            _, override = await self._visible_homes(access, user_id, homes, self.clock())
            through = [i["entry_id"] for i in items if i["home_dataset_id"] in override]
            if through:
                await self._audit_override(through, d["_id"], user_id)
        return [entry_view(found[i["entry_id"]]) for i in items if i["entry_id"] in found]

    async def _batch_by_ids(
        self, access: Access, user_id: ObjectId, ids: list[str], now: datetime
    ) -> tuple[list[dict[str, Any]], int, list[str]]:
        d = access.dataset
        wanted: list[tuple[str, ObjectId]] = []
        missing: list[str] = []
        for raw in ids:
            try:
                wanted.append((raw, parse_object_id(raw)))
            except InvalidId:
                missing.append(raw)
        items = await self.store.items_by_id(
            owner_id=d["owner_id"], item_ids=[f"{d['_id']}:{oid}" for _, oid in wanted]
        )
        homes = {item["home_dataset_id"] for item in items.values()}
        visible, _ = await self._visible_homes(access, user_id, homes, now)
        shown: list[Document] = []
        for raw, oid in wanted:
            item = items.get(f"{d['_id']}:{oid}")
            if item is None or item["home_dataset_id"] not in visible:
                missing.append(raw)
            else:
                shown.append(item)
        entries = await self._entries_of_items(access, user_id, shown)
        present = {e["id"] for e in entries}
        missing += [str(i["entry_id"]) for i in shown if str(i["entry_id"]) not in present]
        return entries, len(entries), missing

    async def batch_content(
        self, *, user_id: ObjectId, ids: list[str], max_chars: int
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Each readable entry's text, at most `max_chars` of it, in the order asked
        (an id asked twice is answered once). The whole answer holds at most
        `BATCH_CONTENT_CHARS`: entries past it come back cut (`truncated`)."""
        data, missing = [], []
        budget = BATCH_CONTENT_CHARS
        for raw in dict.fromkeys(ids):
            try:
                found = await self.readable(user_id, raw)
            except (EntryNotFound, InvalidId):
                missing.append(raw)
                continue
            entry = found.entry
            status = entry.get("text_status")
            text = ""
            chars = entry.get("text_chars") or 0
            allowed = min(max_chars, budget)
            if status == "done" and allowed > 0:
                text = await self.store.read_text(
                    owner_id=found.owner_id,
                    entry_id=entry["_id"],
                    pieces=entry.get("text_pieces", 1),
                    max_chars=allowed,
                )
            budget -= len(text)
            data.append(
                {
                    "id": raw,
                    "text": text,
                    "truncated": chars > len(text),
                    "text_status": status,
                }
            )
        return data, missing

    async def list_homed(
        self,
        *,
        user_id: ObjectId,
        dataset_id: str,
        sort: str,
        descending: bool,
        offset: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """The entries whose home is the dataset, sorted and paged. Raises DatasetNotFound."""
        access = await self.datasets.access.resolve(
            parse_object_id(dataset_id), user_id, self.clock()
        )
        d = access.dataset
        query = PageQuery(
            clauses=((Eq("dataset_id", d["_id"]),),),
            sort_desc=sort,
            ascending=not descending,
            offset=offset,
            limit=limit,
        )
        rows, total = await self.datasets.catalogue.database.find_page(
            tenant_db_name(d["owner_id"]), ENTRIES, query
        )
        return [entry_view(r) for r in rows], total
