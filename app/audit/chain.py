"""The chain itself: appending exactly once per position, retention, reading.

**Appending exactly, without transactions.** The embedded engine has no
transactions and no atomic read-modify-write across connections, but it enforces
unique indexes atomically, so the unique index on `seq` decides who owns each
position of the chain. Each process keeps a hint of the head — `(seq, hash, at)`
of the last record it knows — and inserts `seq + 1` with `prev_hash` = the hint's
hash. A duplicate key means another worker took that position: the record there
is read (equality on the indexed `seq`, one fast lookup), becomes the hint, and
the next position is tried. A failed insert leaves nothing behind, so the chain
has no gaps; appends within a process are serialized by an `asyncio.Lock` (they
would only collide with each other). On start the hint comes from the small
`audit_head` document (best effort: updated after appends with a `seq: {$lt: n}`
guard, so it only moves forward, give or take a race that merely costs a probe)
and is then probed forward by equality lookups, galloping and then bisecting,
so that even a lost `audit_head` costs O(log n) lookups. Nothing on this path
sorts or scans the collection, which on the embedded engine would read it whole.

**Retention** (`QUARRY_AUDIT_RETENTION_DAYS`): a periodic sweep deletes records
older than that from the oldest end only, one equality delete per record. It
first writes an anchor — `{_id: seq, hash, at}` of the newest record it is about
to delete, in `audit_anchor` — and then deletes; the chain now starts after the
anchor with the anchor's hash as its `prev_hash`, and `verify` starts there.
The effective anchor is the highest `_id` of that tiny collection, so two
sweeping workers cannot move it backwards; an anchor whose deletes a crash cut
short is finished by the next sweep. No TTL index: one would delete records
without moving the anchor and so break the chain. One race needs care: a worker
whose hint is older than the records being swept could try a position the sweep
has just freed. Positions after the hint were all written after the hint's
record, so only a hint whose record is older than half the retention period is at
risk; such an append reads the anchor before inserting and again after, and
takes its record back (and goes on from the anchor) if a sweep passed it.

**Failures.** The middleware writes the record before it forwards the start of
the answer, so a client that has seen an answer can find its record. When that
write fails (the database is unreachable, say), the mutation has already
happened: the answer is not turned into an error, a warning is logged instead
(the access log still has the request). Once an append has lost the
connection, the next ones fail at once until the driver finds the server again,
so requests queued behind the lock do not each wait out a timeout: an outage
delays only its first mutating answer, by one server-selection timeout.
`AuditLog.append`, called by features for non-request events, raises and lets
its caller decide.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from fastapi import Request
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from app.audit.context import RequestContext, request_context
from app.audit.records import (
    ANCHORS,
    AUDIT,
    HEAD,
    HEAD_ID,
    INDEXES,
    MAX_APPEND_ATTEMPTS,
    RECORDS,
    SWEEP_BATCH,
    TYPED_FIELDS,
    WALK_BATCH,
    AuditUnavailable,
    Link,
    anchor_of,
    link_of,
    object_id_or_none,
    record_hash,
    storable,
)
from app.audit.verify import ChainChecker, ChainReport, saved_head_seq
from app.audit.visibility import AuditFilter, Visibility
from app.clock import utc_now
from app.db import (
    After,
    Before,
    Condition,
    Database,
    DatabaseHandle,
    Document,
    Eq,
    PageQuery,
    is_duplicate_key,
)
from app.settings import Settings

logger = logging.getLogger("quarry.audit")


class AuditLog:
    """The audit log of one app instance (provided in the app's state as `AuditLog`)."""

    def __init__(self, *, database: Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings
        self._lock = asyncio.Lock()
        self._head: Link | None = None
        #: The last append lost the connection: until the driver finds the server
        #: again, appends fail at once instead of each waiting out a timeout in turn.
        self._unreachable = False

    @property
    def _control(self) -> DatabaseHandle:
        return self._database.control

    @property
    def indexes_ready(self) -> bool:
        return AUDIT in self._database.indexes_ready

    async def ensure_indexes(self) -> None:
        # One at a time: the embedded engine drops the connection when one
        # createIndexes command names several indexes that all exist already.
        for index in INDEXES:
            await self._control[RECORDS].create_indexes([index])
        # The audit pages' typed fields (`app.engine.planner`: built in the background).
        await self._control[RECORDS].declare_fields(TYPED_FIELDS)
        self._database.indexes_ready.add(AUDIT)

    # ------------------------------------------------------------- appending

    async def append(
        self,
        *,
        action: str,
        resource_type: str | None = None,
        resource_id: ObjectId | str | None = None,
        dataset_id: ObjectId | str | None = None,
        actor_user_id: ObjectId | str | None = None,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
        request: Request | None = None,
        api_key_prefix: str | None = None,
    ) -> Document:
        """Write one record and return it. With `request`, its id, address, user
        agent and authenticated caller fill what is not given. Raises PyMongoError
        (the database failed) or AuditUnavailable."""
        context = request_context(request.scope) if request is not None else RequestContext()
        if actor_user_id is None and context.caller is not None:
            actor_user_id = context.caller.user_id
        content: Document = {
            "actor_user_id": object_id_or_none(actor_user_id),
            "api_key_prefix": api_key_prefix or context.api_key_prefix,
            "action": action,
            "resource_type": resource_type,
            "resource_id": None if resource_id is None else str(resource_id),
            "dataset_id": object_id_or_none(dataset_id),
            "status": status,
            "request_id": context.request_id,
            "ip": context.ip,
            "user_agent": context.user_agent,
            "details": storable(dict(details or {})),
        }
        return await self._chain(content)

    async def _chain(self, content: Document) -> Document:
        async with self._lock:
            if self._unreachable and not self._database.has_writable_server():
                raise AuditUnavailable("the database is unreachable")
            try:
                record = await self._claim_next(content)
            except ConnectionFailure:
                self._unreachable = True
                raise
            self._unreachable = False
        await self._save_head(Link(seq=record["seq"], hash=record["hash"], at=record["at"]))
        return record

    async def _claim_next(self, content: Document) -> Document:
        """Insert `content` at the next free position (the lock is held)."""
        if not self.indexes_ready:
            # Never append without the unique index: it is what keeps the chain linear.
            await self.ensure_indexes()
        head = self._head or await self._discover_head()
        careful = self._at_risk(head)
        if careful:
            head = max(head, await self.anchor(), key=lambda link: link.seq)
        for _ in range(MAX_APPEND_ATTEMPTS):
            record: Document = {
                "_id": ObjectId(),
                "seq": head.seq + 1,
                "at": utc_now(),
                **content,
                "prev_hash": head.hash,
            }
            record["hash"] = record_hash(record)
            try:
                await self._control[RECORDS].insert_one(record)
            except OperationFailure as exc:
                if not is_duplicate_key(exc):
                    raise
                head = await self._after_collision(head)
                continue
            if careful:
                anchor = await self.anchor()
                if anchor.seq >= record["seq"]:
                    # A sweep freed this position after we read the anchor:
                    # this record would fork the chain, so it goes.
                    await self._control[RECORDS].delete_one({"_id": record["_id"]})
                    head = anchor
                    continue
            self._head = Link(seq=record["seq"], hash=record["hash"], at=record["at"])
            return record
        raise AuditUnavailable("no free position in the audit chain")

    def _at_risk(self, head: Link) -> bool:
        """Whether a sweep may have freed positions after `head` (see the docstring)."""
        if head.at is None:
            return True
        at = head.at if head.at.tzinfo else head.at.replace(tzinfo=UTC)
        return at < utc_now() - timedelta(days=self._settings.audit_retention_days / 2)

    async def _after_collision(self, head: Link) -> Link:
        """Position `head.seq + 1` is taken: the record there is the new head."""
        taken = await self._record_at(head.seq + 1)
        if taken is not None:
            return taken
        anchor = await self.anchor()  # swept meanwhile
        return anchor if anchor.seq > head.seq else head

    async def _record_at(self, seq: int) -> Link | None:
        document = await self._control[RECORDS].find_one(
            {"seq": seq}, {"seq": 1, "hash": 1, "at": 1}
        )
        return link_of(document)

    async def _save_head(self, head: Link) -> None:
        """Best effort: the hint for processes that start later."""
        try:
            await self._control[HEAD].update_one(
                {"_id": HEAD_ID, "seq": {"$lt": head.seq}},
                {"$set": {"seq": head.seq, "hash": head.hash, "at": head.at}},
                upsert=True,
            )
        except PyMongoError as exc:
            # A duplicate key: the document is already further on.
            if not (isinstance(exc, OperationFailure) and is_duplicate_key(exc)):
                logger.info("audit head not saved (%s)", type(exc).__name__)

    async def anchor(self) -> Link:
        return anchor_of(await self._control[ANCHORS].find({}).to_list(None))

    async def _discover_head(self) -> Link:
        anchor = await self.anchor()
        start = anchor
        saved = await self._control[HEAD].find_one({"_id": HEAD_ID})
        if saved is not None and int(saved.get("seq", 0)) > anchor.seq:
            start = await self._record_at(int(saved["seq"])) or anchor
        return await self._probe_forward(start)

    async def _probe_forward(self, known: Link) -> Link:
        """The last record after `known`: gallop (+1, +2, +4, ...) to a free
        position, then bisect; positions are taken without gaps."""
        last, step = known, 1
        while (found := await self._record_at(last.seq + step)) is not None:
            last, step = found, step * 2
        free = last.seq + step
        while free - last.seq > 1:
            middle = (last.seq + free) // 2
            found = await self._record_at(middle)
            if found is None:
                free = middle
            else:
                last = found
        return last

    async def head(self) -> Link:
        """The newest record as of now (the hint probed forward)."""
        return await self._probe_forward(self._head or await self._discover_head())

    # -------------------------------------------------------------- retention

    async def sweep_expired(self, *, now: datetime | None = None) -> int:
        """Delete records older than the retention period, oldest first; returns
        how many. The anchor moves before the deletes, so `verify` holds throughout."""
        cutoff = (now or utc_now()) - timedelta(days=self._settings.audit_retention_days)
        removed = await self._finish_anchors()
        while True:
            anchor = await self.anchor()
            last: Link | None = None
            for seq in range(anchor.seq + 1, anchor.seq + 1 + SWEEP_BATCH):
                found = await self._record_at(seq)
                if found is None or not isinstance(found.at, datetime):
                    break
                at = found.at if found.at.tzinfo else found.at.replace(tzinfo=UTC)
                if at >= cutoff:
                    break
                last = found
            if last is None:
                return removed
            try:
                await self._control[ANCHORS].insert_one(
                    {
                        "_id": last.seq,
                        "hash": last.hash,
                        "at": last.at,
                        "from_seq": anchor.seq + 1,
                        "done": False,
                    }
                )
            except OperationFailure as exc:
                if not is_duplicate_key(exc):
                    raise  # another worker wrote the same anchor: finish it alike
            removed += await self._finish_anchors()

    async def _finish_anchors(self) -> int:
        """Delete the records behind every anchor whose deletes are not done yet."""
        anchors = self._control[ANCHORS]
        removed = 0
        pending = await anchors.find({"done": False}).to_list(None)
        for anchor in sorted(pending, key=lambda document: document["_id"]):
            for seq in range(int(anchor.get("from_seq", 1)), anchor["_id"] + 1):
                result = await self._control[RECORDS].delete_one({"seq": seq})
                removed += result.deleted_count
            await anchors.update_one({"_id": anchor["_id"]}, {"$set": {"done": True}})
        if pending:
            newest = max(document["_id"] for document in pending)
            await anchors.delete_many({"_id": {"$lt": newest}, "done": True})
        return removed

    # ---------------------------------------------------------------- reading

    async def page(
        self,
        *,
        filters: AuditFilter,
        visible: Visibility,
        after: int | None,
        limit: int,
        newest_first: bool = True,
    ) -> tuple[list[Document], bool]:
        """Up to `limit` records after the cursor position `after` (a seq), and
        whether there are more. Each visibility grant (own actions, one dataset)
        is one query on an indexed field, merged here; an unfiltered listing for
        someone who sees everything walks the chain by seq instead."""
        if visible.everything and filters.walkable:
            found = await self._walk(after=after, limit=limit + 1, newest_first=newest_first)
        else:
            found = await self._merged(
                filters=filters,
                visible=visible,
                after=after,
                limit=limit + 1,
                newest_first=newest_first,
            )
        return found[:limit], len(found) > limit

    async def _merged(
        self,
        *,
        filters: AuditFilter,
        visible: Visibility,
        after: int | None,
        limit: int,
        newest_first: bool,
    ) -> list[Document]:
        """One page query (`app.db.page_query`): the filters, the caller's grants (their
        own actions, or one of their datasets) and the cursor, sorted by `seq` — on
        the embedded engine one SQL statement, so a page costs the same however many
        records the caller may see (FerretDB alone decodes all of them per page)."""
        clauses = filters.clauses()
        if after is not None:
            clauses.append((Before("seq", after),) if newest_first else (After("seq", after),))
        if not visible.everything:
            grants: list[Condition] = []
            if visible.user_id is not None:
                grants.append(Eq("actor_user_id", visible.user_id))
            grants += [Eq("dataset_id", dataset_id) for dataset_id in visible.dataset_ids]
            if not grants:
                return []
            clauses.append(tuple(grants))
        found, _ = await self._database.find_page(
            self._database.control_db_name,
            RECORDS,
            PageQuery(
                clauses=tuple(clauses),
                sort_desc="seq",
                limit=limit,
                ascending=not newest_first,
            ),
        )
        return found

    async def _walk(self, *, after: int | None, limit: int, newest_first: bool) -> list[Document]:
        anchor = (await self.anchor()).seq
        head = (await self.head()).seq
        if newest_first:
            top = head if after is None else min(head, after - 1)
            positions = range(top, anchor, -1)
        else:
            bottom = anchor + 1 if after is None else max(anchor + 1, after + 1)
            positions = range(bottom, head + 1)
        found: list[Document] = []
        collection = self._control[RECORDS]
        for start in range(0, len(positions), WALK_BATCH):
            batch = positions[start : start + WALK_BATCH]
            records = await asyncio.gather(*(collection.find_one({"seq": s}) for s in batch))
            found.extend(record for record in records if record is not None)
            if len(found) >= limit:
                break
        return found[:limit]

    async def iterate(
        self, *, filters: AuditFilter, visible: Visibility, page_size: int = 500
    ) -> AsyncIterator[Document]:
        """Every visible record, oldest first, read a page at a time."""
        after: int | None = None
        while True:
            records, more = await self.page(
                filters=filters, visible=visible, after=after, limit=page_size, newest_first=False
            )
            for record in records:
                yield record
            if not more or not records:
                return
            after = records[-1]["seq"]

    async def verify(self) -> ChainReport:
        control = self._control
        checker = ChainChecker(
            anchor=anchor_of(await control[ANCHORS].find({}).to_list(None)),
            head_seq=saved_head_seq(await control[HEAD].find_one({"_id": HEAD_ID})),
        )
        cursor = control[RECORDS].find({"seq": {"$gt": checker.anchor.seq}}).sort("seq", 1)
        async for record in cursor:
            if not checker.check(record):
                break
        return checker.report()
