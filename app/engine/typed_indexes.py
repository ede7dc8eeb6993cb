"""The typed-key indexes the read planner (`app.engine.planner`) reads through:
built from the collection schemas, in the background, and looked up per table.

For each collection the schema declares (`EngineAdapter.declare_fields`, called by
management when a collection is created, its schema changes, and once at start)
there is one btree index of `_id`'s key (type rank, number, string) and, for every
top-level field with a scalar type that an index keys (a schema field marked
`index` or `unique`, or a key of a declared index), one of
(guard, typed key, `_id`'s key) — the expressions of `planner.Expressions`; a field
of an array type (`[id]`, which only Quarry's own collections declare) gets a GIN
index of its array key instead (`Expressions.array_key`). Quarry declares its own
collections' fields the same way at start (the catalogue's and each tenant's in
`data_api.datasets.repository`, the audit log's in `app.audit`). Each
carries a comment `{"quarry": "typed key", "field": ..., "family": ...}`, which
is how the planner learns which fields it may serve; it uses an index only while
PostgreSQL says it is valid.

Building is `CREATE INDEX CONCURRENTLY` on a connection of its own, one index at a
time in one background task, then `ANALYZE` (so the planner has statistics for the
new expressions): reads and writes go on meanwhile, and a large collection's
build never holds up a request. A schema change re-declares the collection: the
indexes of fields no longer indexed, or of a type that changed, are dropped
`CONCURRENTLY`, the new ones built; until a new index is valid, reads of that
field go to FerretDB. An index left invalid by an interrupted build is dropped
and built again. A failure (PostgreSQL restarting, a lock) is retried later,
backing off.

**FerretDB's DDL goes first.** Raced by FerretDB's own DDL on the same table,
PostgreSQL cancels one side ("deadlock detected" beside createIndexes, "tuple
concurrently updated" beside a drop), and it must never be FerretDB's (a request
answered 500); nor may FerretDB's DDL wait for a build, since FerretDB holds its
global metadata lock meanwhile and every other request would wait too. So the
builder names its session after the schema it works on (`BUILDER_NAME`), and an
event trigger of `shadow_indexes.sql` cancels the builds in a schema before
FerretDB drops a table or the schema there, or creates or drops an index; the
builder tries again later. Where waits still cross — `CREATE INDEX CONCURRENTLY`
waits for every transaction older than its snapshot, and one of those may be
about to take the table's SHARE lock the build holds — the builder's session
makes the build the one cancelled: a `deadlock_timeout` of 10 ms (it finds the
cycle first whenever it starts waiting after FerretDB) and a `lock_timeout` of
half a second (shorter than FerretDB's one-second `deadlock_timeout`, for when it
waits first). The cost is a retried build.

**In sight.** `TypedIndexBuilder.building` says whether a collection's declaration
is still to be reconciled, `index_validity` which typed indexes serve, and
`guarded_count` how many documents a guard holds off — read through the index,
which leads with the guard — so `get_metadata` can show each index as building,
valid or off (`EngineSql.typed_key_guards`, `EmbeddedAdapter.field_guards`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from app.engine.planner import (
    ARRAY_FAMILIES,
    FAMILY_OF_ARRAY_TYPE,
    FAMILY_OF_SCHEMA_TYPE,
    Expressions,
)

logger = logging.getLogger("quarry.engine")

#: Bumped when the key expressions change: every index is then built anew.
LAYOUT = 1
INDEX_PREFIX = "qk_"
ID_FAMILY = "id"
#: Seconds before a failed build is tried again, doubled each time up to the most;
#: a build that gave way to FerretDB (cancelled, a lock it did not wait for) backs
#: off to `GAVE_WAY_MOST_SECONDS` only: the DDL it gave way to is soon over.
RETRY_SECONDS = 1.0
RETRY_MOST_SECONDS = 300.0
GAVE_WAY_MOST_SECONDS = 5.0
GAVE_WAY = (
    psycopg.errors.QueryCanceled,
    psycopg.errors.LockNotAvailable,
    psycopg.errors.DeadlockDetected,
)
#: The builder's session (see the module docstring).
SESSION_SETTINGS = ("SET lock_timeout = '500ms'", "SET deadlock_timeout = '10ms'")
#: Rows from which a table is analysed after a build (see `_analyze`).
ANALYZE_FROM_ROWS = 10_000
#: The builder's `application_name` while it works on a schema, by which FerretDB's
#: DDL there finds and cancels it (`quarry_typed_index_builder` in shadow_indexes.sql).
BUILDER_NAME = "SELECT set_config('application_name', quarry_typed_index_builder(%s), false)"
#: Seconds the planner trusts what it read of a table's indexes (another server
#: on the same engine may build or drop them; correctness never rests on it).
CATALOG_SECONDS = 5.0
#: ... and that a table has none (a collection without a schema, or one of Quarry's
#: own before its declaration is built): its reads then never wait for a pooled
#: connection to learn it again.
#: This server's builder forgets it as soon as it builds one.
UNINDEXED_CATALOG_SECONDS = 60.0

_TABLE_OF = sql.SQL(
    "SELECT _jsonb ->> 'table' FROM {}._ferretdb_database_metadata WHERE _jsonb -> '_id' = %s"
)
_INDEXES_OF = sql.SQL(
    "SELECT ic.relname, obj_description(ic.oid, 'pg_class'), "
    "i.indisvalid AND i.indisready AND i.indislive "
    "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
    "JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_namespace n ON n.oid = tc.relnamespace "
    "WHERE n.nspname = %s AND tc.relname = %s AND ic.relname LIKE 'qk\\_%%'"
)


@dataclass(frozen=True)
class TypedIndex:
    field: str
    #: A key family of `planner.FAMILY_TYPES`, or `ID_FAMILY` for `_id`'s order.
    family: str

    def name(self, table: str) -> str:
        digest = hashlib.md5(  # noqa: S324 (a name, not a secret)
            json.dumps([table, self.field, self.family, LAYOUT]).encode()
        ).hexdigest()
        return INDEX_PREFIX + digest[:24]

    def comment(self) -> str:
        return json.dumps(
            {"quarry": "typed key", "field": self.field, "family": self.family, "layout": LAYOUT}
        )

    @property
    def method(self) -> sql.Composable:
        """btree, or GIN for an array family's key (containment)."""
        return sql.SQL("gin" if self.family in ARRAY_FAMILIES else "btree")

    def columns(self) -> sql.Composable:
        expressions = Expressions(in_statement=False)
        if self.family == ID_FAMILY:
            return expressions.id_index_columns()
        return expressions.field_index_columns(self.field, self.family)


