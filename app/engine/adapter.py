"""`EmbeddedAdapter`: `app.db`'s engine interface on the embedded engine (FerretDB
1.24 on PostgreSQL or SQLite), which speaks MongoDB's wire protocol — so it is
the MongoDB adapter with what FerretDB does differently taken over here:

- **Dotted filters in counts and filtered writes.** FerretDB on PostgreSQL
  pushes a top-level equality on a dotted path (`{"items.sku": "a"}`) down to SQL
  as `_jsonb #> '{items,sku}' @> '"a"'`, which cannot step through arrays: update
  and delete missed documents whose `items` is an array that find returns.
  Wrapped in a one-element `$and` (same meaning everywhere) the condition is
  evaluated by FerretDB itself.
- **Counts, pages and lookups by SQL.** FerretDB answers a count by decoding
  every document, and pushes neither sorts, ranges, `$or` nor limits down; on
  PostgreSQL the engine's own SQL (`app.engine.sql`, handed to
  `Database.engine_reads` at start) answers an unfiltered count, a sorted page,
  several indexed lookups and a batch of `_id`s in one statement each. A
  document that SQL cannot decode is read by `_id` through FerretDB, and when
  the SQL cannot answer at all, FerretDB is asked as before.
- **Finds and counts by the read planner.** On PostgreSQL, a find, find_one or
  filtered count whose filter and sort use only `_id` and schema fields with a
  typed index is one SQL statement over those indexes (`app.engine.planner`);
  anything else, or a field holding another type, is FerretDB's as before.
- **Deleting many.** FerretDB deletes the matches in one SQL statement with a
  parameter per document: SQLite refuses more than 32,766, PostgreSQL's
  protocol more than 65,535, and nothing is deleted. Such a delete is done in
  `_id`-ordered slices instead.
- **Capabilities.** No Decimal128, no `$push` modifiers (FerretDB ignores them),
  no `$bucket`/`$facet` (`$sortByCount` is rewritten by the pipeline compiler),
  no change streams.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import bson
from pymongo.errors import OperationFailure
from pymongo.results import DeleteResult, UpdateResult

from app.db import (
    Capabilities,
    Database,
    Document,
    EngineAdapter,
    FindSpec,
    MongoAdapter,
    Namespace,
    PageQuery,
    RawCursor,
    is_too_many_parameters,
)
from app.engine.planned_reads import PlannedCursor, wants_planner_for_one
from app.errors import EngineUnsupported

#: Below this many rows PostgreSQL's ANALYZE reads the whole table, so
#: FerretDB's `collStats` count is exact (300 x default_statistics_target).
EXACT_STATS_ROWS = 30_000
#: Documents one slice of a too-large delete removes.
DELETE_CHUNK = 20_000
BACKEND_LABELS = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
EMBEDDED_MISSING_STAGES = frozenset({"$bucket", "$facet", "$sortByCount"})


def choose_adapter(database: Database, build_info: Document) -> EngineAdapter:
    """The embedded engine's adapter when `buildInfo` is FerretDB's, else MongoDB's."""
    if "ferretdbVersion" not in build_info:
        return MongoAdapter(database)
    backend = (build_info.get("buildEnvironment") or {}).get("quarry.backend")
    return EmbeddedAdapter(database, backend=str(backend) if backend else None)


