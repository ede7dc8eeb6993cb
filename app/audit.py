"""The audit log: one hash-chained record per mutating request and per auth,
share, permission or expiry event, and the one door every writer goes through.

**Records** live in the control collection `audit_log`:
`{_id, seq, at, actor_user_id, api_key_prefix, action, resource_type, resource_id,
dataset_id, status, request_id, ip, user_agent, details, prev_hash, hash}`.
`hash` is the SHA-256 of a canonical serialization (sorted-key JSON, ObjectIds as
`{"$oid"}`, dates as `{"$date"}` in milliseconds) of every field but `_id` and
`hash` — `prev_hash` included — so editing any field, or removing, inserting or
swapping a record, breaks the chain at that point (`verify_chain`, `quarry audit
verify`). A record never holds a secret (no token, password, key or request
body) nor document contents: the middleware records the method, the path (ids
only; never the query string, which can carry tokens) and what handlers add with
`annotate`.

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

**Who the actor is.** `start_audit` wraps `app.state.authenticator` so that every
caller it resolves during a request lands in `scope["state"]["caller"]` (through a
context variable the middleware binds), whichever dependency or middleware asked;
an API key's public prefix is kept beside it. Handlers add what only they know
with `annotate` (the user of a successful login, the id of a created key).

**Which requests.** Every POST/PUT/PATCH/DELETE under `/api/` and `/core/` that
matches an endpoint gets exactly one record, whatever its status (refusals
included); a GET gets one only when its handler called `annotate` (a state
change behind a link, such as email verification). A request matching no
endpoint changed nothing and is left to the access log. `action` is
`<feature>.<endpoint name>` (`auth.login`, `management.create_database`) or the
route's own name when it has a dot (`datasets.create`).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Protocol
from urllib.parse import parse_qsl

from bson import ObjectId
from fastapi import Depends, FastAPI, Request
from fastapi.routing import iter_route_contexts
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.database import Database as SyncDatabase
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.background import start_periodic, stop_periodic
from app.clock import as_utc, utc_now
from app.db import After, Before, Condition, Database, Document, Eq, PageQuery, is_duplicate_key
from app.deps import Authenticator, Caller
from app.errors import ErrorCode, QuarryError
from app.settings import Settings

logger = logging.getLogger("quarry.audit")

RECORDS = "audit_log"
HEAD = "audit_head"
ANCHORS = "audit_anchor"
HEAD_ID = "head"
#: The `prev_hash` of the first record ever written.
GENESIS_HASH = "0" * 64
#: The key of this module's indexes in `Database.indexes_ready`.
AUDIT = "audit"

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: `openapi_extra={READ_ONLY_KEY: True}` marks a POST route that changes nothing.
READ_ONLY_KEY = "x-read-only"
AUDITED_PREFIXES = ("/api/", "/core/")
#: Positions tried by one append before it gives up (each failure means another
#: writer took that position, so this is only reached by a runaway).
MAX_APPEND_ATTEMPTS = 10_000
#: Records one sweep round deletes at most (rounds repeat until nothing is left).
SWEEP_BATCH = 1000
#: Beyond this many administered datasets a listing asks one `$in` query (which
#: reads the whole collection on the embedded engine) instead of one per dataset.
#: Lookups by seq an unfiltered listing runs at once.
WALK_BATCH = 100
USER_AGENT_MAX = 512

_STATE_AUDIT = "audit"
_STATE_CALLER = "caller"
_STATE_KEY_PREFIX = "caller_key_prefix"
#: Quarry API keys are `qk_<public prefix>_<secret>`; only the prefix is recorded.
_API_KEY_PREFIX = re.compile(r"^qk_([A-Za-z0-9]{1,32})_")

_INDEXES = [
    IndexModel([("seq", ASCENDING)], unique=True, name="seq_unique"),
    IndexModel([("actor_user_id", ASCENDING)], name="actor"),
    IndexModel([("dataset_id", ASCENDING)], name="dataset"),
    IndexModel([("action", ASCENDING)], name="action"),
]


class InvalidAuditCursor(QuarryError):
    status_code = 400
    error_code = ErrorCode.INVALID_AUDIT_CURSOR
    message = "The audit cursor is malformed; use `pagination.next_cursor` as given."


class AuditUnavailable(Exception):
    """The record could not be written (no index yet, or a runaway append)."""


# --------------------------------------------------------------------- hashing


def _iso_ms(moment: datetime) -> str:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


def _canonical(value: Any) -> Any:
    """A JSON-able form that is the same before the insert and after a read back."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, datetime):
        return {"$date": _iso_ms(value)}
    if isinstance(value, ObjectId):
        return {"$oid": str(value)}
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return {"$repr": repr(value)}


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 over every field but `_id` and `hash` (so `prev_hash` is covered)."""
    content = {key: value for key, value in record.items() if key not in ("_id", "hash")}
    text = json.dumps(_canonical(content), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def email_fingerprint(email: str) -> str:
    """SHA-256 of a normalized email: failed logins on one address can be found by
    hashing it, while the log keeps no address (nor a password typed as one)."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def _storable(value: Any) -> Any:
    """Handler-supplied details as BSON that reads back unchanged: plain JSON types,
    dates and ObjectIds; anything else as its string. Field names lose `.` and a
    leading `$`, which MongoDB does not store."""
    if value is None or isinstance(value, bool | str | int | float | ObjectId):
        return value
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, Mapping):
        return {
            str(key).replace(".", "_").lstrip("$") or "_": _storable(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_storable(item) for item in value]
    return str(value)


def _object_id(value: ObjectId | str | None) -> ObjectId | None:
    if value is None or isinstance(value, ObjectId):
        return value
    return ObjectId(value) if ObjectId.is_valid(value) else None


# ------------------------------------------------------------------- the chain


@dataclass(frozen=True)
class Link:
    """A position of the chain: a record's (or the anchor's) seq, hash and time."""

    seq: int
    hash: str
    at: datetime | None


GENESIS = Link(seq=0, hash=GENESIS_HASH, at=None)


def _link(document: Mapping[str, Any] | None) -> Link | None:
    if document is None:
        return None
    return Link(seq=int(document["seq"]), hash=str(document["hash"]), at=document.get("at"))


def _anchor_of(documents: Iterable[Mapping[str, Any]]) -> Link:
    """The effective anchor: the highest of the anchors written by sweeps."""
    best = GENESIS
    for document in documents:
        if isinstance(document.get("_id"), int) and document["_id"] > best.seq:
            best = Link(seq=document["_id"], hash=str(document["hash"]), at=document.get("at"))
    return best


@dataclass
class RequestContext:
    """What a record says about the request behind it."""

    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    caller: Caller | None = None
    api_key_prefix: str | None = None


class AuditLog:
    """The audit log of one app instance (`app.state.audit_log`)."""

    def __init__(self, *, database: Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings
        self._lock = asyncio.Lock()
        self._head: Link | None = None
        #: The last append lost the connection: until the driver finds the server
        #: again, appends fail at once instead of each waiting out a timeout in turn.
        self._unreachable = False

    @property
    def _control(self) -> AsyncDatabase[Document]:
        return self._database.control

    @property
    def indexes_ready(self) -> bool:
        return AUDIT in self._database.indexes_ready

    async def ensure_indexes(self) -> None:
        # One at a time: the embedded engine drops the connection when one
        # createIndexes command names several indexes that all exist already.
        for index in _INDEXES:
            await self._control[RECORDS].create_indexes([index])
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
            "actor_user_id": _object_id(actor_user_id),
            "api_key_prefix": api_key_prefix or context.api_key_prefix,
            "action": action,
            "resource_type": resource_type,
            "resource_id": None if resource_id is None else str(resource_id),
            "dataset_id": _object_id(dataset_id),
            "status": status,
            "request_id": context.request_id,
            "ip": context.ip,
            "user_agent": context.user_agent,
            "details": _storable(dict(details or {})),
        }
        return await self._chain(content)

    async def _chain(self, content: Document) -> Document:
        async with self._lock:
            client = self._database.client
            if self._unreachable and not client.topology_description.has_writable_server():
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
        return _link(document)

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
        return _anchor_of(await self._control[ANCHORS].find({}).to_list(None))

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
        """One page query (`app.page_query`): the filters, the caller's grants (their
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
            anchor=_anchor_of(await control[ANCHORS].find({}).to_list(None)),
            head_seq=_saved_head_seq(await control[HEAD].find_one({"_id": HEAD_ID})),
        )
        cursor = control[RECORDS].find({"seq": {"$gt": checker.anchor.seq}}).sort("seq", 1)
        async for record in cursor:
            if not checker.check(record):
                break
        return checker.report()


# ---------------------------------------------------------------- verifying


@dataclass
class ChainReport:
    ok: bool
    checked: int
    anchor_seq: int
    #: What is wrong with the first broken record: "edited", "missing" or "reordered".
    problem: str | None = None
    broken_seq: int | None = None
    broken_id: str | None = None
    message: str = ""


@dataclass
class ChainChecker:
    """Walks records in seq order from the anchor and stops at the first break."""

    anchor: Link
    head_seq: int | None
    checked: int = 0
    failure: ChainReport | None = None
    _expected: int = field(init=False)
    _prev_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self._expected = self.anchor.seq + 1
        self._prev_hash = self.anchor.hash

    def _fail(self, problem: str, seq: int, record_id: Any, message: str) -> bool:
        self.failure = ChainReport(
            ok=False,
            checked=self.checked,
            anchor_seq=self.anchor.seq,
            problem=problem,
            broken_seq=seq,
            broken_id=None if record_id is None else str(record_id),
            message=message,
        )
        return False

    def check(self, record: Mapping[str, Any]) -> bool:
        """False (and a failure) at the first broken record."""
        seq, record_id = record.get("seq"), record.get("_id")
        if not isinstance(seq, int) or isinstance(seq, bool):
            message = f"record {record_id} has no integer seq ({seq!r}): it was edited"
            return self._fail("edited", self._expected, record_id, message)
        if seq > self._expected:
            missing = (
                f"seq {self._expected}"
                if seq == self._expected + 1
                else f"seqs {self._expected}..{seq - 1}"
            )
            return self._fail(
                "missing",
                self._expected,
                record_id,
                f"{missing} missing: the chain resumes at seq {seq} (id {record_id})",
            )
        if record_hash(record) != record.get("hash"):
            return self._fail(
                "edited",
                seq,
                record_id,
                f"record seq {seq} (id {record_id}) was edited: its content does not match "
                "its hash",
            )
        if record.get("prev_hash") != self._prev_hash:
            return self._fail(
                "reordered",
                seq,
                record_id,
                f"record seq {seq} (id {record_id}) does not follow seq {seq - 1}: its "
                "prev_hash differs from that record's hash (records were reordered or "
                "replaced)",
            )
        self.checked += 1
        self._expected = seq + 1
        self._prev_hash = str(record["hash"])
        return True

    def report(self) -> ChainReport:
        if self.failure is not None:
            return self.failure
        last = self._expected - 1
        if self.head_seq is not None and self.head_seq > last:
            self._fail(
                "missing",
                self._expected,
                None,
                f"seqs {self._expected}..{self.head_seq} missing at the end of the chain "
                f"(the head document says seq {self.head_seq} was written)",
            )
            assert self.failure is not None
            return self.failure
        return ChainReport(
            ok=True,
            checked=self.checked,
            anchor_seq=self.anchor.seq,
            message=f"audit chain intact: {self.checked} records from seq "
            f"{self.anchor.seq + 1} to {last}",
        )


def _saved_head_seq(document: Mapping[str, Any] | None) -> int | None:
    if document is None or not isinstance(document.get("seq"), int):
        return None
    return int(document["seq"])


def verify_chain_sync(control: SyncDatabase[Document]) -> ChainReport:
    """`verify` for the CLI, on a synchronous client."""
    checker = ChainChecker(
        anchor=_anchor_of(control[ANCHORS].find({})),
        head_seq=_saved_head_seq(control[HEAD].find_one({"_id": HEAD_ID})),
    )
    for record in control[RECORDS].find({"seq": {"$gt": checker.anchor.seq}}).sort("seq", 1):
        if not checker.check(record):
            break
    return checker.report()


# ------------------------------------------------------------------ visibility


class AuditVisibility(Protocol):
    """Who sees what (registered as `app.state.audit_visibility` by the datasets
    package; app/ cannot import it)."""

    async def dataset_ids_administered(self, user_id: ObjectId) -> list[ObjectId]: ...

    async def is_platform_admin(self, user_id: ObjectId) -> bool: ...


class RoleVisibility:
    """Until a feature registers one: admins by `users.role`, no dataset grants."""

    def __init__(self, control: AsyncDatabase[Document]) -> None:
        self._control = control

    async def dataset_ids_administered(self, user_id: ObjectId) -> list[ObjectId]:
        return []

    async def is_platform_admin(self, user_id: ObjectId) -> bool:
        user = await self._control["users"].find_one({"_id": user_id}, {"role": 1})
        return user is not None and user.get("role") == "admin"


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    dataset_id: ObjectId | None = None
    actor_user_id: ObjectId | None = None

    @property
    def walkable(self) -> bool:
        """No filter at all: the chain itself is the index."""
        return self == AuditFilter()

    def clauses(self) -> list[tuple[Condition, ...]]:
        """The filters as page-query clauses (`at` is kept in milliseconds)."""
        clauses: list[tuple[Condition, ...]] = [
            (Eq(key, getattr(self, key)),)
            for key in ("action", "dataset_id", "actor_user_id")
            if getattr(self, key) is not None
        ]
        if self.since is not None:
            # `at` is kept in whole milliseconds: at >= since <=> at > (since, rounded up) - 1 ms.
            since = as_utc(self.since)
            if since < self.since:
                since += timedelta(milliseconds=1)
            clauses.append((After("at", since - timedelta(milliseconds=1)),))
        if self.until is not None:
            clauses.append((Before("at", self.until),))
        return clauses


@dataclass(frozen=True)
class Visibility:
    """What one caller may see: everything, or their own actions plus datasets."""

    everything: bool
    user_id: ObjectId | None = None
    dataset_ids: tuple[ObjectId, ...] = ()


async def visibility_of(app: FastAPI, user_id: ObjectId) -> Visibility:
    registered: AuditVisibility | None = getattr(app.state, "audit_visibility", None)
    visibility = registered or RoleVisibility(app.state.database.control)
    if await visibility.is_platform_admin(user_id):
        return Visibility(everything=True)
    administered = await visibility.dataset_ids_administered(user_id)
    return Visibility(everything=False, user_id=user_id, dataset_ids=tuple(administered))


# ---------------------------------------------------------- request context

#: The `scope["state"]` of the request being served (bound by `AuditMiddleware`),
#: so the authenticator wrapper can leave the caller there.
_request_state: ContextVar[dict[str, Any] | None] = ContextVar(
    "quarry_audit_request_state", default=None
)


def annotate(
    request: Request,
    *,
    resource_type: str | None = None,
    resource_id: ObjectId | str | None = None,
    dataset_id: ObjectId | str | None = None,
    details: Mapping[str, Any] | None = None,
    actor_user_id: ObjectId | str | None = None,
) -> None:
    """Add what only the handler knows to this request's audit record (later calls
    override earlier ones; `details` are merged). Never pass a secret. On a GET,
    calling this is what makes the request recorded."""
    _annotate_state(
        request.scope.setdefault("state", {}),
        resource_type=resource_type,
        resource_id=resource_id,
        dataset_id=dataset_id,
        details=details,
        actor_user_id=actor_user_id,
    )


def annotate_current(
    *,
    resource_type: str | None = None,
    resource_id: ObjectId | str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """`annotate` for code below the router that has no `Request` (e.g. a shared
    helper that opens the database a request names); a no-op outside a request."""
    state = _request_state.get()
    if state is not None:
        _annotate_state(
            state, resource_type=resource_type, resource_id=resource_id, details=details
        )


def _annotate_state(
    state: dict[str, Any],
    *,
    resource_type: str | None = None,
    resource_id: ObjectId | str | None = None,
    dataset_id: ObjectId | str | None = None,
    details: Mapping[str, Any] | None = None,
    actor_user_id: ObjectId | str | None = None,
) -> None:
    notes: dict[str, Any] = state.setdefault(_STATE_AUDIT, {})
    given = {
        "resource_type": resource_type,
        "resource_id": resource_id,
        "dataset_id": dataset_id,
        "actor_user_id": actor_user_id,
    }
    notes.update({key: value for key, value in given.items() if value is not None})
    if details:
        notes.setdefault("details", {}).update(details)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def request_context(scope: Scope) -> RequestContext:
    state = scope.get("state", {})
    client = scope.get("client")
    agent = _header(scope, b"user-agent")
    caller = state.get(_STATE_CALLER)
    return RequestContext(
        request_id=state.get("request_id"),
        ip=client[0] if client else None,
        user_agent=agent[:USER_AGENT_MAX] if agent is not None else None,
        caller=caller if isinstance(caller, Caller) else None,
        api_key_prefix=state.get(_STATE_KEY_PREFIX),
    )


def _api_key_prefix(authorization: str | None, x_api_key: str | None) -> str | None:
    key = x_api_key
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        key = credentials.strip() if scheme.lower() == "api-key" else None
    match = _API_KEY_PREFIX.match(key.strip()) if key else None
    return match.group(1) if match else None


class CallerRecordingAuthenticator:
    """Wraps the app's authenticator: every caller it resolves during a request is
    left in that request's `scope["state"]`, for the audit record."""

    def __init__(self, inner: Authenticator) -> None:
        self.inner = inner

    def _remember(self, caller: Caller, authorization: str | None, x_api_key: str | None) -> None:
        state = _request_state.get()
        if state is None:
            return
        state[_STATE_CALLER] = caller
        if caller.method == "api_key":
            state[_STATE_KEY_PREFIX] = _api_key_prefix(authorization, x_api_key)

    async def authenticate(self, *, authorization: str | None, x_api_key: str | None) -> Caller:
        caller = await self.inner.authenticate(authorization=authorization, x_api_key=x_api_key)
        self._remember(caller, authorization, x_api_key)
        return caller

    async def authenticate_bearer(
        self, *, authorization: str | None, x_api_key: str | None
    ) -> Caller:
        caller = await self.inner.authenticate_bearer(
            authorization=authorization, x_api_key=x_api_key
        )
        self._remember(caller, authorization, x_api_key)
        return caller

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# ------------------------------------------------------------------ middleware


