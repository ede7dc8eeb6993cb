"""The rules of rows and columns (`spec/rows.md`): access through the dataset's
levels (read to read, write to write), validation, conflicts, and the shapes the
router sends. Raises the domain exceptions of `errors.py` and of datasets.

Decisions where the spec is silent:
- A row is `{timestamp, values}`; other keys in a row are refused (a typo such
  as `value` is an error, not an empty row); `values` may be left out (`{}`).
- Duplicate timestamps inside one request are treated like a row that already
  exists, in request order: `error` refuses the request (409), `skip` keeps the
  first, `replace` keeps the last. `inserted + skipped + replaced = total`.
- Any invalid row refuses the whole request whatever `on_conflict` says (422,
  listing up to 100 rows); an NDJSON load is all or nothing too: nothing of it is
  visible until its last line was stored, and a bad line (numbered from 1) or a
  conflict discards everything it wrote.
- A declared column is checked on write only; declaring one later does not check
  the rows already stored, and deleting it leaves their values.
- `GET /rows` counts the rows in `[start, end)` (`pagination.count`), offers
  `next`/`previous` as URLs, and a cursor (`next_cursor`, `after=`) that walks by
  timestamp, so rows inserted meanwhile never make a page repeat or skip a row.
- Downloads and `live` send rows as stored: `bulk_download` json/ndjson as
  `{timestamp, values}` (what `bulk_insert` takes back), `live` and `stream`
  flattened as in seed 002. CSV columns: `timestamp`, the declared columns in
  the order they were declared, then every other key ever written to the
  dataset in first-seen order (kept by the directory, so no row is left out of
  the header); booleans as `true`/`false`, null and missing as empty.
- `stream` delivers rows newer than the last one it sent (or than the dataset's
  newest row when it connected): a row inserted with an older timestamp than
  that (a backfill) is not pushed; `Last-Event-ID` is a timestamp.
- `aggregate`: buckets of `<n>s|m|h|d` aligned to the Unix epoch (UTC midnight
  for days), only buckets that hold rows; `avg/min/max/sum` over the numeric
  values (booleans are not numbers), `count` the non-null values, `first/last`
  the first/last non-null value in time order; `count` of rows always.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import csv
import io
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from typing import Any

import orjson
from bson import ObjectId

from app.clock import utc_now
from app.errors import ErrorCode, QuarryError
from app.kit import field_name_problem, parse_object_id
from app.settings import Settings
from data_api.datasets.access import Access, Level
from data_api.datasets.errors import DatasetNotFound
from data_api.datasets.service import DatasetService
from data_api.rows.codec import (
    DTYPES,
    INT_MAX,
    INT_MIN,
    MAX_KEYS,
    SCALAR_TYPES,
    BadTimestamp,
    declared_ok,
    encode_values,
    flat_json,
    format_timestamp,
    known_keys,
    parse_timestamp,
    row_json,
    values_problems,
)
from data_api.rows.errors import (
    ColumnExists,
    ColumnNotFound,
    InvalidTimestamp,
    RowExists,
    RowValidationError,
)
from data_api.rows.store import Directory, OnConflict, RowConflict, RowStore, Summary

MAX_PROBLEMS = 100
NDJSON_BATCH = 10_000
#: One row's values, encoded (a bucket holds MAX_BYTES of them).
MAX_ROW_BYTES = 1024 * 1024
ROW_KEYS = frozenset({"timestamp", "values"})
EMPTY: dict[str, Any] = {}
_EPOCH_MS = re.compile(r"-?[0-9]{1,16}")
_BUCKET = re.compile(r"([1-9][0-9]{0,5})(s|m|h|d)")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_BUCKET_MS = 366 * 86_400_000
AGGREGATES = ("avg", "min", "max", "sum", "count", "first", "last")
MAX_AGG_COLUMNS = 100


class InvalidCursor(QuarryError):
    status_code = 400
    error_code = ErrorCode.INVALID_CURSOR
    message = "The cursor is not one this endpoint gave out (or for another ordering)."


class RowRequestError(QuarryError):
    status_code = 422
    error_code = ErrorCode.VALIDATION_ERROR

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(msg, details=[{"loc": loc, "msg": msg, "type": "value_error"}])


def timestamp_param(value: str | None, name: str) -> int | None:
    """A query parameter's timestamp (ISO-8601 or epoch milliseconds)."""
    if value is None or value == "":
        return None
    raw: Any = int(value) if _EPOCH_MS.fullmatch(value) else value
    try:
        return parse_timestamp(raw)
    except BadTimestamp as exc:
        raise InvalidTimestamp(
            f"{name}: {exc}",
            details=[{"loc": ["query", name], "msg": str(exc), "type": "value_error"}],
        ) from None


