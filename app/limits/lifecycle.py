"""Start and stop the rate limiter with the app: the limiter, the slots' indexes
(retried while the database is unreachable: the limits hold without them, only
slower) and the sweep of slots behind every window (a TTL index does it too where
the server has them).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from pymongo import ASCENDING, IndexModel
from pymongo.errors import OperationFailure, PyMongoError

from app.db import Collection
from app.limits.rate_limit import SLOTS, SWEEP_MAX_SECONDS, RateLimiter
from app.wiring import AppState

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


@contextlib.asynccontextmanager
async def lifecycle(state: AppState) -> AsyncIterator[None]:
    """Provides the `RateLimiter`; keeps its indexes (retried while the database is
    unreachable: the limits hold without them, only slower) and its sweep."""
    settings = state.settings
    limiter = state.provide(RateLimiter.from_settings(settings, state.database.control[SLOTS]))
    create_indexes = _index_creation(limiter)
    await create_indexes()
    every = state.background.every
    async with (
        every("rate-limit-indexes", create_indexes, settings.maintenance_interval_seconds),
        every(
            "rate-limit-sweep",
            _sweep(limiter),
            min(settings.sweep_interval_seconds, SWEEP_MAX_SECONDS),
        ),
    ):
        yield
