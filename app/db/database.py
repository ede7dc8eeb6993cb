"""The database of one app instance: its driver client, its engine's adapter, and
the handles features use.

The `AsyncMongoClient` (PyMongo's native async API) is opened in the lifespan
with short server-selection and connect timeouts, so that a request against an
unreachable server fails fast with 503 `DATABASE_UNAVAILABLE` instead of
hanging; the driver's own monitor reconnects when the server comes back, so the
process recovers without a restart.

Which engine answers is learnt once, the first time the server is reached
(`buildInfo`), and decides the adapter every handle uses from then on
(`choose_adapter`, which the engine layer gives: `app.db.mongo.MongoAdapter` on
MongoDB, its own on the embedded engine). A server started before its database
still starts; it learns the engine with its first successful call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from app.db.adapter import Document, EngineAdapter, EngineReads, Namespace
from app.db.handles import DatabaseHandle
from app.db.page_query import PageQuery
from app.errors import QueryTimeout
from app.kit import DECIMAL_SUPPORTED
from app.settings import Settings

#: Database names FerretDB on PostgreSQL cannot keep: it hides schemas matching
#: `LIKE 'pg_%'` (`pg` and any character) after a restart, and refuses names
#: starting with `_ferretdb_`. Quarry's physical names avoid both on every engine.
UNKEEPABLE_DATABASE_PREFIXES = ("pg", "_")

#: Given the server's `buildInfo`, the adapter for it.
AdapterChooser = Callable[["Database", Document], EngineAdapter]


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
    #: The engine layer's (`app.engine.choose_adapter`): no default, since a
    #: MongoDB adapter on the embedded engine would run without its fixes.
    choose_adapter: AdapterChooser
    #: Seconds one read may take (`QUARRY_QUERY_TIMEOUT_MS`), see `query_time_ms`.
    query_timeout: float = 10.0
    #: What `/health` names the engine while it cannot be asked (an embedded
    #: engine this app runs: `ferretdb-postgresql`).
    engine_hint: str = ""
    #: A faster read path the engine layer hands in at start (the embedded
    #: engine's SQL on PostgreSQL), used by its adapter.
    engine_reads: EngineReads | None = None
    #: Features whose control-database indexes exist (`"management"`): until then,
    #: writes whose safety rests on a unique index answer 503.
    indexes_ready: set[str] = field(default_factory=set)
    _adapter: EngineAdapter | None = field(default=None, init=False, repr=False)

    # ------------------------------------------------------------ the engine

    async def adapter(self) -> EngineAdapter:
        """The engine's adapter, chosen on the first call that reaches the server.

        Calls made before then each ask the server (no lock: while it is down they
        must all fail within one server-selection timeout, not one after another);
        the first answer decides, and later ones keep that choice."""
        if self._adapter is None:
            info = await self.client.admin.command("buildInfo")
            if self._adapter is None:
                self._adapter = self.choose_adapter(self, info)
        return self._adapter

    @property
    def engine_label(self) -> str:
        """The engine's name for messages (known once it has been reached)."""
        return "database" if self._adapter is None else self._adapter.capabilities.label

    async def engine_name(self) -> str:
        """`mongodb`, `ferretdb-postgresql`, `ferretdb-sqlite` (`/health`)."""
        return (await self.adapter()).name

    async def apply_value_limits(self) -> None:
        """Tell value conversion (app.kit.ejson) what this engine cannot store."""
        DECIMAL_SUPPORTED.set((await self.adapter()).capabilities.decimal128)

    # ------------------------------------------------------------- handles

    @property
    def control(self) -> DatabaseHandle:
        """The control-plane database: users, tokens, keys, database metadata."""
        return DatabaseHandle(self, self.control_db_name)

    def db(self, name: str) -> DatabaseHandle:
        """A physical database (a tenant's, a logical database's)."""
        return DatabaseHandle(self, name)

    @property
    def query_time_ms(self) -> int:
        """`maxTimeMS` of one read (`QUARRY_QUERY_TIMEOUT_MS`): the server stops a query
        that runs longer (MongoDB everywhere; FerretDB in find and aggregate, not in
        count) rather than the client abandoning it while it runs on. Answered 504
        `QUERY_TIMEOUT`. Not pymongo's `timeout()`: that would also stretch server
        selection, and so the time an outage takes to become a 503, to this limit."""
        return int(self.query_timeout * 1000)

    async def count_limited(self, db_name: str, collection: str, query: Document) -> int:
        """Count within the read time limit: `maxTimeMS` where the server honours it,
        else (FerretDB's count) the client gives up shortly after. Raises
        `QueryTimeout` (504)."""
        counting = self.db(db_name)[collection].count_documents(
            query, max_time_ms=self.query_time_ms
        )
        try:
            return await asyncio.wait_for(counting, self.query_timeout + 0.5)
        except TimeoutError:
            raise QueryTimeout(
                f"The count ran longer than {self.query_timeout:g} s and was abandoned "
                "(the database may go on with it for a moment); narrow the filter or use a "
                "field with an index."
            ) from None

    # --------------------------------------------------- server and databases

    async def ping(self) -> bool:
        try:
            await self.client.admin.command("ping")
        except PyMongoError:
            return False
        return True

    def has_writable_server(self) -> bool:
        """Whether the driver currently knows a server to write to (no I/O)."""
        return bool(self.client.topology_description.has_writable_server())

    async def list_database_names(self) -> list[str]:
        return await (await self.adapter()).list_database_names()

    async def drop_database(self, name: str) -> None:
        await (await self.adapter()).drop_database(name)

    # ---------------------------------------------- reads the engines do differently

    async def collection_size(self, db_name: str, collection: str) -> int:
        """The live number of documents, answered without reading them."""
        return await (await self.adapter()).collection_size(Namespace(db_name, collection))

    async def find_page(
        self, db_name: str, collection: str, query: PageQuery
    ) -> tuple[list[Document], int]:
        """One sorted page of `collection` and the number of matches (`app.db.page_query`)."""
        adapter = await self.adapter()
        return await adapter.find_page(Namespace(db_name, collection), query)

    async def lookups(
        self, db_name: str, wanted: list[tuple[str, str, Any]]
    ) -> list[list[Document]]:
        """For each `(collection, field, value)`, the documents whose top-level `field`
        equals `value`: concurrent finds (on the embedded engine, planned ones)."""
        return await (await self.adapter()).lookups(db_name, wanted)

    async def by_ids(self, db_name: str, collection: str, ids: list[Any]) -> list[Document]:
        """The documents with these `_id`s (any order; unknown ids are absent)."""
        return await (await self.adapter()).by_ids(Namespace(db_name, collection), ids)

    async def close(self) -> None:
        if self.engine_reads is not None:
            await self.engine_reads.close()
        await self.client.close()
