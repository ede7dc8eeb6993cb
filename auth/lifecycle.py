"""Start and stop the auth package with the app: signing key, hasher, mailer,
indexes, the authenticator, and the periodic sweep of expired rows.

If the database is unreachable at start, index creation is retried by the sweep
loop until it succeeds, so a server started before its database still comes up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI
from pymongo.errors import PyMongoError

from app.clock import utc_now
from app.database import Database
from app.settings import Settings
from auth import repository as repo
from auth.authenticator import HeaderAuthenticator
from auth.mail import Mailer
from auth.passwords import Passwords
from auth.service import AuthState
from auth.tokens import TokenCodec, resolve_secret_key

logger = logging.getLogger("quarry.auth")


async def _maintain(database: Database, settings: Settings, indexes_ready: bool) -> None:
    while True:
        try:
            if not indexes_ready:
                await repo.ensure_indexes(db=database.control)
                indexes_ready = True
            removed = await repo.sweep_expired(db=database.control, now=utc_now())
            if any(removed.values()):
                logger.info("swept expired rows: %s", removed)
        except PyMongoError as exc:
            logger.warning("auth maintenance postponed: %s", type(exc).__name__)
        await asyncio.sleep(settings.sweep_interval_seconds)


async def start_auth(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    database: Database = app.state.database
    codec = TokenCodec(resolve_secret_key(settings), settings)
    passwords = await asyncio.to_thread(Passwords, settings)
    state = AuthState(codec=codec, passwords=passwords, settings=settings, mailer=Mailer(settings))
    app.state.auth = state
    app.state.authenticator = HeaderAuthenticator(database=database, state=state)
    indexes_ready = False
    try:
        await repo.ensure_indexes(db=database.control)
        indexes_ready = True
    except PyMongoError as exc:
        logger.warning("auth indexes not created yet (%s); retrying", type(exc).__name__)
    app.state.auth_maintenance = asyncio.create_task(_maintain(database, settings, indexes_ready))


async def stop_auth(app: FastAPI) -> None:
    task: asyncio.Task[None] | None = getattr(app.state, "auth_maintenance", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
