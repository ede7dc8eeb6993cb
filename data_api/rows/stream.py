"""`GET /rows/stream`: Server-Sent Events of new rows (seed 002), and what wakes them.

Events: `connected` (`{"dataset_id", "message"}`, `id:` the stream's position,
or `start` while the dataset has no rows), `data` (one flattened row, `id:` its
timestamp), `heartbeat` (`{"timestamp"}`) after `poll_interval` seconds without a
row, `error` (`{"error_code", "message"}`, then the stream ends). A stream sends
the rows newer than its position: the dataset's newest row when it connected, or
`Last-Event-ID` (a timestamp, or `start`: every row) when the client reconnects,
so nothing is missed or sent twice across a reconnect, even one before the first
row came.

What wakes a stream:
- a commit in this process (`RowHub.notify`, called by the store): at once;
- on MongoDB replica sets, a change stream on the dataset's directory
  document (one per open stream), for commits of other workers;
- otherwise (the embedded engine has no change streams) it looks at the
  directory every `poll_interval` seconds, one `_id` lookup.
Every `poll_interval` it also checks the caller may still read the dataset (a
revoked share, a released tag, a deleted dataset end the stream with `error`).

At most `QUARRY_MAX_STREAMS_PER_USER` streams per user over every worker: each
open stream holds one of that many leases `stream:<user>:<n>` (the catalogue's
leases), renewed while it runs and dropped when it ends; a worker that dies
leaves its leases to lapse within `STREAM_LEASE_SECONDS` (or three poll intervals,
when longer: a stream renews its lease at every poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import anyio
import orjson
from bson import ObjectId
from pymongo.errors import PyMongoError

from app.clock import utc_now
from app.errors import QuarryError
from data_api.datasets.access import Access, Level
from data_api.datasets.errors import DatasetNotFound
from data_api.datasets.repository import Catalogue
from data_api.rows.codec import flat_json, format_timestamp, from_datetime
from data_api.rows.errors import TooManyStreams
from data_api.rows.service import RowService
from data_api.rows.store import DIRS, Change

logger = logging.getLogger("quarry.rows")

STREAM_LEASE_SECONDS = 30.0
#: Rows read at a time while catching up, and sent in one round at most.
CATCH_UP_ROWS = 5_000
CATCH_UP_LIMIT = 100_000
#: Recent commits a dataset's streams remember (see Channel).
HISTORY = 64


class Channel:
    """What the streams of one dataset in this process share: the recent commits (with
    the rows they appended), and one wake-up event per stream."""

    def __init__(self) -> None:
        self.changes: deque[Change] = deque(maxlen=HISTORY)
        self.wakes: set[asyncio.Event] = set()

    def rows_after(self, position: int | None) -> list[tuple[list[int], list[bytes]]] | None:
        """The rows committed after `position`, from the recent commits alone — or None
        when they cannot say (a commit without its rows, one of another worker, a
        position older than they reach): read the storage then."""
        changes = list(self.changes)
        start = next((k for k, c in enumerate(changes) if c.previous == position), None)
        if start is None:
            return [] if changes and changes[-1].last == position else None
        runs = []
        expected = position
        for change in changes[start:]:
            if change.previous != expected or change.times is None or change.lines is None:
                return None
            if change.times:
                runs.append((change.times, change.lines))
            expected = change.last
        return runs


class RowHub:
    """In-process wake-ups of streams: each commit of this process reaches the streams
    of its dataset at once, with the rows it appended (so a hundred streams do not
    read the same rows a hundred times)."""

    def __init__(self) -> None:
        self._channels: dict[ObjectId, Channel] = {}

    def notify(self, dataset_id: ObjectId, change: Change | None) -> None:
        channel = self._channels.get(dataset_id)
        if channel is None:
            return
        if change is None:
            channel.changes.clear()
        else:
            channel.changes.append(change)
        for wake in channel.wakes:
            wake.set()

    @contextlib.contextmanager
    def subscribe(self, dataset_id: ObjectId) -> Iterator[tuple[Channel, asyncio.Event]]:
        channel = self._channels.setdefault(dataset_id, Channel())
        wake = asyncio.Event()
        channel.wakes.add(wake)
        try:
            yield channel, wake
        finally:
            channel.wakes.discard(wake)
            if not channel.wakes:
                self._channels.pop(dataset_id, None)


class StreamSlots:
    """The per-user stream budget (leases `stream:<user>:<n>`)."""

    def __init__(self, catalogue: Catalogue, limit: int, poll_interval: float) -> None:
        self.catalogue = catalogue
        self.limit = limit
        # Renewed every poll_interval: the lease outlives two missed renewals.
        self.lease = timedelta(seconds=max(STREAM_LEASE_SECONDS, 3 * poll_interval))

    async def take(self, user_id: ObjectId, holder: str) -> str:
        now = utc_now()
        until = now + self.lease
        for n in range(self.limit):
            name = f"stream:{user_id}:{n}"
            if await self.catalogue.take_lease(name=name, holder=holder, now=now, until=until):
                return name
        raise TooManyStreams(self.limit)

    async def renew(self, name: str, holder: str) -> bool:
        until = utc_now() + self.lease
        return await self.catalogue.renew_lease(name=name, holder=holder, until=until)

    async def give_back(self, name: str, holder: str) -> None:
        with contextlib.suppress(PyMongoError):
            await self.catalogue.drop_lease(name=name, holder=holder)


#: The `connected` event's id on a dataset without rows, and the `Last-Event-ID`
#: that resumes such a stream: every row, from the first on.
FROM_START = "start"


def event(kind: str, data: bytes, event_id: str | None = None) -> bytes:
    head = b"event: " + kind.encode() + b"\n"
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


def _data_events(times: Any, lines: list[bytes]) -> bytes:
    return b"".join(
        event("data", flat_json(ms, line), format_timestamp(ms))
        for ms, line in zip(times, lines, strict=True)
    )


def _error_event(exc: Exception) -> bytes:
    if isinstance(exc, QuarryError):
        body = {"error_code": str(exc.error_code), "message": exc.message}
    else:
        body = {"error_code": "DATABASE_UNAVAILABLE", "message": "The stream lost its database."}
    return event("error", orjson.dumps(body))


async def _change_stream_waker(
    service: RowService, access: Access, wake: asyncio.Event, outside: asyncio.Event
) -> None:
    """On a MongoDB replica set: on every commit to the dataset's directory, whichever
    worker made it, set `outside` (look at storage: this process's commits alone do
    not say what another worker wrote) and `wake`. Elsewhere it returns at once
    (polling covers it)."""
    if not (await service.store.database.adapter()).capabilities.change_streams:
        return
    collection = service.catalogue.tenant(access.dataset["owner_id"])[DIRS]
    try:
        async with await collection.watch(
            [{"$match": {"documentKey._id": access.dataset["_id"]}}]
        ) as changes:
            async for _change in changes:
                outside.set()
                wake.set()
    except PyMongoError as exc:
        logger.info("row stream falls back to polling (%s)", type(exc).__name__)


async def sse(
    *,
    service: RowService,
    hub: RowHub,
    slots: StreamSlots,
    slot: str,
    holder: str,
    access: Access,
    user_id: ObjectId,
    position: int | None,
    poll_interval: float,
) -> AsyncIterator[bytes]:
    """The event stream of one client; its slot is held until it ends."""
    dataset_id = access.dataset["_id"]
    owner_id = access.dataset["owner_id"]
    store = service.store
    watcher: asyncio.Task[None] | None = None
    try:
        with hub.subscribe(dataset_id) as (channel, wake):
            outside = asyncio.Event()
            watcher = asyncio.create_task(_change_stream_waker(service, access, wake, outside))
            # Its id is the position, so a client that reconnects before any row
            # came resumes from there (not from the newest row at reconnect).
            yield event(
                "connected",
                orjson.dumps(
                    {"dataset_id": str(dataset_id), "message": "Connected to real-time stream"}
                ),
                FROM_START if position is None else format_timestamp(position),
            )
            loop = asyncio.get_running_loop()
            quiet_since = checked_at = loop.time()
            look = True  # at the storage: at the start, and every poll_interval
            while True:
                wake.clear()
                if outside.is_set():
                    outside.clear()
                    look = True
                sent = False
                runs = None if look else channel.rows_after(position)
                look = False
                if runs is None:
                    # Storage: one light look at the newest timestamp, rows only if
                    # newer, sent as they are read (at most CATCH_UP_LIMIT a round).
                    runs = ()
                    newest = (await store.summary(owner_id, dataset_id)).last
                    if newest is not None and (position is None or newest > position):
                        budget = CATCH_UP_LIMIT
                        async with contextlib.aclosing(
                            store.scan(
                                owner_id,
                                dataset_id,
                                start=None if position is None else position + 1,
                                end=None,
                                batch_rows=CATCH_UP_ROWS,
                            )
                        ) as scan:
                            async for times, lines in scan:
                                yield _data_events(times, lines)
                                position = times[-1]
                                sent = True
                                budget -= len(times)
                                if budget <= 0:
                                    look = True  # more to send: the next round goes on
                                    break
                for times, lines in runs:
                    yield _data_events(times, lines)
                    position = times[-1]
                    sent = True
                now = loop.time()
                if sent:
                    quiet_since = now
                elif now - quiet_since >= poll_interval:
                    now_ms = from_datetime(utc_now())
                    yield event("heartbeat", orjson.dumps({"timestamp": format_timestamp(now_ms)}))
                    quiet_since = now
                if now - checked_at >= poll_interval:
                    # Still allowed to read? (share revoked, tag released, dataset gone)
                    await service.datasets.access.require(
                        dataset_id, user_id, Level.read, service.clock()
                    )
                    if not await slots.renew(slot, holder):
                        raise TooManyStreams(slots.limit)  # its slot lapsed and was taken
                    checked_at = now
                    look = True  # another worker's commits are only seen there
                    continue
                if look:
                    continue  # catching up: the next round goes on at once
                timeout = min(quiet_since, checked_at) + poll_interval - loop.time()
                if timeout > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), timeout=timeout)
    except (QuarryError, DatasetNotFound, PyMongoError) as exc:
        yield _error_event(exc)
    finally:
        if watcher is not None:
            watcher.cancel()
        # The client going away cancels this generator; giving the slot back must
        # still happen (else it is held until its lease lapses).
        with anyio.CancelScope(shield=True):
            await slots.give_back(slot, holder)


def new_holder() -> str:
    return uuid.uuid4().hex
