"""The rules of document CRUD (crud.md): scoping, validation, all-or-nothing writes.

Every call finds the logical database by id *and owner* (through the management
service, so another owner's database is a 404 like a missing one) and the
collection among its ready collections, then compiles what the client sent —
filter (`app.schema.filters`), update (`data_api.documents.updates`), sort/projection/cursor
(`data_api.documents.query`), pipeline (`data_api.documents.pipeline`) — before touching data.

All-or-nothing without transactions (the embedded engine has none):
- insert: every document is validated first (422 lists every bad one). Ids the
  server assigns come from one `RangedIds` block, so the documents of a request
  can be removed by `_id` range; a duplicate key (or any refusal) removes what
  the ordered insert had written, then answers 409 `DUPLICATE_KEY` naming the
  index and field (the embedded engine does not name them, so the refused
  document's unique values are looked up).
- update: the matching documents are read first (at most `UNDO_LIMIT`); if the
  engine then refuses the update part-way (a duplicate key, a type the schema
  could not know), they are put back. An upsert's new document is validated in
  full and removed again when it does not pass.
- bulk: operations run in order with the same undo log (inserted ids, pre-images
  of updated and deleted documents); the first failure undoes every earlier
  operation of the request.

Decided where crud.md is silent: an update without a filter needs `"all": true`
like a delete; an update matching more than `UNDO_LIMIT` documents runs without
an undo log (logged); a bulk request may change at most `UNDO_LIMIT` existing
documents; an aggregation result over `max_aggregate_documents` is 422
`RESULT_TOO_LARGE` (never cut silently); `GET /api/crud/{id}` reads a 24-hex id as
an ObjectId, anything else as a string, and an integer literal as a number when
no string id matches. The undo of one update (and its journal rollback) takes
back only what that update wrote (`app.db.undo_update`: documents changed
since keep their new values); the undo of a bulk request restores its
pre-images, so there a concurrent writer's change in between is overwritten.

Time: the client waits for every write to finish (no socket timeout by
default), because abandoning a write does not stop the engine; reads run under
`QUARRY_QUERY_TIMEOUT_MS`, which the server enforces (504 `QUERY_TIMEOUT`).

An engine (or server) that dies mid-request cannot be compensated at once. A
multi-document insert or update is therefore written ahead to the same journal
as imports (`management.journal`: the `_id` ranges and the client `_id`s minus
those that existed before; for an update, the pre-images): when the undo cannot
run, the entry stays and the maintenance task removes the batch or puts the
pre-images back — where the documents still hold what the update wrote — once
the engine is back (within one maintenance interval; readers see the
half-applied write until then). A single-document write is atomic in
the engine and needs no entry. Not journalled: deletes (one SQL statement on the
embedded engine, so all or nothing there; on MongoDB a `delete_many` cut short
stays cut short), updates of more than `UNDO_LIMIT` documents, and bulk
requests (their undo runs only while the engine answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import bson
from pymongo.errors import (
    BulkWriteError,
    DocumentTooLarge,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
)

from app.db import (
    NOT_IMPLEMENTED_CODE,
    Database,
    Document,
    duplicate_index,
    engine_message,
    is_duplicate_key,
    is_duplicate_key_message,
    is_transient,
    outcome_unknown,
)
from app.errors import EngineUnsupported, PayloadTooLarge, QuarryError
from app.http import Caller
from app.kit import RangedIds, check_name, id_key, to_plain
from app.schema import CompiledSchema, InvalidFilter, compile_filter, convert_id
from app.settings import Settings
from data_api.documents import repository as repo
from data_api.documents.errors import (
    DocumentNotFound,
    DocumentsInvalid,
    DuplicateKey,
    FilterRequired,
    InvalidPipeline,
    InvalidProjection,
    ResultTooLarge,
    TooManyDocuments,
    WriteRefused,
)
from data_api.documents.pipeline import compile_pipeline
from data_api.documents.query import (
    CursorCodec,
    Sort,
    keyset_filter,
    parse_projection,
    parse_sort,
    possible_ranks,
    value_at,
)
from data_api.documents.repository import Target
from data_api.documents.schemas import BulkInsert, BulkOperation, BulkUpdate
from data_api.documents.updates import CompiledUpdate, compile_update, pin_current_date
from management.journal import JournalEntry
from management.service import ManagementService, collection_schema

logger = logging.getLogger("quarry.data_api")

UNDO_LIMIT = 10_000
_MONGO_INDEX = re.compile(r"index: (\S+) dup key")


@dataclass(frozen=True)
class Collection:
    """A caller's collection, resolved and ready to use."""

    target: Target
    schema: CompiledSchema
    database_id: str
    name: str
    #: unique field → index name
    unique: dict[str, str]


