"""Timeseries rows and columns, bulk and NDJSON loads, range iteration, live rows
and the SSE stream (`rows.md`)."""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

import httpx
from pydantic import BaseModel

from quarry_client import models as m
from quarry_client._async.files import save_chunks
from quarry_client._async.transport import AsyncTransport
from quarry_client._concurrency import async_sleep
from quarry_client.errors import (
    NotFound,
    PermissionDenied,
    QuarryConnectionError,
    QuarryError,
    RateLimited,
    ServiceUnavailable,
)
from quarry_client.retry import NO_RETRY, RetryPolicy
from quarry_client.routes import rows as r
from quarry_client.sse import ServerSentEvent, SSEParser

OnConflict = Literal["error", "skip", "replace"]
DType = Literal["float", "int", "string", "bool"]
#: A timestamp as the server takes it: ISO-8601 (naive means UTC), epoch ms, or a datetime.
Timestamp = str | int | datetime
#: Rows as given by the caller: `{"timestamp": ..., "values": {...}}` (or `RowIn`).
RowLike = Mapping[str, Any] | m.RowIn

DEFAULT_BATCH_SIZE = 10_000
#: The server's QUARRY_MAX_BULK_ROWS default: a JSON bulk_insert holds at most this many.
MAX_BATCH_SIZE = 100_000
#: Bytes of NDJSON sent per chunk of a streamed load.
CHUNK_BYTES = 1 << 20
NDJSON = "application/x-ndjson"
#: Waited before reconnecting a dropped stream when the server sent no `retry:`.
RECONNECT_DELAY = 1.0

_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?")
_BOOLS = {"true": True, "false": False}


@dataclass(frozen=True)
class LoadProgress:
    """How much of a streamed load has been sent: rows, and bytes of the file read
    (a file load, CSV or NDJSON: compare with its size) or of NDJSON encoded (rows)."""

    rows: int
    bytes: int


@dataclass(frozen=True)
class StreamEvent:
    """One event of `subscribe`: a row (`event == "data"`, `id` its timestamp — the
    `last_event_id` to resume after it), or with `control_events` also `connected`
    and `heartbeat`. `data` is the event's JSON (a row flattened: `timestamp` and
    its values side by side)."""

    event: str
    id: str | None
    data: dict[str, Any]

    @property
    def timestamp(self) -> str | None:
        """The row's timestamp (data), or the server's time (heartbeat)."""
        value = self.data.get("timestamp")
        return None if value is None else str(value)

    @property
    def values(self) -> dict[str, Any]:
        """The row's values (data events)."""
        return {k: v for k, v in self.data.items() if k != "timestamp"}

    @property
    def row(self) -> m.RowOut:
        """The row of a data event, in the shape reads return."""
        return m.RowOut(timestamp=self.timestamp or "", values=self.values)


class AsyncColumns:
    """Declared columns: a value key with a type the server enforces on writes."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(self, dataset_id: str, name: str, dtype: DType) -> m.ColumnOut:
        """Declare a column (409 `COLUMN_EXISTS` when the name is taken)."""
        body = m.ColumnIn(dataset=dataset_id, name=name, dtype=dtype)
        answer: m.ColumnAnswer = await self._t.call(r.CREATE_COLUMN, body=body)
        return answer.data

    async def delete(self, column_id: str) -> None:
        """Drop a column declaration; the values already stored stay."""
        await self._t.call(r.DELETE_COLUMN, path={"column_id": column_id})

    async def list(self, dataset_id: str) -> list[m.ColumnOut]:
        """A dataset's declared columns, in declaration order."""
        answer: m.ColumnListAnswer = await self._t.call(
            r.LIST_COLUMNS, params={"dataset": dataset_id}
        )
        return answer.data


