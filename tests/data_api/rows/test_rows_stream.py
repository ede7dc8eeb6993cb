"""`GET /api/v1/rows/stream` (`spec/rows.md`): Server-Sent Events read by a real
HTTP client from a real socket. The module's app runs under uvicorn in this
process on a free loopback port; rows are inserted through the API while a
stream is open.

Covered: `connected` first, then only the rows inserted after connecting, as
`data` events (`id:` their timestamp, values flattened) in order; heartbeats
when nothing arrives; resuming with `Last-Event-ID` (exactly the rows missed);
the stream ending with an `error` event when the dataset is deleted or a share
revoked; the per-user limit of open streams (429, the slot given back when a
client goes away); and the request errors (401, 404, 422).

Accounts are registered through an ASGI client of the same app before uvicorn
starts (registering waits for a mail with a blocking poll, which would stall
the loop uvicorn serves on). Each test opens its own streams with
`poll_interval=1` and waits for events with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from bson import ObjectId

from app.errors import ErrorCode
from app.wiring import state_of
from data_api.datasets.repository import LEASES
from tests.fixtures.accounts import Account, register_account
from tests.fixtures.datasets import DATASETS, share, user_id_of
from tests.fixtures.engine import DatabaseServer
from tests.fixtures.entries import Sync, app_and_client
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.mailbox import Inbox
from tests.fixtures.rows import ROWS, RowsOwner, iso_ms, rows_owner, series
from tests.fixtures.served import eventually, uvicorn_serving

STREAM = f"{ROWS}/stream"
#: How long a test waits for an event that should come within a poll interval or two.
EVENT_SECONDS = 10.0
#: 2026-01-01T00:00:00Z: rows of these tests start here.
T0 = 1_767_225_600_000


@dataclass
class Served:
    """The module's app over HTTP: its owner, a second user (`reader`) and a third
    (`crowd`, who opens the most streams), each with a tenant database of their own."""

    owner: RowsOwner
    url: str
    reader: Account
    reader_id: ObjectId
    crowd: Account
    crowd_id: ObjectId
    crowd_dataset: str

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=EVENT_SECONDS)

    def open_streams(self, user_id: ObjectId) -> int:
        """Stream slots `user_id` holds (the leases `stream:<user>:<n>`)."""
        leases = self.owner.sync[self.owner.control_db][LEASES]
        return int(leases.count_documents({"_id": {"$regex": f"^stream:{user_id}:"}}))


async def _account_with_rows(owner: RowsOwner) -> tuple[Account, ObjectId, str]:
    """A registered user with a dataset holding one row (so its tenant database exists)."""
    account = await register_account(owner.http, owner.inbox)
    user_id = await user_id_of(owner.http, account)
    dataset = await owner.dataset("mine", headers=account.bearer)
    response = await owner.bulk(dataset, [{"timestamp": 0, "values": {}}], headers=account.bearer)
    assert response.status_code == 200, response.text
    return account, user_id, dataset


@pytest.fixture(scope="module")
async def served(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Served]:
    data_dir = tmp_path_factory.mktemp("rows-stream") / "data"
    async with rows_owner(database_server, smtp_server, sync_client, data_dir) as owner:
        reader, reader_id, _ = await _account_with_rows(owner)
        crowd, crowd_id, crowd_dataset = await _account_with_rows(owner)
        async with uvicorn_serving(owner.app) as url:
            yield Served(owner, url, reader, reader_id, crowd, crowd_id, crowd_dataset)


# ---------------------------------------------------------------- reading events


@dataclass(frozen=True)
class Event:
    kind: str
    data: Any
    id: str | None = None


class EventReader:
    """Server-Sent Events parsed from a streamed response's lines."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self) -> Event | None:
        """The next event; None once the server ended the stream."""
        fields: dict[str, str] = {}
        data: list[str] = []
        async for line in self._lines:
            if line == "":
                if fields or data:
                    payload = orjson.loads("\n".join(data)) if data else None
                    return Event(fields.get("event", "message"), payload, fields.get("id"))
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
        assert not fields and not data, f"the stream ended inside an event: {fields} {data}"
        return None

    async def until(self, kind: str, seconds: float = EVENT_SECONDS) -> tuple[list[Event], Event]:
        """The events before the first `kind` event, and that event (within `seconds`)."""
        before: list[Event] = []
        async with asyncio.timeout(seconds):
            while True:
                found = await self.next()
                assert found is not None, f"the stream ended before a {kind} event: {before}"
                if found.kind == kind:
                    return before, found
                before.append(found)

    async def end(self, seconds: float = EVENT_SECONDS) -> list[Event]:
        """Every event until the server ends the stream (within `seconds`)."""
        rest: list[Event] = []
        async with asyncio.timeout(seconds):
            while (found := await self.next()) is not None:
                rest.append(found)
        return rest

    async def data_until_heartbeat(self) -> list[Event]:
        """The events before the next heartbeat; each must be a `data` event. A
        heartbeat comes only after a poll interval without rows: whatever was due
        has been sent by then."""
        before, _ = await self.until("heartbeat")
        assert all(e.kind == "data" for e in before), before
        return before


