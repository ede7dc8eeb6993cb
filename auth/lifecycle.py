"""Start and stop the auth package with the app: signing key, hasher, mailer,
indexes, the authenticator, and the periodic sweep of expired rows.

If the database is unreachable at start, index creation is retried every
maintenance interval until it succeeds, so a server started before its database
still comes up; until then the endpoints whose safety rests on a unique index
(register, token refresh, API-key creation) answer 503 rather than run without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from pymongo.errors import PyMongoError

from app.clock import utc_now
from app.db import Database
from app.http import Authenticator
from app.mail import Mailer
from app.wiring import AppState
from auth import repository as repo
from auth.authenticator import HeaderAuthenticator
from auth.passwords import Passwords
from auth.service import AuthState
from auth.tokens import TokenCodec, resolve_secret_key

logger = logging.getLogger("quarry.auth")


def _sweep(database: Database) -> Callable[[], Awaitable[None]]:
    async def work() -> None:
        try:
            removed = await repo.sweep_expired(db=database.control, now=utc_now())
            if any(removed.values()):
                logger.info("swept expired rows: %s", removed)
        except PyMongoError as exc:
            logger.warning("auth sweep postponed: %s", type(exc).__name__)

    return work


def index_creation(database: Database, state: AuthState) -> Callable[[], Awaitable[None]]:
    """Create the auth indexes if they are not there yet (a no-op once they are)."""

    async def work() -> None:
        if state.indexes_ready:
            return
        try:
            await repo.ensure_indexes(db=database.control)
        except PyMongoError as exc:
            logger.warning("auth indexes not created yet (%s); retrying", type(exc).__name__)
            return
        state.indexes_ready = True
        logger.info("auth indexes ready")

    return work


@contextlib.asynccontextmanager
async def lifecycle(state: AppState) -> AsyncIterator[None]:
    """Provides `AuthState` and the `Authenticator`; runs the index creation and the sweep."""
    settings, database = state.settings, state.database
    codec = TokenCodec(resolve_secret_key(settings), settings)
    passwords = await asyncio.to_thread(Passwords, settings)
    auth = state.provide(
        AuthState(codec=codec, passwords=passwords, settings=settings, mailer=Mailer(settings))
    )
    state.provide(HeaderAuthenticator(database=database, state=auth), as_=Authenticator)
    create_indexes = index_creation(database, auth)
    await create_indexes()
    sweep = _sweep(database)
    await sweep()
    every = state.background.every
    async with (
        every("auth-indexes", create_indexes, settings.maintenance_interval_seconds),
        every("auth-maintenance", sweep, settings.sweep_interval_seconds),
    ):
        yield