@dataclass
class Page:
    documents: list[Document]
    pagination: dict[str, Any]


@dataclass
class UpdateResult:
    matched_count: int
    modified_count: int
    upserted_id: Any


@dataclass
class Undo:
    """What a request wrote, so that a failure can take it back."""

    target: Target
    ids: RangedIds = field(default_factory=RangedIds)
    #: Documents the request wrote with ids the client chose: taken back only
    #: where they are still stored exactly so (a document that existed with that
    #: `_id` before, or was written since, is not ours to delete).
    client_written: list[Document] = field(default_factory=list)
    #: Upserted ids (their documents are the engine's; no copy to compare with).
    client_ids: list[Any] = field(default_factory=list)
    pre_images: dict[bytes, Document] = field(default_factory=dict)
    inserted: set[bytes] = field(default_factory=set)
    #: The one update this undo takes back (None in a bulk, which may hold several).
    update: Document | None = None
    done: bool = False
    failed: bool = False

    def remember(self, documents: Sequence[Document]) -> None:
        for document in documents:
            key = id_key(document["_id"])
            if key not in self.inserted:
                self.pre_images.setdefault(key, document)

    def wrote(self, documents: Sequence[Document], generated: set[bytes]) -> None:
        for document in documents:
            key = id_key(document["_id"])
            self.inserted.add(key)
            if key not in generated:
                self.client_written.append(document)

    def upserted(self, document_id: Any) -> None:
        self.inserted.add(id_key(document_id))
        self.client_ids.append(document_id)

    @property
    def completed(self) -> bool:
        """True once `run` has undone everything (or there was nothing to undo)."""
        return self.done and not self.failed

    async def run(self) -> None:
        """Undo everything recorded; best effort (logged) when the engine fails too."""
        if self.done:
            return
        self.done = True
        try:
            for low, high in self.ids.ranges:
                await repo.delete_id_range(target=self.target, low=low, high=high)
            await repo.delete_written(target=self.target, documents=self.client_written)
            await repo.delete_by_ids(target=self.target, ids=self.client_ids)
            restore = [doc for key, doc in self.pre_images.items() if key not in self.inserted]
            if self.update is not None and restore:
                await repo.undo_update(target=self.target, pre_images=restore, update=self.update)
            else:
                await repo.restore_documents(target=self.target, documents=restore)
        except PyMongoError as exc:
            self.failed = True
            logger.error(
                "could not undo a failed request on %s.%s: %s",
                self.target.db_name,
                self.target.collection,
                type(exc).__name__,
            )


@contextlib.asynccontextmanager
async def journalled(journal: JournalEntry | None, undo: Undo) -> AsyncIterator[None]:
    """Remove the journal entry when the write succeeded or its undo ran; keep it
    (released, for the maintenance task) when the undo could not reach the engine
    or never ran because the engine failed first."""
    if journal is None:
        yield
        return
    try:
        yield
    except BaseException:
        if undo.completed:
            journal.remove()
        else:
            journal.release()
        raise
    journal.remove()


