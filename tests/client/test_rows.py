"""The client's timeseries rows and columns (`quarry.rows`, `quarry.columns`)
against a real server: every method with its effect read back through the API,
batched and streamed loads, cursor iteration, downloads, the live rows, and the
Server-Sent Events stream (new rows, resuming after `Last-Event-ID`, reconnecting
by itself after a dropped connection, the server's `error` event) in both
flavours; plus the SSE parser on its own."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from quarry_client import (
    AsyncQuarry,
    Conflict,
    NotFound,
    Quarry,
    ValidationError,
)
from quarry_client._async.rows import StreamEvent as AsyncStreamEvent
from quarry_client._sync.rows import LoadProgress
from quarry_client.sse import ServerSentEvent, SSEParser

from tests.fixtures.mailbox import Inbox
from tests.fixtures.quarry_server import logged_in

#: 2023-11-14T22:13:20Z: the first row of every series here.
BASE_MS = 1_700_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEADLINE = 20.0


def iso(ms: int) -> str:
    """A timestamp as the server writes it: UTC, `Z`, milliseconds when non-zero."""
    moment = EPOCH + timedelta(milliseconds=ms)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def row(n: int, step_ms: int = 1000, **values: Any) -> dict[str, Any]:
    return {"timestamp": BASE_MS + n * step_ms, "values": {"i": n, **values}}


def stored(n: int, step_ms: int = 1000, **values: Any) -> tuple[str, dict[str, Any]]:
    """Row `n` as reads give it back: (timestamp, values)."""
    return iso(BASE_MS + n * step_ms), {"i": n, **values}


def new_dataset(quarry: Quarry) -> str:
    response = quarry.transport.request(
        "POST", "/api/v1/datasets", json={"name": f"series-{uuid.uuid4().hex[:8]}"}
    )
    return str(response.json()["data"]["id"])


async def new_dataset_async(quarry: AsyncQuarry) -> str:
    response = await quarry.transport.request(
        "POST", "/api/v1/datasets", json={"name": f"series-{uuid.uuid4().hex[:8]}"}
    )
    return str(response.json()["data"]["id"])


def row_count(quarry: Quarry, dataset_id: str) -> int:
    response = quarry.transport.request("GET", f"/api/v1/datasets/{dataset_id}")
    return int(response.json()["data"]["row_count"])


def read_back(quarry: Quarry, dataset_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every stored row, read with raw HTTP pages (not the client method under test)."""
    rows, offset = [], 0
    while True:
        response = quarry.transport.request(
            "GET", "/api/v1/rows", params={"dataset": dataset_id, "limit": 10_000, "offset": offset}
        )
        page = response.json()["data"]
        rows += [(r["timestamp"], r["values"]) for r in page]
        if len(page) < 10_000:
            return rows
        offset += len(page)


def requests_sent(quarry: Quarry) -> list[httpx.Request]:
    """Every request `quarry` sends from now on."""
    seen: list[httpx.Request] = []
    quarry.transport.http.event_hooks["request"].append(seen.append)
    return seen


def twin(quarry: Quarry, base_url: str | None = None) -> Quarry:
    """Another client of the same account (its access token, no refresh token)."""
    return Quarry(base_url or quarry.base_url, access_token=quarry.transport.credentials.access)


def atwin(quarry: Quarry | AsyncQuarry, base_url: str | None = None) -> AsyncQuarry:
    """An AsyncQuarry of the same account."""
    access = quarry.transport.credentials.access
    return AsyncQuarry(base_url or quarry.base_url, access_token=access)


# ---------------------------------------------------------------- one account

SERIES = 2_500


@pytest.fixture(scope="module")
def account(quarry_url: str, smtp_server: Inbox) -> Iterator[Quarry]:
    """An account with a dataset of SERIES rows a second apart, that tests only read."""
    with logged_in(quarry_url, smtp_server) as owner:
        owner.series_id = new_dataset(owner)
        owner.rows.bulk_insert(owner.series_id, (row(n, close=n * 10) for n in range(SERIES)))
        yield owner


@pytest.fixture(scope="module")
def series(account: Quarry) -> str:
    return str(account.series_id)  # type: ignore[attr-defined]


