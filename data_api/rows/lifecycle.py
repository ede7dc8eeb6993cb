"""Start and stop rows with the app: the store, the in-process stream hub, and the
sweep that cleans up after row writes cut short (a lapsed `rows:<dataset>`
lease: its holder died mid-write; `store.py` says why that is enough)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from pymongo.errors import PyMongoError

from app.wiring import AppState
from data_api.datasets.repository import Catalogue
from data_api.rows.store import RowStore
from data_api.rows.stream import RowHub

logger = logging.getLogger("quarry.rows")


@contextlib.asynccontextmanager
async def lifecycle(state: AppState) -> AsyncIterator[None]:
    """Provides the `RowStore` and the `RowHub`; sweeps after cut-short writes."""
    settings = state.settings
    catalogue = state.get(Catalogue)
    store = state.provide(RowStore(catalogue, lease_seconds=settings.stale_after_seconds))
    hub = state.provide(RowHub())
    store.on_commit = hub.notify

    async def sweep() -> None:
        if not catalogue.ready:
            return
        try:
            await store.clean_lapsed()
        except PyMongoError as exc:
            logger.warning("row maintenance failed (%s); retrying", type(exc).__name__)

    async with state.background.every("rows-sweep", sweep, settings.maintenance_interval_seconds):
        yield