class DocumentService:
    def __init__(
        self,
        *,
        database: Database,
        settings: Settings,
        management: ManagementService,
        cursors: CursorCodec,
    ) -> None:
        self.database = database
        self.settings = settings
        self.management = management
        self.cursors = cursors

    # ------------------------------------------------------------------ lookup

    async def open(self, *, caller: Caller, database_id: str, collection_name: str) -> Collection:
        """Raises `InvalidId`, `InvalidName`, `DatabaseNotFound`, `CollectionNotFound`."""
        check_name(collection_name, kind="collection")
        record = await self.management.owned_database(caller=caller, database_id=database_id)
        entry = self.management.find_collection(record, collection_name)
        await self.database.apply_value_limits()
        unique = {
            index["field"]: index["name"] for index in entry.get("indexes", []) if index["unique"]
        }
        return Collection(
            target=Target(self.database, record["dbName"], collection_name),
            schema=collection_schema(entry),
            database_id=database_id,
            name=collection_name,
            unique=unique,
        )

    # ------------------------------------------------------------------ insert

    async def insert(self, *, collection: Collection, data: Any) -> list[Any]:
        """Raises `TooManyDocuments`, `DocumentsInvalid`, `DuplicateKey`, `WriteRefused`."""
        many = isinstance(data, list)
        documents = self.validate_documents(collection, data if many else [data], many=many)
        undo = Undo(collection.target)
        generated = self.assign_ids(documents, undo.ids)
        loc: list[str | int] = ["data"] if many else []
        if len(documents) == 1:
            await self._insert(collection, documents, undo, generated, loc=loc)
            return [documents[0]["_id"]]
        journal = await self._journal_insert(collection, documents, generated, undo.ids)
        async with journalled(journal, undo):
            await self._insert(collection, documents, undo, generated, loc=loc, defer_unknown=True)
        return [document["_id"] for document in documents]

    def _journal_update(
        self, target: Target, before: list[Document], update: Document
    ) -> JournalEntry:
        """Write ahead the documents a multi-document update is about to change."""
        journal = JournalEntry.create(self.management.journal_root)
        try:
            journal.save_pre_images(before)
            journal.save_update(update)
            journal.commit(db_name=target.db_name, collection=target.collection, ranges=[])
        except BaseException:
            journal.remove()
            raise
        return journal

    async def _journal_insert(
        self,
        collection: Collection,
        documents: list[Document],
        generated: set[bytes],
        ids: RangedIds,
    ) -> JournalEntry:
        """Write ahead what a rollback of this insert would delete."""
        target = collection.target
        journal = JournalEntry.create(self.management.journal_root)
        try:
            chosen = [d for d in documents if id_key(d["_id"]) not in generated]
            if chosen:
                with journal.open_ids() as handle:
                    for index, document in enumerate(chosen):
                        handle.write(bson.encode({"_id": document["_id"], "i": index}))
                # The rollback deletes a client-chosen id only where the document
                # is stored exactly as written: never one that existed before or
                # was written by someone else since.
                journal.save_written(chosen)
                existing = await repo.existing_ids(target=target, ids=[d["_id"] for d in chosen])
                if existing:
                    journal.exclude(existing)
            journal.commit(db_name=target.db_name, collection=target.collection, ranges=ids.ranges)
        except BaseException:
            journal.remove()
            raise
        return journal

    def validate_documents(
        self, collection: Collection, documents: list[Any], *, many: bool
    ) -> list[Document]:
        limit = self.settings.max_insert_documents
        if len(documents) > limit:
            raise TooManyDocuments(count=len(documents), limit=limit)
        if not documents:
            raise DocumentsInvalid(
                [{"loc": ["data"], "msg": "at least one document is needed", "type": "empty"}]
            )
        converted: list[Document] = []
        problems: list[dict[str, Any]] = []
        for index, document in enumerate(documents):
            out, found = collection.schema.validate(document, index=index if many else None)
            if found:
                problems.extend({**problem, "loc": ["data", *problem["loc"]]} for problem in found)
            elif out is not None:
                converted.append(out)
        if problems:
            raise DocumentsInvalid(problems, what="document" if not many else "batch")
        return converted

    @staticmethod
    def assign_ids(documents: list[Document], ids: RangedIds) -> set[bytes]:
        """Give documents without `_id` one from `ids` (first key, as MongoDB does)."""
        generated: set[bytes] = set()
        for position, document in enumerate(documents):
            if "_id" not in document:
                new_id = ids.next()
                documents[position] = {"_id": new_id, **document}
                generated.add(id_key(new_id))
        return generated

    async def _insert(
        self,
        collection: Collection,
        documents: list[Document],
        undo: Undo,
        generated: set[bytes],
        *,
        loc: list[str | int],
        offset: int = 0,
        defer_unknown: bool = False,
    ) -> None:
        """`defer_unknown`: when the outcome is unknown (the connection failed), the
        engine may still be inserting; the journal's rollback, once the engine
        answers again, is what takes the batch back, not an undo racing it now."""
        try:
            await repo.insert_documents(target=collection.target, documents=documents)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors") or [{}]
            first = min(errors, key=lambda error: int(error.get("index", 0)))
            index = int(first.get("index", 0))
            undo.wrote(documents[:index], generated)
            failure = await self._write_failure(
                collection, documents[index], first, loc, offset + index
            )
            await undo.run()
            raise failure from None
        except DocumentTooLarge:
            undo.wrote(documents, generated)
            await undo.run()
            raise PayloadTooLarge(
                "A document is larger than the 16 MiB a document may be; nothing was written."
            ) from None
        except PyMongoError as exc:
            undo.wrote(documents, generated)
            if not (defer_unknown and outcome_unknown(exc)):
                await undo.run()
            raise
        undo.wrote(documents, generated)

    async def _write_failure(
        self,
        collection: Collection,
        document: Document,
        error: dict[str, Any],
        loc: list[str | int],
        index: int,
    ) -> Exception:
        where: list[str | int] = [*loc, index] if loc else []
        if is_duplicate_key_message(error.get("code"), str(error.get("errmsg"))):
            field_name, index_name = await self._duplicate_of(collection, document, error)
            return DuplicateKey(field=field_name, index=index_name, loc=where)
        message = str(error.get("errmsg", "refused"))[:300]
        return WriteRefused(
            f"Document {index} was refused by the database ({message}); nothing was written."
        )

    async def _duplicate_of(
        self, collection: Collection, document: Document, error: dict[str, Any]
    ) -> tuple[str | None, str | None]:
        """(field, index) of the unique index `document` clashes with."""
        pattern = error.get("keyPattern")
        if isinstance(pattern, dict) and pattern:
            name = _MONGO_INDEX.search(str(error.get("errmsg", "")))
            field_name = next(iter(pattern))
            return field_name, name.group(1) if name else collection.unique.get(field_name)
        target = collection.target
        if await repo.find_document(target=target, query={"_id": document["_id"]}) is not None:
            return "_id", "_id_"
        for field_name, index_name in collection.unique.items():
            if field_name in document and await repo.any_other_with(
                target=target,
                field=field_name,
                value=document[field_name],
                exclude_id=document["_id"],
            ):
                return field_name, index_name
        return None, None

    # ------------------------------------------------------------------- reads

    async def find(
        self,
        *,
        collection: Collection,
        filters: dict[str, Any],
        sort: str | None,
        fields: str | None,
        page: int | None,
        page_size: int,
        after: str | None,
        count: bool,
    ) -> Page:
        """Raises `InvalidFilter`, `InvalidSort`, `InvalidProjection`, `InvalidCursor`."""
        query = compile_filter(filters, collection.schema)
        keys = parse_sort(sort)
        projection = parse_projection(fields)
        fingerprint = self.cursors.fingerprint(collection.database_id, collection.name, query, keys)
        effective: Document | None = query
        skip = 0
        if after:
            values = self.cursors.decode(after, fingerprint=fingerprint, keys=len(keys))
            possible = {
                name: possible_ranks(collection.schema.field_type(name))
                for name, _ in keys
                if name != "_id"
            }
            keyset = keyset_filter(keys, values, possible)
            effective = None if keyset is None else ({"$and": [query, keyset]} if query else keyset)
        else:
            skip = ((page or 1) - 1) * page_size
        fetch, strip = _projection_with_keys(projection, keys)
        documents: list[Document] = []
        if not after and skip == 0 and _unique_equality(query, collection.unique):
            # At most one document can match: no sort, and the engine may stop at the
            # first match instead of reading the rest of the collection.
            documents = await self._read(collection.target, query, [], fetch, skip=0, limit=1)
        elif effective is not None:
            documents = await self._read(
                collection.target, effective, keys, fetch, skip=skip, limit=page_size + 1
            )
        has_next = len(documents) > page_size
        documents = documents[:page_size]
        next_cursor = None
        if has_next:
            last = [value_at(documents[-1], name) for name, _ in keys]
            next_cursor = self.cursors.encode(fingerprint=fingerprint, values=last)
        for path, prune in strip:
            for document in documents:
                _delete_path(document, path.split("."), prune=prune)
        total = None
        if not after and not has_next and (documents or skip == 0):
            # The last page is in hand: the total is known without counting (which
            # costs another pass over the collection on the embedded engine).
            total = skip + len(documents)
        elif not after or count:
            total = await self._engine_call(
                repo.count_documents(target=collection.target, query=query), InvalidFilter
            )
        pagination: dict[str, Any] = {
            "page": None if after else (page or 1),
            "page_size": page_size,
            "total_items": total,
            "total_pages": None if total is None else (total + page_size - 1) // page_size,
            "has_next": has_next,
            "has_previous": bool(after) or (page or 1) > 1,
            "next_cursor": next_cursor,
        }
        return Page(documents=documents, pagination=pagination)

    async def _read(
        self,
        target: Target,
        query: Document,
        keys: Sort,
        projection: dict[str, int] | None,
        *,
        skip: int,
        limit: int,
        time_limited: bool = True,
        any_order: bool = False,
    ) -> list[Document]:
        return await self._engine_call(
            repo.find_documents(
                target=target,
                query=query,
                sort=keys,
                projection=projection,
                skip=skip,
                limit=limit,
                time_limited=time_limited,
                any_order=any_order,
            ),
            InvalidFilter,
        )

    async def get(
        self, *, collection: Collection, document_id: str, fields: str | None
    ) -> Document:
        """Raises `DocumentNotFound`, `InvalidProjection`."""
        projection = parse_projection(fields)
        found = await repo.find_document(
            target=collection.target, query={"_id": convert_id(document_id)}, projection=projection
        )
        if found is None and re.fullmatch(r"-?\d{1,18}", document_id):
            found = await repo.find_document(
                target=collection.target, query={"_id": int(document_id)}, projection=projection
            )
        if found is None:
            raise DocumentNotFound(document_id)
        return found

    async def count(self, *, collection: Collection, filters: dict[str, Any]) -> int:
        query = compile_filter(filters, collection.schema)
        return await self._engine_call(
            repo.count_documents(target=collection.target, query=query), InvalidFilter
        )

    async def aggregate(self, *, collection: Collection, pipeline: Any) -> list[Document]:
        """Raises `InvalidPipeline`, `EngineUnsupported`, `ResultTooLarge`."""
        capabilities = (await self.database.adapter()).capabilities
        compiled = compile_pipeline(pipeline, collection.schema, capabilities=capabilities)
        limit = self.settings.max_aggregate_documents
        if "$count" not in compiled[-1]:
            compiled.append({"$limit": limit + 1})
        documents = await self._engine_call(
            repo.aggregate(target=collection.target, pipeline=compiled, limit=limit + 1),
            InvalidPipeline,
        )
        if len(documents) > limit:
            raise ResultTooLarge(
                f"The pipeline returns more than {limit:,} documents; add $match, $limit or "
                "$skip stages to narrow it."
            )
        return documents

    # ----------------------------------------------------------------- updates

    async def update(
        self,
        *,
        collection: Collection,
        filters: dict[str, Any] | None,
        update_data: Any,
        upsert: bool,
        multi: bool,
        all_documents: bool,
        undo: Undo | None = None,
    ) -> UpdateResult:
        """Raises `FilterRequired`, `InvalidFilter`, `InvalidUpdate`, `DocumentsInvalid`,
        `DuplicateKey`, `WriteRefused`, `EngineUnsupported`."""
        query, compiled = await self.compile_update(
            collection, filters, update_data, all_documents=all_documents
        )
        return await self.apply_update(
            collection, query, compiled, upsert=upsert, multi=multi, undo=undo
        )

    async def compile_update(
        self,
        collection: Collection,
        filters: dict[str, Any] | None,
        update_data: Any,
        *,
        all_documents: bool,
    ) -> tuple[Document, CompiledUpdate]:
        if not filters and not all_documents:
            raise FilterRequired("update")
        query = compile_filter(filters or {}, collection.schema)
        capabilities = (await self.database.adapter()).capabilities
        compiled = compile_update(
            update_data, collection.schema, engine_modifiers=capabilities.push_modifiers
        )
        return query, compiled

    async def apply_update(
        self,
        collection: Collection,
        query: Document,
        compiled: CompiledUpdate,
        *,
        upsert: bool,
        multi: bool,
        undo: Undo | None = None,
    ) -> UpdateResult:
        target = collection.target
        own_undo = undo is None
        undo = undo or Undo(target)
        # A fixed time instead of $currentDate: an undo replays the update and must
        # compute the same values the engine wrote.
        document = pin_current_date(compiled.document)
        if upsert:
            document = compiled.with_defaults(collection.schema.defaults(), exclude=set(query))
            document = pin_current_date(document)
        # Several in any order (an undo log holds them all or none; the embedded
        # engine's planner reads them in `_id` order); one in the engine's own order,
        # the document update_one then changes.
        before = await self._read(
            target,
            query,
            [],
            None,
            skip=0,
            limit=UNDO_LIMIT + 1 if multi else 1,
            time_limited=False,
            any_order=multi,
        )
        if len(before) > UNDO_LIMIT:
            if not own_undo:
                raise TooManyDocuments(
                    count=len(before),
                    limit=UNDO_LIMIT,
                    what="existing documents changed by one bulk",
                )
            logger.warning("update of more than %d documents runs without an undo log", UNDO_LIMIT)
        else:
            undo.remember(before)
        journal = None
        if own_undo:
            undo.update = document
        if own_undo and 1 < len(before) <= UNDO_LIMIT:
            # Up to UNDO_LIMIT documents encoded and written: off the event loop.
            journal = await asyncio.to_thread(self._journal_update, target, before, document)
            if not upsert:
                query = _only_these(query, [doc["_id"] for doc in before])
        async with journalled(journal, undo):
            try:
                outcome = await repo.update_documents(
                    target=target, query=query, update=document, multi=multi, upsert=upsert
                )
            except OperationFailure as exc:
                if own_undo and not is_transient(exc):
                    await undo.run()
                if is_transient(exc) or (exc.code == 1 and not is_duplicate_key(exc)):
                    raise
                raise await self._update_failure(collection, exc, compiled) from None
        if outcome.upserted_id is not None:
            undo.upserted(outcome.upserted_id)
            await self._check_upserted(collection, outcome.upserted_id, undo if own_undo else None)
        return UpdateResult(outcome.matched_count, outcome.modified_count, outcome.upserted_id)

    async def _update_failure(
        self, collection: Collection, exc: OperationFailure, compiled: CompiledUpdate
    ) -> Exception:
        if is_duplicate_key(exc):
            return DuplicateKey(
                **self._duplicate_from_message(collection, exc, compiled), loc=["update_data"]
            )
        if exc.code == NOT_IMPLEMENTED_CODE:
            return EngineUnsupported(
                f"The {self.database.engine_label} engine cannot do this update: "
                f"{engine_message(exc)}. Run Quarry on MongoDB for it."
            )
        return WriteRefused(
            f"The database refused the update ({engine_message(exc)}); nothing was changed."
        )

    @staticmethod
    def _duplicate_from_message(
        collection: Collection, exc: OperationFailure, compiled: CompiledUpdate
    ) -> dict[str, str | None]:
        details = exc.details or {}
        pattern = details.get("keyPattern")
        if isinstance(pattern, dict) and pattern:
            field_name = next(iter(pattern))
            return {"field": field_name, "index": collection.unique.get(field_name)}
        index_name = duplicate_index(str(exc), collection.unique.values())
        if index_name is not None:
            field_name = next(f for f, i in collection.unique.items() if i == index_name)
            return {"field": field_name, "index": index_name}
        touched = [name for name in compiled.fields if name in collection.unique]
        if len(touched) == 1:
            return {"field": touched[0], "index": collection.unique[touched[0]]}
        return {"field": None, "index": None}

    async def _check_upserted(
        self, collection: Collection, document_id: Any, undo: Undo | None
    ) -> None:
        """An upsert's new document must pass the schema like an insert; else it goes."""
        stored = await repo.find_document(target=collection.target, query={"_id": document_id})
        if stored is None:
            return
        _, problems = collection.schema.validate(stored, fill_defaults=False)
        if problems:
            if undo is not None:
                await undo.run()
            raise DocumentsInvalid(
                [{**problem, "loc": ["upsert", *problem["loc"]]} for problem in problems],
                what="upserted document",
            )

    # ----------------------------------------------------------------- deletes

    async def delete(
        self,
        *,
        collection: Collection,
        filters: dict[str, Any] | None,
        multi: bool,
        all_documents: bool,
        undo: Undo | None = None,
    ) -> int:
        """Raises `FilterRequired`, `InvalidFilter`."""
        query = self.compile_delete(collection, filters, all_documents=all_documents)
        return await self.apply_delete(collection, query, multi=multi, undo=undo)

    @staticmethod
    def compile_delete(
        collection: Collection, filters: dict[str, Any] | None, *, all_documents: bool
    ) -> Document:
        if not filters and not all_documents:
            raise FilterRequired("delete")
        return compile_filter(filters or {}, collection.schema)

    async def apply_delete(
        self, collection: Collection, query: Document, *, multi: bool, undo: Undo | None = None
    ) -> int:
        target = collection.target
        if undo is not None:
            before = await self._read(
                target,
                query,
                [],
                None,
                skip=0,
                limit=UNDO_LIMIT + 1 if multi else 1,
                time_limited=False,
            )
            if len(before) + len(undo.pre_images) > UNDO_LIMIT:
                raise TooManyDocuments(
                    count=len(before),
                    limit=UNDO_LIMIT,
                    what="existing documents changed by one bulk",
                )
            undo.remember(before)
        return await self._engine_call(
            repo.delete_documents(target=target, query=query, multi=multi), InvalidFilter
        )

    # -------------------------------------------------------------------- bulk

    async def bulk(self, *, collection: Collection, operations: list[BulkOperation]) -> BulkOutcome:
        """Every operation is checked before any runs; they then run in order and the
        first failure undoes the earlier ones. Raises what insert/update/delete raise,
        located at `operations[i]`."""
        limit = self.settings.max_bulk_operations
        if len(operations) > limit:
            raise TooManyDocuments(count=len(operations), limit=limit, what="bulk operations")
        steps = await self._compile_bulk(collection, operations)
        undo = Undo(collection.target)
        outcome = BulkOutcome()
        try:
            position = 0
            while position < len(steps):
                kind, payload = steps[position]
                if kind == "insert":
                    end = position
                    while end < len(steps) and steps[end][0] == "insert":
                        end += 1
                    documents = [document for _, document in steps[position:end]]
                    generated = self.assign_ids(documents, undo.ids)
                    await self._insert(
                        collection, documents, undo, generated, loc=["operations"], offset=position
                    )
                    outcome.inserted(documents)
                    position = end
                    continue
                try:
                    if kind == "update":
                        query, compiled, upsert, multi = payload
                        result = await self.apply_update(
                            collection, query, compiled, upsert=upsert, multi=multi, undo=undo
                        )
                        outcome.updated(result)
                    else:
                        query, multi = payload
                        deleted = await self.apply_delete(collection, query, multi=multi, undo=undo)
                        outcome.deleted(deleted)
                except QuarryError as exc:
                    raise _located(exc, position) from None
                position += 1
        except BaseException:
            await undo.run()
            raise
        return outcome

    async def _compile_bulk(
        self, collection: Collection, operations: list[BulkOperation]
    ) -> list[tuple[str, Any]]:
        steps: list[tuple[str, Any]] = []
        problems: list[dict[str, Any]] = []
        for position, operation in enumerate(operations):
            try:
                if isinstance(operation, BulkInsert):
                    out, found = collection.schema.validate(operation.insert)
                    problems.extend(
                        {**item, "loc": ["operations", position, "insert", *item["loc"]]}
                        for item in found
                    )
                    steps.append(("insert", out))
                elif isinstance(operation, BulkUpdate):
                    spec = operation.update
                    query, compiled = await self.compile_update(
                        collection, spec.filters, spec.update_data, all_documents=spec.all
                    )
                    steps.append(("update", (query, compiled, spec.upsert, spec.multi)))
                else:
                    spec_delete = operation.delete
                    query = self.compile_delete(
                        collection, spec_delete.filters, all_documents=spec_delete.all
                    )
                    steps.append(("delete", (query, spec_delete.multi)))
            except DocumentsInvalid as exc:
                problems.extend(
                    {**item, "loc": ["operations", position, *item["loc"]]}
                    for item in exc.details or []
                )
            except QuarryError as exc:
                raise _located(exc, position) from None
        if problems:
            raise DocumentsInvalid(problems, what="bulk request")
        return steps

    # ------------------------------------------------------------------ engine

    async def _engine_call(self, awaitable: Any, refusal: type[QuarryError]) -> Any:
        """Await a read or delete; the engine refusing what the client sent (a regex it
        cannot compile, a type alias it lacks) is the client's 400, not a 500."""
        try:
            return await awaitable
        except OperationFailure as exc:
            if is_transient(exc) or isinstance(exc, ExecutionTimeout):
                raise
            if exc.code in (1, NOT_IMPLEMENTED_CODE):
                raise
            raise refusal(f"The database refused the request: {engine_message(exc)}.") from None


