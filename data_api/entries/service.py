"""The rules of entries (`spec/entries.md`): uploads, reads, changes, deletion.

Access is the dataset's (`data_api/datasets/access.py`): uploading, changing and
deleting need `write` on the entry's home dataset; reading needs `read` on it,
or `read` on a dataset with ACL override that links the entry (such a read is
audited). An entry the caller cannot read is a 404, as if it did not exist.

An upload is all or nothing: its files stream into GridFS as they arrive,
each under an upload marker (`repository.py`), and the entry records are
written only once the whole body has arrived; anything that goes wrong before
that removes what was written, and a crash is cleaned up by maintenance.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId

from app.clock import utc_now
from app.database import Document
from app.errors import InvalidId
from app.ids import parse_object_id
from app.multipart_stream import Event, Field, FileData, FileEnd, FileStart
from app.names import field_name_problem
from app.page_query import Eq, PageQuery
from app.settings import Settings
from data_api.datasets.access import Access, Level
from data_api.datasets.errors import InsufficientPermission
from data_api.datasets.repository import ENTRIES, ITEMS, tenant_db_name
from data_api.datasets.service import DatasetService
from data_api.entries.errors import (
    EntryNotFound,
    EntryTooLarge,
    EntryValidationError,
    TextNotReady,
    UploadAbandoned,
)
from data_api.entries.repository import CHUNK_BYTES, ChunkSink, EntryStore
from data_api.entries.sniff import extractor_for, sniff

#: Bytes kept from a file's start to sniff its type.
SNIFF_BYTES = 4096
#: How often a long upload renews its marker (well inside `stale_after_seconds`).
HEARTBEAT_SECONDS = 10.0
#: Files per upload request.
MAX_FILES_PER_UPLOAD = 1000
ENTRY_SORTS = ("created_at", "name", "size")


@dataclass
class _File:
    file_id: ObjectId
    filename: str
    sha256: Any = field(default_factory=hashlib.sha256)
    head: bytearray = field(default_factory=bytearray)
    size: int = 0


@dataclass
class _Upload:
    files: list[_File] = field(default_factory=list)
    current: _File | None = None
    access: Access | None = None
    name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    last_heartbeat: float = field(default_factory=time.monotonic)


def clean_filename(raw: str) -> str:
    """The last path segment, without control characters, at most 255 characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:255] or "file"


