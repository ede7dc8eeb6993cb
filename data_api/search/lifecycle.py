"""Start and stop keyword search with the app: the tenant indexes and the indexer
that keeps them in step with MongoDB (`indexer.py`), which lets go of its lease
when the app stops."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from app.wiring import AppState
from data_api.datasets.repository import Catalogue
from data_api.search.index import SearchIndexes
from data_api.search.indexer import SearchIndexer

#: The indexer's background task (tests pause it by this name).
INDEXER_TASK = "search-indexer"


@contextlib.asynccontextmanager
async def lifecycle(state: AppState) -> AsyncIterator[None]:
    """Provides `SearchIndexes` and the `SearchIndexer`, which runs every
    `QUARRY_SEARCH_INDEX_POLL_SECONDS`."""
    settings = state.settings
    indexes = state.provide(SearchIndexes(settings.search_dir))
    indexer = state.provide(SearchIndexer(catalogue=state.get(Catalogue), indexes=indexes))
    try:
        async with state.background.every(
            INDEXER_TASK, indexer, settings.search_index_poll_seconds
        ):
            yield
    finally:
        await indexer.release()
