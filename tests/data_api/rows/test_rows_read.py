"""Reading rows (`spec/rows.md`): range reads at the storage buckets' edges,
offset paging with `next`/`previous` URLs, cursor walks while another task
inserts, `bulk_download` (json, csv, ndjson, gzip), `live`, `aggregate`, and
what a caller without access gets. Every answer is compared with a brute-force
model of the rows written (which is checked against what storage holds)."""

from __future__ import annotations

import asyncio
import base64
import csv
import gzip
import io
import itertools
import random
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
import pytest

from app.errors import ErrorCode
from tests.fixtures.accounts import register_account
from tests.fixtures.datasets import share, user_id_of
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.rows import (
    COLUMNS,
    ROWS,
    RowsOwner,
    iso_ms,
    module_owner,
    ms_of,
    ndjson,
    reference_rows,
)

Model = dict[int, dict[str, Any]]

#: 2025-03-01T21:17:43.250Z: not aligned to any aggregate bucket.
BASE = ms_of(datetime(2025, 3, 1, 21, 17, 43, 250000, tzinfo=UTC))
MISSING = object()


owner = module_owner("rows")


@dataclass
class Stored:
    """A dataset built once for the module, and the model of its rows."""

    id: str
    model: Model

    def reference(
        self, start: int | None = None, end: int | None = None, descending: bool = False
    ) -> list[dict[str, Any]]:
        return reference_rows(self.model.items(), start, end, descending)


def as_rows(model: Model, times: list[int]) -> list[dict[str, Any]]:
    return [{"timestamp": t, "values": model[t]} for t in times]


async def insert_passes(
    owner: RowsOwner, dataset: str, model: Model, passes: list[list[int]]
) -> None:
    """Insert the model's rows in several requests (so buckets split and merge)."""
    for times in passes:
        response = await owner.bulk(dataset, as_rows(model, times))
        assert response.status_code == 200, response.text
        assert response.json()["inserted"] == len(times)
    assert owner.stored_rows(dataset) == sorted(model.items())


def bucket_edges(owner: RowsOwner, dataset: str) -> list[tuple[int, int, int]]:
    """`(lo, hi, n)` of the dataset's storage buckets, in time order (from its directory)."""
    directory = owner.directory(dataset)
    assert directory is not None
    by_seq = {int(b["_id"].rsplit(":", 1)[1]): b for b in owner.buckets(dataset)}
    packed = array("q")
    packed.frombytes(bytes(directory["b"]))
    edges = list(zip(packed[0::4], packed[1::4], packed[3::4], strict=True))
    for (_lo, _hi, n), seq in zip(edges, packed[2::4], strict=True):
        assert by_seq[seq]["n"] == n
    return edges