def _only_these(query: Document, ids: list[Any]) -> Document:
    """`query` limited to the documents whose pre-images were read: one that starts
    matching after that read (no snapshot here) is not changed by this update, so
    that everything it changes can be put back. Top-level conditions stay where
    they were, so the engine can still use an index for them."""
    limit = {"_id": {"$in": ids}}
    if "_id" in query:
        return {"$and": [query, limit]}
    return {**query, **limit}


@dataclass
class BulkOutcome:
    inserted_count: int = 0
    matched_count: int = 0
    modified_count: int = 0
    upserted_count: int = 0
    deleted_count: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)

    def inserted(self, documents: list[Document]) -> None:
        self.inserted_count += len(documents)
        self.results.extend({"op": "insert", "inserted_id": doc["_id"]} for doc in documents)

    def updated(self, result: UpdateResult) -> None:
        self.matched_count += result.matched_count
        self.modified_count += result.modified_count
        self.upserted_count += result.upserted_id is not None
        self.results.append({"op": "update", **result.__dict__})

    def deleted(self, count: int) -> None:
        self.deleted_count += count
        self.results.append({"op": "delete", "deleted_count": count})


def _located(exc: QuarryError, position: int) -> QuarryError:
    """The same error, saying which bulk operation it is about."""
    exc.message = f"Operation {position}: {exc.message}"
    exc.details = [
        {**item, "loc": ["operations", position, *item.get("loc", [])]}
        for item in exc.details or []
    ] or None
    return exc


