"""Read-only SQL to the embedded engine's PostgreSQL, for what FerretDB does slowly.

FerretDB 1.24 answers `count` by reading and decoding every document of the
collection (100,000 documents: about 2 s), and its `collStats` count is an
estimate above 30,000 rows. An unfiltered count is what every first page of an
unfiltered listing needs, so the engine layer answers it with `SELECT count(*)`
on FerretDB's table for the collection instead (found through the database's
`_ferretdb_database_metadata`; the layout is described and tested with the
shadow indexes, `engine_shadow_indexes.sql`). It reads committed rows only and
never writes. Anything unexpected — the table gone, PostgreSQL restarting —
answers None and the caller asks FerretDB as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from psycopg import sql

logger = logging.getLogger("quarry.engine")

_TABLE_OF = sql.SQL(
    "SELECT _jsonb ->> 'table' FROM {}._ferretdb_database_metadata WHERE _jsonb -> '_id' = %s"
)


class EngineSql:
    """One autocommit connection, opened on first use and again after a failure;
    counts take a few milliseconds, so one connection behind a lock serves them."""

    def __init__(self, conninfo: str, *, statement_timeout_ms: int = 10_000) -> None:
        self._conninfo = conninfo
        self._statement_timeout_ms = statement_timeout_ms
        self._connection: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._lock = asyncio.Lock()

    async def count(self, db_name: str, collection: str) -> int | None:
        """The exact number of documents in `db_name.collection`, or None."""
        async with self._lock:
            try:
                connection = await self._connect()
                cursor = await connection.execute(
                    _TABLE_OF.format(sql.Identifier(db_name)),
                    (psycopg.types.json.Jsonb(collection),),
                )
                row = await cursor.fetchone()
                if row is None or not isinstance(row[0], str):
                    return None
                cursor = await connection.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(db_name, row[0]))
                )
                counted = await cursor.fetchone()
                return int(counted[0]) if counted else None  # type: ignore[call-overload]
            except psycopg.Error as exc:
                logger.info("engine SQL count fell back to FerretDB: %s", type(exc).__name__)
                if isinstance(exc, psycopg.OperationalError):
                    await self._discard()
                return None

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._connection is None or self._connection.closed:
            # Read-only and time-limited at the session level: this connection has
            # the superuser's rights, and must never use them to write.
            self._connection = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=2,
                options=(
                    "-c default_transaction_read_only=on "
                    f"-c statement_timeout={self._statement_timeout_ms}"
                ),
            )
        return self._connection

    async def _discard(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                await self._connection.close()
        self._connection = None

    async def close(self) -> None:
        async with self._lock:
            await self._discard()