def check_metadata(metadata: Any, loc: list[str | int]) -> None:
    """Metadata keys follow the field-name rules (no `.`, no leading `$`, ...)."""
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            problem = field_name_problem(key)
            if problem:
                raise EntryValidationError([*loc, key], f"metadata keys: {problem}")
            check_metadata(value, [*loc, key])
    elif isinstance(metadata, list):
        for number, value in enumerate(metadata):
            check_metadata(value, [*loc, number])


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
        for linker in home.get("linked_owner_ids", []):
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
        """Stream the body's files into GridFS, then record them as entries of the
        dataset. Raises DatasetNotFound, InsufficientPermission, EntryTooLarge,
        EntryValidationError (and the multipart reader's errors); on any of them,
        or a client that goes away, nothing of the upload stays."""
        upload = _Upload()
        if dataset_id is not None:
            upload.access = await self._upload_target(user_id, dataset_id)
        sink: ChunkSink | None = None
        try:
            async for event in events:
                sink = await self._apply(user_id, upload, event, sink)
            if upload.current is not None or not upload.files:
                raise EntryValidationError(["file"], "The upload needs at least one `file` part.")
            if upload.name is not None and len(upload.files) > 1:
                raise EntryValidationError(["name"], "`name` applies to a single file.")
            assert sink is not None and upload.access is not None
            await sink.flush()
            entries = await self._commit(user_id, upload)
        except BaseException:
            await asyncio.shield(self._discard(upload))
            raise
        self.wake_extractor()
        return [entry_view(e) for e in entries]

    async def _upload_target(self, user_id: ObjectId, dataset_id: str) -> Access:
        return await self.datasets.access.require(
            parse_object_id(dataset_id, what="dataset_id"), user_id, Level.write, self.clock()
        )

    async def _apply(
        self, user_id: ObjectId, upload: _Upload, event: Event, sink: ChunkSink | None
    ) -> ChunkSink | None:
        if isinstance(event, FileData):
            await self._receive(upload, event.data, sink)
        elif isinstance(event, FileStart):
            return await self._start_file(upload, event, sink)
        elif isinstance(event, FileEnd):
            assert sink is not None and upload.current is not None
            await sink.end_file()
            upload.files.append(upload.current)
            upload.current = None
        elif isinstance(event, Field):
            await self._field(user_id, upload, event)
        return sink

    async def _field(self, user_id: ObjectId, upload: _Upload, event: Field) -> None:
        if event.name == "dataset_id":
            if upload.access is not None and str(upload.access.dataset["_id"]) != event.value:
                raise EntryValidationError(["dataset_id"], "Two different dataset ids were given.")
            if upload.access is None:
                upload.access = await self._upload_target(user_id, event.value.strip())
        elif event.name == "name":
            name = event.value.strip()
            if not 1 <= len(name) <= 255:
                raise EntryValidationError(["name"], "`name` must be 1 to 255 characters.")
            upload.name = name
        elif event.name == "metadata":
            upload.metadata = parse_metadata(event.value)
        else:
            raise EntryValidationError([event.name], f"Unknown form field {event.name!r}.")

    async def _start_file(
        self, upload: _Upload, event: FileStart, sink: ChunkSink | None
    ) -> ChunkSink:
        if event.name not in ("file", "files"):
            raise EntryValidationError([event.name], "Files go in parts named `file`.")
        if upload.access is None:
            raise EntryValidationError(
                ["dataset_id"],
                "`dataset_id` must come before the file parts (or as a query parameter).",
            )
        if len(upload.files) >= MAX_FILES_PER_UPLOAD:
            raise EntryValidationError(
                ["file"], f"At most {MAX_FILES_PER_UPLOAD} files per upload."
            )
        owner_id = upload.access.dataset["owner_id"]
        if sink is None:
            await self.datasets.catalogue.ensure_tenant(owner_id)
            sink = ChunkSink(self.store, owner_id)
        current = _File(file_id=ObjectId(), filename=clean_filename(event.filename))
        await self.store.begin_uploads(
            file_ids=[current.file_id], owner_id=owner_id, now=self.clock()
        )
        upload.current = current
        sink.start(current.file_id)
        return sink

    async def _receive(self, upload: _Upload, data: bytes, sink: ChunkSink | None) -> None:
        current = upload.current
        assert current is not None and sink is not None
        current.size += len(data)
        if current.size > self.settings.max_entry_bytes:
            raise EntryTooLarge(self.settings.max_entry_bytes)
        current.sha256.update(data)
        if len(current.head) < SNIFF_BYTES:
            current.head += data[: SNIFF_BYTES - len(current.head)]
        await sink.write(data)
        if time.monotonic() - upload.last_heartbeat > self._heartbeat_seconds:
            await self._renew(upload)

    @property
    def _heartbeat_seconds(self) -> float:
        # Well inside the age at which maintenance gives an upload up.
        return min(HEARTBEAT_SECONDS, self.settings.stale_after_seconds / 3)

    async def _renew(self, upload: _Upload) -> None:
        """Renew every marker of the upload. Raises UploadAbandoned when maintenance
        already gave it up (the client paused longer than QUARRY_STALE_AFTER_SECONDS)."""
        upload.last_heartbeat = time.monotonic()
        started = [f.file_id for f in upload.files]
        if upload.current is not None:
            started.append(upload.current.file_id)
        if not await self.store.heartbeat(file_ids=started, now=self.clock()):
            raise UploadAbandoned()

    async def _commit(self, user_id: ObjectId, upload: _Upload) -> list[Document]:
        assert upload.access is not None
        await self._renew(upload)  # still ours: maintenance will not remove it now
        dataset = upload.access.dataset
        owner_id, now = dataset["owner_id"], self.clock()
        files, entries, items = [], [], []
        for f in upload.files:
            content_type, file_type = sniff(bytes(f.head), f.filename)
            sha = f.sha256.hexdigest()
            files.append(
                {
                    "_id": f.file_id,
                    "length": f.size,
                    "chunkSize": CHUNK_BYTES,
                    "uploadDate": now,
                    "filename": f.filename,
                    "metadata": {"contentType": content_type, "sha256": sha},
                }
            )
            entries.append(
                {
                    "_id": f.file_id,
                    "dataset_id": dataset["_id"],
                    "name": upload.name or f.filename,
                    "filename": f.filename,
                    "content_type": content_type,
                    "file_type": file_type,
                    "size": f.size,
                    "sha256": sha,
                    "metadata": upload.metadata,
                    "text_status": "pending" if extractor_for(content_type) else "unsupported",
                    "text_chars": None,
                    "text_pieces": 0,
                    "text_error": None,
                    "pages": None,
                    "created_at": now,
                    "updated_at": now,
                    "created_by": user_id,
                }
            )
            items.append(
                {
                    "_id": f"{dataset['_id']}:{f.file_id}",
                    "dataset_id": dataset["_id"],
                    "entry_id": f.file_id,
                    "home_dataset_id": dataset["_id"],
                    "entry_owner_id": owner_id,
                    "added_at": now,
                    "added_by": user_id,
                    "notes": None,
                }
            )
        await self.store.commit_entries(
            owner_id=owner_id, files=files, entries=entries, items=items
        )
        await self.store.end_uploads(file_ids=[f.file_id for f in upload.files])
        return entries

    async def _discard(self, upload: _Upload) -> None:
        """Remove what an upload wrote; what cannot be removed now (the engine is
        down) stays under its marker for maintenance."""
        if upload.access is None:
            return
        owner_id = upload.access.dataset["owner_id"]
        started = [f.file_id for f in upload.files]
        if upload.current is not None:
            started.append(upload.current.file_id)
        for file_id in started:
            with contextlib.suppress(Exception):
                await self.store.discard_upload(owner_id=owner_id, file_id=file_id)

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
        """Each readable entry's text, at most `max_chars` of it, in the order asked."""
        data, missing = [], []
        for raw in ids:
            try:
                found = await self.readable(user_id, raw)
            except (EntryNotFound, InvalidId):
                missing.append(raw)
                continue
            entry = found.entry
            status = entry.get("text_status")
            text = ""
            chars = entry.get("text_chars") or 0
            if status == "done":
                text = await self.store.read_text(
                    owner_id=found.owner_id,
                    entry_id=entry["_id"],
                    pieces=entry.get("text_pieces", 1),
                    max_chars=max_chars,
                )
            data.append(
                {
                    "id": raw,
                    "text": text,
                    "truncated": chars > max_chars,
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


def parse_metadata(raw: str) -> dict[str, Any]:
    try:
        metadata = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise EntryValidationError(["metadata"], f"`metadata` is not JSON: {exc.msg}.") from None
    if not isinstance(metadata, dict):
        raise EntryValidationError(["metadata"], "`metadata` must be a JSON object.")
    check_metadata(metadata, ["metadata"])
    return metadata
