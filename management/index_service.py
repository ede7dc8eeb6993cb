"""The state of a collection's indexes and the documents that hold them off:
`get_metadata`'s `state`/`reason` per index and per key, `index_violations`
(the list) and `convert_index_violations` (the repair).

**State.** Each key field's type guard comes from the engine
(`EngineAdapter.field_guards`: on the embedded engine `building` while its typed
index is not serving yet, `off` while documents hold another type, for a type or
a dotted field without typed keys, or without the typed-index builder; on
MongoDB always `valid`, its own indexes serving, with the violations counted all
the same). An index is `off` when one of its keys is, else `building` when one
is, else `valid`; its reason joins its keys'. An index the engine lacks (listed
once per collection) is `off`, "missing on the engine", whatever its keys say. A
unique index with a dotted key gets a `note` where the engine does not count a
missing dotted key as null (`Capabilities.dotted_missing_as_null`); its state is
what the guards say.

**Violations** of a field are the documents whose field holds neither the type
its indexes declare, null nor nothing (`app.db.violation_filter`), listed in
`_id` order with the type each holds.

**Conversion** rewrites what converts without loss (`management.indexes.
lossless_conversion`), each document by one conditional update on the value it
was read with (`repository.set_value_if_unchanged`), so a write that changed it
meanwhile wins and is counted as `changed`; a converted value a unique index
already holds in another document is left as it was and counted in `conflicts`.
The call holds the database's lease (`ManagementService.lease`), as
`update_schema` does, so the declared type it converts to cannot change under it
(the lease lasts 60 s; a call stops after the batch that passes `CONVERT_SECONDS`).
One call converts at most `CONVERT_CAP` documents and reads at most `READ_CAP` (a
bounded request). Reads
go in `_id` order by keyset (`management.id_order`: `$gt` the last `_id` read,
or any `_id` of a later type bracket, as `_id`s may mix types), never by skip,
so documents left in place cost nothing to the next call: the answer's
`next_after` (that `_id` as canonical Extended JSON) resumes after them when
passed back as `after`, and `remaining` counts the violations after it (0, and
`next_after` null, once the end is reached). A call that only found documents
changed by a concurrent write still answers a token, so a client following
tokens never stops early.
"""

from __future__ import annotations

import time
from typing import Any

from pymongo.errors import OperationFailure

from app.db import Database, Document, FieldGuard, GuardState, is_duplicate_key, violation_filter
from app.http import Caller
from app.kit import to_plain
from management import repository as repo
from management.errors import NotAnIndexKey
from management.id_order import Position, after_position, decode_position, encode_position
from management.indexes import (
    UNCONVERTIBLE,
    bson_type_name,
    engine_name,
    index_keys,
    lossless_conversion,
)
from management.service import ManagementService

#: Documents one conversion call converts at most.
CONVERT_CAP = 1_000
#: Documents one conversion call reads at most (converted or not).
READ_CAP = 10_000
CONVERT_BATCH = 200
#: Seconds after which a conversion call stops at the end of its batch (well
#: inside the database lease it holds, 60 s), answering a token to go on.
CONVERT_SECONDS = 20.0
#: Pages of the listing at most (a page is read by skip: past this many, the
#: conversion's resume token walks on).
MAX_VIOLATION_PAGES = 10_000
LISTING_HINT = "GET /api/index_violations lists them"
DOTTED_MISSING_NOTE = (
    "a missing key is not counted as null for a dotted key on the {} engine: "
    "documents that lack it do not collide"
)
MISSING_ON_ENGINE = "missing on the engine; the next update_schema makes it again"
_SEVERITY: dict[GuardState, int] = {"valid": 0, "building": 1, "off": 2}
_MISSING = object()


