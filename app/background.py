"""Periodic background work tied to the app's lifespan (sweeps, maintenance).

A cancelled task can miss its cancellation when it lands inside a driver call
that absorbs it; the loop here checks `Task.cancelling()` after each round so a
stop never waits for the next interval, and `stop_periodic` bounds the wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("quarry.app")

STOP_TIMEOUT_SECONDS = 5.0


async def _run(work: Callable[[], Awaitable[None]], interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await work()
        except Exception:
            # A round that fails in a way its work did not expect is logged; the
            # task lives on for the next round instead of ending silently.
            logger.exception("background task %s failed; next round in %s s", work, interval)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError


def start_periodic(
    name: str, work: Callable[[], Awaitable[None]], interval: float
) -> asyncio.Task[None]:
    """Run `work` every `interval` seconds (first run after one interval) until stopped."""
    return asyncio.create_task(_run(work, interval), name=name)


async def stop_periodic(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT_SECONDS)
    if not done:
        logger.warning("background task %s did not stop in time", task.get_name())
        task.cancel()
