"""Where rows live: storage buckets, each dataset's directory of them, and the
per-dataset write lock. The only module of rows that talks to MongoDB.

Layout (owner's tenant database, `spec/rows.md` "Storage"):

- `row_buckets`: one document per run of consecutive rows of one dataset,
  `{_id: "<dataset>:<seq>", dataset_id, lo, hi (BSON dates: first and last
  timestamp), n, t, v}`. `t` is the rows' timestamps, epoch milliseconds packed
  as little-endian int64 in timestamp order; `v` their values, one compact JSON
  object per line, in the same order. Binary columns inside a bucket are what
  MongoDB's own time-series collections do (compressed BSON columns): the engine
  sees three small fields instead of thousands, which is what makes a bucket
  cheap to write and read on the embedded engine, and a row is sent back as the
  bytes it was stored as.
- `row_dirs`: one document per dataset, `{_id: dataset_id, version, count,
  first, last, next_seq, keys, b}`: `b` packs `(lo, hi, seq, n)` of every bucket
  in timestamp order. Buckets never overlap, so a range read bisects `b` and
  fetches exactly the buckets it overlaps, by `_id` (one planned find on the
  embedded engine's PostgreSQL). `count`, `first`, `last` answer the dataset's
  `row_count` and first/last timestamps without reading a row; `keys` is every
  value key ever written, in first-seen order (the CSV header).

Buckets adapt to density by count, not by a fixed time window: a bucket holds up
to `MAX_ROWS` rows and is split into pieces of about `TARGET_ROWS` when it would
grow beyond (and beyond `MAX_BYTES` of values); rows appended after a full
bucket start new buckets without rewriting it, so a bulk load of sorted rows
writes each bucket once.

Writing is copy-on-write under a lock. A writer takes the dataset's lease
(`leases` `_id` = `rows:<dataset>`, the catalogue's leases: one writer per
dataset over every worker, an in-process lock in front of it so waiting costs
no polling between requests of one worker), writes every changed bucket as a
*new* document (new `seq`), and then replaces the directory in one
single-document write, which is what makes the whole change visible at once;
the buckets it superseded are removed after. Readers never see half a write: a
directory names only complete buckets. A write cut short (client gone, engine
down, process killed) leaves only buckets no directory names; whoever next takes
the lapsed lease — the next writer, or the maintenance sweep
(`lifecycle.py`) — removes them before anything else. A reader that meets a
bucket removed under it (a write committed meanwhile) reads the directory again.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import secrets
import uuid
import weakref
from array import array
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from bson import ObjectId
from bson.binary import Binary
from pymongo.errors import DuplicateKeyError, PyMongoError

from app.clock import utc_now
from app.db import DatabaseHandle, Document
from app.errors import DatabaseUnavailable
from data_api.datasets.repository import LEASES, ROW_BUCKETS, ROW_DIRS, Catalogue, tenant_db_name
from data_api.rows.codec import (
    from_datetime,
    pack_times,
    pack_values,
    to_datetime,
    unpack_times,
    unpack_values,
)

logger = logging.getLogger("quarry.rows")

BUCKETS = ROW_BUCKETS
DIRS = ROW_DIRS
TARGET_ROWS = 1000
MAX_ROWS = 2000
#: Values bytes of one bucket: pieces aim below TARGET, a bucket never exceeds MAX
#: (well inside the 16 MiB document limit).
TARGET_BYTES = 2 * 1024 * 1024
MAX_BYTES = 4 * 1024 * 1024
MAX_KEYS_LISTED = 10_000
LOCK_WAIT_SECONDS = 60.0
#: Concurrent inserts of one write's new buckets.
WRITE_CONCURRENCY = 4

OnConflict = Literal["error", "skip", "replace"]


class RowConflict(Exception):
    """Rows with these timestamps exist (on_conflict=error)."""

    def __init__(self, timestamps: list[int]) -> None:
        super().__init__(timestamps)
        self.timestamps = timestamps


class LostLock(DatabaseUnavailable):
    message = "Another write to this dataset's rows took over; nothing was written. Retry."


class Moved(Exception):
    """A bucket named by the directory was replaced meanwhile (read the directory again)."""


def _lock_name(dataset_id: ObjectId) -> str:
    return f"rows:{dataset_id}"


def _bucket_id(dataset_id: ObjectId, seq: int) -> str:
    return f"{dataset_id}:{seq}"


@dataclass
class Directory:
    dataset_id: ObjectId
    version: int = 0
    count: int = 0
    next_seq: int = 0
    los: list[int] = field(default_factory=list)
    his: list[int] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    ns: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    exists: bool = False

    @classmethod
    def of(cls, dataset_id: ObjectId, doc: Document | None) -> Directory:
        if doc is None:
            return cls(dataset_id)
        packed = unpack_times(bytes(doc.get("b") or b""))
        return cls(
            dataset_id=dataset_id,
            version=doc["version"],
            count=doc["count"],
            next_seq=doc["next_seq"],
            los=list(packed[0::4]),
            his=list(packed[1::4]),
            seqs=list(packed[2::4]),
            ns=list(packed[3::4]),
            keys=list(doc.get("keys") or []),
            exists=True,
        )

    @property
    def first(self) -> int | None:
        return self.los[0] if self.los else None

    @property
    def last(self) -> int | None:
        return self.his[-1] if self.his else None

    def document(self, now: datetime) -> Document:
        packed = array("q", [0]) * (4 * len(self.seqs))
        packed[0::4] = array("q", self.los)
        packed[1::4] = array("q", self.his)
        packed[2::4] = array("q", self.seqs)
        packed[3::4] = array("q", self.ns)
        return {
            "_id": self.dataset_id,
            "version": self.version,
            "count": self.count,
            "first": to_datetime(self.los[0]) if self.los else None,
            "last": to_datetime(self.his[-1]) if self.his else None,
            "next_seq": self.next_seq,
            "keys": self.keys,
            "b": Binary(packed.tobytes()),
            "updated_at": now,
        }

    def span(self, start: int | None, end: int | None) -> tuple[int, int]:
        """Indexes `[i, j)` of the buckets that may hold rows in `[start, end)`."""
        i = 0 if start is None else bisect.bisect_left(self.his, start)
        j = len(self.los) if end is None else bisect.bisect_left(self.los, end)
        return i, max(i, j)


@dataclass
class Bucket:
    seq: int
    times: array[int]
    lines: list[bytes]

    def slice(self, start: int | None, end: int | None) -> tuple[int, int]:
        a = 0 if start is None else bisect.bisect_left(self.times, start)
        b = len(self.times) if end is None else bisect.bisect_left(self.times, end)
        return a, max(a, b)


@dataclass
class Summary:
    """What a caller may know of a dataset's rows without reading one."""

    count: int
    first: int | None
    last: int | None
    keys: list[str]
    version: int