class AsyncRows:
    """A dataset's timeseries rows: writes, reads, downloads and live streams."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    # ------------------------------------------------------------ writing

    async def insert(
        self, dataset_id: str, timestamp: Timestamp, values: Mapping[str, Any] | None = None
    ) -> m.RowOut:
        """Insert one row (409 `ROW_EXISTS` when its timestamp is taken)."""
        body = {"dataset": dataset_id, "timestamp": _timestamp(timestamp), "values": values or {}}
        answer: m.RowAnswer = await self._t.call(r.INSERT_ROW, body=body)
        return m.RowOut.model_validate(answer.data)

    async def bulk_insert(
        self,
        dataset_id: str,
        rows: Iterable[RowLike],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_conflict: OnConflict = "error",
    ) -> m.BulkInsertAnswer:
        """Insert rows as JSON batches of at most `batch_size`; the summed counts.
        Each batch is all or nothing; batches already sent stay when one fails."""
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size is between 1 and {MAX_BATCH_SIZE}")
        totals = {"inserted": 0, "skipped": 0, "replaced": 0, "total": 0}
        for batch in _batches(rows, batch_size):
            body = {"dataset": dataset_id, "rows": batch, "on_conflict": on_conflict}
            answer: m.BulkInsertAnswer = await self._t.call(r.BULK_INSERT, body=body)
            for name in totals:
                totals[name] += getattr(answer, name)
        return m.BulkInsertAnswer(**totals)

    async def load_ndjson(
        self,
        dataset_id: str,
        source: str | os.PathLike[str] | Iterable[RowLike],
        *,
        on_conflict: OnConflict = "error",
        progress: Callable[[LoadProgress], None] | None = None,
    ) -> m.BulkInsertAnswer:
        """Stream an NDJSON file (a path, sent as read) or rows (encoded as they are
        taken) in one all-or-nothing request, without the per-call row limit."""
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            body, retry = (lambda: _file_chunks(path, progress)), None
        else:
            body, retry = _rows_body(source, progress)
        return await self._send_ndjson(dataset_id, body, on_conflict, retry)

    async def load_csv(
        self,
        dataset_id: str,
        path: str | os.PathLike[str],
        *,
        on_conflict: OnConflict = "error",
        progress: Callable[[LoadProgress], None] | None = None,
        delimiter: str = ",",
    ) -> m.BulkInsertAnswer:
        """Stream a CSV file (header `timestamp,<value keys>`) as NDJSON. Cells of
        declared columns take their type; other cells become int/float when numeric,
        booleans when `true`/`false`, strings otherwise; empty cells are left out."""
        source = Path(path)
        _check_csv_header(source, delimiter)
        answer: m.ColumnListAnswer = await self._t.call(
            r.LIST_COLUMNS, params={"dataset": dataset_id}
        )
        dtypes = {column.name: column.dtype for column in answer.data}

        def body() -> AsyncIterator[bytes]:
            read = _ReadMeter()
            rows = _csv_rows(source, dtypes, delimiter, read)
            return _encoded_chunks(rows, progress, lambda: read.bytes)

        return await self._send_ndjson(dataset_id, body, on_conflict, None)

    async def _send_ndjson(
        self,
        dataset_id: str,
        body: Callable[[], AsyncIterator[bytes]],
        on_conflict: OnConflict,
        retry: RetryPolicy | None,
    ) -> m.BulkInsertAnswer:
        response = await self._t.request(
            "POST",
            r.BULK_INSERT.path,
            params={"dataset": dataset_id, "on_conflict": on_conflict},
            content=body,
            headers={"Content-Type": NDJSON},
            retry=retry,
            http_timeout=self._t.transfer_timeout(),
        )
        return m.BulkInsertAnswer.model_validate_json(response.content)

    async def delete(
        self,
        dataset_id: str,
        *,
        start: Timestamp | None = None,
        end: Timestamp | None = None,
        all_rows: bool = False,
    ) -> int:
        """Delete the rows in `[start, end)` (or every row with `all_rows=True`);
        how many were deleted."""
        body: dict[str, Any] = {"dataset": dataset_id}
        if start is not None:
            body["start"] = _timestamp(start)
        if end is not None:
            body["end"] = _timestamp(end)
        if all_rows:
            body["all"] = True
        answer: m.DeleteRowsAnswer = await self._t.call(r.DELETE_ROWS, body=body)
        return answer.deleted

    # ------------------------------------------------------------ reading

    async def page(
        self,
        dataset_id: str,
        *,
        start: Timestamp | None = None,
        end: Timestamp | None = None,
        ordering: Literal["timestamp", "-timestamp"] = "timestamp",
        limit: int | None = None,
        offset: int | None = None,
        after: str | None = None,
    ) -> m.RowsAnswer:
        """One page of rows in `[start, end)` with its pagination (`next_cursor`
        is given back as `after` for the next page)."""
        params = {
            "dataset": dataset_id,
            "start": _param(start),
            "end": _param(end),
            "ordering": ordering,
            "limit": limit,
            "offset": offset,
            "after": after,
        }
        answer: m.RowsAnswer = await self._t.call(r.READ_ROWS, params=params)
        return answer

    async def iterate(
        self,
        dataset_id: str,
        start: Timestamp | None = None,
        end: Timestamp | None = None,
        *,
        ordering: Literal["timestamp", "-timestamp"] = "timestamp",
        page_size: int = 1000,
    ) -> AsyncIterator[m.RowOut]:
        """Every row in `[start, end)`, page after page by cursor."""
        after: str | None = None
        while True:
            page = await self.page(
                dataset_id, start=start, end=end, ordering=ordering, limit=page_size, after=after
            )
            for row in page.data:
                yield row
            after = page.pagination.next_cursor
            if after is None:
                return

    async def aggregate(
        self,
        dataset_id: str,
        *,
        bucket: str = "1h",
        agg: str = "avg",
        columns: Sequence[str] | None = None,
        start: Timestamp | None = None,
        end: Timestamp | None = None,
    ) -> m.RowsAggregateAnswer:
        """One row per UTC-aligned time bucket: `count` and `agg` of each column."""
        params = {
            "dataset": dataset_id,
            "bucket": bucket,
            "agg": agg,
            "columns": ",".join(columns) if columns else None,
            "start": _param(start),
            "end": _param(end),
        }
        answer: m.RowsAggregateAnswer = await self._t.call(r.AGGREGATE_ROWS, params=params)
        return answer

    async def download(
        self,
        dataset_id: str,
        to: str | os.PathLike[str] | IO[bytes],
        *,
        format: Literal["csv", "json", "ndjson"] = "csv",
        start: Timestamp | None = None,
        end: Timestamp | None = None,
    ) -> int:
        """Stream the rows in `[start, end)` into a file (a path, or a binary file
        object), gzip-compressed on the wire; the bytes written."""
        params = {
            "dataset": dataset_id,
            "output": format,
            "start": _param(start),
            "end": _param(end),
        }
        async with self._t.stream(
            "GET", r.DOWNLOAD_ROWS.path, params=params, headers={"Accept-Encoding": "gzip"}
        ) as response:
            return await save_chunks(response.aiter_bytes(), to)

    async def live(self, dataset_id: str, *, limit: int | None = None) -> AsyncIterator[m.RowOut]:
        """The most recent rows (`limit`, server default 1,000), oldest first."""
        params = {"dataset": dataset_id, "limit": limit}
        async with self._t.stream("GET", r.LIVE_ROWS.path, params=params) as response:
            async for line in response.aiter_lines():
                if line.strip():
                    flat = json.loads(line)
                    timestamp = flat.pop("timestamp")
                    yield m.RowOut(timestamp=timestamp, values=flat)

    async def subscribe(
        self,
        dataset_id: str,
        *,
        last_event_id: str | None = None,
        poll_interval: int | None = None,
        control_events: bool = False,
        max_reconnects: int = 5,
        reconnect_delay: float = RECONNECT_DELAY,
    ) -> AsyncIterator[StreamEvent]:
        """New rows as they are written (Server-Sent Events), after `last_event_id`
        when given. A dropped connection is reopened with `Last-Event-ID` of the last
        event seen (at most `max_reconnects` times in a row, waiting the server's
        `retry:` or `reconnect_delay`); the server's `error` event is raised as a
        `QuarryError` with its code."""
        resume = last_event_id
        delay = reconnect_delay
        failures = 0
        # The server sends at least a heartbeat every poll interval (2 s by default):
        # a read may wait three of them before the connection counts as dropped.
        quiet = httpx.Timeout(60.0, read=3 * (poll_interval or 2) + 30.0)
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if resume:
                headers["Last-Event-ID"] = resume
            params = {"dataset": dataset_id, "poll_interval": poll_interval}
            cause: Exception | None = None
            try:
                async with self._t.stream(
                    "GET", r.STREAM_ROWS.path, params=params, headers=headers, http_timeout=quiet
                ) as response:
                    parser = SSEParser(last_event_id=resume)
                    async for line in response.aiter_lines():
                        sent = parser.feed(line)
                        resume = parser.last_event_id
                        if parser.retry is not None:
                            delay = parser.retry / 1000
                        if sent is None:
                            continue
                        event = _stream_event(sent)
                        if event.event != "connected":
                            failures = 0
                        if event.event == "data" or control_events:
                            yield event
            except (httpx.TransportError, QuarryConnectionError) as exc:
                cause = exc
            failures += 1
            if failures > max_reconnects:
                raise QuarryConnectionError(
                    f"The row stream of dataset {dataset_id} dropped {failures} times in a row."
                ) from cause
            await async_sleep(delay)


# ---------------------------------------------------------------- helpers


def _timestamp(value: Timestamp) -> str | int:
    """A timestamp as JSON carries it."""
    return value.isoformat() if isinstance(value, datetime) else value


def _param(value: Timestamp | None) -> str | int | None:
    return None if value is None else _timestamp(value)


def _row(row: RowLike) -> dict[str, Any]:
    """A caller's row as the server takes it (`{timestamp, values}`)."""
    if isinstance(row, BaseModel):
        row = row.model_dump(exclude_none=True)
    out = {"timestamp": _timestamp(row["timestamp"])}
    values = row.get("values")
    if values is not None:
        out["values"] = values
    return out