def stream_params(dataset: str, poll_interval: int | str = 1) -> dict[str, Any]:
    return {"dataset": dataset, "poll_interval": poll_interval}


@contextlib.asynccontextmanager
async def streaming(
    http: httpx.AsyncClient,
    dataset: str,
    headers: dict[str, str],
    *,
    last_event_id: str | None = None,
) -> AsyncIterator[EventReader]:
    """An open stream (poll_interval=1) whose `connected` event was read."""
    extra = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    async with http.stream(
        "GET", STREAM, params=stream_params(dataset), headers={**headers, **extra}
    ) as response:
        if response.status_code != 200:
            await response.aread()
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        events = EventReader(response)
        async with asyncio.timeout(EVENT_SECONDS):
            first = await events.next()
        assert first is not None and first.kind == "connected", first
        # Its id is the stream's position ("start" while the dataset has no rows).
        assert first.id == "start" or first.id.endswith("Z"), first.id
        assert set(first.data) == {"dataset_id", "message"}
        assert first.data["dataset_id"] == dataset
        assert isinstance(first.data["message"], str) and first.data["message"]
        yield events


async def refused(
    http: httpx.AsyncClient,
    params: dict[str, Any],
    headers: dict[str, str],
) -> httpx.Response:
    """A stream request the server must refuse: its whole (error) answer. A stream
    that opens instead fails the test at once rather than hang."""
    async with http.stream("GET", STREAM, params=params, headers=headers) as response:
        assert response.status_code != 200, "the stream was accepted"
        await response.aread()
        return response


def flat(rows: list[dict[str, Any]]) -> list[Event]:
    """The `data` events of `rows` (`{timestamp: ms, values}`), as the stream sends them."""
    return [
        Event(
            "data",
            {"timestamp": iso_ms(row["timestamp"]), **row["values"]},
            iso_ms(row["timestamp"]),
        )
        for row in rows
    ]


async def insert(owner: RowsOwner, dataset: str, rows: list[dict[str, Any]]) -> None:
    response = await owner.bulk(dataset, rows)
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == len(rows)


# ---------------------------------------------------------------- data and heartbeats


@pytest.mark.smoke
async def test_a_stream_sends_connected_then_only_rows_inserted_after_it_in_order(
    served: Served,
) -> None:
    owner = served.owner
    dataset = await owner.dataset("live")
    await insert(owner, dataset, series(T0, 3))
    first = [
        {"timestamp": T0 + 10_000, "values": {"price": 1.5, "side": "buy", "ok": True}},
        {"timestamp": T0 + 10_250, "values": {"price": 2, "side": None}},
    ]
    second = [{"timestamp": T0 + 20_000 + n, "values": {"n": n}} for n in range(5)]
    async with served.client() as http, streaming(http, dataset, owner.headers) as events:
        await insert(owner, dataset, first)
        await insert(owner, dataset, second)
        received: list[Event] = []
        async with asyncio.timeout(EVENT_SECONDS):
            while len(received) < len(first) + len(second):
                found = await events.next()
                assert found is not None
                if found.kind != "heartbeat":
                    received.append(found)
        assert received == flat(first + second)
        assert received[1].data == {
            "timestamp": "2026-01-01T00:00:10.250Z",
            "price": 2,
            "side": None,
        }
        # Nothing else is due: the rows stored before connecting never come.
        assert await events.data_until_heartbeat() == []
    assert len(owner.stored_rows(dataset)) == 3 + len(first) + len(second)


async def test_a_quiet_stream_sends_heartbeats_every_poll_interval(served: Served) -> None:
    owner = served.owner
    dataset = await owner.dataset("quiet")
    async with served.client() as http, streaming(http, dataset, owner.headers) as events:
        started = datetime.now(UTC) - timedelta(seconds=1)
        for _ in range(2):
            before, beat = await events.until("heartbeat", seconds=5)
            assert before == []
            assert beat.id is None and set(beat.data) == {"timestamp"}
            sent = beat.data["timestamp"]
            assert sent.endswith("Z")
            moment = datetime.fromisoformat(sent.replace("Z", "+00:00"))
            assert started <= moment <= datetime.now(UTC) + timedelta(seconds=1), sent
    assert owner.stored_rows(dataset) == []