@dataclass
class Prepared:
    """Validated rows: sorted, one per timestamp, with what the request did to them."""

    times: list[int]
    lines: list[bytes]
    keys: list[str]
    skipped: int = 0
    replaced: int = 0


def prepare(
    rows: list[Any],
    columns: dict[str, str],
    *,
    loc: list[str | int],
    numbers: list[int] | None,
    on_conflict: OnConflict,
) -> Prepared:
    """Validate and order rows; raises RowValidationError / InvalidTimestamp (every
    problem, up to 100) or RowExists (duplicate timestamps with on_conflict=error)."""
    times: list[int] = []
    lines: list[bytes] = []
    keys: dict[str, None] = {}
    problems: list[dict[str, Any]] = []
    only_timestamps = True
    good_keys = known_keys()
    #: Rows of the fast path, encoded together at the end (one orjson call).
    waiting: list[int] = []
    waiting_values: list[dict[str, Any]] = []
    strings = False
    for offset, row in enumerate(rows):
        # The common row, checked with set operations (C): known keys, scalar values.
        if (
            type(row) is dict
            and row.keys() <= ROW_KEYS
            and type(values := row.get("values", EMPTY)) is dict
            and len(values) <= MAX_KEYS
            and values.keys() <= good_keys
            and (types := set(map(type, values.values()))) <= SCALAR_TYPES
            and (not columns or declared_ok(values, columns))
        ):
            try:
                ms = parse_timestamp(row.get("timestamp"))
            except BadTimestamp:
                pass
            else:
                times.append(ms)
                lines.append(b"")
                waiting.append(len(lines) - 1)
                waiting_values.append(values)
                strings = strings or str in types
                if not values.keys() <= keys.keys():
                    keys.update(dict.fromkeys(values))
                continue
        # Anything else: every problem of the row, named.
        if numbers is None:
            where = [*loc, offset]
        elif numbers:
            where = [*loc, numbers[offset]]
        else:
            where = list(loc)
        if not isinstance(row, dict):
            problems.append({"loc": where, "msg": "a row must be an object", "type": "type_error"})
            only_timestamps = False
        else:
            extra = row.keys() - ROW_KEYS
            if extra:
                problems.append(
                    {
                        "loc": [*where, sorted(extra)[0]],
                        "msg": "a row has only 'timestamp' and 'values'",
                        "type": "value_error",
                    }
                )
                only_timestamps = False
            try:
                ms = parse_timestamp(row.get("timestamp"))
            except BadTimestamp as exc:
                problems.append(
                    {"loc": [*where, "timestamp"], "msg": str(exc), "type": "timestamp_error"}
                )
                ms = None
            values = row.get("values", {})
            found = values_problems(values, columns)
            for key_loc, msg in found:
                problems.append(
                    {"loc": [*where, "values", *key_loc], "msg": msg, "type": "value_error"}
                )
                only_timestamps = False
            if ms is not None and not found and not extra:
                line = encode_values(values)
                if len(line) > MAX_ROW_BYTES:
                    problems.append(
                        {
                            "loc": [*where, "values"],
                            "msg": f"a row's values may take at most {MAX_ROW_BYTES} bytes",
                            "type": "value_error",
                        }
                    )
                    only_timestamps = False
                else:
                    times.append(ms)
                    lines.append(line)
                    keys.update(dict.fromkeys(values))
        if len(problems) >= MAX_PROBLEMS:
            break
    if not problems and waiting:
        for index, line in zip(waiting, _encode_all(waiting_values, strings, keys), strict=True):
            if len(line) > MAX_ROW_BYTES:
                at = [*loc, index] if numbers is None else [*loc, *numbers[index : index + 1]]
                problems.append(
                    {
                        "loc": [*at, "values"],
                        "msg": f"a row's values may take at most {MAX_ROW_BYTES} bytes",
                        "type": "value_error",
                    }
                )
                only_timestamps = False
                if len(problems) >= MAX_PROBLEMS:
                    break
            lines[index] = line
    if problems:
        count = len({tuple(p["loc"][: len(loc) + 1]) for p in problems}) if numbers != [] else 1
        message = f"{count} row(s) cannot be stored; nothing was written."
        if only_timestamps:
            raise InvalidTimestamp(message, details=problems)
        raise RowValidationError(message, details=problems)
    prepared = Prepared(times, lines, list(keys))
    _order(prepared, on_conflict)
    return prepared