def _unique_equality(query: Document, unique: dict[str, str]) -> bool:
    """Whether `query` is one equality on a unique field (so at most one match)."""
    if len(query) != 1:
        return False
    name, condition = next(iter(query.items()))
    if name != "_id" and name not in unique:
        return False
    if isinstance(condition, dict):
        return set(condition) == {"$eq"} and not isinstance(condition["$eq"], dict | list)
    return not isinstance(condition, list) and condition is not None


def _projection_with_keys(
    projection: dict[str, int] | None, keys: Sort
) -> tuple[dict[str, int] | None, list[tuple[str, bool]]]:
    """The projection to fetch with so that every sort key is read (a cursor needs
    them), and the paths to strip again afterwards (prune empty parents or not)."""
    if projection is None:
        return None, []
    fetch = dict(projection)
    strip: list[tuple[str, bool]] = []
    including = any(flag == 1 for name, flag in projection.items() if name != "_id") or (
        projection == {"_id": 1}
    )
    for name, _ in keys:
        if including:
            if name == "_id":
                if projection.get("_id") == 0:
                    fetch["_id"] = 1
                    strip.append(("_id", False))
                continue
            covered = any(
                name == path or name.startswith(path + ".")
                for path, flag in projection.items()
                if flag == 1
            )
            if covered:
                continue
            if any(path.startswith(name + ".") for path in projection):
                raise InvalidProjection(
                    f"When sorting by '{name}', select '{name}' whole or not at all."
                )
            fetch[name] = 1
            strip.append((name, True))
        else:
            for path in list(fetch):
                if path == name or name.startswith(path + ".") or path.startswith(name + "."):
                    del fetch[path]
                    strip.append((path, False))
    return fetch or None, strip


def _delete_path(document: Any, parts: list[str], *, prune: bool) -> None:
    if isinstance(document, list):
        for item in document:
            _delete_path(item, parts, prune=prune)
        return
    if not isinstance(document, dict) or parts[0] not in document:
        return
    if len(parts) == 1:
        del document[parts[0]]
        return
    child = document[parts[0]]
    _delete_path(child, parts[1:], prune=prune)
    if prune and child == {}:
        del document[parts[0]]


def plain_documents(documents: list[Document]) -> list[Any]:
    return [to_plain(document) for document in documents]
