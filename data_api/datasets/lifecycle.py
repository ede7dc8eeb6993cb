"""Start and stop the datasets feature with the app: the catalogue, its indexes and
built-in tags (retried every maintenance interval until the database answers;
until then dataset endpoints answer 503, since share and tag uniqueness rest on
unique indexes), and the expiry sweeper."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from pymongo.errors import PyMongoError

from app.audit import AuditLog, AuditVisibility
from app.mail import Mailer
from app.wiring import AppState
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


@contextlib.asynccontextmanager
async def lifecycle(state: AppState) -> AsyncIterator[None]:
    """Provides the `Catalogue`, the `AuditVisibility` of datasets and the
    `ExpirySweeper`; keeps the catalogue set up and sweeps expired datasets."""
    settings = state.settings
    catalogue = state.provide(Catalogue(state.database))
    state.provide(DatasetAuditVisibility(catalogue), as_=AuditVisibility)
    service = DatasetService(catalogue=catalogue, settings=settings, audit=state.find(AuditLog))
    setup = catalogue_setup(catalogue, service)
    await setup()
    sweeper = state.provide(
        ExpirySweeper(
            service=service, mailer=Mailer(settings), interval=settings.dataset_sweep_seconds
        )
    )
    every = state.background.every
    async with (
        every("datasets-setup", setup, settings.maintenance_interval_seconds),
        every("datasets-expiry", sweeper, settings.dataset_sweep_seconds),
    ):
        yield