@pytest.fixture(scope="module")
async def ranged(owner: RowsOwner) -> Stored:
    """7,500 rows at irregular steps, written in passes: several buckets of uneven size."""
    rng = random.Random(16)
    times, t = [], BASE
    for _ in range(7500):
        times.append(t)
        t += rng.choice((1, 2, 7, 250, 1000, 3_600_000 // 7, 61_001))
    model: Model = {}
    for n, ts in enumerate(times):
        values: dict[str, Any] = {"i": n, "x": n / 4}
        if n % 5 == 0:
            values["s"] = f'row {n}, "quoted"\n'
        if n % 11 == 0:
            values["x"] = None
        model[ts] = values
    dataset = await owner.dataset("ranged")
    held_back = set(times[500:1500:2])
    passes = [
        [t for t in times[:3000] if t not in held_back],
        times[5000:],
        times[3000:5000:2],
        times[3001:5000:2],
        sorted(held_back),
    ]
    await insert_passes(owner, dataset, model, passes)
    edges = bucket_edges(owner, dataset)
    assert len(edges) >= 5, edges
    assert all(n <= 2000 for _, _, n in edges)
    return Stored(dataset, model)


# ---------------------------------------------------------------- range reads


def edge_ranges(edges: list[tuple[int, int, int]]) -> list[tuple[int | None, int | None]]:
    """(start, end) pairs on and around every bucket's first and last timestamp."""
    pairs: list[tuple[int | None, int | None]] = [(None, None)]
    for k, (lo, hi, _n) in enumerate(edges):
        pairs += [
            (lo, None),
            (lo + 1, None),
            (lo - 1, None),
            (None, lo),
            (None, lo + 1),
            (None, hi),
            (None, hi + 1),
            (hi, None),
            (hi + 1, None),
            (lo, hi),
            (lo, hi + 1),
            (hi, hi + 1),
            (lo, lo),
            (hi, lo),
            (hi + 1, hi),
        ]
        if k + 1 < len(edges):
            following = edges[k + 1][0]
            pairs += [(hi + 1, following), (hi, following + 1), (hi + 1, following + 1)]
        if k + 2 < len(edges):
            pairs.append((lo, edges[k + 2][1] + 1))
    return pairs


async def test_range_reads_on_bucket_edges_match_reference(
    owner: RowsOwner, ranged: Stored
) -> None:
    pairs = edge_ranges(bucket_edges(owner, ranged.id))
    for start, end in pairs:
        for ordering in ("timestamp", "-timestamp"):
            params: dict[str, Any] = {"ordering": ordering, "limit": 10_000}
            if start is not None:
                params["start"] = iso_ms(start)
            if end is not None:
                params["end"] = str(end)  # epoch milliseconds
            page = await owner.read(ranged.id, **params)
            expected = ranged.reference(start, end, ordering == "-timestamp")
            where = (start, end, ordering)
            assert page["data"] == expected, where
            assert page["pagination"]["count"] == len(expected), where
            assert page["pagination"]["next"] is None, where
            assert page["pagination"]["next_cursor"] is None, where
    assert owner.stored_rows(ranged.id) == sorted(ranged.model.items())


async def test_start_and_end_accept_iso_with_offset_and_epoch_ms(
    owner: RowsOwner, ranged: Stored
) -> None:
    times = sorted(ranged.model)
    start, end = times[1234], times[4321]
    plus_two = timezone(timedelta(hours=2))
    as_offset = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=start)).astimezone(
        plus_two
    )
    expected = ranged.reference(start, end)
    for start_text in (str(start), as_offset.isoformat(timespec="milliseconds"), iso_ms(start)):
        for end_text in (str(end), iso_ms(end), iso_ms(end).removesuffix("Z")):
            page = await owner.read(ranged.id, start=start_text, end=end_text, limit=10_000)
            assert page["data"] == expected, (start_text, end_text)
            assert page["pagination"]["count"] == len(expected) == 4321 - 1234


@pytest.mark.smoke
async def test_bad_start_or_end_is_invalid_timestamp(owner: RowsOwner) -> None:
    dataset = await owner.dataset("bad_times")
    response = await owner.bulk(dataset, [{"timestamp": BASE, "values": {"a": 1}}])
    assert response.status_code == 200, response.text
    for name in ("start", "end"):
        for bad in ("yesterday", "2025-13-01T00:00:00Z", "12abc", "2025-03-01T25:00:00Z"):
            for path in ("", "/bulk_download", "/aggregate"):
                answer = await owner.http.get(
                    f"{ROWS}{path}", params={"dataset": dataset, name: bad}, headers=owner.headers
                )
                body = assert_envelope(answer, 422, "INVALID_TIMESTAMP")
                assert body["details"][0]["loc"] == ["query", name], (path, bad)
    assert owner.stored_rows(dataset) == [(BASE, {"a": 1})]


# ---------------------------------------------------------------- offset paging


