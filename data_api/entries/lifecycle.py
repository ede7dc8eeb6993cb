"""Start and stop entries and search with the app: the extraction pool and its
extractor, the upload janitor (removes what interrupted uploads left), the
finisher of interrupted entry deletions, and the search indexer."""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import FastAPI
from pymongo.errors import PyMongoError

from app.background import start_periodic, stop_periodic
from app.clock import utc_now
from app.settings import Settings
from data_api.datasets.repository import Catalogue
from data_api.entries.extract_pool import ExtractionPool
from data_api.entries.extraction import Extractor
from data_api.entries.repository import EntryStore
from data_api.search.index import SearchIndexes
from data_api.search.indexer import SearchIndexer

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


async def start_entries(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    catalogue: Catalogue = app.state.datasets_catalogue
    pool = ExtractionPool(
        workers=settings.extract_workers,
        timeout_seconds=settings.extract_timeout_seconds,
        memory_bytes=settings.extract_memory_mb * 1024 * 1024,
        max_chars=settings.max_text_chars,
    )
    extractor = Extractor(
        store=EntryStore(catalogue),
        pool=pool,
        workers=settings.extract_workers,
        timeout_seconds=settings.extract_timeout_seconds,
        temp_dir=settings.data_dir.resolve() / "tmp",
    )
    extractor.start()
    app.state.entries_extractor = extractor
    app.state.entries_janitor = start_periodic(
        "entries-janitor", EntryJanitor(catalogue, settings), settings.maintenance_interval_seconds
    )
    indexes = SearchIndexes(settings.search_dir)
    indexer = SearchIndexer(catalogue=catalogue, indexes=indexes)
    app.state.search_indexes = indexes
    app.state.search_indexer = indexer
    app.state.search_indexing = start_periodic(
        "search-indexer", indexer, settings.search_index_poll_seconds
    )


async def stop_entries(app: FastAPI) -> None:
    await stop_periodic(getattr(app.state, "search_indexing", None))
    await stop_periodic(getattr(app.state, "entries_janitor", None))
    indexer = getattr(app.state, "search_indexer", None)
    if indexer is not None:
        await indexer.release()
    extractor = getattr(app.state, "entries_extractor", None)
    if extractor is not None:
        await extractor.stop()
