"""Start and stop the auth package with the app: signing key, hasher, mailer,
indexes, the authenticator, and the periodic sweep of expired rows.

If the database is unreachable at start, index creation is retried by the sweep
loop until it succeeds, so a server started before its database still comes up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from pymongo.errors import PyMongoError

from app.background import start_periodic, stop_periodic
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


def _maintenance(database: Database, state: dict[str, bool]) -> Callable[[], Awaitable[None]]:
    async def work() -> None:
        try:
            if not state["indexes_ready"]:
                await repo.ensure_indexes(db=database.control)
                state["indexes_ready"] = True
            removed = await repo.sweep_expired(db=database.control, now=utc_now())
            if any(removed.values()):
                logger.info("swept expired rows: %s", removed)
        except PyMongoError as exc:
            logger.warning("auth maintenance postponed: %s", type(exc).__name__)

    return work


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
    work = _maintenance(database, {"indexes_ready": indexes_ready})
    await work()
    app.state.auth_maintenance = start_periodic(
        "auth-maintenance", work, settings.sweep_interval_seconds
    )


async def stop_auth(app: FastAPI) -> None:
    await stop_periodic(getattr(app.state, "auth_maintenance", None))