async def test_offset_paging_follows_next_and_previous(owner: RowsOwner, ranged: Stored) -> None:
    times = sorted(ranged.model)
    limit = 700
    for start, end in ((None, None), (times[333], times[6666])):
        for ordering in ("timestamp", "-timestamp"):
            expected = ranged.reference(start, end, ordering == "-timestamp")
            params: dict[str, Any] = {"dataset": ranged.id, "ordering": ordering, "limit": limit}
            if start is not None:
                params |= {"start": iso_ms(start), "end": iso_ms(end)}
            url: str | None = str(httpx.URL(ROWS, params=params))
            pages: list[dict[str, Any]] = []
            while url is not None:
                answer = await owner.http.get(url, headers=owner.headers)
                assert answer.status_code == 200, answer.text
                pages.append(answer.json())
                url = pages[-1]["pagination"]["next"]
            walked = [row for page in pages for row in page["data"]]
            assert walked == expected
            assert len(pages) == -(-len(expected) // limit)
            for number, page in enumerate(pages):
                pagination = page["pagination"]
                offset = number * limit
                assert pagination["offset"] == offset
                assert pagination["limit"] == limit
                assert pagination["count"] == len(expected)
                assert page["data"] == expected[offset : offset + limit]
                if offset + limit < len(expected):
                    assert pagination["next"] is not None
                    query = httpx.URL(pagination["next"]).params
                    assert int(query["offset"]) == offset + limit
                    assert query["ordering"] == ordering and int(query["limit"]) == limit
                    assert query.get("start") == params.get("start")
                    assert query.get("end") == params.get("end")
                else:
                    assert pagination["next"] is None
                if offset == 0:
                    assert pagination["previous"] is None
                else:
                    assert int(httpx.URL(pagination["previous"]).params["offset"]) == max(
                        0, offset - limit
                    )
            back = await owner.http.get(pages[2]["pagination"]["previous"], headers=owner.headers)
            assert back.status_code == 200
            assert back.json()["data"] == pages[1]["data"]


async def test_offset_past_the_end_is_an_empty_page(owner: RowsOwner, ranged: Stored) -> None:
    total = len(ranged.model)
    for offset in (total, total + 5):
        page = await owner.read(ranged.id, limit=100, offset=offset)
        assert page["data"] == []
        assert page["pagination"]["count"] == total
        assert page["pagination"]["next"] is None
        assert int(httpx.URL(page["pagination"]["previous"]).params["offset"]) == offset - 100
    last = await owner.read(ranged.id, limit=100, offset=total - 1, ordering="-timestamp")
    assert last["data"] == ranged.reference(descending=True)[-1:]
    assert last["data"][0]["timestamp"] == iso_ms(min(ranged.model))


async def test_limit_defaults_to_250_and_is_at_most_10000(owner: RowsOwner, ranged: Stored) -> None:
    page = await owner.read(ranged.id)
    assert page["data"] == ranged.reference()[:250]
    assert page["pagination"]["limit"] == 250
    assert int(httpx.URL(page["pagination"]["next"]).params["offset"]) == 250
    assert page["pagination"]["next_cursor"] is not None
    full = await owner.read(ranged.id, limit=10_000)
    assert full["data"] == ranged.reference()
    for bad in ("10001", "0", "-1", "many"):
        answer = await owner.http.get(
            ROWS, params={"dataset": ranged.id, "limit": bad}, headers=owner.headers
        )
        body = assert_envelope(answer, 422, "VALIDATION_ERROR")
        assert body["details"][0]["loc"] == ["query", "limit"]
    answer = await owner.http.get(
        ROWS, params={"dataset": ranged.id, "offset": "-1"}, headers=owner.headers
    )
    assert_envelope(answer, 422, "VALIDATION_ERROR")


# ---------------------------------------------------------------- cursors


async def walk(
    owner: RowsOwner,
    dataset: str,
    ordering: str,
    limit: int,
    between: Callable[[], Awaitable[None]] | None = None,
    **params: Any,
) -> list[dict[str, Any]]:
    """Every row by `after=next_cursor`; `between` is awaited after each page."""
    rows: list[dict[str, Any]] = []
    after = None
    while True:
        extra = {"after": after} if after else {}
        page = await owner.read(dataset, ordering=ordering, limit=limit, **params, **extra)
        assert len(page["data"]) <= limit
        rows += page["data"]
        after = page["pagination"]["next_cursor"]
        if after is None:
            assert page["pagination"]["next"] is None
            return rows
        if extra:
            # A page read by cursor offers the next one by cursor too.
            assert httpx.URL(page["pagination"]["next"]).params["after"] == after
        if between is not None:
            await between()


async def test_cursor_walk_honours_range_and_ordering(owner: RowsOwner, ranged: Stored) -> None:
    times = sorted(ranged.model)
    edges = bucket_edges(owner, ranged.id)
    for start, end in ((None, None), (edges[1][0], edges[3][1] + 1), (times[10], times[11])):
        for ordering in ("timestamp", "-timestamp"):
            params: dict[str, str] = {}
            if start is not None:
                params = {"start": iso_ms(start), "end": iso_ms(end)}
            rows = await walk(owner, ranged.id, ordering, 997, **params)
            assert rows == ranged.reference(start, end, ordering == "-timestamp")
    following = await owner.read(ranged.id, limit=1000)
    url = following["pagination"]["next"]
    cursor_url = str(
        httpx.URL(url)
        .copy_remove_param("offset")
        .copy_add_param("after", following["pagination"]["next_cursor"])
    )
    second = await owner.http.get(cursor_url, headers=owner.headers)
    assert second.status_code == 200
    assert second.json()["data"] == ranged.reference()[1000:2000]
    nxt = await owner.http.get(second.json()["pagination"]["next"], headers=owner.headers)
    assert nxt.json()["data"] == ranged.reference()[2000:3000]


async def test_bad_cursor_is_invalid_cursor(owner: RowsOwner, ranged: Stored) -> None:
    ascending = (await owner.read(ranged.id, limit=10))["pagination"]["next_cursor"]
    descending = (await owner.read(ranged.id, limit=10, ordering="-timestamp"))["pagination"][
        "next_cursor"
    ]
    forged = orjson.dumps({"t": "soon", "d": 0})
    cases = [
        ("garbage!!", "timestamp"),
        ("e30", "timestamp"),  # "{}"
        (base64.urlsafe_b64encode(forged).decode(), "timestamp"),
        (ascending, "-timestamp"),
        (descending, "timestamp"),
    ]
    for cursor, ordering in cases:
        answer = await owner.http.get(
            ROWS,
            params={"dataset": ranged.id, "after": cursor, "ordering": ordering},
            headers=owner.headers,
        )
        assert_envelope(answer, 400, "INVALID_CURSOR")
    both = await owner.http.get(
        ROWS,
        params={"dataset": ranged.id, "after": ascending, "offset": 10},
        headers=owner.headers,
    )
    assert_envelope(both, 422, "VALIDATION_ERROR")
    assert owner.stored_rows(ranged.id) == sorted(ranged.model.items())


class Inserter:
    """Inserts a few rows per request while a walk runs: between existing
    timestamps (ahead of and behind the walker) and after the last one."""

    def __init__(self, owner: RowsOwner, dataset: str, model: Model, batches: int) -> None:
        self.owner, self.dataset, self.model = owner, dataset, model
        self.batches = batches
        self.done_batches = 0
        self.after_end: list[int] = []
        self.inserted: list[int] = []
        self.progress = asyncio.Event()
        self.rng = random.Random(batches)
        self.finished = False

    def _between(self, base: list[int]) -> int:
        """A free timestamp strictly between two rows that existed when the walk began."""
        while True:
            k = self.rng.randrange(len(base) - 1)
            ms = self._fresh(base[k] + 1 + self.rng.randrange(9))
            if ms < base[k + 1]:
                return ms

    def _fresh(self, ms: int) -> int:
        while ms in self.model:
            ms += 1
        return ms

    async def run(self) -> None:
        try:
            base = sorted(self.model)
            for batch in range(self.batches):
                rows = []
                for _ in range(3):
                    rows.append(self._between(base))
                    self.model[rows[-1]] = {"new": batch, "inside": True}
                rows.append(self._fresh(max(self.model) + 3))
                self.model[rows[-1]] = {"new": batch}
                self.after_end.append(rows[-1])
                response = await self.owner.bulk(self.dataset, as_rows(self.model, rows))
                assert response.status_code == 200, response.text
                assert response.json()["inserted"] == len(rows)
                self.inserted += rows
                self.done_batches += 1
                self.progress.set()
        finally:
            self.finished = True
            self.progress.set()

    async def wait_for_a_batch(self) -> None:
        """Called by the walker after each page: one more batch committed since."""
        if self.finished:
            return
        seen = self.done_batches
        while self.done_batches == seen and not self.finished:
            self.progress.clear()
            await asyncio.wait_for(self.progress.wait(), timeout=30)


async def test_cursor_walk_while_rows_are_inserted(owner: RowsOwner) -> None:
    dataset = await owner.dataset("walked")
    model: Model = {BASE + 10 * k: {"k": k} for k in range(50_000)}
    response = await owner.load(dataset, ndjson(as_rows(model, sorted(model))))
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == 50_000
    assert len(bucket_edges(owner, dataset)) >= 25

    for ordering in ("timestamp", "-timestamp"):
        descending = ordering == "-timestamp"
        before = dict(model)
        inserter = Inserter(owner, dataset, model, batches=30)
        task = asyncio.create_task(inserter.run())
        try:
            walked = await walk(owner, dataset, ordering, 1000, inserter.wait_for_a_batch)
        finally:
            await task
        assert inserter.done_batches == 30
        stamps = [ms_of_iso(row["timestamp"]) for row in walked]
        pairs = list(itertools.pairwise(stamps))
        assert all((b < a) if descending else (a < b) for a, b in pairs), ordering
        assert set(before) <= set(stamps), ordering
        assert all(model[ms] == row["values"] for ms, row in zip(stamps, walked, strict=True))
        if not descending:
            # Rows appended after the end while the walk ran are all reached.
            assert set(inserter.after_end) <= set(stamps)
    assert owner.stored_rows(dataset) == sorted(model.items())
    assert (await owner.read(dataset, limit=1))["pagination"]["count"] == len(model)


def ms_of_iso(text: str) -> int:
    return ms_of(datetime.fromisoformat(text.replace("Z", "+00:00")))


# ---------------------------------------------------------------- bulk_download

DECLARED = (("flag", "bool"), ("unused", "int"), ("price", "float"), ("label", "string"))
LABELS = ("plain", "a,b", 'say "hi", twice', "line\nbreak", "cr\r\nlf", "été ☃", "", " spaced ")
DOWNLOAD_NAME = 'Prix été, "Q1"/2025'


def download_values(n: int) -> dict[str, Any]:
    values: dict[str, Any] = {"zeta": n} if n % 4 == 0 else {}
    if n % 17:
        values["price"] = None if n % 13 == 0 else n * 0.5
    if n % 9:
        values["label"] = LABELS[n % len(LABELS)]
    values["flag"] = (True, False, None)[n % 3]
    if n >= 2 and n % 2 == 0:
        values["alpha"] = "x" if n % 3 else None
    if n >= 5 and n % 3 == 2:
        values["mid"] = 1e-7 if n % 2 else 2**53 + 1
    return values


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


CSV_HEADER = ["timestamp", "flag", "unused", "price", "label", "zeta", "alpha", "mid"]


def reference_csv(
    stored: Stored, start: int | None = None, end: int | None = None
) -> list[list[str]]:
    rows = [CSV_HEADER]
    for row in stored.reference(start, end):
        values = row["values"]
        rows.append([row["timestamp"], *(csv_cell(values.get(k)) for k in CSV_HEADER[1:])])
    return rows


async def declare(owner: RowsOwner, dataset: str, name: str, dtype: str) -> None:
    response = await owner.http.post(
        COLUMNS, json={"dataset": dataset, "name": name, "dtype": dtype}, headers=owner.headers
    )
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
async def downloadable(owner: RowsOwner) -> Stored:
    """2,500 rows over three buckets: declared columns, extra keys, awkward strings."""
    dataset = await owner.dataset(DOWNLOAD_NAME)
    for name, dtype in DECLARED:
        await declare(owner, dataset, name, dtype)
    model = {BASE + 1000 * n + n % 7: download_values(n) for n in range(2500)}
    await insert_passes(owner, dataset, model, [sorted(model)])
    assert len(bucket_edges(owner, dataset)) >= 3
    return Stored(dataset, model)


async def download(
    owner: RowsOwner, dataset: str, output: str, encoding: str = "identity", **params: Any
) -> httpx.Response:
    return await owner.http.get(
        f"{ROWS}/bulk_download",
        params={"dataset": dataset, "output": output, **params},
        headers={**owner.headers, "Accept-Encoding": encoding},
    )


async def test_download_matches_reference_in_every_format(
    owner: RowsOwner, downloadable: Stored
) -> None:
    times = sorted(downloadable.model)
    edges = bucket_edges(owner, downloadable.id)
    ranges = [(None, None), (times[100], times[2000]), (edges[1][0], None), (None, edges[1][1])]
    for start, end in ranges:
        params = {}
        if start is not None:
            params["start"] = iso_ms(start)
        if end is not None:
            params["end"] = str(end)
        expected = downloadable.reference(start, end)

        as_json = await download(owner, downloadable.id, "json", **params)
        assert as_json.status_code == 200, as_json.text
        assert as_json.headers["content-type"].startswith("application/json")
        assert "content-encoding" not in as_json.headers
        assert as_json.json() == expected

        as_ndjson = await download(owner, downloadable.id, "ndjson", **params)
        assert as_ndjson.status_code == 200
        assert as_ndjson.headers["content-type"].startswith("application/x-ndjson")
        lines = as_ndjson.content.split(b"\n")
        assert lines[-1] == b""
        assert [orjson.loads(line) for line in lines[:-1]] == expected

        as_csv = await download(owner, downloadable.id, "csv", **params)
        assert as_csv.status_code == 200
        assert as_csv.headers["content-type"].startswith("text/csv")
        parsed = list(csv.reader(io.StringIO(as_csv.content.decode(), newline="")))
        assert parsed == reference_csv(downloadable, start, end), (start, end)
    assert owner.stored_rows(downloadable.id) == sorted(downloadable.model.items())


async def test_download_is_gzipped_only_when_accepted(
    owner: RowsOwner, downloadable: Stored
) -> None:
    for output in ("json", "csv", "ndjson"):
        plain = await download(owner, downloadable.id, output)
        assert plain.status_code == 200
        assert "content-encoding" not in plain.headers
        async with owner.http.stream(
            "GET",
            f"{ROWS}/bulk_download",
            params={"dataset": downloadable.id, "output": output},
            headers={**owner.headers, "Accept-Encoding": "gzip"},
        ) as zipped:
            assert zipped.status_code == 200
            assert zipped.headers["content-encoding"] == "gzip"
            assert "accept-encoding" in zipped.headers["vary"].lower()
            raw = b"".join([chunk async for chunk in zipped.aiter_raw()])
        assert raw[:2] == b"\x1f\x8b"
        assert gzip.decompress(raw) == plain.content
        decoded = await download(owner, downloadable.id, output, encoding="gzip")
        assert decoded.content == plain.content


async def test_download_is_named_after_the_dataset(owner: RowsOwner, downloadable: Stored) -> None:
    for output in ("json", "csv", "ndjson"):
        answer = await download(owner, downloadable.id, output, end=str(BASE))
        assert answer.status_code == 200
        disposition = answer.headers["content-disposition"]
        assert disposition.startswith("attachment;")
        parts = dict(
            part.strip().split("=", 1) for part in disposition.split(";")[1:] if "=" in part
        )
        encoded = parts["filename*"]
        assert encoded.startswith("UTF-8''")
        assert unquote(encoded.removeprefix("UTF-8''")) == f"{DOWNLOAD_NAME}.{output}"
        fallback = parts["filename"]
        assert fallback.startswith('"') and fallback.endswith('"')
        assert fallback[1:-1].isascii() and '"' not in fallback[1:-1]
        assert fallback[1:-1].endswith(f".{output}")


@pytest.mark.smoke
async def test_download_and_live_of_an_empty_dataset(owner: RowsOwner) -> None:
    bare = await owner.dataset("bare")
    typed = await owner.dataset("typed")
    await declare(owner, typed, "price", "float")
    await declare(owner, typed, "note", "string")
    for dataset, header in ((bare, b"timestamp\n"), (typed, b"timestamp,price,note\n")):
        as_json = await download(owner, dataset, "json")
        assert as_json.status_code == 200
        assert as_json.json() == []
        as_ndjson = await download(owner, dataset, "ndjson")
        assert as_ndjson.status_code == 200 and as_ndjson.content.strip() == b""
        as_csv = await download(owner, dataset, "csv")
        assert as_csv.status_code == 200 and as_csv.content == header
        live = await owner.http.get(
            f"{ROWS}/live", params={"dataset": dataset}, headers=owner.headers
        )
        assert live.status_code == 200 and live.content.strip() == b""
        page = await owner.read(dataset)
        assert page["data"] == [] and page["pagination"]["count"] == 0
        assert owner.stored_rows(dataset) == []


# ---------------------------------------------------------------- live


def flattened(stored: Stored) -> list[dict[str, Any]]:
    return [{"timestamp": row["timestamp"], **row["values"]} for row in stored.reference()]


async def live(owner: RowsOwner, dataset: str, **params: Any) -> list[dict[str, Any]]:
    answer = await owner.http.get(
        f"{ROWS}/live", params={"dataset": dataset, **params}, headers=owner.headers
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    return [orjson.loads(line) for line in answer.content.split(b"\n") if line]


async def test_live_sends_the_newest_rows_oldest_first(owner: RowsOwner, ranged: Stored) -> None:
    every = flattened(ranged)
    total = len(every)
    assert await live(owner, ranged.id) == every[-1000:]
    limits = {1, 2, 999, 1001, total - 1, total, total + 1, 100_000}
    seen = 0
    for _lo, _hi, n in reversed(bucket_edges(owner, ranged.id)):
        seen += n
        limits |= {seen - 1, seen, seen + 1}
    for limit in sorted(limits):
        assert await live(owner, ranged.id, limit=limit) == every[-limit:], limit
    for bad in ("100001", "0"):
        answer = await owner.http.get(
            f"{ROWS}/live", params={"dataset": ranged.id, "limit": bad}, headers=owner.headers
        )
        body = assert_envelope(answer, 422, "VALIDATION_ERROR")
        assert body["details"][0]["loc"] == ["query", "limit"]
    assert owner.stored_rows(ranged.id) == sorted(ranged.model.items())


# ---------------------------------------------------------------- aggregate

AGGREGATES = ("avg", "min", "max", "sum", "count", "first", "last")
WIDTHS = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}


def mixed_value(rng: random.Random) -> Any:
    """Numbers whose sums are exact in binary (ints, quarters), nulls, strings, booleans."""
    roll = rng.random()
    if roll < 0.45:
        return rng.randint(-1000, 1000)
    if roll < 0.65:
        return rng.randint(-4000, 4000) / 4
    if roll < 0.73:
        return None
    if roll < 0.83:
        return MISSING
    if roll < 0.92:
        return rng.choice(("high", "low", "n/a"))
    return rng.random() < 0.5


def aggregate_of(values: list[Any], agg: str) -> Any:
    present = [v for v in values if v is not None]
    numbers = [v for v in present if type(v) is int or type(v) is float]
    if agg == "count":
        return len(present)
    if agg == "first":
        return present[0] if present else None
    if agg == "last":
        return present[-1] if present else None
    if not numbers:
        return None
    return {
        "avg": lambda: sum(numbers) / len(numbers),
        "sum": lambda: sum(numbers),
        "min": lambda: min(numbers),
        "max": lambda: max(numbers),
    }[agg]()


def reference_aggregate(
    model: Model,
    width: int,
    agg: str,
    columns: list[str],
    start: int | None = None,
    end: int | None = None,
) -> list[dict[str, Any]]:
    groups: dict[int, list[dict[str, Any]]] = {}
    for ms in sorted(model):
        if (start is None or ms >= start) and (end is None or ms < end):
            groups.setdefault(ms - ms % width, []).append(model[ms])
    return [
        {
            "timestamp": iso_ms(key),
            "count": len(rows),
            "values": {c: aggregate_of([r.get(c) for r in rows], agg) for c in columns},
        }
        for key, rows in sorted(groups.items())
    ]


@pytest.fixture(scope="module")
async def mixed(owner: RowsOwner) -> Stored:
    """5,000 rows over about 32 hours (three UTC days) at irregular times."""
    rng = random.Random(2025)
    model: Model = {}
    ms = BASE
    for _ in range(5000):
        ms += rng.randint(1, 45_000)
        values = {key: mixed_value(rng) for key in ("a", "b", "c")}
        model[ms] = {k: v for k, v in values.items() if v is not MISSING}
    times = sorted(model)
    dataset = await owner.dataset("mixed")
    await insert_passes(owner, dataset, model, [times[1::2], times[::2]])
    edges = bucket_edges(owner, dataset)
    assert len(edges) >= 3
    hour = WIDTHS["1h"]
    # Some hour (and so some minute or day) holds rows of two storage buckets.
    assert any(
        hi // hour == following // hour
        for (_lo, hi, _n), (following, _h, _m) in itertools.pairwise(edges)
    )
    return Stored(dataset, model)


async def aggregate(owner: RowsOwner, dataset: str, **params: Any) -> httpx.Response:
    return await owner.http.get(
        f"{ROWS}/aggregate", params={"dataset": dataset, **params}, headers=owner.headers
    )


async def test_aggregate_matches_reference(owner: RowsOwner, mixed: Stored) -> None:
    for bucket, width in WIDTHS.items():
        for agg in AGGREGATES:
            answer = await aggregate(owner, mixed.id, bucket=bucket, agg=agg, columns="a,b")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["success"] is True
            assert (body["bucket"], body["agg"], body["columns"]) == (bucket, agg, ["a", "b"])
            expected = reference_aggregate(mixed.model, width, agg, ["a", "b"])
            assert body["data"] == expected, (bucket, agg)
            assert sum(b["count"] for b in body["data"]) == len(mixed.model)
    days = (await aggregate(owner, mixed.id, bucket="1d", agg="count")).json()["data"]
    assert [b["timestamp"][10:] for b in days] == ["T00:00:00Z"] * len(days)
    assert len(days) >= 2
    assert owner.stored_rows(mixed.id) == sorted(mixed.model.items())


async def test_aggregate_honours_start_and_end(owner: RowsOwner, mixed: Stored) -> None:
    times = sorted(mixed.model)
    edges = bucket_edges(owner, mixed.id)
    ranges = [
        (times[777] + 1, times[3210]),
        (edges[1][0], edges[2][1] + 1),
        (None, times[2500]),
        (times[2500], None),
        (times[10], times[10]),
    ]
    for start, end in ranges:
        params: dict[str, Any] = {}
        if start is not None:
            params["start"] = iso_ms(start)
        if end is not None:
            params["end"] = str(end)
        for bucket, agg in (("1m", "sum"), ("1h", "avg"), ("1h", "first"), ("1d", "count")):
            answer = await aggregate(owner, mixed.id, bucket=bucket, agg=agg, **params)
            assert answer.status_code == 200, answer.text
            columns = answer.json()["columns"]
            expected = reference_aggregate(mixed.model, WIDTHS[bucket], agg, columns, start, end)
            assert answer.json()["data"] == expected, (start, end, bucket, agg)


async def test_aggregate_without_columns_takes_every_key(owner: RowsOwner, mixed: Stored) -> None:
    answer = await aggregate(owner, mixed.id, bucket="1h", agg="max")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert sorted(body["columns"]) == ["a", "b", "c"]
    assert body["data"] == reference_aggregate(mixed.model, WIDTHS["1h"], "max", body["columns"])
    unknown = await aggregate(owner, mixed.id, bucket="1d", agg="count", columns="nope, a")
    assert unknown.status_code == 200
    assert unknown.json()["columns"] == ["nope", "a"]
    assert unknown.json()["data"] == reference_aggregate(
        mixed.model, WIDTHS["1d"], "count", ["nope", "a"]
    )


async def test_aggregate_rejects_bad_bucket_and_agg(owner: RowsOwner, mixed: Stored) -> None:
    for bad in ("0m", "5x", "400d", "1w", "m", "-1h", "1.5h"):
        answer = await aggregate(owner, mixed.id, bucket=bad, agg="avg")
        body = assert_envelope(answer, 422, "VALIDATION_ERROR")
        assert body["details"][0]["loc"] == ["query", "bucket"], bad
    for bad in ("median", "AVG", ""):
        answer = await aggregate(owner, mixed.id, bucket="1h", agg=bad)
        body = assert_envelope(answer, 422, "VALIDATION_ERROR")
        assert body["details"][0]["loc"] == ["query", "agg"], bad
    assert owner.stored_rows(mixed.id) == sorted(mixed.model.items())


# ---------------------------------------------------------------- readers


READS = (
    ("", {"limit": 10_000}),
    ("/bulk_download", {"output": "json"}),
    ("/live", {}),
    ("/aggregate", {"bucket": "1m", "agg": "count"}),
)


async def test_only_readers_read_rows(owner: RowsOwner) -> None:
    dataset = await owner.dataset("private")
    rows = [{"timestamp": BASE + 1000 * n, "values": {"n": n}} for n in range(50)]
    assert (await owner.bulk(dataset, rows)).status_code == 200
    stranger = await register_account(owner.http, owner.inbox)
    reader = await register_account(owner.http, owner.inbox)
    await share(
        owner.http,
        owner.headers,
        dataset,
        permission="read",
        user_id=str(await user_id_of(owner.http, reader)),
    )
    version = owner.directory(dataset)["version"]
    for path, params in READS:
        url = f"{ROWS}{path}"
        query = {"dataset": dataset, **params}
        mine = await owner.http.get(url, params=query, headers=owner.headers)
        assert mine.status_code == 200, (path, mine.text)
        theirs = await owner.http.get(url, params=query, headers=reader.bearer)
        assert theirs.status_code == 200, (path, theirs.text)
        assert theirs.content == mine.content, path
        hidden = await owner.http.get(url, params=query, headers=stranger.bearer)
        assert_envelope(hidden, 404, "DATASET_NOT_FOUND")
        unknown = {**query, "dataset": "0123456789abcdef01234567"}
        missing = await owner.http.get(url, params=unknown, headers=owner.headers)
        assert_envelope(missing, 404, "DATASET_NOT_FOUND")
    assert owner.directory(dataset)["version"] == version
    assert owner.stored_rows(dataset) == [(r["timestamp"], r["values"]) for r in rows]


@pytest.mark.parametrize("start", ["²", "--5", "9" * 5000])
async def test_odd_query_timestamps_are_invalid_not_errors(owner: RowsOwner, start: str) -> None:
    dataset = await owner.dataset()
    response = await owner.http.get(
        ROWS, params={"dataset": dataset, "start": start}, headers=owner.headers
    )
    assert_envelope(response, 422, ErrorCode.INVALID_TIMESTAMP)


async def test_a_sum_beyond_64_bits_is_sent_as_a_number(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    big = 1_700_000_000_000_000_000
    rows = [{"timestamp": n, "values": {"ns": big}} for n in range(6)]
    assert (await owner.bulk(dataset, rows)).status_code == 200
    response = await owner.http.get(
        f"{ROWS}/aggregate",
        params={"dataset": dataset, "bucket": "1h", "agg": "sum", "columns": "ns"},
        headers=owner.headers,
    )
    assert response.status_code == 200
    data = orjson.loads(response.content)["data"]
    assert data == [{"timestamp": "1970-01-01T00:00:00Z", "count": 6, "values": {"ns": 6 * big}}]
