"""Read-only SQL to the embedded engine's PostgreSQL, for what FerretDB does slowly.

FerretDB 1.24 answers `count` by reading and decoding every document of the
collection (100,000 documents: about 2 s), and its `collStats` count is an
estimate above 30,000 rows. An unfiltered count is what every first page of an
unfiltered listing needs, so the engine layer answers it from the table's row
counter (`rows_counted`: kept by triggers, shadow_indexes.sql; `count(*)` while
a table has none) on FerretDB's table for the collection instead (found through the database's
`_ferretdb_database_metadata`; the layout is described and tested with the
shadow indexes, `app/engine/shadow_indexes.sql`).

Every other read it runs is the read planner's — finds and counts compiled by
`app.engine.planner` and run by `app.engine.planned_reads`, for user collections
and Quarry's own alike (pages, lookups and reads by `_id`s are planned finds:
`EmbeddedAdapter.find_page`); there is no second compiler. It also hands the
indexed fields to the builder of their typed indexes (`app.engine.typed_indexes`,
which has a connection of its own for its DDL, as the engine's owner: see that
module).

It reads committed rows only and cannot write: it connects as the engine's
reader role (`EmbeddedEngine.postgres_conninfo`: SELECT on FerretDB's tables,
advisory locks, no right to write or create anything), in read-only sessions.
Anything unexpected — a table gone, PostgreSQL restarting — answers None and the
caller asks FerretDB as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from bson import ObjectId
from bson.errors import BSONError
from psycopg import sql
from psycopg.types.json import Jsonb, set_json_loads

from app.db import FieldGuard, FindSpec
from app.engine import typed_indexes
from app.engine.door import WriteDoor
from app.engine.planned_reads import (
    PlannerStats,
    Prepared,
    prepare_count,
    prepare_find,
    rows_counted,
    run_count,
    run_find,
)
from app.engine.sjson import SjsonError, decode_document, driver_document
from app.engine.sjson import loads as sjson_loads
from app.engine.typed_indexes import (
    KeyCatalog,
    TableKeys,
    TypedIndex,
    TypedIndexBuilder,
    guarded_count,
    index_validity,
)

logger = logging.getLogger("quarry.engine")

_TABLES_OF = sql.SQL(
    "SELECT _jsonb ->> '_id', _jsonb ->> 'table' FROM {}._ferretdb_database_metadata "
    "WHERE _jsonb -> '_id' = ANY(%s)"
)
Connection = psycopg.AsyncConnection[tuple[Any, ...]]
Answer = TypeVar("Answer")

#: What a statement on a remembered table raises once its collection is dropped.
_DROPPED = (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)
#: Connections kept open: a planned read takes a few milliseconds; four let
#: concurrent requests overlap without holding many backends.
POOL_SIZE = 4


def _read(stored: dict[str, Any]) -> dict[str, Any] | Any:
    try:
        return decode_document(stored)
    except (SjsonError, TypeError, ValueError, KeyError, OverflowError, BSONError):
        # A value this reader cannot make (a date past year 9999, say): the caller
        # reads the document by `_id` through FerretDB, which decides.
        schema = ((stored.get("$s") or {}).get("p") or {}).get("_id") or {}
        _id = stored.get("_id")
        return ObjectId(_id) if schema.get("t") == "objectId" else _id


def _read_as_driver(
    driver_form: Callable[[dict[str, Any]], dict[str, Any]], stored: dict[str, Any]
) -> dict[str, Any] | Any:
    document = driver_document(stored)
    if document is not None:
        return document
    read = _read(stored)
    return driver_form(read) if isinstance(read, dict) else read


def _unbuilt_guard(field: str, *, present: bool) -> FieldGuard:
    if present:
        return FieldGuard("building", f"the typed index of {field} is being built")
    return FieldGuard(
        "off",
        f"no typed index of {field} is built yet: the builder is told of every "
        "collection at start and after each schema change",
    )


class EngineSql:
    """A few autocommit, read-only connections, opened on first use and again after
    a failure."""

    def __init__(
        self,
        conninfo: str,
        *,
        owner_conninfo: str | None = None,
        statement_timeout_ms: int = 10_000,
    ) -> None:
        self._conninfo = conninfo
        self._statement_timeout_ms = statement_timeout_ms
        self._idle: list[psycopg.AsyncConnection[tuple[Any, ...]]] = []
        self._table_names: dict[tuple[str, str], str] = {}
        self._slots = asyncio.Semaphore(POOL_SIZE)
        self.catalog = KeyCatalog()
        self.planner_stats = PlannerStats()
        #: Builds typed indexes as the tables' owner; without that conninfo none are
        #: built here (those another server built still serve).
        self.typed_indexes = (
            None
            if owner_conninfo is None
            else TypedIndexBuilder(owner_conninfo, on_change=self.catalog.forget)
        )
        #: The write door (`app.engine.door`) on the same PostgreSQL.
        self.door = WriteDoor(conninfo, lock_timeout_ms=statement_timeout_ms)

    async def count(self, db_name: str, collection: str) -> int | None:
        """The exact number of documents in `db_name.collection`, or None."""
        async with self._connection("count") as connection:
            if connection is None:
                return None
            tables = await self._tables(connection, db_name, {collection})
            if collection not in tables:
                return None
            cursor = await connection.execute(
                sql.SQL("SELECT {}").format(rows_counted(db_name, tables[collection]))
            )
            counted = await cursor.fetchone()
            return int(counted[0]) if counted else None
        return None

    async def find(
        self,
        db_name: str,
        collection: str,
        spec: FindSpec,
        *,
        driver_form: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> list[dict[str, Any] | Any] | None:
        """A find the read planner serves: the documents in order (or, where the
        stored form cannot be read, their `_id`s), projected — or None (ask
        FerretDB). With `driver_form` (the caller's BSON round trip, for a client
        with `sjson.DRIVER_CODEC`) the documents are in the driver's form: read
        straight into it where `sjson.driver_document` can, else decoded and
        given to `driver_form`."""
        read = _read if driver_form is None else functools.partial(_read_as_driver, driver_form)

        def prepare(table: str, keys: TableKeys) -> Prepared | None:
            return prepare_find(keys, self.planner_stats, schema=db_name, table=table, spec=spec)

        async def run(connection: Connection, prepared: Prepared) -> list[Any] | None:
            return await run_find(
                connection, prepared, self.planner_stats, schema=db_name, read=read
            )

        return await self._planned("planned find", db_name, collection, prepare, run)

    async def count_matching(
        self, db_name: str, collection: str, filter: dict[str, Any]
    ) -> int | None:
        """A filtered count the read planner serves, or None (ask FerretDB)."""

        def prepare(table: str, keys: TableKeys) -> Prepared | None:
            return prepare_count(
                keys, self.planner_stats, schema=db_name, table=table, filter=filter
            )

        async def run(connection: Connection, prepared: Prepared) -> int | None:
            return await run_count(connection, prepared, self.planner_stats, schema=db_name)

        return await self._planned("planned count", db_name, collection, prepare, run)

    async def _planned(
        self,
        purpose: str,
        db_name: str,
        collection: str,
        prepare: Callable[[str, TableKeys], Prepared | None],
        run: Callable[[Connection, Prepared], Awaitable[Answer | None]],
    ) -> Answer | None:
        """Plan, then run on a pooled connection. Planned before a connection is
        taken when the table's typed indexes are known, so that a read the planner
        cannot serve (of a collection without typed indexes, say) never waits for one."""
        known = self._known_keys(db_name, collection)
        prepared = None if known is None else prepare(*known)
        if known is not None and prepared is None:
            return None
        async with self._connection(purpose) as connection:
            if connection is None:
                return None
            if prepared is None:
                found = await self._keys(connection, db_name, collection)
                prepared = None if found is None else prepare(*found)
                if prepared is None:
                    return None
            return await run(connection, prepared)
        return None

    def _known_keys(self, db_name: str, collection: str) -> tuple[str, TableKeys] | None:
        """The collection's table and typed indexes, when both are known without a
        connection."""
        table = self._table_names.get((db_name, collection))
        keys = None if table is None else self.catalog.cached(db_name, table)
        return None if table is None or keys is None else (table, keys)

    async def _keys(
        self, connection: psycopg.AsyncConnection[tuple[Any, ...]], db_name: str, collection: str
    ) -> tuple[str, TableKeys] | None:
        tables = await self._tables(connection, db_name, {collection})
        if collection not in tables:
            return None
        table = tables[collection]
        return table, await self.catalog.keys(connection, db_name, table)

    async def indexes_settled(self) -> None:
        """Wait until every declared typed index is built (tests, benchmarks)."""
        if self.typed_indexes is not None:
            await self.typed_indexes.settled()

    async def typed_key_guards(
        self, db_name: str, collection: str, families: dict[str, str]
    ) -> dict[str, FieldGuard] | None:
        """The guard of each field's typed index (field → key family): building
        while the builder has the collection's declaration to do or the index is
        not valid yet; else off while documents hold another type (counted through
        the index, which leads with the guard), valid otherwise. None when the
        builder is not here or the collection has no table (yet)."""
        builder = self.typed_indexes
        if builder is None:
            return None
        async with self._connection("typed key guards") as connection:
            if connection is None:
                return None
            tables = await self._tables(connection, db_name, {collection})
            if collection not in tables:
                return None
            table = tables[collection]
            validity = await index_validity(connection, db_name, table)
            building = builder.building(db_name, collection)
            guards = {}
            for field, family in families.items():
                index = TypedIndex(field, family)
                valid = validity.get(index.name(table))
                if not valid:
                    guards[field] = _unbuilt_guard(field, present=valid is not None or building)
                    continue
                cursor = await connection.execute(guarded_count(db_name, table, index))
                row = await cursor.fetchone()
                count = int(row[0]) if row else 0
                many = (
                    f"{count:,} or more" if count >= typed_indexes.GUARD_COUNT_CAP else str(count)
                )
                guards[field] = (
                    FieldGuard("off", f"{many} documents hold another type in {field}", count)
                    if count
                    else FieldGuard("valid", None, 0)
                )
            return guards
        return None

    def declare_fields(self, db_name: str, collection: str, fields: dict[str, str]) -> None:
        """The collection's indexed top-level fields and their schema types: their
        typed indexes are built in the background."""
        if self.typed_indexes is not None:
            self.typed_indexes.declare(db_name, collection, fields)

    async def _tables(
        self, connection: psycopg.AsyncConnection[tuple[Any, ...]], db_name: str, names: set[str]
    ) -> dict[str, str]:
        """FerretDB's table of each of these collections that exists. Remembered: a
        table is named once per collection; a dropped collection's statement fails
        (UndefinedTable), which forgets the names (`_forget`) and falls back."""
        missing = {name for name in names if (db_name, name) not in self._table_names}
        if missing:
            cursor = await connection.execute(
                _TABLES_OF.format(sql.Identifier(db_name)), ([Jsonb(n) for n in missing],)
            )
            for name, table in await cursor.fetchall():
                self._table_names[(db_name, str(name))] = str(table)
        return {
            name: self._table_names[(db_name, name)]
            for name in names
            if (db_name, name) in self._table_names
        }

    @contextlib.asynccontextmanager
    async def _connection(
        self, purpose: str
    ) -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]] | None]:
        """A pooled connection, or None when none can be opened (the caller falls
        back); a psycopg error ends the block (the caller falls back too), and a
        broken connection is not returned to the pool."""
        async with self._slots:
            connection = self._idle.pop() if self._idle else None
            if connection is None or connection.closed:
                try:
                    connection = await self._connect()
                except psycopg.Error as exc:
                    logger.info("engine SQL %s fell back: no connection (%s)", purpose, exc)
                    connection = None
            if connection is None:
                yield None
                return
            try:
                yield connection
            except psycopg.Error as exc:
                logger.info("engine SQL %s fell back to FerretDB: %s", purpose, type(exc).__name__)
                if isinstance(exc, _DROPPED):
                    self._table_names.clear()  # a collection or database was dropped
                    self.catalog.forget()
                if isinstance(exc, psycopg.OperationalError):
                    with contextlib.suppress(psycopg.Error):
                        await connection.close()
            except BaseException:
                # Cancelled (a client gone, a time limit) or a bug: the connection may
                # be mid-statement, so it is closed, never handed out again.
                with contextlib.suppress(Exception):
                    await connection.close()
                raise
            if not connection.closed:
                self._idle.append(connection)

    async def _connect(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        # The role may not write anyway; read-only sessions say so at once, and
        # the time limit keeps a slow statement from holding a connection.
        connection = await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=2,
            options=(
                "-c default_transaction_read_only=on "
                f"-c statement_timeout={self._statement_timeout_ms}"
            ),
        )
        # Pages of stored documents: parsing their JSON was the largest cost of a
        # planned read; `sjson.loads` returns what json.loads did, faster.
        set_json_loads(sjson_loads, connection)
        return connection

    async def close(self) -> None:
        if self.typed_indexes is not None:
            await self.typed_indexes.close()
        await self.door.close()
        while self._idle:
            with contextlib.suppress(psycopg.Error):
                await self._idle.pop().close()
