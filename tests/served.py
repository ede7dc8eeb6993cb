"""An app served over a real socket (uvicorn on a free loopback port), polling for
a condition with a deadline, and holding the embedded engine's writes to one
collection back: for tests that need real HTTP (a client that goes away,
Server-Sent Events), wait on background work, or need a write to be in flight
(not finished) at a chosen moment, however fast the machine is."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import psycopg
import uvicorn
from fastapi import FastAPI
from psycopg import sql


@contextlib.asynccontextmanager
async def uvicorn_serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free loopback port (its lifespan is run by the
    caller); the base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert not serving.done(), "uvicorn did not start"
            assert time.monotonic() < deadline, "uvicorn did not start in 10 s"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
        listener.close()


async def eventually(condition: Callable[[], bool], seconds: float = 30) -> None:
    """Poll `condition` (run in a thread: it reads with the blocking driver while
    the server runs in this loop); a read the engine refused is 'not yet'."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(Exception):
            if await asyncio.to_thread(condition):
                return
        assert time.monotonic() < deadline, f"condition not met within {seconds} s"
        await asyncio.sleep(0.1)


@contextlib.contextmanager
def holding_writes(conninfo: str, db_name: str, collection: str) -> Iterator[None]:
    """Inserts, updates and deletes of `db_name.collection` wait until the block
    ends (a SHARE lock on FerretDB's table in the engine's PostgreSQL: reads go
    on). A write that arrives meanwhile is in the engine, not yet done, for as long
    as a test needs; an engine killed meanwhile takes the lock with it."""
    connection = psycopg.connect(conninfo)
    try:
        found = connection.execute(
            sql.SQL(
                "SELECT _jsonb ->> 'table' FROM {}._ferretdb_database_metadata "
                "WHERE _jsonb ->> '_id' = %s"
            ).format(sql.Identifier(db_name)),
            [collection],
        ).fetchone()
        assert found is not None, f"no table for {db_name}.{collection}"
        connection.execute(
            sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(db_name, found[0]))
        )
        yield
    finally:
        with contextlib.suppress(psycopg.Error):
            connection.rollback()
        with contextlib.suppress(psycopg.Error):
            connection.close()