@dataclass(frozen=True)
class AuditedRoute:
    """An endpoint under `/api/` or `/core/` and the action its records carry."""

    path: str
    methods: frozenset[str]
    action: str
    pattern: re.Pattern[str]
    #: A POST that only reads (search, batch reads): recorded like a GET, only
    #: when the handler annotates it (e.g. a read through an ACL override).
    read_only: bool = False


def action_name(name: str, module: str) -> str:
    """`<feature>.<endpoint>`: the feature is the package of the endpoint's router
    module (`data_api.documents.router` → `documents`); a dotted name is kept."""
    if "." in name:
        return name
    parts = module.split(".")
    if len(parts) > 1 and parts[-1] in ("router", "routes"):
        feature = parts[-2]
    else:
        feature = parts[-1].removesuffix("_router")
    return f"{feature}.{name}"


def audited_routes(app: FastAPI) -> list[AuditedRoute]:
    table = []
    for route in iter_route_contexts(app.routes):
        path, methods, endpoint = route.path, route.methods, route.endpoint
        if not path or not methods or endpoint is None or not path.startswith(AUDITED_PREFIXES):
            continue
        pattern, _, _ = compile_path(path)
        action = action_name(str(route.name), endpoint.__module__)
        read_only = (getattr(route, "openapi_extra", None) or {}).get(READ_ONLY_KEY) is True
        table.append(AuditedRoute(path, frozenset(methods), action, pattern, read_only))
    return table