def _encode_all(values: list[dict[str, Any]], strings: bool, keys: dict[str, None]) -> list[bytes]:
    """Each row's values as JSON. Without strings anywhere (numbers, booleans, nulls:
    the usual timeseries) one orjson call encodes all of them and the result is cut
    at `},{`, which can then only be where one object ends and the next begins."""
    if strings or any("{" in k or "}" in k for k in keys):
        return [encode_values(v) for v in values]
    joined = orjson.dumps(values)[2:-2]
    return [b"{" + part + b"}" for part in joined.split(b"},{")]


def _order(p: Prepared, on_conflict: OnConflict) -> None:
    """Sort by timestamp; settle duplicates inside the request in request order."""
    times, lines = p.times, p.lines
    if all(times[k] < times[k + 1] for k in range(len(times) - 1)):
        return
    order = sorted(range(len(times)), key=times.__getitem__)
    out_t: list[int] = []
    out_v: list[bytes] = []
    duplicates: list[int] = []
    for k in order:
        ms = times[k]
        if out_t and out_t[-1] == ms:
            if on_conflict == "error":
                duplicates.append(ms)
            elif on_conflict == "replace":
                out_v[-1] = lines[k]
                p.replaced += 1
            else:
                p.skipped += 1
            continue
        out_t.append(ms)
        out_v.append(lines[k])
    if duplicates:
        raise RowExists([format_timestamp(ms) for ms in sorted(set(duplicates))[:10]])
    p.times, p.lines = out_t, out_v