async def test_rows_another_worker_writes_arrive_by_polling(
    served: Served, database_server: DatabaseServer
) -> None:
    """A commit in another process does not wake this one's streams: on the embedded
    engine (no change streams) they find it by looking every poll interval."""
    owner = served.owner
    dataset = await owner.dataset("elsewhere")
    rows = series(T0, 3, step_ms=10, worker=2)
    other_settings = state_of(owner.app).settings
    async with (
        app_and_client(database_server, other_settings) as (_, other),
        served.client() as http,
        streaming(http, dataset, owner.headers) as events,
    ):
        body = {"dataset": dataset, "rows": rows}
        response = await other.post(f"{ROWS}/bulk_insert", json=body, headers=owner.headers)
        assert response.status_code == 200, response.text
        before, got = await events.until("data", seconds=5)
        assert all(e.kind == "heartbeat" for e in before), before
        assert [got, *await events.data_until_heartbeat()] == flat(rows)
    assert [v for _, v in owner.stored_rows(dataset)] == [r["values"] for r in rows]


# ---------------------------------------------------------------- resuming


async def test_a_client_reconnecting_with_last_event_id_gets_exactly_the_rows_it_missed(
    served: Served,
) -> None:
    owner = served.owner
    dataset = await owner.dataset("resume")
    seen_rows = series(T0, 4, step_ms=1500, phase=1)
    missed_rows = series(T0 + 60_000, 5, step_ms=250, phase=2)
    async with served.client() as http:
        async with streaming(http, dataset, owner.headers) as events:
            await insert(owner, dataset, seen_rows)
            received: list[Event] = []
            async with asyncio.timeout(EVENT_SECONDS):
                while len(received) < len(seen_rows):
                    found = await events.next()
                    assert found is not None
                    if found.kind == "data":
                        received.append(found)
            assert received == flat(seen_rows)
        last_id = received[-1].id
        assert last_id == iso_ms(seen_rows[-1]["timestamp"])
        # Written while the client is away.
        await insert(owner, dataset, missed_rows)
        async with streaming(http, dataset, owner.headers, last_event_id=last_id) as events:
            assert await events.data_until_heartbeat() == flat(missed_rows)
            # And what arrives next follows on, once.
            later = [{"timestamp": T0 + 120_000, "values": {"phase": 3}}]
            await insert(owner, dataset, later)
            assert await events.data_until_heartbeat() == flat(later)
        # Resuming from the middle sends the rest, each row once.
        middle = iso_ms(seen_rows[1]["timestamp"])
        async with streaming(http, dataset, owner.headers, last_event_id=middle) as events:
            assert await events.data_until_heartbeat() == flat(seen_rows[2:] + missed_rows + later)
    assert len(owner.stored_rows(dataset)) == len(seen_rows) + len(missed_rows) + 1


# ---------------------------------------------------------------- streams that end


async def test_deleting_the_dataset_ends_its_stream_with_an_error_event(served: Served) -> None:
    owner = served.owner
    dataset = await owner.dataset("doomed")
    await insert(owner, dataset, series(T0, 2))
    owner_id = owner.owner_id
    async with served.client() as http, streaming(http, dataset, owner.headers) as events:
        deleted = await owner.http.delete(f"{DATASETS}/{dataset}", headers=owner.headers)
        assert deleted.status_code == 204, deleted.text
        before, error = await events.until("error")
        assert all(e.kind == "heartbeat" for e in before), before
        assert error.data["error_code"] == ErrorCode.DATASET_NOT_FOUND.value
        assert isinstance(error.data["message"], str) and error.data["message"]
        assert await events.end() == []
    assert owner.directory(dataset) is None and owner.buckets(dataset) == []
    await eventually(lambda: served.open_streams(owner_id) == 0, seconds=EVENT_SECONDS)


