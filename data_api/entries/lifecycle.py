"""Start and stop entries with the app: the extraction pool and its extractor,
the upload janitor (removes what interrupted uploads left) and the finisher of
interrupted entry deletions."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from pymongo.errors import PyMongoError

from app.clock import utc_now
from app.settings import Settings
from app.wiring import AppState
from data_api.datasets.repository import Catalogue
from data_api.entries.extract_pool import ExtractionPool
from data_api.entries.extraction import Extractor
from data_api.entries.repository import EntryStore

logger = logging.getLogger("quarry.entries")


class EntryJanitor:
    """Finishes what a crash left: uploads whose marker went stale, entry deletions
    cut short. Idempotent; any worker may run it."""

    def __init__(self, catalogue: Catalogue, settings: Settings) -> None:
        self.catalogue = catalogue
        self.store = EntryStore(catalogue)
        self.stale = timedelta(seconds=settings.stale_after_seconds)

    async def __call__(self) -> None:
        if not self.catalogue.ready:
            return
        try:
            before = utc_now() - self.stale
            for upload in await self.store.stale_uploads(before=before):
                if not await self.store.give_up_upload(file_id=upload["_id"], before=before):
                    continue  # renewed meanwhile: still alive
                logger.info("removing the unfinished upload %s", upload["_id"])
                await self.store.discard_upload(owner_id=upload["owner_id"], file_id=upload["_id"])
            for entry_id in await self.catalogue.unfinished_entry_deletions():
                await self.catalogue.delete_entry(entry_id=entry_id)
        except PyMongoError as exc:
            logger.warning("entry maintenance failed (%s); retrying", type(exc).__name__)


@contextlib.asynccontextmanager
async def lifecycle(state: AppState) -> AsyncIterator[None]:
    """Starts the extraction pool and its `Extractor` (provided; stopped on exit) and
    the janitor that finishes what a crash left."""
    settings = state.settings
    catalogue = state.get(Catalogue)
    pool = ExtractionPool(
        workers=settings.extract_workers,
        timeout_seconds=settings.extract_timeout_seconds,
        memory_bytes=settings.extract_memory_mb * 1024 * 1024,
        max_chars=settings.max_text_chars,
    )
    extractor = state.provide(
        Extractor(
            store=EntryStore(catalogue),
            pool=pool,
            workers=settings.extract_workers,
            timeout_seconds=settings.extract_timeout_seconds,
            temp_dir=settings.data_dir.resolve() / "tmp",
        )
    )
    extractor.start()
    try:
        async with state.background.every(
            "entries-janitor",
            EntryJanitor(catalogue, settings),
            settings.maintenance_interval_seconds,
        ):
            yield
    finally:
        await extractor.stop()