def _batches(rows: Iterable[RowLike], size: int) -> Iterable[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(_row(row))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _rows_body(
    rows: Iterable[RowLike], progress: Callable[[LoadProgress], None] | None
) -> tuple[Callable[[], AsyncIterator[bytes]], RetryPolicy | None]:
    """The body factory of a rows load. A one-shot iterator cannot be sent twice:
    it is not retried, and a second send (a token refresh) fails loudly instead of
    sending what is left."""
    if iter(rows) is not rows:
        return (lambda: _encoded_chunks(rows, progress)), None
    used = False

    def once() -> AsyncIterator[bytes]:
        nonlocal used
        if used:
            raise QuarryError("The rows were a one-shot iterator and cannot be sent again.")
        used = True
        return _encoded_chunks(rows, progress)

    return once, NO_RETRY


class _Sent:
    """What a load has sent, told to its progress callback."""

    def __init__(
        self,
        progress: Callable[[LoadProgress], None] | None,
        source_bytes: Callable[[], int] | None = None,
    ) -> None:
        self.rows = self.bytes = 0
        self._progress = progress
        self._source_bytes = source_bytes

    def report(self) -> None:
        if self._progress is not None:
            done = self._source_bytes() if self._source_bytes is not None else self.bytes
            self._progress(LoadProgress(rows=self.rows, bytes=done))


async def _encoded_chunks(
    rows: Iterable[RowLike],
    progress: Callable[[LoadProgress], None] | None,
    source_bytes: Callable[[], int] | None = None,
) -> AsyncIterator[bytes]:
    """Rows as NDJSON, encoded as they are taken, in chunks of about CHUNK_BYTES;
    progress counts `source_bytes()` when given (the file the rows come from)."""
    sent = _Sent(progress, source_bytes)
    pending: list[bytes] = []
    held = 0
    for row in rows:
        line = json.dumps(_row(row), separators=(",", ":"), allow_nan=False).encode() + b"\n"
        pending.append(line)
        held += len(line)
        sent.rows += 1
        if held >= CHUNK_BYTES:
            yield b"".join(pending)
            sent.bytes += held
            pending, held = [], 0
            sent.report()
    if pending:
        yield b"".join(pending)
        sent.bytes += held
    sent.report()


async def _file_chunks(
    path: Path, progress: Callable[[LoadProgress], None] | None
) -> AsyncIterator[bytes]:
    """A file's bytes in chunks of CHUNK_BYTES; rows counted by line."""
    sent = _Sent(progress)
    last = b"\n"
    with _open_for_reading(path) as file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk
            sent.rows += chunk.count(b"\n")
            sent.bytes += len(chunk)
            last = chunk[-1:]
            sent.report()
    if last != b"\n":
        sent.rows += 1  # the last line has no line ending
        sent.report()


def _open_for_reading(path: Path) -> IO[bytes]:
    return open(path, "rb")


def _open_csv(path: Path) -> IO[str]:
    return open(path, newline="", encoding="utf-8-sig")


def _check_csv_header(path: Path, delimiter: str) -> None:
    with _open_csv(path) as file:
        header = next(csv.reader(file, delimiter=delimiter), [])
    if "timestamp" not in header:
        raise ValueError(f"{path}: the CSV header has no `timestamp` column")


class _ReadMeter:
    """Bytes of a file read so far."""

    def __init__(self) -> None:
        self.bytes = 0

    def lines(self, file: IO[bytes]) -> Iterable[str]:
        """The file's lines as text (endings kept, as `csv` wants), counted."""
        for number, raw in enumerate(file):
            self.bytes += len(raw)
            yield raw.decode("utf-8-sig" if number == 0 else "utf-8")


def _csv_rows(
    path: Path, dtypes: Mapping[str, str], delimiter: str, read: _ReadMeter
) -> Iterable[dict[str, Any]]:
    """A CSV file's rows, read as they are taken."""
    with _open_for_reading(path) as file:
        for record in csv.DictReader(read.lines(file), delimiter=delimiter):
            stamp = record.pop("timestamp", None) or ""
            values = {
                key: _cell(text, dtypes.get(key))
                for key, text in record.items()
                if key is not None and text not in ("", None)
            }
            yield {"timestamp": int(stamp) if stamp.isdigit() else stamp, "values": values}


def _cell(text: str, dtype: str | None) -> Any:
    """A CSV cell as its column's type (or the type it looks like); a cell that does
    not fit its declared type is sent as text, for the server to name it."""
    if dtype == "string":
        return text
    if dtype == "bool" or (dtype is None and text.lower() in _BOOLS):
        return _BOOLS.get(text.lower(), text)
    if _INT.fullmatch(text):
        return float(text) if dtype == "float" else int(text)
    if dtype != "int" and _FLOAT.fullmatch(text):
        return float(text)
    return text


#: The stream's `error` codes, as the exception (and status) they have elsewhere.
_STREAM_ERRORS: dict[str, tuple[type[QuarryError], int | None]] = {
    "DATASET_NOT_FOUND": (NotFound, 404),
    "INSUFFICIENT_PERMISSION": (PermissionDenied, 403),
    "TOO_MANY_STREAMS": (RateLimited, 429),
    "DATABASE_UNAVAILABLE": (ServiceUnavailable, 503),
}


def _stream_event(sent: ServerSentEvent) -> StreamEvent:
    """A parsed event as a StreamEvent; the server's `error` event raised."""
    try:
        data = sent.json()
    except ValueError:
        data = {"message": sent.data}
    if not isinstance(data, dict):
        data = {"data": data}
    if sent.event == "error":
        raise _stream_error(data)
    return StreamEvent(event=sent.event, id=sent.id if sent.event == "data" else None, data=data)


def _stream_error(data: Mapping[str, Any]) -> QuarryError:
    code = str(data.get("error_code") or "STREAM_ERROR")
    kind, status = _STREAM_ERRORS.get(code, (QuarryError, None))
    if kind is QuarryError and code.endswith("_NOT_FOUND"):
        kind, status = NotFound, 404
    message = str(data.get("message") or "The row stream ended with an error.")
    return kind(message, status_code=status, error_code=code)