class EmbeddedAdapter(MongoAdapter):
    def __init__(self, database: Database, *, backend: str | None) -> None:
        super().__init__(database)
        self.backend = backend
        self.name = f"ferretdb-{backend}" if backend else "ferretdb"
        label = BACKEND_LABELS.get(backend or "", "unknown backend")
        self.capabilities = Capabilities(
            label=f"embedded FerretDB ({label})",
            short_label="embedded FerretDB",
            decimal128=False,
            push_modifiers=False,
            missing_stages=EMBEDDED_MISSING_STAGES,
            change_streams=False,
        )
        self.on_postgresql = backend == "postgresql"

    def _evaluated(self, filter: Document) -> Document:
        """`filter` with its dotted top-level conditions evaluated by FerretDB (see
        the module docstring); as it is on SQLite, which pushes nothing down."""
        if not self.on_postgresql:
            return filter
        dotted = [key for key in filter if "." in key and not key.startswith("$")]
        if not dotted:
            return filter
        kept = {key: value for key, value in filter.items() if key not in dotted}
        clauses = [*kept.pop("$and", []), *({key: filter[key]} for key in dotted)]
        return {**kept, "$and": clauses}

    def _sql(self) -> Any:
        return self.database.engine_reads if self.on_postgresql else None

    # ------------------------------------------------------------------ reads

    def find(self, ns: Namespace, spec: FindSpec) -> RawCursor:
        """By the read planner on PostgreSQL when it can (`app.engine.planner`),
        else FerretDB's cursor."""
        fallback = functools.partial(super().find, ns, spec)
        if self._sql() is None:
            return fallback()
        return PlannedCursor(functools.partial(self._planned_find, ns, spec), fallback)

    async def find_one(
        self, ns: Namespace, filter: Document, projection: Mapping[str, Any] | None
    ) -> Document | None:
        """By the read planner when the filter is more than equalities (those FerretDB
        pushes down itself): any one match, as MongoDB's find_one."""
        if self._sql() is not None and wants_planner_for_one(filter):
            spec = FindSpec(filter=filter, projection=projection, sort=[("_id", 1)], limit=1)
            found = await self._planned_find(ns, spec)
            if found is not None:
                return found[0] if found else None
        return await super().find_one(ns, filter, projection)

    async def count_documents(
        self, ns: Namespace, filter: Document, *, max_time_ms: int | None
    ) -> int:
        """By the read planner on PostgreSQL when it can, else by FerretDB."""
        sql = self._sql()
        if sql is not None:
            counted = await sql.count_matching(ns.database, ns.collection, filter)
            if counted is not None:
                return int(counted)
        return await super().count_documents(ns, self._evaluated(filter), max_time_ms=max_time_ms)

    async def _planned_find(self, ns: Namespace, spec: FindSpec) -> list[Document] | None:
        """A planned find's documents as the driver returns them (one whose stored
        form SQL cannot read is read by `_id` through FerretDB), or None."""
        sql = self._sql()
        rows = None if sql is None else await sql.find(ns.database, ns.collection, spec)
        if rows is None:
            return None
        collection = self.collection(ns)
        documents = await asyncio.gather(
            *(
                _as_is(self._driver_form(row, ns))
                if isinstance(row, dict)
                else collection.find_one({"_id": row}, spec.projection)
                for row in rows
            )
        )
        return [d for d in documents if d is not None]

    async def declare_fields(self, ns: Namespace, fields: Mapping[str, str]) -> None:
        """Typed indexes for the read planner, built in the background (PostgreSQL)."""
        sql = self._sql()
        if sql is not None:
            sql.declare_fields(ns.database, ns.collection, dict(fields))

    async def collection_size(self, ns: Namespace) -> int:
        """`SELECT count(*)` on FerretDB's table on PostgreSQL; otherwise `collStats`,
        which reads the backend's row count instead of decoding every document. On
        PostgreSQL that count is `pg_class.reltuples` after an `ANALYZE` FerretDB
        runs for the call: exact while ANALYZE reads every row (its sample is
        30,000 rows), an estimate above, where the documents are counted instead."""
        sql = self._sql()
        if sql is not None:
            counted = await sql.count(ns.database, ns.collection)
            if counted is not None:
                return int(counted)
        stats = await self.client[ns.database].command("collStats", ns.collection)
        count = int(stats.get("count", 0))
        if self.on_postgresql and count >= EXACT_STATS_ROWS:
            return await self.collection(ns).count_documents({})
        return count

    async def find_page(self, ns: Namespace, query: PageQuery) -> tuple[list[Document], int]:
        """From one SQL statement on PostgreSQL (a document whose stored form it
        cannot read is read by `_id` through FerretDB)."""
        sql = self._sql()
        found = None if sql is None else await sql.page(ns.database, ns.collection, query)
        if found is None:
            return await super().find_page(ns, query)
        rows, total = found
        collection = self.collection(ns)
        documents = await asyncio.gather(
            *(
                _as_is(self._driver_form(row, ns))
                if isinstance(row, dict)
                else collection.find_one({"_id": row})
                for row in rows
            )
        )
        return [d for d in documents if d is not None], total

    async def lookups(
        self, db_name: str, wanted: list[tuple[str, str, Any]]
    ) -> list[list[Document]]:
        """Several indexed lookups in one round trip on PostgreSQL."""
        sql = self._sql()
        found = None if sql is None else await sql.lookups(db_name, wanted)
        if found is not None and all(isinstance(d, dict) for rows in found for d in rows):
            ns = Namespace(db_name, "")
            return [[self._driver_form(d, ns) for d in rows] for rows in found]
        return await super().lookups(db_name, wanted)

    async def by_ids(self, ns: Namespace, ids: list[Any]) -> list[Document]:
        """One statement on PostgreSQL."""
        if not ids:
            return []
        sql = self._sql()
        found = None if sql is None else await sql.by_ids(ns.database, ns.collection, ids)
        if found is not None and all(isinstance(d, dict) for d in found):
            return [self._driver_form(d, ns) for d in found]
        return await super().by_ids(ns, ids)

    def _driver_form(self, document: Document, ns: Namespace) -> Document:
        """`document` exactly as the driver would have returned it (through BSON with
        the client's codec options: binary data as bytes, UUIDs, aware datetimes)."""
        codec = self.client[ns.database].codec_options
        return bson.decode(bson.encode(document), codec_options=codec)

    async def watch(
        self, ns: Namespace, pipeline: list[Document]
    ) -> AbstractAsyncContextManager[AsyncIterator[Document]]:
        raise EngineUnsupported(f"The {self.capabilities.label} engine has no change streams.")

    # ----------------------------------------------------------------- writes

    async def update_one(
        self, ns: Namespace, filter: Document, update: Document, *, upsert: bool
    ) -> UpdateResult:
        return await super().update_one(ns, self._evaluated(filter), update, upsert=upsert)

    async def update_many(
        self, ns: Namespace, filter: Document, update: Document, *, upsert: bool
    ) -> UpdateResult:
        return await super().update_many(ns, self._evaluated(filter), update, upsert=upsert)

    async def replace_one(
        self, ns: Namespace, filter: Document, replacement: Document, *, upsert: bool
    ) -> UpdateResult:
        return await super().replace_one(ns, self._evaluated(filter), replacement, upsert=upsert)

    async def find_one_and_update(
        self,
        ns: Namespace,
        filter: Document,
        update: Document,
        *,
        projection: Mapping[str, Any] | None,
        upsert: bool,
        return_after: bool,
    ) -> Document | None:
        return await super().find_one_and_update(
            ns,
            self._evaluated(filter),
            update,
            projection=projection,
            upsert=upsert,
            return_after=return_after,
        )

    async def delete_one(self, ns: Namespace, filter: Document) -> DeleteResult:
        return await super().delete_one(ns, self._evaluated(filter))

    async def delete_many(self, ns: Namespace, filter: Document) -> DeleteResult:
        filter = self._evaluated(filter)
        try:
            return await super().delete_many(ns, filter)
        except OperationFailure as exc:
            if not is_too_many_parameters(exc):
                raise
        deleted = await self._delete_in_chunks(ns, filter)
        return DeleteResult({"n": deleted, "ok": 1.0}, acknowledged=True)

    async def _delete_in_chunks(self, ns: Namespace, filter: Document) -> int:
        """Delete the matches in `_id`-ordered slices of `DELETE_CHUNK`."""
        collection = self.collection(ns)
        deleted = 0
        while True:
            cursor = collection.find(filter, {"_id": 1}, sort=[("_id", 1)], limit=DELETE_CHUNK)
            ids = [document["_id"] async for document in cursor]
            if not ids:
                return deleted
            ranged = {"$and": [filter, {"_id": {"$gte": ids[0], "$lte": ids[-1]}}]}
            removed = (await collection.delete_many(ranged)).deleted_count
            if removed == 0:  # ids of mixed types do not form one range
                for document_id in ids:
                    removed += (await collection.delete_one({"_id": document_id})).deleted_count
            deleted += removed
            if len(ids) < DELETE_CHUNK:
                return deleted


async def _as_is(document: Document) -> Document:
    return document