def encode_cursor(ms: int, descending: bool) -> str:
    raw = orjson.dumps({"t": ms, "d": int(descending)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, descending: bool) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        ms, flag = data["t"], data["d"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidCursor() from None
    if type(ms) is not int or flag != int(descending):
        raise InvalidCursor()
    return ms


def bucket_width(bucket: str) -> int:
    match = _BUCKET.fullmatch(bucket)
    if match is None:
        raise RowRequestError(
            ["query", "bucket"], "bucket is a count and a unit: 30s, 1m, 5m, 1h, 1d, …"
        )
    width = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if width > MAX_BUCKET_MS:
        raise RowRequestError(["query", "bucket"], "bucket is at most 366 days")
    return width


@dataclass
class Page:
    rows: list[bytes]
    count: int
    next_cursor: str | None
    has_more: bool


class RowService:
    def __init__(
        self,
        *,
        store: RowStore,
        datasets: DatasetService,
        settings: Settings,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.datasets = datasets
        self.catalogue = datasets.catalogue
        self.settings = settings
        self.clock = clock

    async def access(self, user_id: ObjectId, dataset: str, level: Level) -> Access:
        return await self.datasets.access.require(
            parse_object_id(dataset), user_id, level, self.clock()
        )

    async def _dtypes(self, dataset_id: ObjectId) -> dict[str, str]:
        columns = await self.catalogue.columns_of(dataset_id=dataset_id)
        return {c["name"]: c["dtype"] for c in columns}

    # ------------------------------------------------------------ columns

    async def columns(self, *, user_id: ObjectId, dataset: str) -> list[Any]:
        access = await self.access(user_id, dataset, Level.read)
        return await self.catalogue.columns_of(dataset_id=access.dataset["_id"])

    async def create_column(
        self, *, user_id: ObjectId, dataset: str, name: str, dtype: str
    ) -> dict[str, Any]:
        problem = field_name_problem(name) if name != "timestamp" else "'timestamp' is reserved"
        if problem is not None:
            raise RowRequestError(["body", "name"], problem)
        if dtype not in DTYPES:
            raise RowRequestError(["body", "dtype"], f"dtype is one of {', '.join(DTYPES)}")
        access = await self.access(user_id, dataset, Level.write)
        dataset_id = access.dataset["_id"]
        column = {
            "_id": ObjectId(),
            "key": f"{dataset_id}:{name}",
            "dataset_id": dataset_id,
            "name": name,
            "dtype": dtype,
            "created_at": self.clock(),
            "created_by": user_id,
        }
        if not await self.catalogue.insert_column(column=column):
            raise ColumnExists(name)
        return column

    async def delete_column(self, *, user_id: ObjectId, column_id: str) -> dict[str, Any]:
        column = await self.catalogue.find_column(column_id=parse_object_id(column_id))
        if column is None:
            raise ColumnNotFound()
        try:
            await self.datasets.access.require(
                column["dataset_id"], user_id, Level.write, self.clock()
            )
        except DatasetNotFound:
            raise ColumnNotFound() from None
        if not await self.catalogue.delete_column(column_id=column["_id"]):
            raise ColumnNotFound()
        return column

    # ------------------------------------------------------------ writing

    async def _still_live(self, dataset_id: ObjectId) -> None:
        """Under the rows lock: a dataset deleted meanwhile takes no rows."""
        dataset = await self.catalogue.find_dataset(dataset_id=dataset_id)
        if dataset is None or dataset.get("state") != "live":
            raise DatasetNotFound()

    async def insert(
        self,
        *,
        user_id: ObjectId,
        dataset: str,
        rows: list[Any],
        on_conflict: OnConflict,
        single: bool = False,
    ) -> tuple[ObjectId, dict[str, int], Prepared]:
        """Rows of one request, all or nothing."""
        access = await self.access(user_id, dataset, Level.write)
        dataset_id, owner_id = access.dataset["_id"], access.dataset["owner_id"]
        prepared = prepare(
            rows,
            await self._dtypes(dataset_id),
            loc=["body"] if single else ["body", "rows"],
            numbers=[] if single else None,
            on_conflict=on_conflict,
        )
        async with self.store.writing(owner_id, dataset_id) as writer:
            await self._still_live(dataset_id)
            try:
                await writer.insert(prepared.times, prepared.lines, on_conflict)
            except RowConflict as conflict:
                raise RowExists([format_timestamp(ms) for ms in conflict.timestamps]) from None
            writer.add_keys(prepared.keys)
            if writer.inserted or writer.replaced:
                await writer.commit()
        counts = {
            "inserted": writer.inserted,
            "skipped": writer.skipped + prepared.skipped,
            "replaced": writer.replaced + prepared.replaced,
            "total": len(rows),
        }
        return dataset_id, counts, prepared

    async def insert_stream(
        self,
        *,
        user_id: ObjectId,
        dataset: str,
        lines: AsyncIterator[bytes],
        on_conflict: OnConflict,
    ) -> tuple[ObjectId, dict[str, int]]:
        """An NDJSON load: batches staged as they arrive, visible at the end at once."""
        access = await self.access(user_id, dataset, Level.write)
        dataset_id, owner_id = access.dataset["_id"], access.dataset["owner_id"]
        dtypes = await self._dtypes(dataset_id)
        total = skipped = replaced = 0
        async with self.store.writing(owner_id, dataset_id) as writer:
            await self._still_live(dataset_id)
            batch: list[Any] = []
            numbers: list[int] = []
            line_no = 0

            async def flush() -> None:
                nonlocal skipped, replaced, batch, numbers
                prepared = prepare(
                    batch, dtypes, loc=["line"], numbers=numbers, on_conflict=on_conflict
                )
                try:
                    await writer.insert(prepared.times, prepared.lines, on_conflict)
                except RowConflict as conflict:
                    raise RowExists([format_timestamp(ms) for ms in conflict.timestamps]) from None
                writer.add_keys(prepared.keys)
                skipped += prepared.skipped
                replaced += prepared.replaced
                batch, numbers = [], []

            async for line in lines:
                line_no += 1
                if not line.strip():
                    continue
                try:
                    batch.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    raise RowValidationError(
                        f"Line {line_no} is not JSON; nothing was written.",
                        details=[
                            {"loc": ["line", line_no], "msg": "not JSON", "type": "json_error"}
                        ],
                    ) from None
                numbers.append(line_no)
                total += 1
                if len(batch) >= NDJSON_BATCH:
                    await flush()
                else:
                    await writer.keep_alive()  # a slow sender keeps the lock (time-based)
            if batch:
                await flush()
            if writer.inserted or writer.replaced:
                await self._still_live(dataset_id)  # not deleted while it loaded
                await writer.commit()
        return dataset_id, {
            "inserted": writer.inserted,
            "skipped": writer.skipped + skipped,
            "replaced": writer.replaced + replaced,
            "total": total,
        }

    async def delete(
        self, *, user_id: ObjectId, dataset: str, start: int | None, end: int | None
    ) -> tuple[ObjectId, int]:
        access = await self.access(user_id, dataset, Level.write)
        dataset_id, owner_id = access.dataset["_id"], access.dataset["owner_id"]
        async with self.store.writing(owner_id, dataset_id) as writer:
            await self._still_live(dataset_id)
            await writer.delete(start, end)
            if writer.deleted:
                await writer.commit()
        return dataset_id, writer.deleted

    # ------------------------------------------------------------ reading

    async def page(
        self,
        *,
        access: Access,
        start: int | None,
        end: int | None,
        descending: bool,
        limit: int,
        offset: int,
        after: str | None,
    ) -> Page:
        owner_id, dataset_id = access.dataset["owner_id"], access.dataset["_id"]
        lo, hi, skip = start, end, offset
        if after is not None:
            ms = decode_cursor(after, descending)
            if descending:
                hi = ms if hi is None else min(hi, ms)
            else:
                lo = ms + 1 if lo is None else max(lo, ms + 1)
            skip = 0
        # One directory read serves the count and the page.
        directory = await self.store.directory(owner_id, dataset_id)
        count_task = asyncio.ensure_future(
            self.store.count(owner_id, dataset_id, start, end, directory)
        )
        got_t: list[int] = []
        got_v: list[bytes] = []
        try:
            async for times, lines in self.store.scan(
                owner_id,
                dataset_id,
                start=lo,
                end=hi,
                descending=descending,
                skip=skip,
                batch_rows=limit + 1,
                directory=directory,
            ):
                room = limit + 1 - len(got_t)
                got_t += times[:room]
                got_v += lines[:room]
                if len(got_t) > limit:
                    break
            count = await count_task
        finally:
            count_task.cancel()
        has_more = len(got_t) > limit
        got_t, got_v = got_t[:limit], got_v[:limit]
        rows = [row_json(ms, line) for ms, line in zip(got_t, got_v, strict=True)]
        cursor = encode_cursor(got_t[-1], descending) if has_more and got_t else None
        return Page(rows, count, cursor, has_more)

    async def summary(self, access: Access) -> Summary:
        return await self.store.summary(access.dataset["owner_id"], access.dataset["_id"])

    async def download_plan(self, access: Access, output: str) -> tuple[Directory, list[str]]:
        """The directory a download reads, and its CSV header from that same directory
        (a key first written after it is not in the rows read either)."""
        directory = await self.store.directory(access.dataset["owner_id"], access.dataset["_id"])
        if output != "csv":
            return directory, []
        declared = [
            c["name"] for c in await self.catalogue.columns_of(dataset_id=access.dataset["_id"])
        ]
        seen = set(declared)
        return directory, ["timestamp", *declared, *(k for k in directory.keys if k not in seen)]

    async def download(
        self,
        access: Access,
        *,
        output: str,
        start: int | None,
        end: int | None,
        plan: tuple[Directory, list[str]],
    ) -> AsyncIterator[bytes]:
        directory, header = plan
        scan = self.store.scan(
            access.dataset["owner_id"],
            access.dataset["_id"],
            start=start,
            end=end,
            directory=directory,
        )
        if output == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(header)
            keys = header[1:]
            yield buffer.getvalue().encode()
            async for times, lines in scan:
                blob = b",".join(lines)
                parsed = orjson.loads(b"[" + blob + b"]")
                columns = [list(map(dict.get, parsed, repeat(k))) for k in keys]
                if any(str in set(map(type, column)) for column in columns):
                    # Strings may need quoting: the csv module writes this run.
                    buffer.seek(0)
                    buffer.truncate()
                    if b"true" in blob or b"false" in blob:
                        columns = [[_csv_cell(v) for v in column] for column in columns]
                    writer.writerows(zip(map(format_timestamp, times), *columns, strict=True))
                    yield buffer.getvalue().encode()
                    continue
                # Numbers, booleans and nulls only: each column's cells are its JSON
                # tokens (true/false as they are, null empty), joined in C.
                cells = []
                for column in columns:
                    tokens = orjson.dumps(column)[1:-1].split(b",") if column else []
                    if None in column:
                        tokens = [b"" if t == b"null" else t for t in tokens]
                    cells.append(tokens)
                stamps = [format_timestamp(ms).encode() for ms in times]
                yield b"\n".join(map(b",".join, zip(stamps, *cells, strict=True))) + b"\n"
        elif output == "ndjson":
            async for times, lines in scan:
                yield (
                    b"\n".join(row_json(ms, v) for ms, v in zip(times, lines, strict=True)) + b"\n"
                )
        else:
            yield b"["
            first = True
            async for times, lines in scan:
                chunk = b",".join(row_json(ms, v) for ms, v in zip(times, lines, strict=True))
                yield chunk if first else b"," + chunk
                first = False
            yield b"]"

    async def live_start(self, access: Access, limit: int) -> int | None:
        """The timestamp from which the dataset's newest `limit` rows start."""
        owner_id, dataset_id = access.dataset["owner_id"], access.dataset["_id"]
        async for times, _lines in self.store.scan(
            owner_id, dataset_id, start=None, end=None, descending=True, skip=limit - 1
        ):
            return times[0]
        return None

    async def live(self, access: Access, start: int | None, limit: int) -> AsyncIterator[bytes]:
        sent = 0
        async for times, lines in self.store.scan(
            access.dataset["owner_id"], access.dataset["_id"], start=start, end=None
        ):
            room = limit - sent
            chunk = [flat_json(ms, v) for ms, v in zip(times[:room], lines[:room], strict=True)]
            sent += len(chunk)
            yield b"\n".join(chunk) + b"\n"
            if sent >= limit:
                return

    async def aggregate(
        self,
        access: Access,
        *,
        start: int | None,
        end: int | None,
        width: int,
        agg: str,
        columns: list[str],
    ) -> AsyncIterator[bytes]:
        """One JSON object per time bucket (`{"timestamp", "count", "values"}`),
        comma-separated, in time order."""
        state: _Bucket | None = None
        first = True
        async for times, lines in self.store.scan(
            access.dataset["owner_id"],
            access.dataset["_id"],
            start=start,
            end=end,
            batch_rows=50_000,
        ):
            parsed = orjson.loads(b"[" + b",".join(lines) + b"]")
            out: list[bytes] = []
            a, n = 0, len(times)
            while a < n:
                key = times[a] - times[a] % width
                b = bisect.bisect_left(times, key + width, a, n)
                group = parsed[a:b]
                if state is not None and state.key != key:
                    out.append(state.json(agg, columns))
                    state = None
                if state is None:
                    state = _Bucket(key, columns)
                state.add(group, columns)
                a = b
            if out:
                chunk = b",".join(out)
                yield chunk if first else b"," + chunk
                first = False
        if state is not None:
            chunk = state.json(agg, columns)
            yield chunk if first else b"," + chunk


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


class _Bucket:
    """Running aggregates of one time bucket, column by column."""

    __slots__ = ("key", "rows", "stats")

    def __init__(self, key: int, columns: list[str]) -> None:
        self.key = key
        self.rows = 0
        # count (non-null), numeric count, sum, min, max, first, last
        self.stats: dict[str, list[Any]] = {c: [0, 0, 0, None, None, None, None] for c in columns}

    def add(self, group: list[dict[str, Any]], columns: list[str]) -> None:
        self.rows += len(group)
        for column in columns:
            values = [v for r in group if (v := r.get(column)) is not None]
            if not values:
                continue
            s = self.stats[column]
            s[0] += len(values)
            numbers = [v for v in values if type(v) is int or type(v) is float]
            if numbers:
                s[1] += len(numbers)
                s[2] += sum(numbers)
                low, high = min(numbers), max(numbers)
                s[3] = low if s[3] is None else min(s[3], low)
                s[4] = high if s[4] is None else max(s[4], high)
            if s[5] is None:
                s[5] = values[0]
            s[6] = values[-1]

    def json(self, agg: str, columns: list[str]) -> bytes:
        values: dict[str, Any] = {}
        for column in columns:
            s = self.stats[column]
            if agg == "avg":
                values[column] = s[2] / s[1] if s[1] else None
            elif agg == "sum":
                total = s[2]
                if type(total) is int and not INT_MIN <= total <= INT_MAX:
                    total = float(total)  # JSON cannot carry it exactly
                values[column] = total if s[1] else None
            elif agg == "min":
                values[column] = s[3]
            elif agg == "max":
                values[column] = s[4]
            elif agg == "count":
                values[column] = s[0]
            elif agg == "first":
                values[column] = s[5]
            else:
                values[column] = s[6]
        return orjson.dumps(
            {"timestamp": format_timestamp(self.key), "count": self.rows, "values": values}
        )
