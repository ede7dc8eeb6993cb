"""`EmbeddedAdapter`: `app.db`'s engine interface on the embedded engine (FerretDB
1.24 on PostgreSQL or SQLite), which speaks MongoDB's wire protocol — so it is
the MongoDB adapter with what FerretDB does differently taken over here:

- **Dotted filters in counts and filtered writes.** FerretDB on PostgreSQL
  pushes a top-level equality on a dotted path (`{"items.sku": "a"}`) down to SQL
  as `_jsonb #> '{items,sku}' @> '"a"'`, which cannot step through arrays: update
  and delete missed documents whose `items` is an array that find returns.
  Wrapped in a one-element `$and` (same meaning everywhere) the condition is
  evaluated by FerretDB itself.
- **Unfiltered counts by SQL.** FerretDB answers a count by decoding every
  document; on PostgreSQL the engine's own SQL (`app.engine.sql`, handed to
  `Database.engine_reads` at start) counts the table's rows.
- **Finds and counts by the read planner.** On PostgreSQL, a find, find_one or
  filtered count whose filter and sort use only `_id` and fields with a typed
  index is one SQL statement over those indexes (`app.engine.planner`); anything
  else, or a field holding another type, is FerretDB's as before. Quarry's own
  reads go the same way: a page (`find_page`: a planned find and a planned
  count of the page's filter), lookups and reads by `_id`s (the base adapter's
  finds) over the typed indexes Quarry declares for its own collections. A
  document that SQL cannot decode is read by `_id` through FerretDB.
- **Writes through the door.** Every update, replace, find-and-modify and delete
  runs under the write door's PostgreSQL advisory locks (`app.engine.door`, which
  says why locks): FerretDB's read-then-write-back loses concurrent updates. An
  int32 `$inc` that would overflow is sent as a long under the same lock (MongoDB's
  rule; FerretDB wraps it around). On PostgreSQL the door comes with the engine's
  SQL (`Database.engine_reads`, also found beside the engine's socket when the
  server is given only its URL); without it a write is refused, never sent
  unlocked.
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
import dataclasses
import functools
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import bson
from bson import Int64, Regex
from pymongo.errors import AutoReconnect, ConnectionFailure, OperationFailure
from pymongo.results import DeleteResult, UpdateResult

from app.db import (
    Capabilities,
    Database,
    Document,
    EngineAdapter,
    FieldGuard,
    FindSpec,
    MongoAdapter,
    Namespace,
    PageQuery,
    RawCursor,
    is_too_many_parameters,
    page_filter,
    page_sort,
)
from app.engine.door import WriteDoor
from app.engine.planned_reads import PlannedCursor, wants_planner_for_one
from app.engine.planner import FAMILY_OF_SCHEMA_TYPE
from app.engine.process import conninfo_at
from app.engine.sjson import DRIVER_CODEC
from app.engine.sql import EngineSql
from app.errors import EngineUnsupported

logger = logging.getLogger("quarry.engine")

#: A write by filter touching at most this many documents the read planner finds
#: is done by `_id`, `TARGETED_CONCURRENCY` at a time (see `_targets`).
TARGETED_WRITES = 2_000
TARGETED_CONCURRENCY = 8
#: Number `_id`s FerretDB finds by equality (beyond, by a range: see `_targets`).
_EXACT_ID = 2**53 - 1
#: Below this many rows PostgreSQL's ANALYZE reads the whole table, so
#: FerretDB's `collStats` count is exact (300 x default_statistics_target).
EXACT_STATS_ROWS = 30_000
#: Documents one slice of a too-large delete removes.
DELETE_CHUNK = 20_000
BACKEND_LABELS = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
EMBEDDED_MISSING_STAGES = frozenset({"$bucket", "$facet", "$sortByCount"})
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
#: Times a single-document write by another filter than `_id` looks for its
#: document again when the one it found stopped matching before it was locked.
RESOLVE_ATTEMPTS = 3


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
            dotted_missing_as_null=False,
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
        planned = spec
        if spec.any_order and not spec.sort and spec.limit:
            # Any matches will do: in `_id` order, which the planner can read.
            planned = dataclasses.replace(spec, sort=[("_id", 1)])
        return PlannedCursor(functools.partial(self._planned_find, ns, planned), fallback)

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
        """By the read planner on PostgreSQL when it can (every document: the
        table's row counter), else by FerretDB."""
        sql = self._sql()
        if sql is not None:
            counted = await (
                sql.count(ns.database, ns.collection)
                if not filter
                else sql.count_matching(ns.database, ns.collection, filter)
            )
            if counted is not None:
                return int(counted)
        return await super().count_documents(ns, self._evaluated(filter), max_time_ms=max_time_ms)

    async def _planned_find(self, ns: Namespace, spec: FindSpec) -> list[Document] | None:
        """A planned find's documents as the driver returns them (one whose stored
        form SQL cannot read is read by `_id` through FerretDB), or None."""
        sql = self._sql()
        if sql is None:
            return None
        # For the client's usual codec options, SQL reads the stored form straight
        # into the driver's (`sjson.driver_document`) instead of a BSON round trip.
        direct = self.client[ns.database].codec_options == DRIVER_CODEC
        driver_form = functools.partial(self._driver_form, ns=ns) if direct else None
        rows = await sql.find(ns.database, ns.collection, spec, driver_form=driver_form)
        if rows is None:
            return None
        if all(isinstance(row, dict) for row in rows):
            # Every row read (the usual case): no task per document to gather.
            return rows if direct else self._driver_forms(rows, ns)
        collection = self.collection(ns)
        documents = await asyncio.gather(
            *(
                _as_is(row if direct else self._driver_form(row, ns))
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

    async def field_guards(self, ns: Namespace, fields: Mapping[str, str]) -> dict[str, FieldGuard]:
        """The guards of the typed indexes (PostgreSQL, `EngineSql.typed_key_guards`):
        off, with the reason, for a field that has no typed key (dotted, or a type
        the keys do not order) and wherever the builder is not (SQLite, or a
        server given only the engine's URL without its owner's access)."""
        families: dict[str, str] = {}
        guards: dict[str, FieldGuard] = {}
        for name, schema_type in fields.items():
            family = FAMILY_OF_SCHEMA_TYPE.get(schema_type)
            if "." in name:
                guards[name] = FieldGuard(
                    "off", f"{name} is dotted: only top-level fields have typed keys"
                )
            elif family is None:
                guards[name] = FieldGuard("off", f"{schema_type} fields have no typed key")
            else:
                families[name] = family
        if families:
            sql = self._sql()
            found = (
                None
                if sql is None
                else await sql.typed_key_guards(ns.database, ns.collection, families)
            )
            for name in families:
                guards[name] = (found or {}).get(name) or FieldGuard(
                    "off", "the typed-index builder is unavailable on this engine"
                )
        return guards

    async def collection_size(self, ns: Namespace) -> int:
        """The table's row counter (or `count(*)`) on PostgreSQL; otherwise `collStats`,
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
        """The page as a planned find (sorted by the field then `_id`, skip, limit)
        and a planned count of its filter (`app.engine.planner`), each FerretDB's
        where the planner cannot answer it; a semi-join's values are read by a
        planned find first."""
        if self._sql() is None:
            return await super().find_page(ns, query)
        condition = await page_filter(query.clauses, functools.partial(self._values, ns.database))
        spec = FindSpec(
            filter=condition,
            sort=page_sort(query),
            skip=query.offset,
            limit=query.limit,
            max_time_ms=self.database.query_time_ms,
        )
        documents, total = await asyncio.gather(
            self.find(ns, spec).to_list(None),
            self.count_documents(ns, condition, max_time_ms=self.database.query_time_ms),
        )
        return documents, total

    async def _values(
        self, db_name: str, collection: str, filter: Document, path: str
    ) -> list[Any]:
        """A semi-join's values: the top-level `path` of the documents `filter`
        matches (a planned find, or FerretDB's)."""
        spec = FindSpec(filter=filter, projection={path: 1})
        rows = await self.find(Namespace(db_name, collection), spec).to_list(None)
        return [row[path] for row in rows if path in row]

    def _driver_form(self, document: Document, ns: Namespace) -> Document:
        """`document` exactly as the driver would have returned it (through BSON with
        the client's codec options: binary data as bytes, UUIDs, aware datetimes)."""
        codec = self.client[ns.database].codec_options
        return bson.decode(bson.encode(document), codec_options=codec)

    def _driver_forms(self, documents: list[Document], ns: Namespace) -> list[Document]:
        """`_driver_form` of each document: the codec options looked up once (a
        database handle is made for each lookup) and the whole page decoded in one
        call."""
        codec = self.client[ns.database].codec_options
        encoded = b"".join([bson.encode(document) for document in documents])
        return bson.decode_all(encoded, codec_options=codec)

    async def watch(
        self, ns: Namespace, pipeline: list[Document]
    ) -> AbstractAsyncContextManager[AsyncIterator[Document]]:
        raise EngineUnsupported(f"The {self.capabilities.label} engine has no change streams.")

    # ----------------------------------------------------------------- writes
    # Every update, replace, find-and-modify and delete goes through the write
    # door (`app.engine.door`) on PostgreSQL; inserts need no lock.

    def _door(self) -> WriteDoor:
        if not self.on_postgresql:
            # FerretDB on SQLite (or one Quarry did not build) cannot have the door:
            # Quarry does not serve on it (`refuse_unmigrated`), and never writes
            # to it unlocked either.
            raise AutoReconnect(
                "the embedded engine serves only on PostgreSQL (its writes need the "
                "write door); move SQLite data with `quarry engine migrate`"
            )
        if self.database.engine_reads is None:
            self._find_engine_sql()
        door = getattr(self.database.engine_reads, "door", None)
        if door is None:
            # Never a write without the door: nothing is written, and the caller
            # sees an engine it cannot use (503), with the reason in the message.
            raise AutoReconnect(
                "the embedded engine's PostgreSQL is not known to this server, so its "
                "writes cannot be made safe; give the engine's own socket URL (its "
                "connection lies beside it) or let Quarry start the engine"
            )
        return cast(WriteDoor, door)

    def _find_engine_sql(self) -> None:
        """The engine's PostgreSQL from the conninfo beside the socket the driver
        reaches it on — for a server that started while the engine was down, or a
        `Database` made without it — looked for again at each write until found."""
        for host, _ in self.client.topology_description.server_descriptions():
            conninfo = conninfo_at(str(host))
            if conninfo:
                self.database.engine_reads = EngineSql(
                    conninfo,
                    owner_conninfo=conninfo_at(str(host), owner=True),
                    statement_timeout_ms=self.database.query_time_ms,
                )
                logger.info("the embedded engine's PostgreSQL found beside %s", host)
                return

    async def _one(self, ns: Namespace, filter: Document, write: _Write[R], *, upsert: bool) -> R:
        """`write` on the one document `filter` picks, under its lock (see `door`)."""
        filter = self._evaluated(filter)
        door = self._door()
        named, document_id = _named_id(filter)
        if named:
            return await door.document(
                ns.database,
                ns.collection,
                document_id,
                lambda: self._written(ns, filter, write, upsert=upsert),
            )
        found: Document | None = None
        for _ in range(RESOLVE_ATTEMPTS):
            found = await super().find_one(ns, filter, {"_id": 1})
            if found is None:
                break
            narrowed = _narrowed(filter, found["_id"])
            result = await door.document(
                ns.database,
                ns.collection,
                found["_id"],
                lambda narrowed=narrowed: self._written(ns, narrowed, write, upsert=False),  # type: ignore[misc]
            )
            if write.matched(result):
                return result
        if found is None and not upsert:
            return write.nothing()
        return await door.collection(
            ns.database, ns.collection, lambda: self._written(ns, filter, write, upsert=upsert)
        )

    async def _written(
        self, ns: Namespace, filter: Document, write: _Write[R], *, upsert: bool
    ) -> R:
        """`write`, with an int32 `$inc` that would overflow made a long, as MongoDB
        does (FerretDB 1.24 wraps it around). Runs under the document's lock, so
        what it reads stays true until the write."""
        increments = _int32_increments(write.update)
        if not increments:
            return await write.run(filter, upsert)
        projection = _top_level(increments)
        if upsert:
            # The document updated, or the one an upsert would insert, which starts
            # from the filter's equalities (`{"n": 2147483647}` then `$inc` 1).
            current = await super().find_one(ns, filter, projection) or _seeded(filter)
            write = write.with_update(_promoted(write.update, increments, current))
            return await write.run(filter, upsert)
        result = await write.run(_with(filter, _no_overflow(increments)), False)
        if write.matched(result):
            return result
        overflowing = await super().find_one(ns, _with(filter, _overflow(increments)), projection)
        if overflowing is None:
            return result
        promoted = write.with_update(_promoted(write.update, increments, overflowing))
        return await promoted.run(_narrowed(filter, overflowing["_id"]), False)

    async def update_one(
        self, ns: Namespace, filter: Document, update: Document, *, upsert: bool
    ) -> UpdateResult:
        base = super().update_one

        async def run(f: Document, u: Document, up: bool) -> UpdateResult:
            return await base(ns, f, u, upsert=up)

        return await self._one(ns, filter, _Write(run, update, _updated, _no_update), upsert=upsert)

    async def replace_one(
        self, ns: Namespace, filter: Document, replacement: Document, *, upsert: bool
    ) -> UpdateResult:
        base = super().replace_one

        async def run(f: Document, u: Document, up: bool) -> UpdateResult:
            return await base(ns, f, u, upsert=up)

        write = _Write(run, replacement, _updated, _no_update)
        return await self._one(ns, filter, write, upsert=upsert)

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
        base = super().find_one_and_update

        async def run(f: Document, u: Document, up: bool) -> Document | None:
            return await base(ns, f, u, projection=projection, upsert=up, return_after=return_after)

        write = _Write(run, update, _found, lambda: None)
        return await self._one(ns, filter, write, upsert=upsert)

    async def delete_one(self, ns: Namespace, filter: Document) -> DeleteResult:
        base = super().delete_one

        async def run(f: Document, u: Document, up: bool) -> DeleteResult:
            return await base(ns, f)

        write = _Write(run, {}, _deleted, lambda: _deletion(0))
        return await self._one(ns, filter, write, upsert=False)

    async def update_many(
        self, ns: Namespace, filter: Document, update: Document, *, upsert: bool
    ) -> UpdateResult:
        filter = self._evaluated(filter)
        door = self._door()
        return await door.collection(
            ns.database, ns.collection, lambda: self._update_all(ns, filter, update, upsert)
        )

    async def _targets(self, ns: Namespace, filter: Document) -> list[Any] | None:
        """The `_id`s of the documents `filter` matches, when the read planner can
        answer it and they are at most `TARGETED_WRITES` (else None). FerretDB runs a
        write by filter by reading the whole collection unless the filter is one
        top-level equality; by `_id` it reads one row. Called under the collection's
        exclusive lock: no other write changes a document meanwhile (an insert may
        add one, which this write then leaves alone, as a scan begun earlier would).
        None, too, for a document SQL cannot read and for a number `_id` beyond
        ±(2^53 - 1), which FerretDB does not look up by equality but by a range."""
        sql = self._sql()
        if not filter or sql is None:
            return None
        spec = FindSpec(
            filter=filter, projection={"_id": 1}, sort=[("_id", 1)], limit=TARGETED_WRITES + 1
        )
        rows = await sql.find(ns.database, ns.collection, spec)
        if rows is None or len(rows) > TARGETED_WRITES:
            return None
        ids = []
        for row in rows:
            if not isinstance(row, dict):
                return None
            document_id = row["_id"]
            if isinstance(document_id, int | float) and abs(document_id) > _EXACT_ID:
                return None
            ids.append(document_id)
        return ids

    async def _each(
        self, ids: list[Any], write: Callable[[Any], Awaitable[tuple[int, int]]]
    ) -> tuple[int, int]:
        """`write` for each `_id`, `TARGETED_CONCURRENCY` at a time; the sums of what
        each returned (matched, modified).

        After a failure no further write starts (MongoDB's update_many stops at the
        first failing document too; those written stay written), and every write
        under way ends before the collection's lock is let go. A lost answer
        (`ConnectionFailure`) is raised before any other failure, so that the door
        waits for the engine's sessions before it lets go of the lock."""
        slots = asyncio.Semaphore(TARGETED_CONCURRENCY)
        failed = asyncio.Event()

        async def one(document_id: Any) -> tuple[int, int]:
            async with slots:
                if failed.is_set():
                    return 0, 0
                try:
                    return await write(document_id)
                except BaseException:
                    failed.set()
                    raise

        results = await asyncio.gather(*(one(i) for i in ids), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            lost = [f for f in failures if isinstance(f, ConnectionFailure)]
            raise (lost or failures)[0]
        done = cast(list[tuple[int, int]], results)
        return sum(r[0] for r in done), sum(r[1] for r in done)

    async def _update_targets(
        self,
        ns: Namespace,
        filter: Document,
        ids: list[Any],
        update: Document,
        increments: dict[str, int],
    ) -> UpdateResult:
        """`update` on each of these documents by `_id`, the filter checked again by
        FerretDB on that one row (an int32 `$inc` that would overflow makes that
        document's update a long's, as in `_update_all`)."""
        projection = _top_level(increments) if increments else None

        async def write(document_id: Any) -> tuple[int, int]:
            by_id = {"_id": document_id, "$and": [filter]}
            guarded = _with(by_id, _no_overflow(increments)) if increments else by_id
            result = await super(EmbeddedAdapter, self).update_one(
                ns, guarded, update, upsert=False
            )
            if result.matched_count or not increments:
                return result.matched_count, result.modified_count
            current = await super(EmbeddedAdapter, self).find_one(ns, by_id, projection)
            if current is None:
                return 0, 0
            promoted = _promoted(update, increments, current)
            result = await super(EmbeddedAdapter, self).update_one(
                ns, by_id, promoted, upsert=False
            )
            return result.matched_count, result.modified_count

        matched, modified = await self._each(ids, write)
        return UpdateResult({"n": matched, "nModified": modified, "ok": 1.0}, acknowledged=True)

    async def _update_all(
        self, ns: Namespace, filter: Document, update: Document, upsert: bool
    ) -> UpdateResult:
        """`update_many` under the collection's lock: by `_id`, one document at a time,
        when the planner finds the matches (`_targets`); else by FerretDB, with the
        documents whose int32 `$inc` would overflow updated one by one as longs."""
        increments = _int32_increments(update)
        ids = await self._targets(ns, filter)
        if ids or (ids is not None and not upsert):
            return await self._update_targets(ns, filter, ids, update, increments)
        if not increments:
            return await super().update_many(ns, filter, update, upsert=upsert)
        projection = _top_level(increments)
        found = self.collection(ns).find(_with(filter, _overflow(increments)), projection)
        overflowing = [current async for current in found]
        others = _with(filter, {"_id": {"$nin": [current["_id"] for current in overflowing]}})
        result = await super().update_many(ns, others, update, upsert=False)
        matched, modified = result.matched_count, result.modified_count
        for current in overflowing:
            promoted = _promoted(update, increments, current)
            one = await super().update_one(ns, {"_id": current["_id"]}, promoted, upsert=False)
            matched += one.matched_count
            modified += one.modified_count
        if matched == 0 and upsert:
            return await super().update_many(ns, filter, update, upsert=True)
        return UpdateResult({"n": matched, "nModified": modified, "ok": 1.0}, acknowledged=True)

    async def delete_many(self, ns: Namespace, filter: Document) -> DeleteResult:
        filter = self._evaluated(filter)
        door = self._door()
        return await door.collection(
            ns.database, ns.collection, lambda: self._delete_all(ns, filter)
        )

    async def _delete_all(self, ns: Namespace, filter: Document) -> DeleteResult:
        """`delete_many` under the collection's lock: by `_id` when the planner finds
        the matches (`_targets`: a refused insert's undo deletes its few documents by
        an `_id` range, which FerretDB answered by reading the whole collection),
        else by FerretDB, in slices when the matches are too many for one statement."""
        ids = await self._targets(ns, filter)
        if ids is not None:

            async def delete(document_id: Any) -> tuple[int, int]:
                by_id = {"_id": document_id, "$and": [filter]}
                result = await super(EmbeddedAdapter, self).delete_one(ns, by_id)
                return result.deleted_count, 0

            deleted, _ = await self._each(ids, delete)
            return _deletion(deleted)
        try:
            return await super().delete_many(ns, filter)
        except OperationFailure as exc:
            if not is_too_many_parameters(exc):
                raise
        return _deletion(await self._delete_in_chunks(ns, filter))

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


R = TypeVar("R")


@dataclass(frozen=True)
class _Write(Generic[R]):
    """One single-document write: how to run it with a filter, and what its result
    says (did it find its document; the result of finding none)."""

    call: Callable[[Document, Document, bool], Awaitable[R]]
    update: Document
    matched: Callable[[R], bool]
    nothing: Callable[[], R]

    async def run(self, filter: Document, upsert: bool) -> R:
        return await self.call(filter, self.update, upsert)

    def with_update(self, update: Document) -> _Write[R]:
        return _Write(self.call, update, self.matched, self.nothing)


def _updated(result: UpdateResult) -> bool:
    return result.matched_count > 0 or result.upserted_id is not None


def _no_update() -> UpdateResult:
    return UpdateResult({"n": 0, "nModified": 0, "ok": 1.0}, acknowledged=True)


def _found(result: Document | None) -> bool:
    return result is not None


def _deleted(result: DeleteResult) -> bool:
    return result.deleted_count > 0


def _deletion(count: int) -> DeleteResult:
    return DeleteResult({"n": count, "ok": 1.0}, acknowledged=True)


def _named_id(filter: Document) -> tuple[bool, Any]:
    """Whether `filter` names one document by `_id` (a value or `{"$eq": value}`)."""
    if "_id" not in filter:
        return False, None
    value = filter["_id"]
    if isinstance(value, (re.Pattern, Regex)):
        return False, None
    if isinstance(value, Mapping) and any(str(key).startswith("$") for key in value):
        if list(value) == ["$eq"] and not isinstance(value["$eq"], (re.Pattern, Regex)):
            return True, value["$eq"]
        return False, None
    return True, value


def _with(filter: Document, clause: Document) -> Document:
    """`filter` and `clause` (FerretDB still pushes `filter`'s `_id` down to SQL)."""
    return {**filter, "$and": [*filter.get("$and", []), clause]}


def _narrowed(filter: Document, document_id: Any) -> Document:
    """`filter` and `_id` equal to `document_id`, at the top level where it is free:
    FerretDB then reads only that row (it pushes a top-level `_id` down to SQL)."""
    if "_id" in filter:
        return _with(filter, {"_id": document_id})
    return {**filter, "_id": document_id}


def _int32_increments(update: Any) -> dict[str, int]:
    """The `$inc` fields of `update` whose increment the driver sends as an int32."""
    if not isinstance(update, Mapping):
        return {}
    increments = update.get("$inc")
    if not isinstance(increments, Mapping):
        return {}
    return {
        str(path): value
        for path, value in increments.items()
        if type(value) is int and value != 0 and INT32_MIN <= value <= INT32_MAX
    }


def _seeded(filter: Document) -> Document:
    """The fields an upsert's new document takes from `filter`: its top-level
    equalities (a value, or `{"$eq": value}`)."""
    seeded: Document = {}
    for key, value in filter.items():
        if key.startswith("$"):
            continue
        if isinstance(value, Mapping) and any(str(k).startswith("$") for k in value):
            if list(value) != ["$eq"]:
                continue
            value = value["$eq"]
        seeded[key] = value
    return seeded


def _top_level(increments: dict[str, int]) -> Document:
    """A projection of the fields the increments are in: the whole top-level field,
    since FerretDB projects no array element by position (`"a.1"`)."""
    return {path.split(".", 1)[0]: 1 for path in increments}


def _overflows(path: str, increment: int) -> Document:
    if increment > 0:
        return {path: {"$type": "int", "$gt": INT32_MAX - increment}}
    return {path: {"$type": "int", "$lt": INT32_MIN - increment}}


def _overflow(increments: dict[str, int]) -> Document:
    return {"$or": [_overflows(path, n) for path, n in increments.items()]}


def _no_overflow(increments: dict[str, int]) -> Document:
    return {"$nor": [_overflows(path, n) for path, n in increments.items()]}


def _promoted(update: Document, increments: dict[str, int], current: Document) -> Document:
    """`update` with the increments that overflow `current`'s int32 values sent as
    longs: FerretDB adds an int32 and a long as a long (MongoDB's result)."""
    changed = dict(update["$inc"])
    for path, increment in increments.items():
        value = _value_at(current, path)
        if type(value) is int and not INT32_MIN <= value + increment <= INT32_MAX:
            changed[path] = Int64(increment)
    return {**update, "$inc": changed}


def _value_at(document: Any, path: str) -> Any:
    for key in path.split("."):
        if isinstance(document, Mapping):
            document = document.get(key)
        elif isinstance(document, list) and key.isdigit() and int(key) < len(document):
            document = document[int(key)]
        else:
            return None
    return document


async def _as_is(document: Document) -> Document:
    return document