def wanted_indexes(fields: Mapping[str, str]) -> list[TypedIndex]:
    """The indexes of a collection whose indexed fields have these schema types."""
    wanted = [TypedIndex("_id", ID_FAMILY)]
    for name, schema_type in sorted(fields.items()):
        family = FAMILY_OF_SCHEMA_TYPE.get(schema_type) or FAMILY_OF_ARRAY_TYPE.get(schema_type)
        if family is not None and name != "_id" and "." not in name:
            wanted.append(TypedIndex(name, family))
    return wanted


#: `guarded_count` stops counting here: a count of this many says "this many or more".
GUARD_COUNT_CAP = 10_000


def guarded_count(schema: str, table: str, index: TypedIndex) -> sql.Composable:
    """The number of documents the index's type guard holds off, up to
    `GUARD_COUNT_CAP` (`get_metadata` runs it for every indexed field, so it never
    reads more than that many entries): the index leads with the guard, so this
    reads one range of it, not the table."""
    guard = Expressions(in_statement=False).guard(index.field, index.family)
    return sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} = 1 LIMIT {}) AS held").format(
        sql.Identifier(schema, table), guard, sql.Literal(GUARD_COUNT_CAP)
    )


async def index_validity(
    connection: psycopg.AsyncConnection[Any], schema: str, table: str
) -> dict[str, bool]:
    """Each typed index of the table (by name): valid (serving) or not."""
    cursor = await connection.execute(_INDEXES_OF, (schema, table))
    return {name: bool(valid) for name, _, valid in await cursor.fetchall()}


def read_comment(comment: str | None) -> TypedIndex | None:
    try:
        parsed = json.loads(comment or "")
    except ValueError:
        return None
    if not isinstance(parsed, dict) or parsed.get("quarry") != "typed key":
        return None
    if parsed.get("layout") != LAYOUT:
        return None
    return TypedIndex(str(parsed["field"]), str(parsed["family"]))


# ------------------------------------------------------------------- the catalog


