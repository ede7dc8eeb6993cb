"""Start and stop the rate limiter with the app: the limiter, the slots' indexes
(retried while the database is unreachable: the limits hold without them, only
slower) and the sweep of slots behind every window (a TTL index does it too where
the server has them).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from pymongo import ASCENDING, IndexModel
from pymongo.errors import OperationFailure, PyMongoError

from app.background import start_periodic, stop_periodic
from app.db import Collection, Database
from app.limits.rate_limit import SLOTS, SWEEP_MAX_SECONDS, RateLimiter
from app.settings import Settings

logger = logging.getLogger("quarry.rate_limit")

_INDEXES = [IndexModel([("bucket", ASCENDING), ("slot", ASCENDING)], name="bucket_slot")]


async def ensure_indexes(slots: Collection) -> None:
    """The collision lookup's index, and one on `expires_at`: a TTL index where the
    server has them, a plain one for the sweep where it does not."""
    await slots.create_indexes(_INDEXES)
    try:
        await slots.create_index(
            [("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_ttl"
        )
    except OperationFailure as exc:
        logger.info("no TTL index on %s (%s); the sweep expires slots", SLOTS, exc.code)
        await slots.create_index([("expires_at", ASCENDING)], name="expires")


def _index_creation(limiter: RateLimiter) -> Callable[[], Awaitable[None]]:
    async def work() -> None:
        if limiter.indexes_ready:
            return
        try:
            await ensure_indexes(limiter.slots)
        except PyMongoError as exc:
            logger.warning("rate-limit indexes not created yet (%s); retrying", type(exc).__name__)
            return
        limiter.indexes_ready = True

    return work


def _sweep(limiter: RateLimiter) -> Callable[[], Awaitable[None]]:
    async def work() -> None:
        try:
            removed = await limiter.sweep()
        except PyMongoError as exc:
            logger.warning("rate-limit sweep postponed: %s", type(exc).__name__)
            return
        if removed:
            logger.debug("swept %d expired rate-limit slots", removed)

    return work


async def start_rate_limiter(app: FastAPI) -> None:
    """`app.state.rate_limiter`, its indexes (retried while the database is
    unreachable: the limits hold without them, only slower) and its sweep."""
    settings: Settings = app.state.settings
    database: Database = app.state.database
    limiter = RateLimiter.from_settings(settings, database.control[SLOTS])
    app.state.rate_limiter = limiter
    create_indexes = _index_creation(limiter)
    await create_indexes()
    app.state.rate_limit_indexes = start_periodic(
        "rate-limit-indexes", create_indexes, settings.maintenance_interval_seconds
    )
    app.state.rate_limit_sweep = start_periodic(
        "rate-limit-sweep",
        _sweep(limiter),
        min(settings.sweep_interval_seconds, SWEEP_MAX_SECONDS),
    )


async def stop_rate_limiter(app: FastAPI) -> None:
    await stop_periodic(getattr(app.state, "rate_limit_indexes", None))
    await stop_periodic(getattr(app.state, "rate_limit_sweep", None))