class IndexService:
    def __init__(self, *, management: ManagementService) -> None:
        self.management = management
        self.database: Database = management.database

    # ------------------------------------------------------------------- state

    async def index_states(self, db_name: str, entry: Document) -> list[dict[str, Any]]:
        """The collection's indexes as `IndexOut` reads them, each with its state."""
        fields = entry.get("fields", [])
        indexes = entry.get("indexes", [])
        types: dict[str, str] = {}
        for index in indexes:
            for key in index_keys(index, fields):
                types.setdefault(key["field"], key["type"])
        guards = (
            await repo.field_guards(
                database=self.database, db_name=db_name, collection=entry["name"], fields=types
            )
            if types
            else {}
        )
        on_engine = (
            await repo.index_names(
                database=self.database, db_name=db_name, collection=entry["name"]
            )
            if indexes
            else set()
        )
        capabilities = (await self.database.adapter()).capabilities
        states = [_index_out(index, fields, guards, on_engine) for index in indexes]
        if not capabilities.dotted_missing_as_null:
            for state in states:
                if state["unique"] and any("." in key["field"] for key in state["keys"]):
                    state["note"] = DOTTED_MISSING_NOTE.format(capabilities.short_label)
        return states

    # -------------------------------------------------------------- violations

    async def list_violations(
        self,
        *,
        caller: Caller,
        database_id: str,
        collection_name: str,
        field: str,
        page: int,
        page_size: int,
    ) -> tuple[str, list[dict[str, Any]], int]:
        """The field's declared type, one page of `{_id, type}` and the total.
        Raises `DatabaseNotFound`, `CollectionNotFound`, `NotAnIndexKey`."""
        db_name, schema_type = await self._indexed_field(
            caller, database_id, collection_name, field
        )
        query = violation_filter(field, schema_type)
        if query is None:
            return schema_type, [], 0
        found = await repo.find_violations(
            database=self.database,
            db_name=db_name,
            collection=collection_name,
            query=query,
            field=field,
            skip=(page - 1) * page_size,
            limit=page_size,
        )
        total = await repo.count_matching(
            database=self.database, db_name=db_name, collection=collection_name, query=query
        )
        listed = [
            {"_id": to_plain(document["_id"]), "type": _type_at(document, field)}
            for document in found
        ]
        return schema_type, listed, total

    async def convert_violations(
        self,
        *,
        caller: Caller,
        database_id: str,
        collection_name: str,
        field: str,
        after: str | None = None,
    ) -> dict[str, Any]:
        """Convert what converts losslessly (see the module docstring). Raises
        `DatabaseNotFound`, `CollectionNotFound`, `NotAnIndexKey`, `DatabaseBusy`.

        Holds the database's lease (`ManagementService.lease`, as `update_schema`
        does) for the whole call and reads the declared type under it, so a type
        change cannot land between the read of the type and the writes of values
        of the old one."""
        record = await self.management.owned_database(caller=caller, database_id=database_id)
        position = None if after is None else Position(decode_position(after))
        async with self.management.lease(record) as current:
            db_name, schema_type = _indexed_field_of(current, collection_name, field)
            return await self._convert(db_name, collection_name, field, schema_type, position)

    async def _convert(
        self, db_name: str, collection_name: str, field: str, schema_type: str, after: Any
    ) -> dict[str, Any]:
        counts = {"converted": 0, "unconvertible": 0, "changed": 0, "conflicts": 0}
        query = violation_filter(field, schema_type)
        if query is None:
            return {
                "declared_type": schema_type,
                **counts,
                "remaining": 0,
                "cap": CONVERT_CAP,
                "next_after": None,
            }
        position, read = after, 0
        deadline = time.monotonic() + CONVERT_SECONDS
        while counts["converted"] < CONVERT_CAP and read < READ_CAP:
            batch = await repo.find_violations(
                database=self.database,
                db_name=db_name,
                collection=collection_name,
                query=after_position(query, position),
                field=field,
                skip=0,
                limit=min(CONVERT_BATCH, CONVERT_CAP - counts["converted"], READ_CAP - read),
            )
            if not batch:
                break
            read += len(batch)
            for document in batch:
                outcome = await self._convert_one(
                    db_name, collection_name, field, schema_type, document
                )
                counts[outcome] += 1
                position = Position(document["_id"])
            if time.monotonic() > deadline:
                break  # a batch at least per call: every call gets further
        remaining = await repo.count_matching(
            database=self.database,
            db_name=db_name,
            collection=collection_name,
            query=after_position(query, position),
        )
        return {
            "declared_type": schema_type,
            **counts,
            "remaining": remaining,
            "cap": CONVERT_CAP,
            "next_after": None if remaining == 0 else encode_position(position),
        }

    async def _convert_one(
        self, db_name: str, collection: str, field: str, schema_type: str, document: Document
    ) -> str:
        old = _value_at(document, field)
        new = UNCONVERTIBLE if old is _MISSING else lossless_conversion(schema_type, old)
        if new is UNCONVERTIBLE:
            return "unconvertible"
        try:
            written = await repo.set_value_if_unchanged(
                database=self.database,
                db_name=db_name,
                collection=collection,
                document_id=document["_id"],
                field=field,
                old=old,
                new=new,
            )
        except OperationFailure as exc:
            if not is_duplicate_key(exc):
                raise
            return "conflicts"  # another document holds the converted value already
        return "converted" if written else "changed"

    async def _indexed_field(
        self, caller: Caller, database_id: str, collection_name: str, field: str
    ) -> tuple[str, str]:
        """The physical database's name and the type the field's indexes declare."""
        record = await self.management.owned_database(caller=caller, database_id=database_id)
        return _indexed_field_of(record, collection_name, field)


