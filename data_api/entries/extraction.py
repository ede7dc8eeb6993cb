"""Text extraction after the upload has answered (`spec/entries.md`).

Each entry with text to extract has a job in the catalogue's `extraction_jobs`
(written with the entry). Every worker process runs an `Extractor`: woken by
its own uploads and every `POLL_SECONDS` otherwise, it claims due jobs with a
compare-and-set on their lease (one worker wins each), copies the file from
GridFS to a temporary file, and hands it to the bounded process pool
(`extract_pool.py`: time, memory and output limits). The text goes to the tenant
database, the entry's `text_status` to `done`/`failed`/`unsupported`, and the
search indexer is told. A job whose worker died comes due again when its lease
lapses, so entries left `pending` by a crash are picked up again; after
`MAX_ATTEMPTS` the entry is marked `failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from bson import ObjectId
from pymongo.errors import PyMongoError

from app.clock import utc_now
from app.db import Document
from data_api.entries.extract import Extracted
from data_api.entries.extract_pool import ExtractionPool, ExtractionUnavailable
from data_api.entries.repository import CHUNK_BYTES, EntryStore

logger = logging.getLogger("quarry.entries")

POLL_SECONDS = 1.0
MAX_ATTEMPTS = 3


class Extractor:
    def __init__(
        self,
        *,
        store: EntryStore,
        pool: ExtractionPool,
        workers: int,
        timeout_seconds: float,
        temp_dir: Path,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.pool = pool
        self.slots = asyncio.Semaphore(workers)
        self.lease = timedelta(seconds=timeout_seconds + 120)
        self.temp_dir = temp_dir
        self.clock = clock
        self.wakeup = asyncio.Event()
        self.running: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self.wakeup.set()

    def start(self) -> None:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._remove_dead_copies()
        self.task = asyncio.create_task(self._loop(), name="entries-extractor")

    def _remove_dead_copies(self) -> None:
        """Copies a crashed process left behind (its pid is in the name; workers of
        one server share the directory, so only a dead process's copies go)."""
        for path in self.temp_dir.glob("extract-*-*"):
            pid = path.name.split("-")[1]
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    path.unlink()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for task in list(self.running):
            task.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)
        await self.pool.close()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), POLL_SECONDS)
            self.wakeup.clear()
            try:
                await self.run_due()
            except PyMongoError as exc:
                logger.warning("extraction round failed (%s); retrying", type(exc).__name__)
            except Exception:
                logger.exception("extraction round failed; retrying")

    async def run_due(self) -> None:
        """Claim as many due jobs as there are free slots and start them."""
        free = self.slots._value
        if free <= 0:
            return
        now = self.clock()
        for job in await self.store.due_jobs(now=now, limit=free):
            if not await self.store.claim_job(job=job, until=now + self.lease):
                continue
            await self.slots.acquire()
            task = asyncio.create_task(self._run(job))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _run(self, job: Document) -> None:
        try:
            await self.extract(job)
        except ExtractionUnavailable as exc:
            # The pool's trouble, not the file's: the job is handed back uncounted.
            logger.warning("extraction of %s postponed: %s", job["_id"], exc)
            with contextlib.suppress(PyMongoError):
                await self.store.return_job(entry_id=job["_id"], now=self.clock())
        except PyMongoError as exc:
            # The lease lapses and the job comes due again.
            logger.warning("extraction of %s failed (%s)", job["_id"], type(exc).__name__)
        except Exception:
            logger.exception("extraction of %s failed", job["_id"])
        finally:
            self.slots.release()
            self.wakeup.set()

    async def extract(self, job: Document) -> None:
        entry_id, owner_id = job["_id"], job["owner_id"]
        entry = await self.store.find_entry(owner_id=owner_id, entry_id=entry_id)
        if entry is None or entry.get("text_status") != "pending":
            await self.store.finish_job(entry_id=entry_id)
            return
        if job.get("attempts", 0) + 1 > MAX_ATTEMPTS:
            result = Extracted(
                "failed", None, None, f"extraction did not finish in {MAX_ATTEMPTS} attempts"
            )
        else:
            result = await self._extract_file(owner_id, entry)
        await self._record(owner_id, entry, result)
        await self.store.finish_job(entry_id=entry_id)

    async def _extract_file(self, owner_id: ObjectId, entry: Document) -> Extracted:
        fd, name = tempfile.mkstemp(prefix=f"extract-{os.getpid()}-", dir=self.temp_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                chunks = (entry["size"] + CHUNK_BYTES - 1) // CHUNK_BYTES
                for n in range(chunks):
                    data = await self.store.read_chunk(owner_id=owner_id, file_id=entry["_id"], n=n)
                    await asyncio.to_thread(out.write, data)
            return await self.pool.run(name, entry["content_type"])
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)

    async def _record(self, owner_id: ObjectId, entry: Document, result: Extracted) -> None:
        changes: Document = {
            "text_status": result.status,
            "text_error": result.reason,
            "pages": result.pages,
            "updated_at": self.clock(),
        }
        if result.status == "done" and result.text is not None:
            changes["text_pieces"] = await self.store.save_text(
                owner_id=owner_id, entry_id=entry["_id"], text=result.text
            )
            changes["text_chars"] = len(result.text)
        updated = await self.store.update_entry(
            owner_id=owner_id,
            entry_id=entry["_id"],
            update={"$set": changes},
            only_if={"text_status": "pending"},
        )
        if updated is None:  # deleted meanwhile: leave no text behind
            await self.store.drop_text(owner_id=owner_id, entry_id=entry["_id"])
        elif result.status == "done":
            await self.store.queue_for_search(owner_id=owner_id, entry_ids=[entry["_id"]])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
