"""Start and stop rows with the app: the store, the in-process stream hub, and the
sweep that cleans up after row writes cut short (a lapsed `rows:<dataset>`
lease: its holder died mid-write; `store.py` says why that is enough)."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from pymongo.errors import PyMongoError

from app.background import start_periodic, stop_periodic
from app.settings import Settings
from data_api.datasets.repository import Catalogue
from data_api.rows.store import RowStore
from data_api.rows.stream import RowHub

logger = logging.getLogger("quarry.rows")


async def start_rows(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    catalogue: Catalogue = app.state.datasets_catalogue
    store = RowStore(catalogue, lease_seconds=settings.stale_after_seconds)
    hub = RowHub()
    store.on_commit = hub.notify
    app.state.row_store = store
    app.state.row_hub = hub

    async def sweep() -> None:
        if not catalogue.ready:
            return
        try:
            await store.clean_lapsed()
        except PyMongoError as exc:
            logger.warning("row maintenance failed (%s); retrying", type(exc).__name__)

    app.state.rows_sweep = start_periodic(
        "rows-sweep", sweep, settings.maintenance_interval_seconds
    )


async def stop_rows(app: FastAPI) -> None:
    await stop_periodic(getattr(app.state, "rows_sweep", None))