@dataclass(frozen=True)
class TableKeys:
    """What one table's valid typed indexes let the planner serve."""

    #: Field → key family, for fields whose typed index is valid.
    fields: Mapping[str, str]
    #: `_id`'s order index is valid.
    id_order: bool


class KeyCatalog:
    """The typed indexes of each table, read from PostgreSQL's catalog and kept for
    `CATALOG_SECONDS` (or until the builder here changes them)."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, str], tuple[float, TableKeys]] = {}

    def cached(self, schema: str, table: str) -> TableKeys | None:
        """What was read of the table's indexes less than `CATALOG_SECONDS` ago."""
        cached = self._tables.get((schema, table))
        if cached is None:
            return None
        keep = CATALOG_SECONDS if cached[1].id_order else UNINDEXED_CATALOG_SECONDS
        return cached[1] if time.monotonic() - cached[0] < keep else None

    async def keys(
        self, connection: psycopg.AsyncConnection[Any], schema: str, table: str
    ) -> TableKeys:
        cached = self.cached(schema, table)
        if cached is not None:
            return cached
        cursor = await connection.execute(_INDEXES_OF, (schema, table))
        fields: dict[str, str] = {}
        id_order = False
        for name, comment, valid in await cursor.fetchall():
            index = read_comment(comment)
            if index is None or not valid or index.name(table) != name:
                continue
            if index.family == ID_FAMILY:
                id_order = True
            else:
                fields[index.field] = index.family
        keys = TableKeys(fields=fields, id_order=id_order)
        self._tables[(schema, table)] = (time.monotonic(), keys)
        return keys

    def forget(self, schema: str | None = None) -> None:
        if schema is None:
            self._tables.clear()
            return
        for key in [k for k in self._tables if k[0] == schema]:
            del self._tables[key]


# ------------------------------------------------------------------- the builder


