"""The database of a running app: the embedded engine when this app runs one,
the driver client, and the engine's adapter and SQL reads.

With `QUARRY_MONGODB_URL` unset, the lifespan starts the embedded engine (or uses
the one `quarry engine start` registered for the data directory) and watches
one it owns: if it dies, it is started again on the same port and the driver
reconnects by itself; requests meanwhile answer 503. On PostgreSQL the engine's
own SQL is handed to the database for the reads FerretDB does slowly
(`app.engine.sql`) and for the write door's locks (`app.engine.door`) — also when
`QUARRY_MONGODB_URL` names an embedded engine's socket, whose PostgreSQL
connection lies beside it (`conninfo_beside`). The adapter is chosen once, when
the server first answers: the embedded engine's for FerretDB, MongoDB's otherwise
(`choose_adapter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from app.db import Database, open_client
from app.engine.adapter import choose_adapter
from app.engine.build import EngineError
from app.engine.process import EmbeddedEngine, conninfo_beside, start_for_server
from app.engine.sql import EngineSql
from app.wiring import AppState

logger = logging.getLogger("quarry.app")

ENGINE_WATCH_INTERVAL_SECONDS = 1.0


def _watch(engine: EmbeddedEngine) -> Callable[[], Awaitable[None]]:
    """Restart an engine this app owns when it dies; the data stays where it was."""

    async def work() -> None:
        if engine.running():
            return
        logger.error("the embedded engine (pid %d) exited; restarting it", engine.pid)
        try:
            await asyncio.to_thread(engine.restart)
        except EngineError as exc:
            logger.error("restarting the embedded engine failed: %s", exc)

    return work


@contextlib.asynccontextmanager
async def run_database(state: AppState) -> AsyncIterator[None]:
    """Provides `state.database` (and the `EmbeddedEngine` when this app runs one)."""
    settings = state.settings
    async with contextlib.AsyncExitStack() as stack:
        url = settings.mongodb_url
        engine: EmbeddedEngine | None = None
        if settings.embedded_engine:
            engine = state.provide(await asyncio.to_thread(start_for_server, settings))
            url = engine.url
            if engine.owned:
                stack.push_async_callback(_stop, engine)
        database = Database(
            client=open_client(url, settings),
            control_db_name=settings.control_db,
            query_timeout=settings.query_timeout_ms / 1000,
            choose_adapter=choose_adapter,
            engine_hint=engine.name if engine is not None else "",
        )
        stack.push_async_callback(database.close)
        # An engine this app runs knows its PostgreSQL; one reached through
        # QUARRY_MONGODB_URL (another server's, a test's) left it beside its socket.
        if engine is not None:
            conninfo, owner = engine.postgres_conninfo(), engine.superuser_conninfo()
        else:
            conninfo, owner = conninfo_beside(url), conninfo_beside(url, owner=True)
        if conninfo:
            database.engine_reads = EngineSql(
                conninfo, owner_conninfo=owner, statement_timeout_ms=settings.query_timeout_ms
            )
        state.database = database
        if engine is not None and engine.owned:
            await stack.enter_async_context(
                state.background.every(
                    "engine-watch", _watch(engine), ENGINE_WATCH_INTERVAL_SECONDS
                )
            )
        yield


async def _stop(engine: EmbeddedEngine) -> None:
    await asyncio.to_thread(engine.stop)
    logger.info("embedded engine stopped")
