"""Uploads (`spec/entries.md`): a multipart body's files streamed into GridFS as
they arrive, then recorded as entries of a dataset — all or nothing.

Each file is written under an upload marker in the catalogue (`repository.py`),
renewed while bytes arrive; the entry records are written only once the whole
body has arrived. Anything that goes wrong before that removes what was
written, and what a crash leaves is removed by maintenance once the marker is
stale. A client that pauses longer than that finds its upload given up (408).
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

from app.db import Document
from app.kit import Event, Field, FileData, FileEnd, FileStart, field_name_problem, parse_object_id
from app.settings import Settings
from data_api.datasets.access import Access, Level, dataset_is_live
from data_api.datasets.errors import DatasetNotFound
from data_api.datasets.service import DatasetService
from data_api.entries.errors import EntryTooLarge, EntryValidationError, UploadAbandoned
from data_api.entries.repository import CHUNK_BYTES, ChunkSink, EntryStore
from data_api.entries.sniff import extractor_for, sniff

#: Bytes kept from a file's start to sniff its type.
SNIFF_BYTES = 4096
#: How often a long upload renews its marker (well inside `stale_after_seconds`).
HEARTBEAT_SECONDS = 10.0
#: Files per upload request.
MAX_FILES_PER_UPLOAD = 1000


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
    #: A file part without a filename whose first bytes have not come yet.
    nameless: FileStart | None = None


def clean_filename(raw: str) -> str:
    """The last path segment, without control characters, at most 255 characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:255] or "file"


#: Nesting of metadata objects and arrays (as for filters, conventions.md).
MAX_METADATA_DEPTH = 20


def check_metadata(metadata: Any, loc: list[str | int]) -> None:
    """Metadata keys follow the field-name rules (no `.`, no leading `$`, ...) and
    nest at most `MAX_METADATA_DEPTH` deep."""
    if len(loc) > MAX_METADATA_DEPTH:
        raise EntryValidationError(loc[:2], f"metadata nests deeper than {MAX_METADATA_DEPTH}.")
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            problem = field_name_problem(key)
            if problem:
                raise EntryValidationError([*loc, key], f"metadata keys: {problem}")
            check_metadata(value, [*loc, key])
    elif isinstance(metadata, list):
        for number, value in enumerate(metadata):
            check_metadata(value, [*loc, number])


def parse_metadata(raw: str) -> dict[str, Any]:
    try:
        metadata = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise EntryValidationError(["metadata"], f"`metadata` is not JSON: {exc.msg}.") from None
    except RecursionError:
        raise EntryValidationError(
            ["metadata"], f"metadata nests deeper than {MAX_METADATA_DEPTH}."
        ) from None
    if not isinstance(metadata, dict):
        raise EntryValidationError(["metadata"], "`metadata` must be a JSON object.")
    check_metadata(metadata, ["metadata"])
    return metadata


class Uploader:
    """One upload request."""

    def __init__(
        self,
        *,
        store: EntryStore,
        datasets: DatasetService,
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.datasets = datasets
        self.settings = settings
        self.clock = clock

    async def upload(
        self, *, user_id: ObjectId, events: AsyncIterator[Event], dataset_id: str | None
    ) -> list[Document]:
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
        return entries

    async def _upload_target(self, user_id: ObjectId, dataset_id: str) -> Access:
        return await self.datasets.access.require(
            parse_object_id(dataset_id, what="dataset_id"), user_id, Level.write, self.clock()
        )

    async def _apply(
        self, user_id: ObjectId, upload: _Upload, event: Event, sink: ChunkSink | None
    ) -> ChunkSink | None:
        if upload.nameless is not None:
            # A part without a filename: a file input left empty (a browser sends
            # `filename=""` and no bytes) is no file; with bytes, it is one.
            started, upload.nameless = upload.nameless, None
            if isinstance(event, FileEnd):
                return sink
            if isinstance(event, FileData) and event.data:
                sink = await self._start_file(upload, started, sink)
            else:
                upload.nameless = started
                return sink
        if isinstance(event, FileData):
            await self._receive(upload, event.data, sink)
        elif isinstance(event, FileStart):
            if not event.filename.strip():
                upload.nameless = event
                return sink
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
        # A dataset deleted (or expired) while the bytes arrived has had its entries
        # listed for deletion already: these would outlive it, so they go too.
        current = await self.datasets.catalogue.find_dataset(dataset_id=dataset["_id"])
        if current is None or not dataset_is_live(current, self.clock()):
            raise DatasetNotFound()
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
