"""What every server command needs: the settings, and the database they name.

Commands are synchronous (argparse handlers answering an exit code); one that
reads or changes stored state runs a coroutine on the app's own database layer
(`run_on_database`), so it goes through the same engine adapter as the server:
on `QUARRY_MONGODB_URL`, or on this data directory's embedded engine — the one
running, else one started for the command and stopped after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import ValidationError

from app.db import Database
from app.settings import Settings
from app.wiring import AppState

T = TypeVar("T")


def load_settings() -> Settings:
    """The settings from the environment; a clear exit when they are invalid."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise SystemExit(f"quarry: invalid configuration: {problems}") from None


def run_on_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """`work(database)` on the database of `settings`, opened for it and closed after."""

    from app.engine import run_database  # only when a command runs

    async def run() -> T:
        state = AppState(settings)
        async with run_database(state):
            return await work(state.database)

    return asyncio.run(run())