def _resource(route: AuditedRoute, params: dict[str, str], scope: Scope) -> dict[str, Any]:
    """Defaults from the path: the last path parameter is the resource (`key_id` →
    type `key`; `{id}` → the segment before it, singular), a `datasets/{x}`
    segment names the dataset; without path parameters, a `*_id` query parameter."""
    found: dict[str, Any] = {}
    segments = route.path.strip("/").split("/")
    for before, segment in itertools.pairwise(segments):
        if before == "datasets" and segment.startswith("{"):
            found["dataset_id"] = params.get(segment.strip("{}").split(":")[0])
    if not params:
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        params = {k: v for k, v in query if k.endswith("_id") and len(v) <= 64}
    if params:
        name, value = list(params.items())[-1]
        if name == "id":
            segment = next(
                (b for b, s in itertools.pairwise(segments) if s.startswith("{id")),
                "resource",
            )
            found["resource_type"] = segment.removesuffix("s")
        else:
            found["resource_type"] = name.removesuffix("_id")
        found["resource_id"] = value
    return found


class AuditMiddleware:
    """One record per mutating request under `/api/` and `/core/`, written before the
    answer starts; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: list[AuditedRoute] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(AUDITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        token = _request_state.set(state)
        written = False

        async def send_after_record(message: Message) -> None:
            nonlocal written
            if message["type"] == "http.response.start" and not written:
                written = True
                await self._record(scope, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_after_record)
        except Exception:
            if not written:
                written = True
                await self._record(scope, 500)
            raise
        finally:
            _request_state.reset(token)

    def _match(self, scope: Scope) -> tuple[AuditedRoute, dict[str, str]] | None:
        if self._routes is None:
            self._routes = audited_routes(scope["app"])
        for route in self._routes:
            found = route.pattern.match(scope["path"])
            if found is not None and scope["method"] in route.methods:
                return route, found.groupdict()
        return None

    async def _record(self, scope: Scope, status: int) -> None:
        notes: dict[str, Any] = scope["state"].get(_STATE_AUDIT, {})
        if scope["method"] not in MUTATING_METHODS and not notes:
            return
        matched = self._match(scope)
        audit_log: AuditLog | None = getattr(scope["app"].state, "audit_log", None)
        if matched is None or audit_log is None:
            return
        if matched[0].read_only and not notes:
            return
        if status == 503:
            # The database has just failed this request (which changed nothing, or is
            # undone by the maintenance task): a record could not be written either,
            # and trying would hold the answer for a server-selection timeout.
            logger.warning(
                "audit record of %s %s (status 503) not written: database unavailable",
                scope["method"],
                scope["path"],
            )
            return
        route, params = matched
        fields = {**_resource(route, params, scope), **notes}
        details = {"method": scope["method"], "path": scope["path"], **fields.get("details", {})}
        try:
            await audit_log.append(
                action=route.action,
                resource_type=fields.get("resource_type"),
                resource_id=fields.get("resource_id"),
                dataset_id=fields.get("dataset_id"),
                actor_user_id=fields.get("actor_user_id"),
                status=status,
                details=details,
                request=Request(scope),  # the scope only: the body is never read here
            )
        except (PyMongoError, AuditUnavailable) as exc:
            logger.warning(
                "audit record of %s %s (status %s) not written: %s",
                scope["method"],
                scope["path"],
                status,
                type(exc).__name__,
            )
        except Exception:
            # A bug here must not cost the client the answer to a mutation that happened.
            logger.exception("audit record of %s %s not written", scope["method"], scope["path"])


# ------------------------------------------------------------------- lifecycle


def get_audit_log(request: Request) -> AuditLog:
    audit_log: AuditLog = request.app.state.audit_log
    return audit_log


AuditDep = Annotated[AuditLog, Depends(get_audit_log)]


async def start_audit(app: FastAPI) -> None:
    """`app.state.audit_log`, the caller-recording authenticator (after the auth
    package installed one), the indexes and head (retried while the database is
    unreachable) and the retention sweep."""
    settings: Settings = app.state.settings
    audit_log = AuditLog(database=app.state.database, settings=settings)
    app.state.audit_log = audit_log
    authenticator = getattr(app.state, "authenticator", None)
    if authenticator is not None and not isinstance(authenticator, CallerRecordingAuthenticator):
        app.state.authenticator = CallerRecordingAuthenticator(authenticator)

    async def prepare() -> None:
        if audit_log.indexes_ready:
            return
        try:
            await audit_log.ensure_indexes()
        except PyMongoError as exc:
            logger.warning("audit indexes not created yet (%s); retrying", type(exc).__name__)

    async def sweep() -> None:
        try:
            removed = await audit_log.sweep_expired()
        except PyMongoError as exc:
            logger.warning("audit retention sweep postponed: %s", type(exc).__name__)
            return
        if removed:
            days = settings.audit_retention_days
            logger.info("audit retention: %d records older than %d days removed", removed, days)

    await prepare()
    app.state.audit_indexes = start_periodic(
        "audit-indexes", prepare, settings.maintenance_interval_seconds
    )
    app.state.audit_sweep = start_periodic(
        "audit-retention", sweep, settings.sweep_interval_seconds
    )


async def stop_audit(app: FastAPI) -> None:
    await stop_periodic(getattr(app.state, "audit_indexes", None))
    await stop_periodic(getattr(app.state, "audit_sweep", None))
