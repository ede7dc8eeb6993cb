"""Start and stop the datasets feature with the app: the catalogue, its indexes and
built-in tags (retried every maintenance interval until the database answers;
until then dataset endpoints answer 503, since share and tag uniqueness rest on
unique indexes), and the expiry sweeper."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from pymongo.errors import PyMongoError

from app.background import start_periodic, stop_periodic
from app.db import Database
from app.mail import Mailer
from app.settings import Settings
from data_api.datasets.access import DatasetAuditVisibility
from data_api.datasets.expiry import ExpirySweeper
from data_api.datasets.repository import Catalogue
from data_api.datasets.service import DatasetService

logger = logging.getLogger("quarry.datasets")


def catalogue_setup(catalogue: Catalogue, service: DatasetService) -> Callable[[], Awaitable[None]]:
    async def work() -> None:
        if catalogue.ready:
            return
        try:
            await catalogue.ensure_catalogue_indexes()
            await service.ensure_builtin_tags()
        except PyMongoError as exc:
            logger.warning("dataset catalogue not ready (%s); retrying", type(exc).__name__)
            return
        catalogue.ready = True

    return work


async def start_datasets(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    database: Database = app.state.database
    catalogue = Catalogue(database)
    app.state.datasets_catalogue = catalogue
    app.state.audit_visibility = DatasetAuditVisibility(catalogue)
    service = DatasetService(
        catalogue=catalogue, settings=settings, audit=getattr(app.state, "audit_log", None)
    )
    setup = catalogue_setup(catalogue, service)
    await setup()
    app.state.datasets_setup = start_periodic(
        "datasets-setup", setup, settings.maintenance_interval_seconds
    )
    sweeper = ExpirySweeper(
        service=service, mailer=Mailer(settings), interval=settings.dataset_sweep_seconds
    )
    app.state.datasets_sweeper = sweeper
    app.state.datasets_sweep = start_periodic(
        "datasets-expiry", sweeper, settings.dataset_sweep_seconds
    )


async def stop_datasets(app: FastAPI) -> None:
    await stop_periodic(getattr(app.state, "datasets_setup", None))
    await stop_periodic(getattr(app.state, "datasets_sweep", None))
