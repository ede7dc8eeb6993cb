"""The rules of logical databases, collections, import and export (management.md).

Every method takes the `Caller` and finds the database by id *and owner*, so
another owner's database is indistinguishable from a missing one (404).

All-or-nothing without transactions (the embedded engine has none):
- create database: the metadata is inserted first in state `creating` (the unique
  (owner, name) index settles races), then the physical collections and indexes,
  then the state becomes `ready`. A failure drops what was made and deletes the
  metadata; if the engine is gone too, the maintenance task finishes that once it
  is back. Only `ready` databases are visible.
- collection changes (create, update schema, drop) hold the database's lease
  (`repository.acquire_lock`) and mark entries `creating`/`dropping` before
  touching the physical side, so a crash leaves something the maintenance task
  can finish; only `ready` collections are visible.
- import: see `management.importer` (first pass) and `management.journal`
  (rollback).

Decided where the spec is silent: an empty logical database has no physical
database until its first collection (MongoDB creates databases lazily); a
collection created by an import keeps its empty schema; `update_schema` creates
new indexes before saving the schema and drops removed ones after, and a unique
index that existing documents violate is 409 `DUPLICATE_KEY` (compound declared
indexes too: `management.indexes` holds their rules, `management.index_service`
their state, violations and conversion); export files are
relaxed Extended JSON (as `mongoexport` writes) so that they import back with
their types, and CSV takes its header from the schema fields, `_id`, and the
fields of the first 1,000 documents (later extra fields are not exported).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, BinaryIO

from bson import ObjectId
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from app.clock import utc_now
from app.db import (
    DUPLICATE_KEY_CODES,
    UNKEEPABLE_DATABASE_PREFIXES,
    Database,
    Document,
    is_duplicate_key,
)
from app.errors import DatabaseUnavailable
from app.http import Caller
from app.kit import RangedIds, check_name, id_key, parse_object_id, to_extended, to_plain
from app.schema import (
    CompiledSchema,
    SchemaError,
    compile_filter,
    compile_schema,
    stored_definition,
)
from app.settings import Settings
from management import repository as repo
from management.errors import (
    CollectionExists,
    CollectionNotFound,
    ConfirmationMismatch,
    DatabaseBusy,
    DatabaseExists,
    DatabaseNotFound,
    ImportDuplicateKey,
    ImportRejected,
    SchemaInvalid,
    UniqueIndexConflict,
)
from management.importer import MAX_REPORTED_ERRORS, prepare_import, read_batches
from management.index_checks import ViolationChecks
from management.indexes import (
    IndexDefinition,
    as_definitions,
    declared_entries,
    engine_name,
    index_problems,
    indexed_field_types,
    key_spec,
)
from management.journal import JournalEntry
from management.schemas import CollectionDefinition, ExportFormat, OnError

logger = logging.getLogger("quarry.management")

INSERT_BATCH_DOCUMENTS = 5_000
INSERT_BATCH_BYTES = 8 * 1024 * 1024
EXPORT_BATCH = 1_000
PRECHECK_CHUNK = 1_000


@dataclass
class ImportResult:
    collection: str
    inserted_count: int
    skipped_count: int
    errors: list[dict[str, Any]]


@dataclass
class IndexPlan:
    #: Old indexes dropped before the new ones are made (made again on a failure).
    in_the_way: list[Document]
    #: New and changed indexes to make.
    made: list[Document]
    #: Engine names of the old indexes dropped once the schema is saved.
    dropped_after: list[str]


class IndexesLost(Exception):
    """Indexes in the way of a failed update that could not be made again."""

    def __init__(self, names: list[str], cause: Exception) -> None:
        super().__init__(names)
        self.names = names
        self.cause = cause


@dataclass
class Export:
    filename: str
    media_type: str
    body: AsyncIterator[bytes]


def physical_name(display_name: str) -> str:
    """`<slug>_<6 digits>`: lower-cased name cut to 40 characters (names are [A-Za-z0-9_]).

    A slug that the embedded engine could not keep (`UNKEEPABLE_DATABASE_PREFIXES`)
    gets a `db_` prefix, on every engine, so that data moves between engines as is.
    """
    slug = display_name.lower()[:40]
    if slug.startswith(UNKEEPABLE_DATABASE_PREFIXES):
        slug = f"db_{slug}"
    return f"{slug}_{secrets.randbelow(1_000_000):06d}"


def _signature(index: Document, fields: list[dict[str, Any]]) -> tuple[Any, ...]:
    """What makes an engine index: its keys and directions, and uniqueness."""
    return (tuple(key_spec(index, fields)), bool(index["unique"]))


def ready_collections(record: Document) -> list[Document]:
    """The collections a client may see (not half-created or half-dropped)."""
    return [
        entry for entry in record.get("collections", []) if entry.get("state", "ready") == "ready"
    ]


def collection_schema(entry: Document | None) -> CompiledSchema:
    if entry is None:
        return compile_schema([], False)
    return compile_schema(entry.get("fields", []), bool(entry.get("strict")))


class ManagementService:
    def __init__(
        self, *, database: Database, settings: Settings, checks: ViolationChecks | None = None
    ) -> None:
        self.database = database
        self.settings = settings
        self.control = database.control
        #: Where a schema change asks for its violations to be counted (None: not).
        self.checks = checks

    # ------------------------------------------------------------------ lookup

    async def owned_database(self, *, caller: Caller, database_id: str) -> Document:
        """Raises `InvalidId`, `DatabaseNotFound`."""
        oid = parse_object_id(database_id, what="database_id")
        record = await repo.find_database(db=self.control, user_id=caller.user_id, database_id=oid)
        if record is None:
            raise DatabaseNotFound(database_id)
        return record

    @staticmethod
    def find_collection(record: Document, name: str) -> Document:
        """Raises `CollectionNotFound`."""
        for entry in ready_collections(record):
            if entry["name"] == name:
                return entry
        raise CollectionNotFound([name])

    # --------------------------------------------------------------- databases

    async def create_database(
        self, *, caller: Caller, name: str, collections: list[CollectionDefinition]
    ) -> Document:
        """Raises `InvalidName`, `SchemaInvalid`, `DatabaseExists`, `DatabaseUnavailable`
        (also while the unique index on owner and name does not exist yet)."""
        if "management" not in self.database.indexes_ready:
            raise DatabaseUnavailable()
        check_name(name, kind="database")
        entries = self._new_entries(collections, existing=set(), state="ready")
        now = utc_now()
        record: Document = {
            "_id": ObjectId(),
            "user_id": caller.user_id,
            "displayName": name,
            "dbName": "",
            "collections": entries,
            "state": "creating",
            "created_at": now,
            "updated_at": now,
        }
        # Held while the database is being made, so that the maintenance task
        # does not take a slow create for an interrupted one.
        lock = f"database:{record['_id']}"
        token = await repo.acquire_lock(db=self.control, name=lock, wait_seconds=0)
        if token is None:
            raise DatabaseBusy()
        try:
            await self._insert_record(record, caller=caller, name=name)
            try:
                for entry in entries:
                    await self._create_physical(record["dbName"], entry)
                await repo.set_database_state(
                    db=self.control, database_id=record["_id"], state="ready"
                )
            except PyMongoError:
                await self._undo_database(record)
                raise
        finally:
            await repo.release_lock(db=self.control, name=lock, token=token)
        record["state"] = "ready"
        return record

    async def _insert_record(self, record: Document, *, caller: Caller, name: str) -> None:
        """Insert the record under a fresh physical name; raises `DatabaseExists`, or
        `DatabaseBusy` when ten random names in a row were taken (never goes on with
        a name another database holds)."""
        for _ in range(10):
            record["dbName"] = physical_name(name)
            try:
                await repo.insert_database(db=self.control, record=record)
                return
            except DuplicateKeyError:
                if await repo.name_taken(db=self.control, user_id=caller.user_id, name=name):
                    raise DatabaseExists(name) from None
        logger.error("no free physical name for %r after 10 tries", name)
        raise DatabaseBusy("No free physical name was found for this database; retry.")

    async def _undo_database(self, record: Document) -> None:
        try:
            await repo.drop_physical_database(database=self.database, db_name=record["dbName"])
            await repo.delete_database_record(db=self.control, database_id=record["_id"])
        except PyMongoError as exc:
            logger.warning(
                "could not undo database %s yet (%s); maintenance will",
                record["_id"],
                type(exc).__name__,
            )

    async def list_databases(
        self, *, caller: Caller, page: int, page_size: int, search: str | None
    ) -> tuple[list[Document], int]:
        return await repo.list_databases(
            db=self.control,
            user_id=caller.user_id,
            search=search,
            skip=(page - 1) * page_size,
            limit=page_size,
        )

    async def list_collections(self, *, caller: Caller, database_id: str) -> list[tuple[str, int]]:
        record = await self.owned_database(caller=caller, database_id=database_id)
        counts = []
        for entry in ready_collections(record):
            count = await repo.count_documents(
                database=self.database, db_name=record["dbName"], collection=entry["name"]
            )
            counts.append((entry["name"], count))
        return counts

    async def drop_database(self, *, caller: Caller, database_id: str, confirmation: str) -> str:
        """Raises `DatabaseNotFound`, `ConfirmationMismatch`, `DatabaseUnavailable`."""
        record = await self.owned_database(caller=caller, database_id=database_id)
        if confirmation != record["displayName"]:
            raise ConfirmationMismatch(record["displayName"])
        await repo.set_database_state(db=self.control, database_id=record["_id"], state="dropping")
        await repo.drop_physical_database(database=self.database, db_name=record["dbName"])
        await repo.delete_database_record(db=self.control, database_id=record["_id"])
        return str(record["displayName"])

    # ------------------------------------------------------------- collections

    def _new_entries(
        self, collections: list[CollectionDefinition], *, existing: set[str], state: str
    ) -> list[Document]:
        problems: list[dict[str, Any]] = []
        entries = []
        seen = set(existing)
        clashes = []
        for position, definition in enumerate(collections):
            check_name(definition.name, kind="collection")
            if definition.name in seen:
                clashes.append(definition.name)
            seen.add(definition.name)
            try:
                fields = self._stored_fields(definition.fields, definition.strict)
            except SchemaError as exc:
                for detail in exc.details:
                    problems.append(
                        {**detail, "loc": ["collections", position, "fields", *detail["loc"]]}
                    )
                continue
            indexes, index_issues = index_problems(fields, definition.indexes)
            problems += [
                {**detail, "loc": ["collections", position, *detail["loc"]]}
                for detail in index_issues
            ]
            entries.append(self._entry(definition.name, fields, definition.strict, state, indexes))
        if problems:
            raise SchemaInvalid(problems)
        if clashes:
            raise CollectionExists(clashes)
        return entries

    @staticmethod
    def _stored_fields(fields: list[Any], strict: bool) -> list[dict[str, Any]]:
        compile_schema(fields, strict)  # raises SchemaError with every problem
        return [stored_definition(field) for field in fields]

    @staticmethod
    def _entry(
        name: str,
        fields: list[dict[str, Any]],
        strict: bool,
        state: str,
        indexes: list[dict[str, Any]] | None = None,
    ) -> Document:
        return {
            "name": name,
            "fields": fields,
            "strict": strict,
            "indexes": index_problems(fields, [])[0] if indexes is None else indexes,
            "schema_version": 1,
            "state": state,
            "created_at": utc_now(),
        }

    async def _create_physical(self, db_name: str, entry: Document) -> None:
        await repo.create_collection(database=self.database, db_name=db_name, name=entry["name"])
        for index in entry["indexes"]:
            await repo.create_index(
                database=self.database,
                db_name=db_name,
                collection=entry["name"],
                keys=key_spec(index, entry["fields"]),
                unique=index["unique"],
                name=engine_name(index),
            )
        await repo.declare_fields(
            database=self.database,
            db_name=db_name,
            collection=entry["name"],
            fields=indexed_field_types(entry),
        )

    async def _locked(self, record: Document) -> str:
        token = await repo.acquire_lock(db=self.control, name=f"database:{record['_id']}")
        if token is None:
            raise DatabaseBusy()
        return token

    async def _release(self, record: Document, token: str) -> None:
        try:
            await repo.release_lock(db=self.control, name=f"database:{record['_id']}", token=token)
        except PyMongoError as exc:  # the lease expires by itself
            logger.warning("could not release a database lease (%s)", type(exc).__name__)

    @contextlib.asynccontextmanager
    async def lease(self, record: Document) -> AsyncIterator[Document]:
        """Hold the database's lease (the one collection changes hold) and yield the
        record as it is under it. Raises `DatabaseBusy`, `DatabaseNotFound`."""
        token = await self._locked(record)
        try:
            yield await self._current(record)
        finally:
            await self._release(record, token)

    async def _current(self, record: Document) -> Document:
        current = await repo.reload_database(db=self.control, database_id=record["_id"])
        if current is None or current.get("state") != "ready":
            raise DatabaseNotFound(str(record["_id"]))
        return current

    async def create_collections(
        self, *, caller: Caller, database_id: str, collections: list[CollectionDefinition]
    ) -> list[Document]:
        """Raises `DatabaseNotFound`, `InvalidName`, `SchemaInvalid`, `CollectionExists`,
        `DatabaseBusy`, `DatabaseUnavailable`."""
        record = await self.owned_database(caller=caller, database_id=database_id)
        token = await self._locked(record)
        try:
            current = await self._current(record)
            existing = {entry["name"] for entry in current.get("collections", [])}
            entries = self._new_entries(collections, existing=existing, state="creating")
            return await self._add_collections(current, entries)
        finally:
            await self._release(record, token)

    async def _add_collections(self, current: Document, entries: list[Document]) -> list[Document]:
        listed = [*current.get("collections", []), *entries]
        await repo.save_collections(db=self.control, database_id=current["_id"], collections=listed)
        try:
            for entry in entries:
                await self._create_physical(current["dbName"], entry)
        except PyMongoError:
            await self._undo_collections(current, entries)
            raise
        for entry in entries:
            entry["state"] = "ready"
        await repo.save_collections(db=self.control, database_id=current["_id"], collections=listed)
        return entries

    async def _undo_collections(self, current: Document, entries: list[Document]) -> None:
        try:
            for entry in entries:
                await repo.drop_collection(
                    database=self.database, db_name=current["dbName"], name=entry["name"]
                )
            await repo.save_collections(
                db=self.control,
                database_id=current["_id"],
                collections=current.get("collections", []),
            )
        except PyMongoError as exc:
            logger.warning("could not undo new collections yet (%s)", type(exc).__name__)

    async def update_schema(
        self,
        *,
        caller: Caller,
        database_id: str,
        collection_name: str,
        fields: list[Any],
        strict: bool | None,
        indexes: list[IndexDefinition] | None = None,
    ) -> tuple[str, Document]:
        """The physical database's name and the updated entry. Raises
        `DatabaseNotFound`, `CollectionNotFound`, `SchemaInvalid`, `UniqueIndexConflict`,
        `DatabaseBusy`, `DatabaseUnavailable`.

        `indexes` None keeps the declared indexes (checked against the new fields).
        An index in the way of a new one — its definition changed under the same
        name, or it is going and has the keys of a new one (a rename, or a field's
        `index` becoming `unique`: an engine keeps one index per key pattern) — is
        dropped before the new one is made, and made again if that fails; a rename
        is metadata only (`_plan_indexes`), and an index that cannot be made again
        is removed from the stored entry before `UniqueIndexConflict` says so.
        Afterwards the fields whose indexed type is new are counted for documents
        of another type in the background (`ViolationChecks`)."""
        record = await self.owned_database(caller=caller, database_id=database_id)
        token = await self._locked(record)
        try:
            current = await self._current(record)
            entry = self.find_collection(current, collection_name)
            new_strict = entry.get("strict", False) if strict is None else strict
            try:
                stored = self._stored_fields(fields, new_strict)
            except SchemaError as exc:
                raise SchemaInvalid(
                    [{**detail, "loc": ["fields", *detail["loc"]]} for detail in exc.details]
                ) from None
            declared = as_definitions(declared_entries(entry)) if indexes is None else indexes
            new_indexes, problems = index_problems(stored, declared)
            if problems:
                raise SchemaInvalid(problems)
            db_name = current["dbName"]
            old_types = indexed_field_types(entry)
            plan = await self._plan_indexes(db_name, entry, stored, new_indexes)
            try:
                await self._replace_indexes(db_name, entry, plan.in_the_way, plan.made)
            except IndexesLost as lost:
                await self._forget_lost_indexes(current, entry, lost.names)
                if isinstance(lost.cause, UniqueIndexConflict):
                    raise lost.cause.with_removed(lost.names) from None
                raise lost.cause from None
            entry.update(
                fields=stored,
                strict=new_strict,
                indexes=new_indexes,
                schema_version=int(entry.get("schema_version", 1)) + 1,
            )
            await repo.save_collections(
                db=self.control, database_id=current["_id"], collections=current["collections"]
            )
            for name in plan.dropped_after:
                await repo.drop_index(
                    database=self.database, db_name=db_name, collection=collection_name, name=name
                )
            new_types = indexed_field_types(entry)
            await repo.declare_fields(
                database=self.database,
                db_name=db_name,
                collection=collection_name,
                fields=new_types,
            )
            if self.checks is not None:
                retyped = {f: t for f, t in new_types.items() if old_types.get(f) != t}
                self.checks.want(str(current["_id"]), db_name, collection_name, retyped)
            return db_name, entry
        finally:
            await self._release(record, token)

    async def _plan_indexes(
        self,
        db_name: str,
        entry: Document,
        stored: list[dict[str, Any]],
        new_indexes: list[Document],
    ) -> IndexPlan:
        """What `update_schema` does to the engine's indexes (one `listIndexes`).

        An index kept as it was stays; one the engine lacks (lost earlier) is made
        again. A new index with the keys, directions and uniqueness of one going
        away is that one renamed: metadata only, the engine's index stays under its
        engine name (`indexes.engine_name`), so a unique index never has a gap for
        a duplicate to slip through. Anything else new or changed is made; an index
        in its way (its definition changed under the same name, or it is going and
        has the keys of a new one: an engine keeps one index per key pattern) is
        dropped first. A new name taken on the engine by an index that stays gets
        an engine name of its own."""
        old_fields = entry.get("fields", [])
        before = {index["name"]: index for index in entry.get("indexes", [])}
        signatures = {name: _signature(index, old_fields) for name, index in before.items()}
        on_engine = await repo.index_names(
            database=self.database, db_name=db_name, collection=entry["name"]
        )
        kept = {index["name"] for index in new_indexes}
        #: Old indexes whose engine index goes on serving (as it was, or renamed).
        reused: set[str] = set()
        made: list[Document] = []
        for index in new_indexes:
            signature = _signature(index, stored)
            previous = before.get(index["name"])
            if previous is not None and signatures[index["name"]] == signature:
                if "engine_name" in previous:
                    index["engine_name"] = previous["engine_name"]
                if engine_name(previous) in on_engine:
                    reused.add(index["name"])
                else:
                    made.append(index)  # lost earlier: made again
                continue
            source = next(
                (
                    name
                    for name, old in signatures.items()
                    if old == signature
                    and name not in kept
                    and name not in reused
                    and engine_name(before[name]) in on_engine
                ),
                None,
            )
            if source is None:
                made.append(index)
                continue
            reused.add(source)
            if engine_name(before[source]) != index["name"]:
                index["engine_name"] = engine_name(before[source])
        staying = {engine_name(before[name]) for name in reused}
        for index in made:
            if engine_name(index) in staying:
                index["engine_name"] = f"{index['name']}_{secrets.token_hex(4)}"
        made_names = {engine_name(index) for index in made}
        made_patterns = {_signature(index, stored)[0] for index in made}
        going = [index for name, index in before.items() if name not in reused]
        in_the_way = [
            index
            for index in going
            if engine_name(index) in made_names or signatures[index["name"]][0] in made_patterns
        ]
        dropped_after = [engine_name(index) for index in going if index not in in_the_way]
        return IndexPlan(in_the_way=in_the_way, made=made, dropped_after=dropped_after)

    async def _forget_lost_indexes(
        self, current: Document, entry: Document, names: list[str]
    ) -> None:
        """Store the entry without the indexes a failed update could not restore, so
        the stored schema says what the engine holds (a later update makes them)."""
        entry["indexes"] = [i for i in entry.get("indexes", []) if i["name"] not in names]
        await repo.save_collections(
            db=self.control, database_id=current["_id"], collections=current["collections"]
        )

    async def _replace_indexes(
        self, db_name: str, entry: Document, in_the_way: list[Document], made: list[Document]
    ) -> None:
        """Drop the indexes in the way, then make the new and changed ones; on a
        failure the dropped ones are made again as they were. Raises `IndexesLost`
        (naming them) when some cannot be (a duplicate written while none was there)."""
        collection = entry["name"]
        for old in in_the_way:
            await repo.drop_index(
                database=self.database,
                db_name=db_name,
                collection=collection,
                name=engine_name(old),
            )
        try:
            await self._create_indexes(db_name, collection, made)
        except Exception as exc:
            lost = []
            for old in in_the_way:
                try:
                    await repo.create_index(
                        database=self.database,
                        db_name=db_name,
                        collection=collection,
                        keys=key_spec(old, entry.get("fields", [])),
                        unique=old["unique"],
                        name=engine_name(old),
                    )
                except PyMongoError:
                    logger.warning("could not restore index %s after a failed update", old["name"])
                    lost.append(old["name"])
            if lost:
                raise IndexesLost(lost, exc) from exc
            raise

    async def _create_indexes(self, db_name: str, collection: str, indexes: list[Document]) -> None:
        made: list[str] = []
        try:
            for index in indexes:
                try:
                    await repo.create_index(
                        database=self.database,
                        db_name=db_name,
                        collection=collection,
                        keys=key_spec(index, []),
                        unique=index["unique"],
                        name=engine_name(index),
                    )
                except OperationFailure as exc:
                    if index["unique"] and is_duplicate_key(exc):
                        fields = [field for field, _ in key_spec(index, [])]
                        raise UniqueIndexConflict(", ".join(fields), index=index["name"]) from None
                    raise
                made.append(engine_name(index))
        except BaseException:
            for name in made:
                try:
                    await repo.drop_index(
                        database=self.database, db_name=db_name, collection=collection, name=name
                    )
                except PyMongoError:
                    logger.warning("could not drop index %s after a failed schema update", name)
            raise

    async def drop_collections(
        self, *, caller: Caller, database_id: str, names: list[str]
    ) -> list[str]:
        """Raises `DatabaseNotFound`, `CollectionNotFound` (naming every unknown one),
        `DatabaseBusy`, `DatabaseUnavailable`."""
        record = await self.owned_database(caller=caller, database_id=database_id)
        wanted = list(dict.fromkeys(names))
        token = await self._locked(record)
        try:
            current = await self._current(record)
            known = {entry["name"] for entry in ready_collections(current)}
            unknown = [name for name in wanted if name not in known]
            if unknown:
                raise CollectionNotFound(unknown)
            for entry in current["collections"]:
                if entry["name"] in wanted:
                    entry["state"] = "dropping"
            await repo.save_collections(
                db=self.control, database_id=current["_id"], collections=current["collections"]
            )
            for name in wanted:
                await repo.drop_collection(
                    database=self.database, db_name=current["dbName"], name=name
                )
            remaining = [entry for entry in current["collections"] if entry["name"] not in wanted]
            await repo.save_collections(
                db=self.control, database_id=current["_id"], collections=remaining
            )
            return wanted
        finally:
            await self._release(record, token)

    # ------------------------------------------------------------------ import

    async def import_documents(
        self,
        *,
        caller: Caller,
        database_id: str,
        collection_name: str | None,
        filename: str | None,
        source: BinaryIO,
        on_error: OnError,
    ) -> ImportResult:
        """Raises `DatabaseNotFound`, `InvalidName`, `InvalidImportFile`,
        `ImportRecordsInvalid`, `ImportDuplicateKey`, `ImportRejected`,
        `DatabaseUnavailable`."""
        record = await self.owned_database(caller=caller, database_id=database_id)
        await self.database.apply_value_limits()
        name = collection_name or PurePath(filename or "").stem.split(".")[0]
        check_name(name, kind="collection")
        entry = next((item for item in ready_collections(record) if item["name"] == name), None)
        journal = JournalEntry.create(self.journal_root)
        completed = False
        try:
            ids = RangedIds()
            with journal.open_ids() as ids_file:
                plan = await asyncio.to_thread(
                    prepare_import,
                    source=source,
                    schema=collection_schema(entry),
                    abort_on_error=on_error == "abort",
                    ids=ids,
                    ids_journal=ids_file,
                    spool_dir=self.settings.data_dir / "tmp",
                )
            assert plan.spool is not None
            with plan.spool:
                if entry is None:
                    await self._ensure_collection(record, name)
                await self._precheck_ids(record["dbName"], name, journal, abort=on_error == "abort")
                journal.commit(db_name=record["dbName"], collection=name, ranges=ids.ranges)
                inserted, failures = await self._insert_spool(
                    record["dbName"], name, plan.spool, journal, abort=on_error == "abort"
                )
            completed = True
        finally:
            if completed:
                journal.remove()
            else:
                await self._roll_back(journal)
        errors = (plan.errors + failures)[:MAX_REPORTED_ERRORS]
        skipped = plan.invalid + len({failure["index"] for failure in failures})
        return ImportResult(
            collection=name, inserted_count=inserted, skipped_count=skipped, errors=errors
        )

    @property
    def journal_root(self) -> Path:
        return self.settings.data_dir / "import-journal"

    async def _roll_back(self, journal: JournalEntry) -> None:
        try:
            deleted = await journal.roll_back(self.database)
        except PyMongoError as exc:
            logger.warning(
                "import rollback postponed until the database is back (%s)", type(exc).__name__
            )
            journal.release()
            return
        if deleted:
            logger.info("rolled back %d documents of a failed import", deleted)
        journal.remove()

    async def _ensure_collection(self, record: Document, name: str) -> None:
        token = await self._locked(record)
        try:
            current = await self._current(record)
            if any(entry["name"] == name for entry in current.get("collections", [])):
                return
            await self._add_collections(current, [self._entry(name, [], False, "creating")])
        finally:
            await self._release(record, token)

    async def _precheck_ids(
        self, db_name: str, collection: str, journal: JournalEntry, *, abort: bool
    ) -> None:
        """Client-supplied `_id`s that exist already: never deleted by a rollback; with
        abort, a 409 before anything is written."""
        chunk: list[tuple[Any, int]] = []

        async def check(batch: list[tuple[Any, int]]) -> None:
            found = await repo.existing_ids(
                database=self.database,
                db_name=db_name,
                collection=collection,
                ids=[value for value, _ in batch],
            )
            if not found:
                return
            if abort:
                keys = {id_key(value) for value in found}
                index = next(i for value, i in batch if id_key(value) in keys)
                raise ImportDuplicateKey(index=index, reason="a document with this _id exists")
            journal.exclude(found)

        for value, index in journal.iter_ids():
            chunk.append((value, index))
            if len(chunk) >= PRECHECK_CHUNK:
                await check(chunk)
                chunk = []
        if chunk:
            await check(chunk)

    async def _insert_spool(
        self, db_name: str, collection: str, spool: Any, journal: JournalEntry, *, abort: bool
    ) -> tuple[int, list[dict[str, Any]]]:
        inserted = 0
        failures: list[dict[str, Any]] = []
        for indices, documents in read_batches(
            spool, max_documents=INSERT_BATCH_DOCUMENTS, max_bytes=INSERT_BATCH_BYTES
        ):
            try:
                await repo.insert_raw_documents(
                    database=self.database,
                    db_name=db_name,
                    collection=collection,
                    documents=documents,
                )
                inserted += len(documents)
            except BulkWriteError as exc:
                inserted += int(exc.details.get("nInserted", 0))
                for error in exc.details.get("writeErrors", []):
                    index = indices[error["index"]]
                    duplicate = error.get("code") in DUPLICATE_KEY_CODES
                    reason = (
                        "duplicate key"
                        if duplicate
                        else f"refused by the database (code {error.get('code')})"
                    )
                    if abort:
                        raise (ImportDuplicateKey if duplicate else ImportRejected)(
                            index=index, reason=reason
                        ) from None
                    failures.append(
                        {
                            "index": index,
                            "loc": [index, "_id"] if duplicate else [index],
                            "msg": reason,
                            "type": "duplicate" if duplicate else "rejected",
                        }
                    )
        return inserted, failures

    # ------------------------------------------------------------------ export

    async def export_documents(
        self,
        *,
        caller: Caller,
        database_id: str,
        collection_name: str,
        export_format: ExportFormat,
        filters: dict[str, Any],
    ) -> Export:
        """Raises `DatabaseNotFound`, `CollectionNotFound`, `InvalidFilter`,
        `DatabaseUnavailable`."""
        record = await self.owned_database(caller=caller, database_id=database_id)
        entry = self.find_collection(record, collection_name)
        query = compile_filter(filters, collection_schema(entry))
        batches = repo.stream_documents(
            database=self.database,
            db_name=record["dbName"],
            collection=collection_name,
            query=query,
            batch_size=EXPORT_BATCH,
        )
        # The first batch is read before answering, so that an unreachable database
        # is a 503 envelope rather than a cut-off download.
        first = await anext(batches, [])
        writer = {"json": _json_export, "ndjson": _ndjson_export, "csv": _csv_export}[export_format]
        field_names = [field["name"] for field in entry.get("fields", [])]
        return Export(
            filename=f"{collection_name}.{export_format}",
            media_type={
                "json": "application/json",
                "ndjson": "application/x-ndjson",
                "csv": "text/csv; charset=utf-8",
            }[export_format],
            body=writer(first, batches, field_names),
        )


def _extended_line(document: Document) -> str:
    return json.dumps(to_extended(document), ensure_ascii=False, separators=(",", ":"))


async def _ndjson_export(
    first: list[Document], rest: AsyncIterator[list[Document]], _fields: list[str]
) -> AsyncIterator[bytes]:
    batch = first
    while batch:
        yield "".join(_extended_line(document) + "\n" for document in batch).encode()
        batch = await anext(rest, [])


async def _json_export(
    first: list[Document], rest: AsyncIterator[list[Document]], _fields: list[str]
) -> AsyncIterator[bytes]:
    yield b"["
    separator = "\n"
    batch = first
    while batch:
        parts = []
        for document in batch:
            parts.append(separator + _extended_line(document))
            separator = ",\n"
        yield "".join(parts).encode()
        batch = await anext(rest, [])
    yield b"\n]\n"


#: A spreadsheet reads a cell starting with one of these as a formula (OWASP, CSV
#: injection): `=HYPERLINK(…)` would come out live.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutralised(text: str) -> str:
    """OWASP's advice for CSV cells: a text that a spreadsheet would take for a formula
    gets a leading `'`, which makes it text (numbers are written as they are)."""
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def _csv_cell(value: Any) -> str:
    plain = to_plain(value)
    if plain is None:
        return ""
    if isinstance(plain, bool):
        return "true" if plain else "false"
    if isinstance(plain, int | float):
        return str(plain)
    if isinstance(plain, dict | list):
        return _neutralised(json.dumps(plain, ensure_ascii=False, separators=(",", ":")))
    return _neutralised(str(plain))


async def _csv_export(
    first: list[Document], rest: AsyncIterator[list[Document]], fields: list[str]
) -> AsyncIterator[bytes]:
    header = ["_id", *fields]
    for document in first:
        for key in document:
            if key not in header:
                header.append(key)
    buffer = io.StringIO()
    # RFC 4180 line ends: a cell holding CR or LF is then quoted, so it stays one cell.
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([_neutralised(name) for name in header])
    batch = first
    while True:
        for document in batch:
            writer.writerow([_csv_cell(document.get(key)) for key in header])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        batch = await anext(rest, [])
        if not batch:
            return