class TypedIndexBuilder:
    """Brings each declared collection's typed indexes to what its schema wants,
    one collection at a time, in one background task."""

    def __init__(self, conninfo: str, *, on_change: Callable[[str], None]) -> None:
        self._conninfo = conninfo
        self._on_change = on_change
        self._declared: dict[tuple[str, str], dict[str, str]] = {}
        self._pending: dict[tuple[str, str], float] = {}
        self._failures: dict[tuple[str, str], int] = {}
        self._working: tuple[str, str] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def declare(self, db_name: str, collection: str, fields: Mapping[str, str]) -> None:
        """Want the typed indexes of these indexed fields (name → schema type);
        built in the background."""
        self._declared[(db_name, collection)] = dict(fields)
        self._pending[(db_name, collection)] = 0.0
        self._failures.pop((db_name, collection), None)  # a new wish: no backing off
        self._idle.clear()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._work())

    def building(self, db_name: str, collection: str) -> bool:
        """The collection's declaration is not reconciled yet (due, backing off
        after a failure, or under way)."""
        key = (db_name, collection)
        return key in self._pending or self._working == key

    async def settled(self) -> None:
        """Wait until every declaration has been built (tests, benchmarks)."""
        await self._idle.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _work(self) -> None:
        """Reconcile what is due, one collection at a time, on one connection (kept
        while there is work, closed when idle or after a failure)."""
        connection: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                due = [key for key, at in self._pending.items() if at <= time.monotonic()]
                if not due:
                    if not self._pending:
                        self._idle.set()
                        if connection is not None:
                            await connection.close()
                            connection = None
                    self._wake.clear()
                    wait = min((at for at in self._pending.values()), default=None)
                    delay = None if wait is None else max(0.05, wait - time.monotonic())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    continue
                key = due[0]
                fields = self._declared[key]
                del self._pending[key]
                self._working = key
                try:
                    if connection is None:
                        connection = await self._connect()
                    await self._reconcile(connection, *key, fields)
                except (psycopg.Error, OSError) as exc:
                    if connection is not None:
                        with contextlib.suppress(psycopg.Error):
                            await connection.close()
                        connection = None
                    self._postpone(key, exc)
                else:
                    self._failures.pop(key, None)
                finally:
                    self._working = None
        finally:
            if connection is not None:
                with contextlib.suppress(psycopg.Error):
                    await connection.close()

    def _postpone(self, key: tuple[str, str], exc: BaseException) -> None:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        most = GAVE_WAY_MOST_SECONDS if isinstance(exc, GAVE_WAY) else RETRY_MOST_SECONDS
        delay = min(most, RETRY_SECONDS * 2 ** (failures - 1))
        logger.warning(
            "typed indexes of %s.%s postponed %.0f s: %s",
            key[0],
            key[1],
            delay,
            type(exc).__name__,
        )
        self._pending.setdefault(key, time.monotonic() + delay)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        connection = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=5
        )
        for setting in SESSION_SETTINGS:
            await connection.execute(setting)
        return connection

    async def _reconcile(
        self,
        connection: psycopg.AsyncConnection[Any],
        db_name: str,
        collection: str,
        fields: Mapping[str, str],
    ) -> None:
        await connection.execute(BUILDER_NAME, (db_name,))
        try:
            cursor = await connection.execute(
                _TABLE_OF.format(sql.Identifier(db_name)), (Jsonb(collection),)
            )
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return  # no such database (any more)
        row = await cursor.fetchone()
        if row is None:
            return  # no such collection (any more): nothing to index
        await self._indexes(connection, db_name, str(row[0]), fields)
        # Its row counter too, when the engine's start-up catch-up has not put one
        # there yet (a collection made before counters existed): a short lock.
        await connection.execute(
            "SELECT public.quarry_count_install(%s, %s)", (db_name, str(row[0]))
        )

    async def _indexes(
        self,
        connection: psycopg.AsyncConnection[Any],
        db_name: str,
        table: str,
        fields: Mapping[str, str],
    ) -> None:
        cursor = await connection.execute(_INDEXES_OF, (db_name, table))
        existing = {name: (comment, valid) for name, comment, valid in await cursor.fetchall()}
        wanted = {index.name(table): index for index in wanted_indexes(fields)}
        changed = False
        for name, (_, valid) in existing.items():
            if name not in wanted or not valid:
                await connection.execute(
                    sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                        sql.Identifier(db_name, name)
                    )
                )
                changed = True
        if changed:
            self._on_change(db_name)
        built = False
        for name, index in wanted.items():
            present = existing.get(name)
            if present is None or not present[1]:
                await self._build(connection, db_name, table, name, index)
                built = True
            elif read_comment(present[0]) != index:
                await self._comment(connection, db_name, name, index)
                changed = True
        if built:
            await self._analyze(connection, db_name, table)
        if built or changed:
            self._on_change(db_name)

    @staticmethod
    async def _analyze(connection: psycopg.AsyncConnection[Any], schema: str, table: str) -> None:
        """Statistics of the new expressions, so PostgreSQL's planner rates the typed
        indexes right; when a lock is in the way, autovacuum's ANALYZE does it later.
        Not for a small table: there is little to learn, and an ANALYZE of a new,
        empty collection records it as empty, after which PostgreSQL prefers to scan
        it whole — for FerretDB's lookups too — until autovacuum looks again."""
        relation = sql.Identifier(schema, table)
        cursor = await connection.execute(
            sql.SQL("SELECT count(*) FROM (SELECT FROM {} LIMIT %s) AS sample").format(relation),
            (ANALYZE_FROM_ROWS,),
        )
        row = await cursor.fetchone()
        if row is None or row[0] < ANALYZE_FROM_ROWS:
            return
        try:
            await connection.execute(sql.SQL("ANALYZE {}").format(relation))
        except psycopg.errors.LockNotAvailable:
            logger.info("ANALYZE of %s.%s left to autovacuum (locked)", schema, table)

    async def _build(
        self,
        connection: psycopg.AsyncConnection[Any],
        schema: str,
        table: str,
        name: str,
        index: TypedIndex,
    ) -> None:
        started = time.monotonic()
        await connection.execute(
            sql.SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} USING {} ({})").format(
                sql.Identifier(name), sql.Identifier(schema, table), index.method, index.columns()
            )
        )
        await self._comment(connection, schema, name, index)
        logger.info(
            "typed index of %s.%s (%s, %s) built in %.1f s",
            schema,
            table,
            index.field,
            index.family,
            time.monotonic() - started,
        )

    @staticmethod
    async def _comment(
        connection: psycopg.AsyncConnection[Any], schema: str, name: str, index: TypedIndex
    ) -> None:
        await connection.execute(
            sql.SQL("COMMENT ON INDEX {} IS {}").format(
                sql.Identifier(schema, name), sql.Literal(index.comment())
            )
        )
