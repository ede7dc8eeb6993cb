"""The write door: every update, replace, find-and-modify and delete Quarry sends to
the embedded engine on PostgreSQL passes through here, and none of them can lose
another's work.

Why: FerretDB 1.24 updates by reading the matching documents with a plain
SELECT, applying the operators in Go, and writing each document back by `_id` in
a separate transaction — no row lock, no version check. Twenty clients each
incrementing one counter fifty times kept 690 of the 1,000 increments, and two
"update only if `version` is still 0" calls both succeeded in 187 of 200 trials.
A delete is a read followed by a delete by `_id`, so a conditional delete could
remove a document that a concurrent update had just made not match.

How: PostgreSQL advisory locks, held in a transaction on a connection of the
door's own around the one FerretDB command that does the write:

- a write whose filter names one `_id` (the document path) takes the
  collection's lock shared and the document's lock exclusive: writes to
  different documents of a collection run side by side, writes to one document
  one after another, each reading what the previous one committed (FerretDB
  commits before it answers, and the lock is released after the answer);
- a single-document write with another filter first finds its candidate's `_id`
  (unlocked), then runs on the document path with the filter *and* that `_id`:
  if the candidate stopped matching meanwhile, it looks again (a few times, then
  takes the collection); an upsert that finds nothing takes the collection;
- a write by filter (`update_many`, `delete_many`) takes the collection's lock
  exclusive: it waits for the document writes in flight and holds the others
  off until it is done.

Inserts take no lock: a new document cannot lose an update, and a duplicate is
refused by the unique index. Locks rather than updates compiled to SQL because
FerretDB stays the only writer of its rows — an SQL `UPDATE` must keep its
`$s` type header and key order exactly right, and mixing the two paths on one
collection loses updates again (the study for this door measured both: the locks
cost about 0.3 ms a write). The lock is taken with `lock_timeout` set to the
query timeout. A write that cannot get its lock, or cannot reach the engine's
PostgreSQL, fails as the driver fails when the engine is away (`AutoReconnect`:
503 to a client, and every caller's handling of an engine outage — journals,
rollbacks, retries — applies unchanged); nothing was written.

The write itself runs in a task of its own that the caller's cancellation does
not stop (`asyncio.shield`): the lock is released only once FerretDB has
answered, so a client that goes away cannot let the next writer read a document
before this write is in it. When the answer never comes (a socket timeout, or
the driver's monitor cutting connections to an engine that stopped answering),
the door keeps the lock until FerretDB's PostgreSQL sessions that were at work
before that moment are done (`pg_stat_activity`, at most `SETTLE_SECONDS`).
What this cannot see is FerretDB between its read and its write-back (Go
applying the operators, microseconds) — the one window left.

Keys: the collection's lock is one `bigint` (a hash of database and collection
names), a document's a pair of `int4` (the collection's hash, the `_id`'s) — the
two forms are separate lock spaces in PostgreSQL, so a document's key can never
be some collection's. Numerically equal `_id`s (1, 1.0, `Int64(1)`, also inside
an embedded-document `_id`) hash alike, as they match the same document.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import bson
import psycopg
from bson import Int64
from pymongo.errors import AutoReconnect, ConnectionFailure

logger = logging.getLogger("quarry.engine")

T = TypeVar("T")

#: Connections the door keeps: each write in flight holds one until FerretDB has
#: answered. Writers beyond this wait for a connection (and then their lock).
#: Per worker, beside the SQL reads' 4 and FerretDB's own pool, within the
#: cluster's `max_connections` for the most workers a server runs
#: (`app.engine.postgres.WORKER_CONNECTIONS`).
POOL_SIZE = 8

_LOCK_DOCUMENT = "SELECT pg_advisory_xact_lock_shared(%s), pg_advisory_xact_lock(%s, %s)"
_LOCK_COLLECTION = "SELECT pg_advisory_xact_lock(%s)"
#: FerretDB's sessions (its pool names itself `FerretDB`) still running a
#: statement, or inside a transaction, that began before the given moment.
_BUSY_ENGINE_SESSIONS = (
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
    "AND application_name = 'FerretDB' AND state IS DISTINCT FROM 'idle' "
    "AND (query_start <= %s OR xact_start <= %s)"
)
#: How long the door keeps a lock after a write whose answer never came, at most.
SETTLE_SECONDS = 30.0
SETTLE_POLL_SECONDS = 0.02


def _hash(data: bytes, size: int) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=size).digest(), "big", signed=True)


def collection_key(database: str, collection: str) -> int:
    """The collection's lock: a signed 64-bit hash of its names."""
    return _hash(f"{database}\x00{collection}".encode(), 8)


def document_key(database: str, collection: str, document_id: Any) -> tuple[int, int]:
    """The document's lock: (the collection's 32-bit hash, the `_id`'s)."""
    encoded = bson.encode({"": _numbers_as_one(document_id)})
    return (
        _hash(f"{database}\x00{collection}".encode(), 4),
        _hash(encoded, 4),
    )