@pytest.fixture
def reader(account: Quarry) -> Iterator[Quarry]:
    """A client of the module's account, for one test."""
    with twin(account) as client:
        yield client


@pytest.fixture
async def areader(account: Quarry) -> AsyncIterator[AsyncQuarry]:
    async with atwin(account) as client:
        yield client


# ---------------------------------------------------------------- columns


def test_a_column_is_created_listed_and_deleted(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    column = quarry.columns.create(dataset_id, "close", "float")
    assert (column.dataset, column.name, column.dtype) == (dataset_id, "close", "float")
    assert [(c.id, c.name) for c in quarry.columns.list(dataset_id)] == [(column.id, "close")]
    quarry.columns.delete(column.id)
    assert quarry.columns.list(dataset_id) == []


def test_a_second_column_of_the_same_name_is_a_conflict(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    quarry.columns.create(dataset_id, "close", "float")
    with pytest.raises(Conflict) as raised:
        quarry.columns.create(dataset_id, "close", "int")
    assert raised.value.status_code == 409
    assert raised.value.error_code == "COLUMN_EXISTS"
    assert raised.value.request_id


def test_deleting_an_unknown_column_is_not_found(quarry: Quarry) -> None:
    with pytest.raises(NotFound) as raised:
        quarry.columns.delete("0" * 24)
    assert raised.value.error_code == "COLUMN_NOT_FOUND"
    assert raised.value.request_id


def test_a_declared_column_refuses_a_value_of_another_type(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    quarry.columns.create(dataset_id, "qty", "int")
    with pytest.raises(ValidationError) as raised:
        quarry.rows.insert(dataset_id, BASE_MS, {"qty": "many"})
    assert raised.value.status_code == 422
    assert raised.value.details
    assert row_count(quarry, dataset_id) == 0


# ---------------------------------------------------------------- writing


def test_insert_stores_one_row(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    moment = datetime(2025, 12, 16, 11, 0, tzinfo=UTC) + timedelta(hours=1)
    answer = quarry.rows.insert(dataset_id, moment, {"close": 104600, "note": "x"})
    assert (answer.timestamp, answer.values) == (
        "2025-12-16T12:00:00Z",
        {"close": 104600, "note": "x"},
    )
    assert read_back(quarry, dataset_id) == [
        ("2025-12-16T12:00:00Z", {"close": 104600, "note": "x"})
    ]


def test_inserting_a_taken_timestamp_is_a_conflict(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    quarry.rows.insert(dataset_id, "2025-12-16T10:00:00+01:00", {"v": 1})
    with pytest.raises(Conflict) as raised:
        quarry.rows.insert(dataset_id, "2025-12-16T09:00:00Z", {"v": 2})
    assert raised.value.error_code == "ROW_EXISTS"
    assert raised.value.request_id
    assert read_back(quarry, dataset_id) == [("2025-12-16T09:00:00Z", {"v": 1})]


def test_bulk_insert_sends_a_generator_in_batches_and_stores_every_row(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    sent = requests_sent(quarry)
    answer = quarry.rows.bulk_insert(dataset_id, (row(n) for n in range(25_000)), batch_size=10_000)
    bulk = [r for r in sent if r.url.path == "/api/v1/rows/bulk_insert"]
    assert len(bulk) == 3
    assert [len(json.loads(r.content)["rows"]) for r in bulk] == [10_000, 10_000, 5_000]
    assert (answer.inserted, answer.skipped, answer.replaced, answer.total) == (
        25_000,
        0,
        0,
        25_000,
    )
    assert row_count(quarry, dataset_id) == 25_000


def test_bulk_insert_skips_or_replaces_taken_timestamps(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    quarry.rows.bulk_insert(dataset_id, [row(n, v="old") for n in range(3)])
    skipped = quarry.rows.bulk_insert(
        dataset_id, [row(n, v="new") for n in range(2, 5)], on_conflict="skip"
    )
    assert (skipped.inserted, skipped.skipped, skipped.total) == (2, 1, 3)
    replaced = quarry.rows.bulk_insert(
        dataset_id, [row(n, v="newer") for n in range(1)], on_conflict="replace"
    )
    assert (replaced.inserted, replaced.replaced) == (0, 1)
    assert read_back(quarry, dataset_id) == [
        stored(0, v="newer"),
        stored(1, v="old"),
        stored(2, v="old"),
        stored(3, v="new"),
        stored(4, v="new"),
    ]


def test_bulk_insert_of_a_taken_timestamp_writes_nothing_of_the_batch(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    quarry.rows.insert(dataset_id, BASE_MS + 1000, {"i": 1})
    with pytest.raises(Conflict) as raised:
        quarry.rows.bulk_insert(dataset_id, [row(n) for n in range(3)])
    assert raised.value.error_code == "ROW_EXISTS"
    assert row_count(quarry, dataset_id) == 1


def test_bulk_insert_refuses_a_bad_timestamp_as_a_validation_error(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    with pytest.raises(ValidationError) as raised:
        quarry.rows.bulk_insert(dataset_id, [row(0), {"timestamp": "yesterday", "values": {}}])
    assert raised.value.status_code == 422
    assert raised.value.request_id
    assert row_count(quarry, dataset_id) == 0


def test_load_ndjson_streams_a_file(quarry: Quarry, tmp_path: Path) -> None:
    dataset_id = new_dataset(quarry)
    path = tmp_path / "rows.ndjson"
    path.write_text("".join(json.dumps(row(n, close=n / 2)) + "\n" for n in range(5_000)))
    seen: list[LoadProgress] = []
    sent = requests_sent(quarry)
    answer = quarry.rows.load_ndjson(dataset_id, path, progress=seen.append)
    assert (answer.inserted, answer.total) == (5_000, 5_000)
    assert seen[-1] == LoadProgress(rows=5_000, bytes=path.stat().st_size)
    assert sent[-1].headers["content-type"] == "application/x-ndjson"
    assert read_back(quarry, dataset_id) == [stored(n, close=n / 2) for n in range(5_000)]


def test_load_ndjson_of_a_file_without_a_final_newline_counts_its_last_row(
    quarry: Quarry, tmp_path: Path
) -> None:
    dataset_id = new_dataset(quarry)
    path = tmp_path / "rows.ndjson"
    path.write_text("\n".join(json.dumps(row(n)) for n in range(3)))
    seen: list[LoadProgress] = []
    answer = quarry.rows.load_ndjson(dataset_id, str(path), progress=seen.append)
    assert answer.inserted == 3
    assert seen[-1].rows == 3
    assert row_count(quarry, dataset_id) == 3


def test_load_ndjson_encodes_a_generator_of_rows_as_it_goes(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    taken: list[int] = []

    def rows() -> Iterator[dict[str, Any]]:
        for n in range(20_000):
            taken.append(n)
            yield row(n, when=None, ok=n % 2 == 0, pad="x" * 60)

    seen: list[tuple[LoadProgress, int]] = []
    answer = quarry.rows.load_ndjson(
        dataset_id, rows(), on_conflict="skip", progress=lambda p: seen.append((p, len(taken)))
    )
    assert (answer.inserted, answer.total) == (20_000, 20_000)
    (first, taken_then), (last, _) = seen[0], seen[-1]
    assert first.rows == taken_then < 20_000, "rows are encoded as the body is sent"
    assert last.rows == 20_000
    assert read_back(quarry, dataset_id)[-1] == stored(19_999, when=None, ok=False, pad="x" * 60)


def test_load_ndjson_with_a_taken_timestamp_writes_nothing(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    quarry.rows.insert(dataset_id, BASE_MS + 15_000_000, {"i": 15_000})
    with pytest.raises(Conflict) as raised:
        quarry.rows.load_ndjson(dataset_id, [row(n) for n in range(20_000)])
    assert raised.value.error_code == "ROW_EXISTS"
    assert raised.value.request_id
    assert row_count(quarry, dataset_id) == 1


def test_load_csv_types_cells_and_leaves_empty_cells_out(quarry: Quarry, tmp_path: Path) -> None:
    dataset_id = new_dataset(quarry)
    quarry.columns.create(dataset_id, "code", "string")
    quarry.columns.create(dataset_id, "price", "float")
    path = tmp_path / "rows.csv"
    path.write_text(
        "timestamp,price,qty,code,label,flag\n"
        "2025-12-16T10:00:00Z,104500,3,007,open,true\n"
        f"{BASE_MS},1.5e2,,042,,false\n"
        '2025-12-16T12:00:00+01:00,,-4,,"a, b",\n'
    )
    seen: list[LoadProgress] = []
    answer = quarry.rows.load_csv(dataset_id, path, progress=seen.append)
    assert (answer.inserted, answer.total) == (3, 3)
    assert seen[-1] == LoadProgress(rows=3, bytes=path.stat().st_size)
    assert read_back(quarry, dataset_id) == [
        (iso(BASE_MS), {"price": 150.0, "code": "042", "flag": False}),
        (
            "2025-12-16T10:00:00Z",
            {"price": 104500.0, "qty": 3, "code": "007", "label": "open", "flag": True},
        ),
        ("2025-12-16T11:00:00Z", {"qty": -4, "label": "a, b"}),
    ]


def test_load_csv_without_a_timestamp_column_sends_nothing(quarry: Quarry, tmp_path: Path) -> None:
    dataset_id = new_dataset(quarry)
    path = tmp_path / "rows.csv"
    path.write_text("time,price\n2025-12-16T10:00:00Z,1\n")
    sent = requests_sent(quarry)
    with pytest.raises(ValueError, match="timestamp"):
        quarry.rows.load_csv(dataset_id, path)
    assert sent == []


def test_a_downloaded_csv_loads_back_as_the_same_rows(quarry: Quarry, tmp_path: Path) -> None:
    source = new_dataset(quarry)
    quarry.columns.create(source, "name", "string")
    rows = [row(n, name=str(n), ok=n % 3 == 0, x=n + 0.5) for n in range(500)]
    quarry.rows.bulk_insert(source, rows)
    path = tmp_path / "rows.csv"
    quarry.rows.download(source, path, format="csv")
    copy = new_dataset(quarry)
    quarry.columns.create(copy, "name", "string")
    assert quarry.rows.load_csv(copy, path).inserted == 500
    assert read_back(quarry, copy) == read_back(quarry, source)


def test_delete_removes_a_range_then_everything(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    quarry.rows.bulk_insert(dataset_id, [row(n) for n in range(10)])
    deleted = quarry.rows.delete(dataset_id, start=BASE_MS + 2_000, end=iso(BASE_MS + 5_000))
    assert deleted == 3
    assert [t for t, _ in read_back(quarry, dataset_id)] == [
        stored(n)[0] for n in (0, 1, 5, 6, 7, 8, 9)
    ]
    assert quarry.rows.delete(dataset_id, all_rows=True) == 7
    assert row_count(quarry, dataset_id) == 0


def test_delete_without_a_range_or_all_rows_is_refused(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    quarry.rows.insert(dataset_id, BASE_MS, {})
    with pytest.raises(ValidationError) as raised:
        quarry.rows.delete(dataset_id)
    assert raised.value.request_id
    assert row_count(quarry, dataset_id) == 1


# ---------------------------------------------------------------- reading


def test_page_reads_one_page_with_its_cursor(reader: Quarry, series: str) -> None:
    first = reader.rows.page(series, limit=100)
    assert [(r.timestamp, r.values) for r in first.data] == [
        stored(n, close=n * 10) for n in range(100)
    ]
    assert first.pagination.count == SERIES
    assert first.pagination.next_cursor
    second = reader.rows.page(series, limit=100, after=first.pagination.next_cursor)
    assert second.data[0].timestamp == stored(100)[0]


def test_page_reads_newest_first_with_an_offset(reader: Quarry, series: str) -> None:
    page = reader.rows.page(series, ordering="-timestamp", limit=2, offset=1)
    assert [r.timestamp for r in page.data] == [stored(SERIES - 2)[0], stored(SERIES - 3)[0]]


def test_iterate_over_a_range_equals_the_rows_in_order(reader: Quarry, series: str) -> None:
    start = EPOCH + timedelta(milliseconds=BASE_MS + 150_000)
    rows = list(reader.rows.iterate(series, start, iso(BASE_MS + 2_200_000), page_size=300))
    assert [(r.timestamp, r.values) for r in rows] == [
        stored(n, close=n * 10) for n in range(150, 2_200)
    ]


async def test_iterate_async_over_a_range_equals_the_rows_in_order(
    areader: AsyncQuarry, series: str
) -> None:
    rows = [
        (r.timestamp, r.values)
        async for r in areader.rows.iterate(
            series, BASE_MS + 1_000_000, None, ordering="-timestamp", page_size=700
        )
    ]
    assert rows == [stored(n, close=n * 10) for n in reversed(range(1_000, SERIES))]


def test_a_bad_start_is_an_invalid_timestamp(reader: Quarry, series: str) -> None:
    with pytest.raises(ValidationError) as raised:
        reader.rows.page(series, start="the day before")
    assert raised.value.error_code == "INVALID_TIMESTAMP"
    assert raised.value.request_id


def test_reading_an_unknown_dataset_is_not_found(reader: Quarry) -> None:
    with pytest.raises(NotFound) as raised:
        reader.rows.page("0" * 24)
    assert raised.value.status_code == 404
    assert raised.value.error_code == "DATASET_NOT_FOUND"
    assert raised.value.request_id


def test_aggregate_gives_one_row_per_bucket(reader: Quarry, series: str) -> None:
    answer = reader.rows.aggregate(
        series, bucket="1m", agg="sum", columns=["close"], end=BASE_MS + 120_000
    )
    # 22:13:20 is 20 s into its minute: buckets of 40 and 60 rows, then 20 rows.
    assert answer.columns == ["close"]
    assert [(b.timestamp, b.count, b.values["close"]) for b in answer.data] == [
        ("2023-11-14T22:13:00Z", 40, sum(n * 10 for n in range(40))),
        ("2023-11-14T22:14:00Z", 60, sum(n * 10 for n in range(40, 100))),
        ("2023-11-14T22:15:00Z", 20, sum(n * 10 for n in range(100, 120))),
    ]


def test_download_streams_csv_to_a_file_gzipped_on_the_wire(
    reader: Quarry, series: str, tmp_path: Path
) -> None:
    encodings: list[str | None] = []
    reader.transport.http.event_hooks["response"].append(
        lambda response: encodings.append(response.headers.get("content-encoding"))
    )
    path = tmp_path / "series.csv"
    written = reader.rows.download(series, path, format="csv")
    assert encodings[-1] == "gzip"
    assert written == path.stat().st_size
    with path.open(newline="") as file:
        records = list(csv.reader(file))
    assert records[0] == ["timestamp", "i", "close"]
    assert records[1:] == [[stored(n)[0], str(n), str(n * 10)] for n in range(SERIES)]


def test_download_writes_ndjson_of_a_range_to_a_file_object(reader: Quarry, series: str) -> None:
    buffer = io.BytesIO()
    reader.rows.download(series, buffer, format="ndjson", start=BASE_MS, end=BASE_MS + 3_000)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [(r["timestamp"], r["values"]) for r in lines] == [
        stored(n, close=n * 10) for n in range(3)
    ]


async def test_download_async_writes_json(
    areader: AsyncQuarry, series: str, tmp_path: Path
) -> None:
    path = tmp_path / "series.json"
    await areader.rows.download(series, path, format="json", start=BASE_MS + 2_490_000)
    assert [(r["timestamp"], r["values"]) for r in json.loads(path.read_text())] == [
        stored(n, close=n * 10) for n in range(2_490, SERIES)
    ]


def test_a_failed_download_leaves_no_file(reader: Quarry, tmp_path: Path) -> None:
    path = tmp_path / "missing.csv"
    with pytest.raises(NotFound):
        reader.rows.download("0" * 24, path)
    assert not path.exists()


def test_live_gives_the_most_recent_rows_oldest_first(reader: Quarry, series: str) -> None:
    rows = list(reader.rows.live(series, limit=3))
    assert [(r.timestamp, r.values) for r in rows] == [
        stored(n, close=n * 10) for n in range(SERIES - 3, SERIES)
    ]


async def test_live_async_gives_the_most_recent_rows(areader: AsyncQuarry, series: str) -> None:
    rows = [r.timestamp async for r in areader.rows.live(series)]
    assert rows == [stored(n)[0] for n in range(SERIES - 1_000, SERIES)]


# ---------------------------------------------------------------- the SSE stream


async def collect(
    events: AsyncIterator[AsyncStreamEvent],
    rows: list[AsyncStreamEvent],
    connected: asyncio.Event,
    wanted: int,
) -> None:
    """Take events until `wanted` rows came, noting the connections."""
    async with contextlib.aclosing(events):
        async for event in events:
            if event.event == "connected":
                connected.set()
            elif event.event == "data":
                rows.append(event)
                if len(rows) == wanted:
                    return


async def test_subscribe_receives_rows_inserted_after_subscribing(aquarry: AsyncQuarry) -> None:
    dataset_id = await new_dataset_async(aquarry)
    await aquarry.rows.bulk_insert(dataset_id, [row(n) for n in range(3)])  # before: not sent
    rows: list[AsyncStreamEvent] = []
    connected = asyncio.Event()
    events = aquarry.rows.subscribe(dataset_id, poll_interval=1, control_events=True)
    listening = asyncio.create_task(collect(events, rows, connected, 4))
    async with atwin(aquarry) as writer:
        await asyncio.wait_for(connected.wait(), DEADLINE)
        await writer.rows.insert(dataset_id, BASE_MS + 3_000, {"i": 3})
        await writer.rows.bulk_insert(dataset_id, [row(n) for n in range(4, 7)])
        await asyncio.wait_for(listening, DEADLINE)
    assert [(e.id, e.timestamp, e.values) for e in rows] == [
        (stored(n)[0], *stored(n)) for n in range(3, 7)
    ]
    assert rows[0].row.values == {"i": 3}


async def test_subscribe_resumes_after_last_event_id_without_duplicates_or_gaps(
    aquarry: AsyncQuarry,
) -> None:
    dataset_id = await new_dataset_async(aquarry)
    await aquarry.rows.bulk_insert(dataset_id, [row(n) for n in range(6)])
    # From row 1 on: the stored rows after it first, then the new ones.
    first: list[AsyncStreamEvent] = []
    connected = asyncio.Event()
    events = aquarry.rows.subscribe(dataset_id, last_event_id=stored(1)[0], poll_interval=1)
    await asyncio.wait_for(collect(events, first, connected, 2), DEADLINE)
    await aquarry.rows.bulk_insert(dataset_id, [row(n) for n in range(6, 9)])
    rest: list[AsyncStreamEvent] = []
    events = aquarry.rows.subscribe(dataset_id, last_event_id=first[-1].id, poll_interval=1)
    await asyncio.wait_for(collect(events, rest, connected, 5), DEADLINE)
    assert [e.id for e in first + rest] == [stored(n)[0] for n in range(2, 9)]


class DroppingProxy:
    """A TCP relay to the server whose connections a test can cut (the dropped
    connection of a flaky network); it keeps the bytes each client sent."""

    def __init__(self, upstream: str) -> None:
        url = httpx.URL(upstream)
        self.host, self.port = url.host, url.port or 80
        self.sent: list[bytearray] = []
        self._open: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def drop(self) -> None:
        for client, upstream in self._open:
            client.transport.abort()
            upstream.transport.abort()
        self._open.clear()

    async def close(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        record = bytearray()
        self.sent.append(record)
        self._open.append((writer, up_writer))
        await asyncio.gather(_pipe(reader, up_writer, record), _pipe(up_reader, writer, None))


async def _pipe(
    source: asyncio.StreamReader, target: asyncio.StreamWriter, record: bytearray | None
) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65_536):
            if record is not None:
                record.extend(data)
            target.write(data)
            await target.drain()
    target.close()


async def test_subscribe_reconnects_by_itself_with_the_last_event_id(
    aquarry: AsyncQuarry,
) -> None:
    dataset_id = await new_dataset_async(aquarry)
    proxy = DroppingProxy(aquarry.base_url)
    through = atwin(aquarry, await proxy.start())
    rows: list[AsyncStreamEvent] = []
    connected = asyncio.Event()
    events = through.rows.subscribe(
        dataset_id, poll_interval=1, control_events=True, reconnect_delay=0.05
    )
    listening = asyncio.create_task(collect(events, rows, connected, 5))
    try:
        await asyncio.wait_for(connected.wait(), DEADLINE)
        await aquarry.rows.bulk_insert(dataset_id, [row(n) for n in range(2)])
        await wait_until(lambda: len(rows) == 2)
        connected.clear()
        proxy.drop()
        await aquarry.rows.bulk_insert(dataset_id, [row(n) for n in range(2, 4)])
        await asyncio.wait_for(connected.wait(), DEADLINE)  # connected again
        await aquarry.rows.insert(dataset_id, BASE_MS + 4_000, {"i": 4})
        await asyncio.wait_for(listening, DEADLINE)
    finally:
        listening.cancel()
        await through.aclose()
        await proxy.close()
    assert [e.id for e in rows] == [stored(n)[0] for n in range(5)]
    assert len(proxy.sent) == 2
    resumed = bytes(proxy.sent[1]).decode().lower()
    assert f"last-event-id: {stored(1)[0]}".lower() in resumed


async def test_a_reconnect_before_any_new_row_misses_nothing(aquarry: AsyncQuarry) -> None:
    """Dropped before its first row, a stream resumes from where it connected
    (the `connected` event's id), not from the newest row at reconnect: rows
    written while it was away still come."""
    dataset_id = await new_dataset_async(aquarry)
    await aquarry.rows.insert(dataset_id, BASE_MS, {"i": 0})
    proxy = DroppingProxy(aquarry.base_url)
    through = atwin(aquarry, await proxy.start())
    rows: list[AsyncStreamEvent] = []
    connected = asyncio.Event()
    events = through.rows.subscribe(
        dataset_id, poll_interval=1, control_events=True, reconnect_delay=1.0
    )
    listening = asyncio.create_task(collect(events, rows, connected, 3))
    try:
        await asyncio.wait_for(connected.wait(), DEADLINE)
        connected.clear()
        proxy.drop()
        await aquarry.rows.bulk_insert(dataset_id, [row(1), row(2)])  # while it is away
        await asyncio.wait_for(connected.wait(), DEADLINE)
        await aquarry.rows.insert(dataset_id, BASE_MS + 3_000, {"i": 3})
        await asyncio.wait_for(listening, DEADLINE)
    finally:
        listening.cancel()
        await through.aclose()
        await proxy.close()
    assert [e.id for e in rows] == [stored(n)[0] for n in (1, 2, 3)]
    assert f"last-event-id: {stored(0)[0]}".lower() in bytes(proxy.sent[1]).decode().lower()


async def test_a_reconnect_before_the_first_row_of_an_empty_dataset_misses_nothing(
    aquarry: AsyncQuarry,
) -> None:
    """On a dataset without rows the `connected` id is `start`: a stream dropped
    before any row came resumes from the first row, not from the newest one."""
    dataset_id = await new_dataset_async(aquarry)
    proxy = DroppingProxy(aquarry.base_url)
    through = atwin(aquarry, await proxy.start())
    rows: list[AsyncStreamEvent] = []
    connected = asyncio.Event()
    events = through.rows.subscribe(
        dataset_id, poll_interval=1, control_events=True, reconnect_delay=1.0
    )
    listening = asyncio.create_task(collect(events, rows, connected, 3))
    try:
        await asyncio.wait_for(connected.wait(), DEADLINE)
        connected.clear()
        proxy.drop()
        await aquarry.rows.bulk_insert(dataset_id, [row(0), row(1)])  # while it is away
        await asyncio.wait_for(connected.wait(), DEADLINE)
        await aquarry.rows.insert(dataset_id, BASE_MS + 2_000, {"i": 2})
        await asyncio.wait_for(listening, DEADLINE)
    finally:
        listening.cancel()
        await through.aclose()
        await proxy.close()
    assert [e.id for e in rows] == [stored(n)[0] for n in (0, 1, 2)]
    assert "last-event-id: start" in bytes(proxy.sent[1]).decode().lower()


async def wait_until(condition: Any, seconds: float = DEADLINE) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not met within {seconds} s"
        await asyncio.sleep(0.02)


async def test_subscribe_ends_with_the_servers_error_event(aquarry: AsyncQuarry) -> None:
    dataset_id = await new_dataset_async(aquarry)
    rows: list[AsyncStreamEvent] = []
    connected = asyncio.Event()
    events = aquarry.rows.subscribe(dataset_id, poll_interval=1, control_events=True)
    listening = asyncio.create_task(collect(events, rows, connected, 1_000))
    await asyncio.wait_for(connected.wait(), DEADLINE)
    await aquarry.transport.request("DELETE", f"/api/v1/datasets/{dataset_id}")
    with pytest.raises(NotFound) as raised:
        await asyncio.wait_for(listening, DEADLINE)
    assert raised.value.error_code == "DATASET_NOT_FOUND"
    assert rows == []


def test_the_blocking_subscribe_receives_rows_inserted_from_a_thread(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    connected = threading.Event()
    failures: list[BaseException] = []
    writer = twin(quarry)

    def write() -> None:
        try:
            with writer:
                assert connected.wait(DEADLINE)
                for n in range(3):
                    writer.rows.insert(dataset_id, BASE_MS + n * 1000, {"i": n})
        except BaseException as exc:
            failures.append(exc)

    writing = threading.Thread(target=write)
    writing.start()
    rows, deadline = [], time.monotonic() + DEADLINE
    events = quarry.rows.subscribe(dataset_id, poll_interval=1, control_events=True)
    try:
        for event in events:  # heartbeats every second: the deadline is checked
            assert time.monotonic() < deadline, f"only {len(rows)} rows came"
            if event.event == "connected":
                connected.set()
            elif event.event == "data":
                rows.append((event.id, event.values))
                if len(rows) == 3:
                    break
    finally:
        events.close()
        connected.set()
        writing.join()
    assert not failures
    assert rows == [(stored(n)[0], {"i": n}) for n in range(3)]


def test_the_blocking_subscribe_resumes_after_last_event_id(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    quarry.rows.bulk_insert(dataset_id, [row(n) for n in range(4)])
    events = quarry.rows.subscribe(dataset_id, last_event_id=stored(0)[0], poll_interval=1)
    try:
        got = [next(events).id for _ in range(3)]
    finally:
        events.close()
    assert got == [stored(n)[0] for n in (1, 2, 3)]


# ---------------------------------------------------------------- the SSE parser


def parse(text: str) -> list[ServerSentEvent]:
    return SSEParser().feed_all(text.splitlines())


def test_sse_comments_are_ignored_and_data_lines_are_joined() -> None:
    assert parse(": hello\nevent: data\ndata: one\n: between\ndata:two\n\n") == [
        ServerSentEvent(event="data", data="one\ntwo")
    ]


def test_sse_an_event_is_dispatched_only_on_a_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed("data: x") is None
    assert parser.feed("") == ServerSentEvent(data="x")
    assert parser.feed("data: cut off") is None  # the stream ended mid-event: never sent


def test_sse_a_block_without_data_dispatches_nothing() -> None:
    assert parse("event: heartbeat\n\nretry: 3000\n\n") == []


def test_sse_the_id_persists_and_only_a_complete_block_makes_it_the_last() -> None:
    parser = SSEParser(last_event_id="0")
    events = parser.feed_all(["id: 1", "data: a", "", "data: b", "", "id: 2", "data: c"])
    assert [(e.data, e.id) for e in events] == [("a", "1"), ("b", "1")]
    assert parser.last_event_id == "1"  # block "2" never completed
    assert parser.feed("") == ServerSentEvent(data="c", id="2")
    assert parser.last_event_id == "2"


def test_sse_fields_follow_the_standard() -> None:
    parser = SSEParser()
    events = parser.feed_all(
        ["\ufeffdata", "", "data:  two spaces", "id: a\0b", "retry: 15x", "", "retry: 250"]
    )
    assert events == [ServerSentEvent(data=""), ServerSentEvent(data=" two spaces")]
    assert parser.feed('data: {"n": 1}') is None
    assert parser.feed("") == ServerSentEvent(data='{"n": 1}', retry=250)
    assert parser.retry == 250
    assert SSEParser().feed_all(['data: {"n": 1}', ""])[0].json() == {"n": 1}
