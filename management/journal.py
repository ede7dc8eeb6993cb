"""Write-ahead journal of imports (and of multi-document CRUD inserts and
updates, `data_api.documents.service`), so that a failed one can always be undone.

Before an import writes its first document, its journal entry — a directory
under `QUARRY_DATA_DIR/import-journal/` — names the physical database and
collection, the ObjectId ranges of the ids the server generated (see
`app.kit.RangedIds`), the client-supplied `_id`s (`ids.bson`) and
those of them that already existed before the import (`excluded.bson`, never
deleted) and, for an update, the documents as they were before
(`pre_images.bson`) and the update itself (`update.bson`). The writing request
holds an exclusive `flock` on the entry.

An update's rollback is resolved against what is stored now
(`app.db.undo_update`): a document goes back to its pre-image only while it
still equals what this update made of it, so a rollback never undoes a write
made after the update (a retry by the client, another writer) and an update that
in fact completed is taken back exactly, not half.

- Success: the entry is removed.
- A duplicate key (abort) or a database failure: the request rolls back at once;
  if the database is still down, the entry stays and the maintenance task
  (`management.lifecycle`) retries until the rollback succeeds.
- The process dies: the lock goes with it, and the next maintenance pass (in any
  worker on that data directory) rolls the import back — a client that got no
  answer never finds half an import.

Rollback deletes are idempotent, so retrying a half-done rollback is safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import bson
from bson import ObjectId

from app.db import Database, Document
from app.kit import id_key, split_range
from management import repository as repo

logger = logging.getLogger("quarry.management")

DELETE_CHUNK = 500
#: Ids per range delete: the embedded engine fails a delete of more than SQLite's
#: 32,766 bound variables ("too many SQL variables"), so rollbacks go in pieces.
DELETE_RANGE = 20_000


@dataclass
class JournalEntry:
    path: Path
    _lock: IO[str] | None = None

    @classmethod
    def create(cls, root: Path) -> JournalEntry:
        path = root / uuid.uuid4().hex
        path.mkdir(parents=True)
        entry = cls(path)
        entry._lock = open(path / "lock", "w")  # noqa: SIM115 - held for the import's life
        fcntl.flock(entry._lock, fcntl.LOCK_EX)
        return entry

    @classmethod
    def claim(cls, path: Path) -> JournalEntry | None:
        """The entry when no live import holds it, else None."""
        try:
            handle = open(path / "lock", "a")  # noqa: SIM115
        except OSError:
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        return cls(path, handle)

    def open_ids(self) -> IO[bytes]:
        return open(self.path / "ids.bson", "wb")

    def save_pre_images(self, documents: list[Document]) -> None:
        with open(self.path / "pre_images.bson", "ab") as handle:
            for document in documents:
                handle.write(bson.encode(document))

    def save_written(self, documents: list[Document]) -> None:
        """The documents written with client-chosen ids, so that a rollback deletes
        them only where they are still stored exactly so (CRUD inserts)."""
        with open(self.path / "written.bson", "ab") as handle:
            for document in documents:
                handle.write(bson.encode(document))

    def save_update(self, update: Document) -> None:
        (self.path / "update.bson").write_bytes(bson.encode(update))

    def _update(self) -> Document | None:
        path = self.path / "update.bson"
        return bson.decode(path.read_bytes()) if path.exists() else None

    def exclude(self, ids: list[Any]) -> None:
        with open(self.path / "excluded.bson", "ab") as handle:
            for value in ids:
                handle.write(bson.encode({"_id": value}))

    def commit(
        self, *, db_name: str, collection: str, ranges: list[tuple[ObjectId, ObjectId]]
    ) -> None:
        """Record what a rollback needs; called before the first insert."""
        meta = {
            "db_name": db_name,
            "collection": collection,
            "ranges": [[str(low), str(high)] for low, high in ranges],
        }
        temporary = self.path / "meta.json.tmp"
        temporary.write_text(json.dumps(meta))
        temporary.replace(self.path / "meta.json")

    @property
    def committed(self) -> bool:
        return (self.path / "meta.json").exists()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.release()

    def release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def iter_ids(self) -> Iterator[tuple[Any, int]]:
        """The client-supplied `_id`s of the import with their record index."""
        path = self.path / "ids.bson"
        if not path.exists():
            return
        with open(path, "rb") as handle:
            for document in bson.decode_file_iter(handle):
                yield document["_id"], int(document["i"])

    def _read_documents(self, name: str) -> Iterator[Document]:
        path = self.path / name
        if not path.exists():
            return
        with open(path, "rb") as handle:
            yield from bson.decode_file_iter(handle)

    def _read_ids(self, name: str) -> Iterator[Any]:
        for document in self._read_documents(name):
            yield document["_id"]

    async def roll_back(self, database: Database) -> int:
        """Delete what the write inserted and put back what it changed; the number
        of documents undone. Raises `PyMongoError` when the database fails (running
        it again later is safe)."""
        if not self.committed:
            return 0
        meta = json.loads((self.path / "meta.json").read_text())
        target = {
            "database": database,
            "db_name": meta["db_name"],
            "collection": meta["collection"],
        }
        deleted = 0
        for low, high in meta["ranges"]:
            for start, end in split_range(ObjectId(low), ObjectId(high), DELETE_RANGE):
                deleted += await repo.delete_id_range(**target, low=start, high=end)
        excluded = {id_key(value) for value in self._read_ids("excluded.bson")}
        if (self.path / "written.bson").exists():
            written = [
                document
                for document in self._read_documents("written.bson")
                if id_key(document["_id"]) not in excluded
            ]
            deleted += await repo.delete_written(**target, documents=written)
            return deleted + await self._restore(target)
        chunk: list[Any] = []
        for value in self._read_ids("ids.bson"):
            if id_key(value) in excluded:
                continue
            chunk.append(value)
            if len(chunk) >= DELETE_CHUNK:
                deleted += await repo.delete_ids(**target, ids=chunk)
                chunk = []
        if chunk:
            deleted += await repo.delete_ids(**target, ids=chunk)
        return deleted + await self._restore(target)

    async def _restore(self, target: dict[str, Any]) -> int:
        """Put an update's pre-images back (only where it still holds its writes)."""
        pre_images = list(self._read_documents("pre_images.bson"))
        update = self._update()
        if update is None:
            await repo.restore_documents(**target, documents=pre_images)
            return len(pre_images)
        report = await repo.undo_update_of(**target, pre_images=pre_images, update=update)
        return report.restored


def journal_entries(root: Path) -> list[Path]:
    if not root.exists():
        return []
    return sorted(path for path in root.iterdir() if path.is_dir())