def _numbers_as_one(value: Any) -> Any:
    """`value` with every integral number (int32, long, integral double; also inside
    documents and arrays) as one type, so that `_id`s that match the same document
    hash alike."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return Int64(int(value)) if -(2**63) <= value < 2**63 else value
    if isinstance(value, int):
        return Int64(value)
    if isinstance(value, dict):
        return {key: _numbers_as_one(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_as_one(item) for item in value]
    return value


class WriteDoor:
    """Advisory locks on the engine's PostgreSQL around FerretDB's writes."""

    def __init__(self, conninfo: str, *, lock_timeout_ms: int = 10_000) -> None:
        self._conninfo = conninfo
        self._lock_timeout_ms = lock_timeout_ms
        self._idle: list[psycopg.AsyncConnection[tuple[Any, ...]]] = []
        self._slots = asyncio.Semaphore(POOL_SIZE)
        self._running: set[asyncio.Task[Any]] = set()

    async def document(
        self, database: str, collection: str, document_id: Any, write: Callable[[], Awaitable[T]]
    ) -> T:
        """`write()` while holding this document's lock (and its collection's, shared)."""
        high, low = document_key(database, collection, document_id)
        params = (collection_key(database, collection), high, low)
        return await self._run(_LOCK_DOCUMENT, params, write)

    async def collection(
        self, database: str, collection: str, write: Callable[[], Awaitable[T]]
    ) -> T:
        """`write()` while holding the collection's lock exclusively."""
        return await self._run(_LOCK_COLLECTION, (collection_key(database, collection),), write)

    async def _run(
        self, statement: str, params: tuple[int, ...], write: Callable[[], Awaitable[T]]
    ) -> T:
        task = asyncio.ensure_future(self._locked(statement, params, write))
        self._running.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its caller may have gone

    async def _locked(
        self, statement: str, params: tuple[int, ...], write: Callable[[], Awaitable[T]]
    ) -> T:
        async with self._slots:
            for attempt in (1, 2):
                async with self._transaction() as connection:
                    try:
                        await connection.execute(statement, params)
                    except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled) as exc:
                        raise AutoReconnect(
                            "write door: the document stayed locked by other writes "
                            "for the whole query timeout; nothing was written"
                        ) from exc
                    except psycopg.OperationalError as exc:
                        # The engine restarted since these connections were opened: every
                        # idle one is as broken as this one. Once more on a new one.
                        await self._close_idle()
                        if attempt == 1:
                            continue
                        logger.warning("write door: no lock (%s)", type(exc).__name__)
                        raise AutoReconnect(f"write door: no lock ({exc})") from exc
                    except psycopg.Error as exc:
                        logger.warning("write door: no lock (%s)", type(exc).__name__)
                        raise AutoReconnect(f"write door: no lock ({exc})") from exc
                    try:
                        return await write()
                    except (ConnectionFailure, asyncio.CancelledError):
                        # Cancelled (the loop shutting down): the request may have
                        # reached FerretDB all the same, so the lock waits for it too.
                        await self._settle(connection)
                        raise
            raise AssertionError("unreachable")

    async def _settle(self, connection: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
        """After a write whose answer never came (a socket timeout, the driver's
        monitor cutting connections): keep the lock until FerretDB's PostgreSQL
        sessions that were at work before now are done, so the next writer reads
        this write's result if it happened (at most `SETTLE_SECONDS`)."""
        try:
            cursor = await connection.execute("SELECT clock_timestamp()")
            row = await cursor.fetchone()
            failed_at = row[0] if row else None
            deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
            while failed_at is not None and asyncio.get_running_loop().time() < deadline:
                # Statistics are a snapshot per transaction (this one holds the lock).
                await connection.execute("SELECT pg_stat_clear_snapshot()")
                cursor = await connection.execute(_BUSY_ENGINE_SESSIONS, (failed_at, failed_at))
                busy = await cursor.fetchone()
                if not busy or not busy[0]:
                    return
                await asyncio.sleep(SETTLE_POLL_SECONDS)
            logger.warning(
                "write door: FerretDB still busy %s s after a lost answer", SETTLE_SECONDS
            )
        except psycopg.Error as exc:
            logger.warning("write door: could not wait for FerretDB (%s)", type(exc).__name__)

    async def _close_idle(self) -> None:
        while self._idle:
            with contextlib.suppress(psycopg.Error):
                await self._idle.pop().close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]]]:
        connection = self._idle.pop() if self._idle else None
        if connection is None or connection.closed:
            try:
                connection = await self._connect()
            except psycopg.Error as exc:
                logger.warning("write door: no connection to the engine (%s)", exc)
                raise AutoReconnect(f"write door: no connection to the engine ({exc})") from exc
        try:
            yield connection
        finally:
            # The transaction ends here (which releases the locks) whatever the
            # write did; a connection that cannot end it is closed, which does too.
            try:
                await connection.rollback()
            except psycopg.Error:
                with contextlib.suppress(psycopg.Error):
                    await connection.close()
            if not connection.closed:
                self._idle.append(connection)

    async def _connect(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        # Read-only: the door only ever takes locks.
        return await psycopg.AsyncConnection.connect(
            self._conninfo,
            connect_timeout=2,
            options=(
                "-c default_transaction_read_only=on "
                f"-c lock_timeout={self._lock_timeout_ms} "
                # Above the lock's, so that a lock not granted is reported as such
                # (LockNotAvailable), not as a statement cancelled first.
                f"-c statement_timeout={self._lock_timeout_ms + 5_000}"
            ),
        )

    async def close(self) -> None:
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        await self._close_idle()