def _indexed_field_of(record: Document, collection_name: str, field: str) -> tuple[str, str]:
    """Raises `CollectionNotFound`, `NotAnIndexKey`."""
    entry = ManagementService.find_collection(record, collection_name)
    fields = entry.get("fields", [])
    for index in entry.get("indexes", []):
        for key in index_keys(index, fields):
            if key["field"] == field:
                return str(record["dbName"]), str(key["type"])
    raise NotAnIndexKey(field, collection_name)


def _guard_out(guard: FieldGuard) -> dict[str, Any]:
    reason = guard.reason
    if guard.state == "off" and guard.violations:
        reason = f"{reason}; {LISTING_HINT}"
    return {"state": guard.state, "reason": reason, "violations": guard.violations}


def _index_out(
    index: Document,
    fields: list[dict[str, Any]],
    guards: dict[str, FieldGuard],
    on_engine: set[str],
) -> dict[str, Any]:
    keys = []
    for key in index_keys(index, fields):
        guard = guards.get(key["field"]) or FieldGuard("off", "the engine did not say")
        keys.append({**key, "guard": _guard_out(guard)})
    state: GuardState = max(
        (key["guard"]["state"] for key in keys), key=lambda s: _SEVERITY[s], default="valid"
    )
    reasons = [key["guard"]["reason"] for key in keys if key["guard"]["state"] == state]
    if engine_name(index) not in on_engine:  # lost; the next update_schema makes it again
        state, reasons = "off", [MISSING_ON_ENGINE]
    return {
        "name": index["name"],
        "field": index["field"],
        "unique": bool(index["unique"]),
        "declared": bool(index.get("declared")),
        "keys": keys,
        "state": state,
        "reason": None if state == "valid" else "; ".join(r for r in reasons if r) or None,
    }


def _type_at(document: Document, path: str) -> str:
    value = _value_at(document, path)
    return "array" if value is _MISSING else bson_type_name(value)


def _value_at(document: Any, path: str) -> Any:
    """The value at a dotted path, or `_MISSING` (also through an array, which
    holds no single value to convert)."""
    for part in path.split("."):
        if not isinstance(document, dict) or part not in document:
            return _MISSING
        document = document[part]
    return document