async def test_revoking_a_share_ends_the_readers_stream_with_an_error_event(
    served: Served,
) -> None:
    owner = served.owner
    dataset = await owner.dataset("shared")
    granted = await share(
        owner.http, owner.headers, dataset, permission="read", email=served.reader.email
    )
    row = [{"timestamp": T0, "values": {"x": 1}}]
    async with served.client() as http, streaming(http, dataset, served.reader.bearer) as events:
        await insert(owner, dataset, row)
        before, got = await events.until("data")
        assert [e.kind for e in before] in ([], ["heartbeat"])
        assert [got] == flat(row)
        revoked = await owner.http.delete(
            f"{DATASETS}/{dataset}/shares/{granted['id']}", headers=owner.headers
        )
        assert revoked.status_code == 204, revoked.text
        before, error = await events.until("error")
        assert all(e.kind == "heartbeat" for e in before), before
        assert error.data["error_code"] == ErrorCode.DATASET_NOT_FOUND.value
        assert await events.end() == []
        # The reader may not open it again; the owner still reads the row.
        again = await refused(http, stream_params(dataset), served.reader.bearer)
        assert_envelope(again, 404, ErrorCode.DATASET_NOT_FOUND)
    await eventually(lambda: served.open_streams(served.reader_id) == 0, seconds=EVENT_SECONDS)
    assert owner.stored_rows(dataset) == [(T0, {"x": 1})]


# ---------------------------------------------------------------- the per-user limit


async def test_an_eleventh_stream_is_429_until_one_of_ten_closes(served: Served) -> None:
    crowd, dataset = served.crowd.bearer, served.crowd_dataset
    limit = state_of(served.owner.app).settings.max_streams_per_user
    assert limit == 10
    async with served.client() as http, contextlib.AsyncExitStack() as all_open:
        streams: list[contextlib.AsyncExitStack] = []
        for _ in range(limit):
            one = contextlib.AsyncExitStack()
            await one.enter_async_context(streaming(http, dataset, crowd))
            all_open.push_async_callback(one.aclose)
            streams.append(one)
        assert served.open_streams(served.crowd_id) == limit

        over = await refused(http, stream_params(dataset), crowd)
        body = assert_envelope(over, 429, ErrorCode.TOO_MANY_STREAMS)
        assert "10" in body["message"]
        assert served.open_streams(served.crowd_id) == limit
        # The limit is per user: the owner still opens one.
        owner = served.owner
        async with streaming(http, await owner.dataset("beside"), owner.headers) as events:
            await events.until("heartbeat")

        await streams.pop().aclose()
        # The slot is given back once the server sees the client gone.
        deadline = time.monotonic() + EVENT_SECONDS
        while True:
            attempt = http.stream("GET", STREAM, params=stream_params(dataset), headers=crowd)
            response = await all_open.enter_async_context(attempt)
            if response.status_code == 200:
                break
            await response.aread()
            assert_envelope(response, 429, ErrorCode.TOO_MANY_STREAMS)
            assert time.monotonic() < deadline, "no stream slot was given back"
            await asyncio.sleep(0.05)
        events = EventReader(response)
        async with asyncio.timeout(EVENT_SECONDS):
            first = await events.next()
        assert first is not None and first.kind == "connected"
        assert served.open_streams(served.crowd_id) == limit
    await eventually(lambda: served.open_streams(served.crowd_id) == 0, seconds=EVENT_SECONDS)


# ---------------------------------------------------------------- refused requests


async def test_a_stream_without_credentials_is_401(served: Served) -> None:
    async with served.client() as http:
        response = await refused(http, stream_params(served.crowd_dataset), {})
    assert_envelope(response, 401, ErrorCode.NOT_AUTHENTICATED)
    assert served.open_streams(served.crowd_id) == 0


async def test_a_stream_of_a_dataset_the_caller_cannot_read_is_404(served: Served) -> None:
    owner = served.owner
    private = await owner.dataset("private")
    async with served.client() as http:
        for dataset in (private, str(ObjectId())):
            response = await refused(http, stream_params(dataset), served.crowd.bearer)
            assert_envelope(response, 404, ErrorCode.DATASET_NOT_FOUND)
    assert served.open_streams(served.crowd_id) == 0


@pytest.mark.parametrize("poll_interval", [0, 61, "soon"])
async def test_a_poll_interval_outside_1_to_60_is_422(
    served: Served, poll_interval: int | str
) -> None:
    async with served.client() as http:
        response = await refused(
            http, stream_params(served.crowd_dataset, poll_interval), served.crowd.bearer
        )
    body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert body["details"][0]["loc"] == ["query", "poll_interval"]
    assert served.open_streams(served.crowd_id) == 0


@pytest.mark.parametrize("last_event_id", ["yesterday", "2026-13-01T00:00:00Z", "12:00"])
async def test_a_malformed_last_event_id_is_422(served: Served, last_event_id: str) -> None:
    async with served.client() as http:
        response = await refused(
            http,
            stream_params(served.crowd_dataset),
            {**served.crowd.bearer, "Last-Event-ID": last_event_id},
        )
    assert_envelope(response, 422, ErrorCode.INVALID_TIMESTAMP)
    assert served.open_streams(served.crowd_id) == 0
