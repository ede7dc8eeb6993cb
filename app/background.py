"""Periodic background work tied to the app's lifespan (sweeps, maintenance):
`Background` keeps the app's tasks by name; `start_periodic`/`stop_periodic` run one.

A cancelled task can miss its cancellation when it lands inside a driver call
that absorbs it; the loop here checks `Task.cancelling()` after each round so a
stop never waits for the next interval, and `stop_periodic` bounds the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

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


class Background:
    """The app's periodic tasks by name (`AppState.background`). A lifecycle
    registers its own (`async with background.every(name, work, interval):`), and
    they stop when it exits; `paused(name)` stops one for a while (tests that must
    see what happens without it)."""

    def __init__(self) -> None:
        self._tasks: dict[str, tuple[asyncio.Task[None], Callable[[], Awaitable[None]], float]] = {}

    @contextlib.asynccontextmanager
    async def every(
        self, name: str, work: Callable[[], Awaitable[None]], interval: float
    ) -> AsyncIterator[None]:
        """Run `work` every `interval` seconds (first after one interval) inside the block."""
        if name in self._tasks:
            raise ValueError(f"a background task named {name!r} is already running")
        self._tasks[name] = (start_periodic(name, work, interval), work, interval)
        try:
            yield
        finally:
            task, _, _ = self._tasks.pop(name)
            await stop_periodic(task)

    @contextlib.asynccontextmanager
    async def paused(self, name: str) -> AsyncIterator[None]:
        """Task `name` stopped inside the block (a round under way finishes first)."""
        task, work, interval = self._tasks[name]
        await stop_periodic(task)
        try:
            yield
        finally:
            if name in self._tasks:
                self._tasks[name] = (start_periodic(name, work, interval), work, interval)

    def names(self) -> list[str]:
        return sorted(self._tasks)