@dataclass
class Change:
    """A committed write, as the streams of this process learn it: the dataset's newest
    timestamp before (`previous`) and after, and — when the write only appended rows
    after `previous` (and not too many) — those rows, so streams need not read them."""

    previous: int | None
    last: int | None
    times: list[int] | None
    lines: list[bytes] | None


#: Appended rows handed to streams with a commit (more: they read them).
CHANGE_ROWS = 10_000
CHANGE_BYTES = 1024 * 1024


class RowStore:
    """Rows of every dataset, for one app."""

    def __init__(self, catalogue: Catalogue, *, lease_seconds: float) -> None:
        self.catalogue = catalogue
        self.database = catalogue.database
        self.lease = timedelta(seconds=max(lease_seconds, 5.0))
        self._local: weakref.WeakValueDictionary[ObjectId, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        #: Called with a dataset id after each committed change (stream wake-ups).
        self.on_commit: Callable[[ObjectId, Change | None], None] | None = None

    def _db(self, owner_id: ObjectId) -> DatabaseHandle:
        return self.catalogue.tenant(owner_id)

    # ------------------------------------------------------------ reading

    async def directory(self, owner_id: ObjectId, dataset_id: ObjectId) -> Directory:
        doc = await self._db(owner_id)[DIRS].find_one({"_id": dataset_id})
        return Directory.of(dataset_id, doc)

    async def summary(self, owner_id: ObjectId, dataset_id: ObjectId) -> Summary:
        """Count, first and last timestamp, keys: one `_id` lookup, the bucket list left out."""
        doc = await self._db(owner_id)[DIRS].find_one({"_id": dataset_id}, {"b": 0})
        if doc is None:
            return Summary(0, None, None, [], 0)
        first, last = doc.get("first"), doc.get("last")
        return Summary(
            count=doc["count"],
            first=from_datetime(first) if first else None,
            last=from_datetime(last) if last else None,
            keys=list(doc.get("keys") or []),
            version=doc["version"],
        )

    async def buckets(
        self, owner_id: ObjectId, dataset_id: ObjectId, seqs: list[int]
    ) -> dict[int, Bucket]:
        """These buckets; raises Moved if one is gone (superseded meanwhile)."""
        if not seqs:
            return {}
        docs = await self.database.by_ids(
            tenant_db_name(owner_id), BUCKETS, [_bucket_id(dataset_id, s) for s in seqs]
        )
        found: dict[int, Bucket] = {}
        for doc in docs:
            seq = int(str(doc["_id"]).rsplit(":", 1)[1])
            found[seq] = Bucket(
                seq, unpack_times(bytes(doc["t"])), unpack_values(bytes(doc["v"]), doc["n"])
            )
        if len(found) != len(set(seqs)):
            raise Moved()
        return found

    async def scan(
        self,
        owner_id: ObjectId,
        dataset_id: ObjectId,
        *,
        start: int | None,
        end: int | None,
        descending: bool = False,
        skip: int = 0,
        batch_rows: int = 20_000,
        directory: Directory | None = None,
    ) -> AsyncIterator[tuple[list[int] | array[int], list[bytes]]]:
        """The rows in `[start, end)` in timestamp order (or reverse), after skipping
        `skip`, as `(times, lines)` runs, one per bucket; reads the directory once and
        buckets in batches of about `batch_rows` rows. If a write replaces a bucket
        meanwhile, it reads the directory again and goes on after the last row sent:
        nothing is repeated or left out of what existed throughout."""
        lo, hi = start, end
        for _attempt in range(20):
            if directory is None:
                directory = await self.directory(owner_id, dataset_id)
            i, j = directory.span(lo, hi)
            order = list(range(j - 1, i - 1, -1)) if descending else list(range(i, j))
            # Whole buckets inside the range are skipped by their counts, unread.
            while skip and order:
                k = order[0]
                inside = (lo is None or directory.los[k] >= lo) and (
                    hi is None or directory.his[k] < hi
                )
                if not inside or directory.ns[k] > skip:
                    break
                skip -= directory.ns[k]
                order.pop(0)
                # Skipped rows count as sent: a re-read goes on after them.
                if descending:
                    hi = directory.los[k]
                else:
                    lo = directory.his[k] + 1
            try:
                while order:
                    batch, size = [], 0
                    while order and (not batch or size + directory.ns[order[0]] <= batch_rows):
                        size += directory.ns[order[0]]
                        batch.append(order.pop(0))
                    seqs = [directory.seqs[k] for k in batch]
                    loaded = await self.buckets(owner_id, dataset_id, seqs)
                    for seq in seqs:
                        bucket = loaded[seq]
                        a, b = bucket.slice(lo, hi)
                        if a == b:
                            continue
                        times, lines = bucket.times[a:b], bucket.lines[a:b]
                        if descending:
                            times, lines = times[::-1], lines[::-1]
                        if skip:
                            cut = min(skip, len(times))
                            if descending:
                                hi = times[cut - 1]
                            else:
                                lo = times[cut - 1] + 1
                            times, lines, skip = times[cut:], lines[cut:], skip - cut
                            if not len(times):
                                continue
                        yield times, lines
                        # Where to go on from if the directory must be read again.
                        if descending:
                            hi = times[-1]
                        else:
                            lo = times[-1] + 1
                return
            except Moved:
                directory = None
                continue
        raise DatabaseUnavailable("The dataset's rows kept changing while being read; retry.")

    async def count(
        self,
        owner_id: ObjectId,
        dataset_id: ObjectId,
        start: int | None,
        end: int | None,
        directory: Directory | None = None,
    ) -> int:
        """Rows in `[start, end)`: whole buckets by their counts, at most the two
        edge buckets read."""
        for _attempt in range(20):
            if directory is None:
                directory = await self.directory(owner_id, dataset_id)
            if start is None and end is None:
                return directory.count
            i, j = directory.span(start, end)
            total, edges = 0, []
            for k in range(i, j):
                inside = (start is None or directory.los[k] >= start) and (
                    end is None or directory.his[k] < end
                )
                if inside:
                    total += directory.ns[k]
                else:
                    edges.append(directory.seqs[k])
            try:
                loaded = await self.buckets(owner_id, dataset_id, edges)
            except Moved:
                directory = None
                continue
            for bucket in loaded.values():
                a, b = bucket.slice(start, end)
                total += b - a
            return total
        raise DatabaseUnavailable("The dataset's rows kept changing while being counted; retry.")

    # ------------------------------------------------------------ writing

    @contextlib.asynccontextmanager
    async def writing(self, owner_id: ObjectId, dataset_id: ObjectId) -> AsyncIterator[Writer]:
        """The dataset's write lock and a `Writer`; what the writer staged is discarded
        unless it committed."""
        await self.catalogue.ensure_tenant(owner_id)
        local = self._local.get(dataset_id)
        if local is None:
            local = asyncio.Lock()
            self._local[dataset_id] = local
        try:
            await asyncio.wait_for(local.acquire(), LOCK_WAIT_SECONDS)
        except TimeoutError:
            raise DatabaseUnavailable(
                "Another write to this dataset's rows is still running; retry shortly."
            ) from None
        try:
            holder = uuid.uuid4().hex
            acquired_at = asyncio.get_running_loop().time()
            took_over = await self._acquire(dataset_id, holder)
            # Whether dropping the lease is safe: nothing of this write may remain
            # unnamed. When unsure, the lease is left to lapse and whoever takes it
            # next cleans up first.
            safe = not took_over
            try:
                if took_over:
                    await self.clean(owner_id, dataset_id, holder=holder)
                    await self.renew(dataset_id, holder)
                    acquired_at = asyncio.get_running_loop().time()
                    safe = True
                writer = Writer(self, owner_id, dataset_id, holder)
                writer.renewed_at = acquired_at
                writer.start(await self.directory(owner_id, dataset_id))
                try:
                    yield writer
                finally:
                    if not writer.committed:
                        safe = await writer.discard()
                    elif writer.leftover:
                        safe = False
            finally:
                if safe:
                    with contextlib.suppress(PyMongoError):
                        await self.catalogue.drop_lease(name=_lock_name(dataset_id), holder=holder)
        finally:
            local.release()

    async def _acquire(self, dataset_id: ObjectId, holder: str) -> bool:
        """Take the dataset's write lease, waiting for another holder; True when it took
        over a lapsed one (its holder died mid-write: clean up first)."""
        try:
            return await self.catalogue.wait_for_lease(
                name=_lock_name(dataset_id),
                holder=holder,
                seconds=self.lease.total_seconds(),
                wait_seconds=LOCK_WAIT_SECONDS,
                mark_lost_takeover=True,
            )
        except TimeoutError:
            raise DatabaseUnavailable(
                "Another write to this dataset's rows is still running; retry shortly."
            ) from None

    async def renew(self, dataset_id: ObjectId, holder: str) -> None:
        if not await self.catalogue.renew_lease(
            name=_lock_name(dataset_id), holder=holder, until=utc_now() + self.lease
        ):
            raise LostLock()

    async def clean(
        self, owner_id: ObjectId, dataset_id: ObjectId, *, holder: str | None = None
    ) -> int:
        """Remove the buckets no directory names (a write cut short). Under the lock
        (`holder`'s lease, renewed while it deletes).

        First it fences: the directory's version moves on (an empty directory is
        written if there was none), so a writer whose lease lapsed unnoticed — the one
        whose buckets these are — fails its commit instead of naming deleted buckets."""
        db = self._db(owner_id)
        for _attempt in range(5):
            directory = await self.directory(owner_id, dataset_id)
            named = {_bucket_id(dataset_id, s) for s in directory.seqs}
            stored = await db[BUCKETS].find({"dataset_id": dataset_id}, {"_id": 1}).to_list(None)
            orphans = [d["_id"] for d in stored if d["_id"] not in named]
            if not orphans:
                return 0
            # The fence holds only if nothing committed since the directory was read.
            if directory.exists:
                fenced = await db[DIRS].update_one(
                    {"_id": dataset_id, "version": directory.version}, {"$inc": {"version": 1}}
                )
                if fenced.matched_count != 1:
                    continue
            else:
                try:
                    await db[DIRS].insert_one(Directory(dataset_id, version=1).document(utc_now()))
                except DuplicateKeyError:
                    continue
            await self._delete_buckets(owner_id, orphans, dataset_id=dataset_id, holder=holder)
            logger.info("removed %d row buckets of an unfinished write", len(orphans))
            return len(orphans)
        raise DatabaseUnavailable("The dataset's rows kept changing during a clean-up; retry.")

    async def clean_lapsed(self) -> None:
        """The maintenance sweep: every dataset whose write lease lapsed (its holder
        died mid-write), or that a racing writer marked `rows:<dataset>:clean` (it saw
        the lapsed lease but another took it), is cleaned."""
        leases = self.catalogue.control[LEASES]
        lapsed = await leases.find(
            {"until": {"$lte": utc_now()}, "_id": {"$regex": "^rows:"}}
        ).to_list(None)
        for lease in lapsed:
            dataset_id = ObjectId(lease["_id"].split(":")[1])
            marker = lease["_id"].endswith(":clean")
            name = _lock_name(dataset_id)
            holder = uuid.uuid4().hex
            now = utc_now()
            if not await self.catalogue.take_lease(
                name=name, holder=holder, now=now, until=now + self.lease
            ):
                if not marker:
                    # Another writer took it first and does not know a holder died.
                    with contextlib.suppress(DuplicateKeyError):
                        await leases.insert_one(
                            {"_id": f"{name}:clean", "holder": "", "until": now}
                        )
                continue
            try:
                dataset = await self.catalogue.find_dataset(dataset_id=dataset_id)
                if dataset is not None:
                    await self.clean(dataset["owner_id"], dataset_id, holder=holder)
            except (PyMongoError, DatabaseUnavailable) as exc:
                # Left to lapse: the trigger is kept for the next round.
                logger.warning("row clean-up of %s failed (%s)", dataset_id, type(exc).__name__)
                continue
            if marker:
                await leases.delete_one({"_id": lease["_id"]})
            await self.catalogue.drop_lease(name=name, holder=holder)

    async def _delete_buckets(
        self,
        owner_id: ObjectId,
        ids: list[str],
        *,
        dataset_id: ObjectId | None = None,
        holder: str | None = None,
        writer: str | None = None,
    ) -> None:
        """Delete these buckets (only those `writer` made, when given), renewing
        `holder`'s lease as time passes."""
        collection = self._db(owner_id)[BUCKETS]
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        for start in range(0, len(ids), 64):
            due = loop.time() - renewed > self.lease.total_seconds() / 3
            if holder is not None and dataset_id is not None and due:
                await self.renew(dataset_id, holder)
                renewed = loop.time()
            mine = {} if writer is None else {"w": writer}
            await asyncio.gather(
                *(collection.delete_one({"_id": i, **mine}) for i in ids[start : start + 64])
            )


@dataclass
class Piece:
    """A new bucket document and its directory entry."""

    doc: Document
    lo: int
    hi: int
    seq: int
    n: int


class Writer:
    """One write to one dataset's rows, under its lock: stage changes (each stage
    writes the new buckets, still invisible), then `commit` swaps the directory."""

    def __init__(self, store: RowStore, owner_id: ObjectId, dataset_id: ObjectId, holder: str):
        self.store = store
        self.owner_id = owner_id
        self.dataset_id = dataset_id
        self.holder = holder
        self.directory = Directory(dataset_id)
        #: Buckets written by this write (removed if it does not commit).
        self.staged: list[int] = []
        #: Buckets the new directory no longer names (removed after the commit).
        self.garbage: list[int] = []
        self.committed = False
        #: When the lease was last taken or renewed (loop time).
        self.renewed_at = asyncio.get_running_loop().time()
        #: The directory write was sent but its outcome is unknown (connection lost).
        self.uncertain = False
        #: Superseded buckets could not be removed after the commit.
        self.leftover = False
        self.inserted = self.skipped = self.replaced = self.deleted = 0
        self._keys: set[str] = set()

    def start(self, directory: Directory) -> None:
        self.directory = directory
        self._keys = set(directory.keys)
        self._previous_last = directory.last
        self._epoch = secrets.randbits(40) << 22
        self._count = 0
        #: The rows this write appended after `_previous_last` (one insert call).
        self._appended: tuple[list[int], list[bytes]] | None = None
        self._calls = 0

    async def keep_alive(self) -> None:
        """Keep the lease (renewed when a third of it has passed since the last time)."""
        now = asyncio.get_running_loop().time()
        if now - self.renewed_at > self.store.lease.total_seconds() / 3:
            await self.store.renew(self.dataset_id, self.holder)
            self.renewed_at = now

    def _new_seq(self) -> int:
        # Random per write (40 bits) and counted within it: never the number of a
        # bucket a dead writer left behind, whatever was or was not cleaned yet.
        self._count += 1
        return self._epoch + self._count

    def _pieces(self, times: list[int], lines: list[bytes]) -> list[Piece]:
        """New buckets for a sorted run of rows (split as needed), each with its
        directory entry."""
        made = []
        for a, b in _pieces(lines):
            seq = self._new_seq()
            t, v = times[a:b], lines[a:b]
            doc = {
                "_id": _bucket_id(self.dataset_id, seq),
                "dataset_id": self.dataset_id,
                "lo": to_datetime(t[0]),
                "hi": to_datetime(t[-1]),
                "n": len(t),
                "t": Binary(pack_times(list(t))),
                "v": Binary(pack_values(list(v))),
                # Which write made it: a failed write removes only its own.
                "w": self.holder,
            }
            made.append(Piece(doc, t[0], t[-1], seq, len(t)))
        return made

    async def _stage(self, pieces: list[Piece]) -> None:
        """Write new buckets (invisible until the commit; removed if it never comes)."""
        if pieces:
            self.staged += [p.seq for p in pieces]
            await self._write([p.doc for p in pieces])

    def _splice(self, x: int, y: int, pieces: list[Piece]) -> None:
        """The directory's buckets `[x, y)` become `pieces`."""
        d = self.directory
        d.los[x:y] = [p.lo for p in pieces]
        d.his[x:y] = [p.hi for p in pieces]
        d.seqs[x:y] = [p.seq for p in pieces]
        d.ns[x:y] = [p.n for p in pieces]

    async def _write(self, docs: list[Document]) -> None:
        """New buckets, several inserts at a time (the engine spreads them over its
        connections; none is visible before the commit anyway)."""
        collection = self.store._db(self.owner_id)[BUCKETS]
        size = max(8, -(-len(docs) // WRITE_CONCURRENCY))
        # Every insert has ended before a failure is raised (a discard must not
        # race an insert still running).
        results = await asyncio.gather(
            *(
                collection.insert_many(docs[a : a + size], ordered=False)
                for a in range(0, len(docs), size)
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def add_keys(self, keys: list[str]) -> None:
        d = self.directory
        for key in keys:
            if key not in self._keys and len(d.keys) < MAX_KEYS_LISTED:
                self._keys.add(key)
                d.keys.append(key)

    async def insert(self, times: list[int], lines: list[bytes], on_conflict: OnConflict) -> None:
        """Stage sorted rows with distinct timestamps. Raises RowConflict
        (`on_conflict=error` and a timestamp exists) before writing anything."""
        if not times:
            return
        self._calls += 1
        if self._calls == 1:
            k = (
                0
                if self._previous_last is None
                else bisect.bisect_right(times, self._previous_last)
            )
            if len(times) - k <= CHANGE_ROWS and sum(map(len, lines[k:])) <= CHANGE_BYTES:
                self._appended = (list(times[k:]), list(lines[k:]))
        else:
            self._appended = None  # several batches: streams read what they need
        await self.keep_alive()
        d = self.directory
        # Group the rows by the bucket they fall in (or next to).
        groups: dict[int, tuple[int, int]] = {}
        if d.los:
            k = 0
            while k < len(times):
                i = max(0, bisect.bisect_right(d.los, times[k]) - 1)
                limit = d.los[i + 1] if i + 1 < len(d.los) else None
                m = len(times) if limit is None else bisect.bisect_left(times, limit, k)
                groups[i] = (k, m)
                k = m
        # Rows in the gap after a bucket too full to take them go to the next bucket
        # when it has room (a newest-first backfill would otherwise leave a small
        # bucket per request).
        for i in sorted(groups):
            a, b = groups[i]
            after = bisect.bisect_right(times, d.his[i], a, b)
            if i + 1 >= len(d.los) or after == b or d.ns[i] + (b - a) <= MAX_ROWS:
                continue
            if after > bisect.bisect_left(times, d.los[i], a, b):
                continue  # bucket i is rewritten (and split) anyway
            following = groups.get(i + 1)
            taken = following[1] - following[0] if following else 0
            if d.ns[i + 1] + (b - after) + taken <= MAX_ROWS:
                if after > a:
                    groups[i] = (a, after)
                else:
                    del groups[i]
                groups[i + 1] = (after, following[1] if following else b)
        merge: list[int] = []
        for i, (a, b) in groups.items():
            inside_from = bisect.bisect_left(times, d.los[i], a, b)
            inside_to = bisect.bisect_right(times, d.his[i], a, b)
            if inside_to > inside_from or d.ns[i] + (b - a) <= MAX_ROWS:
                merge.append(i)
        loaded = await self.store.buckets(
            self.owner_id, self.dataset_id, [d.seqs[i] for i in merge]
        )
        # Plan every group, conflicts first; nothing is written before the check.
        conflicts: list[int] = []
        plans: dict[int, tuple[list[int], list[bytes]]] = {}
        counts = [0, 0, 0]  # inserted, skipped, replaced
        for i in merge:
            a, b = groups[i]
            bucket = loaded[d.seqs[i]]
            plans[i] = _merge(
                list(bucket.times),
                bucket.lines,
                times[a:b],
                lines[a:b],
                on_conflict,
                conflicts,
                counts,
            )
        if conflicts:
            raise RowConflict(sorted(conflicts)[:10])
        # Write, then splice the directory from the last bucket to the first (so the
        # indexes of the ones not yet spliced stay right).
        new: list[Piece] = []
        splices: list[tuple[int, int, list[Piece]]] = []
        if not d.los:
            made = self._pieces(times, lines)
            new += made
            splices.append((0, 0, made))
            counts[0] += len(times)
        for i in sorted(groups, reverse=True):
            a, b = groups[i]
            if i in plans:
                made = self._pieces(*plans[i])
                splices.append((i, i + 1, made))
                self.garbage.append(d.seqs[i])
                new += made
                continue
            # Before the bucket (only the first can have rows before it), or after.
            before = bisect.bisect_left(times, d.los[i], a, b)
            if before > a:
                made = self._pieces(times[a:before], lines[a:before])
                splices.append((i, i, made))
                new += made
            if before < b:
                made = self._pieces(times[before:b], lines[before:b])
                splices.append((i + 1, i + 1, made))
                new += made
            counts[0] += b - a
        await self._stage(new)
        for x, y, made in sorted(splices, key=lambda s: (s[0], s[1]), reverse=True):
            self._splice(x, y, made)
        d.count += counts[0]
        self.inserted += counts[0]
        self.skipped += counts[1]
        self.replaced += counts[2]

    async def delete(self, start: int | None, end: int | None) -> None:
        """Stage removing the rows in `[start, end)`."""
        await self.keep_alive()
        d = self.directory
        i, j = d.span(start, end)
        partial = [
            k
            for k in range(i, j)
            if not ((start is None or d.los[k] >= start) and (end is None or d.his[k] < end))
        ]
        loaded = await self.store.buckets(
            self.owner_id, self.dataset_id, [d.seqs[k] for k in partial]
        )
        replacement: list[tuple[int, list[Piece]]] = []
        for k in range(i, j):
            if k in partial:
                bucket = loaded[d.seqs[k]]
                a, b = bucket.slice(start, end)
                self.deleted += b - a
                if a == b:
                    continue
                kept_t = list(bucket.times[:a]) + list(bucket.times[b:])
                kept_v = bucket.lines[:a] + bucket.lines[b:]
                replacement.append((k, self._pieces(kept_t, kept_v) if kept_t else []))
            else:
                self.deleted += d.ns[k]
                replacement.append((k, []))
            self.garbage.append(d.seqs[k])
        await self._stage([p for _, made in replacement for p in made])
        for k, made in reversed(replacement):
            self._splice(k, k + 1, made)
        d.count -= self.deleted

    async def commit(self) -> None:
        """Make every staged change visible at once (one directory write)."""
        store = self.store
        await self.keep_alive()  # the lease cannot have lapsed since
        d = self.directory
        dirs = store._db(self.owner_id)[DIRS]
        previous = d.version
        d.version += 1
        doc = d.document(utc_now())
        self.uncertain = True
        if d.exists:
            result = await dirs.replace_one({"_id": self.dataset_id, "version": previous}, doc)
            if result.matched_count != 1:
                self.uncertain = False
                raise LostLock()
        else:
            try:
                await dirs.insert_one(doc)
            except DuplicateKeyError:
                self.uncertain = False
                raise LostLock() from None
        self.uncertain = False
        self.committed = True
        if store.on_commit is not None:
            appended = self._appended if self.deleted == 0 else None
            store.on_commit(
                self.dataset_id,
                Change(
                    previous=self._previous_last,
                    last=d.last,
                    times=appended[0] if appended else None,
                    lines=appended[1] if appended else None,
                ),
            )
        try:
            await store._delete_buckets(
                self.owner_id, [_bucket_id(self.dataset_id, s) for s in self.garbage]
            )
        except PyMongoError:
            # Left for whoever takes the lapsed lease next (not dropped: see writing()).
            logger.warning("superseded row buckets stay until the next clean-up")
            self.leftover = True

    async def discard(self) -> bool:
        """Remove what this write staged; False when that is not certain to be right
        or did not happen (the lease must lapse and the next holder clean up)."""
        if self.uncertain:
            return False
        try:
            await self.store._delete_buckets(
                self.owner_id,
                [_bucket_id(self.dataset_id, s) for s in self.staged],
                writer=self.holder,
            )
        except PyMongoError:
            logger.warning("an unfinished row write stays until its lease lapses")
            return False
        self.staged = []
        return True


def _pieces(lines: list[bytes]) -> list[tuple[int, int]]:
    """How to cut a sorted run into buckets: one when it fits, else pieces of about
    TARGET_ROWS rows (evenly) and at most TARGET_BYTES of values each."""
    n = len(lines)
    size = sum(map(len, lines))
    if n <= MAX_ROWS and size <= MAX_BYTES:
        return [(0, n)]
    per = math.ceil(n / math.ceil(n / TARGET_ROWS))
    if size <= TARGET_BYTES * (n // per):
        # Most rows are small: cut by count, unless one piece's share is too big.
        cuts = [(a, min(a + per, n)) for a in range(0, n, per)]
        if all(sum(map(len, lines[a:b])) <= MAX_BYTES for a, b in cuts):
            return cuts
    cuts, a, used = [], 0, 0
    for k, line in enumerate(lines):
        if k > a and (k - a >= per or used + len(line) > TARGET_BYTES):
            cuts.append((a, k))
            a, used = k, 0
        used += len(line)
    cuts.append((a, n))
    return cuts


def _merge(
    old_t: list[int],
    old_v: list[bytes],
    new_t: list[int],
    new_v: list[bytes],
    on_conflict: OnConflict,
    conflicts: list[int],
    counts: list[int],
) -> tuple[list[int], list[bytes]]:
    """Merge two sorted runs; a timestamp in both is a conflict, skipped or replaced."""
    out_t: list[int] = []
    out_v: list[bytes] = []
    i = j = 0
    while i < len(old_t) and j < len(new_t):
        if old_t[i] < new_t[j]:
            out_t.append(old_t[i])
            out_v.append(old_v[i])
            i += 1
        elif new_t[j] < old_t[i]:
            out_t.append(new_t[j])
            out_v.append(new_v[j])
            counts[0] += 1
            j += 1
        else:
            if on_conflict == "error":
                conflicts.append(new_t[j])
            out_t.append(old_t[i])
            if on_conflict == "replace":
                out_v.append(new_v[j])
                counts[2] += 1
            else:
                out_v.append(old_v[i])
                counts[1] += 1
            i += 1
            j += 1
    out_t += old_t[i:]
    out_v += old_v[i:]
    counts[0] += len(new_t) - j
    out_t += new_t[j:]
    out_v += new_v[j:]
    return out_t, out_v
