"""The MongoDB client of one app instance and what it knows about its server.

The `AsyncMongoClient` (PyMongo's native async API) is opened in the lifespan
with short server-selection and connect timeouts, so that a request against an
unreachable server fails fast with 503 `DATABASE_UNAVAILABLE` instead of
hanging; the driver's own monitor reconnects when the server comes back, so the
process recovers without a restart.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import bson
from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from app.db.page_query import PageQuery, find_page_mongo
from app.kit import DECIMAL_SUPPORTED
from app.settings import Settings

if TYPE_CHECKING:  # the engine hands its SQL reader in at start; db never imports it
    from app.engine import EngineSql

Document = dict[str, Any]
#: Database names FerretDB on PostgreSQL cannot keep: it hides schemas matching
#: `LIKE 'pg_%'` (`pg` and any character) after a restart, and refuses names
#: starting with `_ferretdb_`. Quarry's physical names avoid both on every engine.
UNKEEPABLE_DATABASE_PREFIXES = ("pg", "_")
#: Below this many rows PostgreSQL's ANALYZE reads the whole table, so
#: FerretDB's `collStats` count is exact (300 x default_statistics_target).
EXACT_STATS_ROWS = 30_000


async def create_indexes(collection: AsyncCollection[Document], indexes: list[IndexModel]) -> None:
    """Create `indexes` (those that exist already are left as they are), one per call.

    FerretDB 1.24 drops the connection when one `createIndexes` names two or more
    indexes that all exist already — which is every start of a server on existing
    data — so the indexes would never be confirmed; one at a time, an existing
    index is a no-op on every engine."""
    for index in indexes:
        await collection.create_indexes([index])


def _driver_form(document: Document, db: AsyncDatabase[Document]) -> Document:
    """`document` exactly as the driver would have returned it (through BSON with the
    client's codec options: binary data as bytes, UUIDs, aware datetimes)."""
    return bson.decode(bson.encode(document), codec_options=db.codec_options)


async def _as_is(document: Document) -> Document:
    return document


def open_client(url: str, settings: Settings) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(
        url,
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        connectTimeoutMS=settings.mongodb_timeout_ms,
        # The monitor checks the server this often: an operation stuck on a server
        # that stopped answering (paused, partitioned) fails within about this plus
        # the connect timeout, not the driver's default 10 s.
        heartbeatFrequencyMS=max(500, settings.mongodb_timeout_ms),
        socketTimeoutMS=settings.mongodb_socket_timeout_ms or None,
        tz_aware=True,
        uuidRepresentation="standard",
        appname="quarry",
    )


@dataclass
class Database:
    client: AsyncMongoClient[Document]
    control_db_name: str
    embedded: bool
    #: `ferretdb-postgresql` / `ferretdb-sqlite` when the app runs the embedded engine.
    embedded_name: str = ""
    #: Seconds one read may take (`QUARRY_QUERY_TIMEOUT_MS`), see `read_deadline`.
    query_timeout: float = 10.0
    #: Direct read-only SQL to the embedded engine's PostgreSQL (exact fast counts).
    engine_sql: EngineSql | None = None
    #: Features whose control-database indexes exist (`"management"`): until then,
    #: writes whose safety rests on a unique index answer 503.
    indexes_ready: set[str] = field(default_factory=set)
    _engine: str | None = field(default=None, init=False)

    @property
    def control(self) -> AsyncDatabase[Document]:
        """The control-plane database: users, tokens, keys, database metadata."""
        return self.client[self.control_db_name]

    @property
    def query_time_ms(self) -> int:
        """`maxTimeMS` of one read (`QUARRY_QUERY_TIMEOUT_MS`): the server stops a query
        that runs longer (MongoDB everywhere; FerretDB in find and aggregate, not in
        count) rather than the client abandoning it while it runs on. Answered 504
        `QUERY_TIMEOUT`. Not pymongo's `timeout()`: that would also stretch server
        selection, and so the time an outage takes to become a 503, to this limit."""
        return int(self.query_timeout * 1000)

    async def ping(self) -> bool:
        try:
            await self.client.admin.command("ping")
        except PyMongoError:
            return False
        return True

    async def apply_value_limits(self) -> None:
        """Tell value conversion (app.ejson) what this engine cannot store."""
        DECIMAL_SUPPORTED.set(not (await self.engine_name()).startswith("ferretdb"))

    @property
    def engine_label(self) -> str:
        """The engine's name for messages (known once `engine_name` has been asked)."""
        if self._engine is None:
            return "database"
        if not self._engine.startswith("ferretdb"):
            return "MongoDB"
        backend = {"ferretdb-postgresql": "PostgreSQL", "ferretdb-sqlite": "SQLite"}
        return f"embedded FerretDB ({backend.get(self._engine, 'unknown backend')})"

    async def engine_filter(self, query: Document) -> Document:
        """`query` as the engine evaluates it correctly in count, update and delete.

        FerretDB 1.24 on PostgreSQL pushes a top-level equality on a dotted path
        (`{"items.sku": "a"}`) down to SQL as `_jsonb #> '{items,sku}' @> '"a"'`,
        which cannot step through arrays: update and delete missed documents whose
        `items` is an array that find returns. Wrapped in a one-element `$and`
        (same meaning everywhere), the condition is evaluated by FerretDB itself.
        """
        if await self.engine_name() != "ferretdb-postgresql":
            return query
        dotted = [key for key in query if "." in key and not key.startswith("$")]
        if not dotted:
            return query
        kept = {key: value for key, value in query.items() if key not in dotted}
        clauses = [*kept.pop("$and", []), *({key: query[key]} for key in dotted)]
        return {**kept, "$and": clauses}

    async def is_embedded_engine(self) -> bool:
        return (await self.engine_name()).startswith("ferretdb")

    async def collection_size(self, db_name: str, collection: str) -> int:
        """The live number of documents.

        MongoDB: the collection's metadata count. Embedded engine on PostgreSQL:
        `SELECT count(*)` on FerretDB's table (`app.engine.sql`). Otherwise
        `collStats`, which reads the backend's row count instead of decoding every
        document; on PostgreSQL that count is `pg_class.reltuples` after an
        `ANALYZE` FerretDB runs for the call: exact while ANALYZE reads every row
        (its sample is 30,000 rows), an estimate above, where the documents are
        counted instead.
        """
        engine = await self.engine_name()
        if engine == "mongodb":
            return await self.client[db_name][collection].estimated_document_count()
        if engine == "ferretdb-postgresql" and self.engine_sql is not None:
            counted = await self.engine_sql.count(db_name, collection)
            if counted is not None:
                return counted
        stats = await self.client[db_name].command("collStats", collection)
        count = int(stats.get("count", 0))
        if engine == "ferretdb-postgresql" and count >= EXACT_STATS_ROWS:
            return await self.client[db_name][collection].count_documents({})
        return count

    async def find_page(
        self, db_name: str, collection: str, query: PageQuery
    ) -> tuple[list[Document], int]:
        """One sorted page of `collection` and the number of matches (`app.page_query`):
        on the embedded engine's PostgreSQL from one SQL statement (a document whose
        stored form it cannot read is read by `_id` through FerretDB); anywhere
        else, and whenever that SQL cannot answer, with the driver."""
        db = self.client[db_name]
        if await self.engine_name() == "ferretdb-postgresql" and self.engine_sql is not None:
            found = await self.engine_sql.page(db_name, collection, query)
            if found is not None:
                rows, total = found
                documents = await asyncio.gather(
                    *(
                        _as_is(_driver_form(row, db))
                        if isinstance(row, dict)
                        else db[collection].find_one({"_id": row})
                        for row in rows
                    )
                )
                return [d for d in documents if d is not None], total
        return await find_page_mongo(db, collection, query, max_time_ms=self.query_time_ms)

    async def lookups(
        self, db_name: str, wanted: list[tuple[str, str, Any]]
    ) -> list[list[Document]]:
        """For each `(collection, field, value)`, the documents whose top-level `field`
        equals `value` — several indexed lookups for the price of one round trip on the
        embedded engine's PostgreSQL (`app.engine.sql`), concurrent finds elsewhere."""
        db = self.client[db_name]
        if await self.engine_name() == "ferretdb-postgresql" and self.engine_sql is not None:
            found = await self.engine_sql.lookups(db_name, wanted)
            if found is not None and all(isinstance(d, dict) for rows in found for d in rows):
                return [[_driver_form(d, db) for d in rows] for rows in found]
        return list(
            await asyncio.gather(
                *(db[c].find({field: value}).to_list(None) for c, field, value in wanted)
            )
        )

    async def by_ids(self, db_name: str, collection: str, ids: list[Any]) -> list[Document]:
        """The documents with these `_id`s (any order; unknown ids are absent): one
        statement on the embedded engine's PostgreSQL, one `$in` find elsewhere."""
        if not ids:
            return []
        db = self.client[db_name]
        if await self.engine_name() == "ferretdb-postgresql" and self.engine_sql is not None:
            found = await self.engine_sql.by_ids(db_name, collection, ids)
            if found is not None and all(isinstance(d, dict) for d in found):
                return [_driver_form(d, db) for d in found]
        return await db[collection].find({"_id": {"$in": ids}}).to_list(None)

    async def engine_name(self) -> str:
        """`ferretdb-postgresql` / `ferretdb-sqlite` for our embedded engine, `mongodb`
        for MongoDB (cached)."""
        if self._engine is None:
            info = await self.client.admin.command("buildInfo")
            if "ferretdbVersion" in info:
                backend = (info.get("buildEnvironment") or {}).get("quarry.backend")
                self._engine = f"ferretdb-{backend}" if backend else "ferretdb"
            else:
                self._engine = "mongodb"
        return self._engine
