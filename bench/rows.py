"""Timeseries rows figures (issue 16), beside the raw driver on the same engine:

1. `bulk_insert` of `QUARRY_BENCH_ROWS_INSERT` (100,000) rows of 5 numeric
   values as one JSON request, rows/s, beside the seed's ~100,000 rows/s; raw:
   `insert_many` of the same bucket documents, built beforehand exactly as the
   store's `Writer._docs` builds them (codec `pack_times`/`pack_values`/
   `encode_values`, pieces of `TARGET_ROWS`), into a scratch collection with the
   same index on the same engine (goal >= 0.8x). `QUARRY_BENCH_ROWS_REPEAT` (5)
   runs into fresh datasets, alternating API and raw; medians;
2. streamed NDJSON loads of 100,000 and `QUARRY_BENCH_ROWS_BIG` (1,000,000)
   rows: rows/s, and the server's peak RSS during each load (`VmHWM` of the
   served API's process, reset through `/proc/<pid>/clear_refs` before each
   load; goal: flat, the same peak at both sizes);
3. a range read of 10,000 rows (`GET /rows`, `limit=10000`, `start`/`end`) out
   of a 10,000-row dataset and out of a `QUARRY_BENCH_ROWS_HUGE` (10,000,000)
   row dataset (loaded by NDJSON here), `QUARRY_BENCH_ROWS_READS` (30) reads at
   random positions, p50/p99 (goal: the same order);
4. `bulk_download` CSV of the 1,000,000-row dataset, rows/s and MB/s, beside
   the driver reading the same bucket documents (find by `dataset_id`, decode
   `t` and `v`; goal >= 0.5x), medians of 3; also gzipped, and as NDJSON (the
   rows' stored bytes, no per-value work) for comparison;
5. `aggregate` of those 1,000,000 rows to 1h buckets, avg of one column and of
   all five, seconds (goal < 2 s), medians of 3;
6. SSE fan-out: `QUARRY_BENCH_ROWS_STREAMS` (100) `GET /rows/stream` on one
   dataset (one user; the served API runs with `QUARRY_MAX_STREAMS_PER_USER`
   raised to allow them), `QUARRY_BENCH_ROWS_SSE_INSERTS` (50) rows inserted
   one at a time (`POST /rows`) 50 ms apart; delivery latency from just before
   the insert was sent to the event's arrival, p50/p99 over every stream; and
   what the same paced inserts cost with no stream open.

Rows are one second apart; values come from a fixed pool of 4,096 seeded
random rows (`a`..`e`: four floats and an int), timestamps are ISO-8601 with
`Z` as seed 002 sends them. NDJSON bodies are built before they are timed, so
the client (on the same 2 cores) spends as little as possible while the server
works. The 10,000,000-row dataset belongs to a second user (its own tenant
database), so the raw download's `find` by `dataset_id` reads one tenant's
bucket collection without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from bson import ObjectId
from bson.binary import Binary
from pymongo import AsyncMongoClient

from bench.harness import (
    BACKEND,
    HttpConnection,
    Row,
    bench_user,
    embedded_engine,
    engine_env,
    served_api,
)
from data_api.datasets.repository import ROW_BUCKETS, tenant_db_name
from data_api.rows.codec import (
    encode_values,
    format_timestamp,
    pack_times,
    pack_values,
    to_datetime,
    unpack_times,
)
from data_api.rows.store import MAX_BYTES, MAX_ROWS, TARGET_ROWS

INSERT_ROWS = int(os.environ.get("QUARRY_BENCH_ROWS_INSERT", "100000"))
REPEAT = int(os.environ.get("QUARRY_BENCH_ROWS_REPEAT", "5"))
SMALL_LOAD = 100_000
BIG = int(os.environ.get("QUARRY_BENCH_ROWS_BIG", "1000000"))
HUGE = int(os.environ.get("QUARRY_BENCH_ROWS_HUGE", "10000000"))
READ_ROWS = 10_000
READS = int(os.environ.get("QUARRY_BENCH_ROWS_READS", "30"))
STREAMS = int(os.environ.get("QUARRY_BENCH_ROWS_STREAMS", "100"))
SSE_INSERTS = int(os.environ.get("QUARRY_BENCH_ROWS_SSE_INSERTS", "50"))
SSE_GAP_SECONDS = 0.05
RUNS = 3  # downloads and aggregates

ROWS = "/api/v1/rows"
#: 2024-01-01T00:00:00Z; rows one second apart.
T0 = 1_704_067_200_000
STEP = 1000
KEYS = ("a", "b", "c", "d", "e")
NDJSON_CHUNK_ROWS = 10_000


def _pool(size: int = 4096, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "a": round(rng.uniform(0, 100), 3),
            "b": round(rng.gauss(20, 5), 3),
            "c": round(rng.uniform(-1, 1), 4),
            "d": rng.randint(0, 10_000),
            "e": round(rng.uniform(900, 1100), 2),
        }
        for _ in range(size)
    ]


POOL = _pool()
POOL_LINES = [encode_values(v) for v in POOL]


def _values(n: int) -> dict[str, Any]:
    return POOL[(n * 7919) % len(POOL)]


def _line(n: int) -> bytes:
    return POOL_LINES[(n * 7919) % len(POOL_LINES)]


def _ndjson_chunks(count: int, start_ms: int = T0) -> list[bytes]:
    """`count` rows one second apart from `start_ms`, as NDJSON in chunks of 10,000 lines."""
    chunks = []
    for a in range(0, count, NDJSON_CHUNK_ROWS):
        chunks.append(
            b"".join(
                b'{"timestamp":"%s","values":%s}\n'
                % (format_timestamp(start_ms + n * STEP).encode(), _line(n))
                for n in range(a, min(a + NDJSON_CHUNK_ROWS, count))
            )
        )
    return chunks


def _percentile(values: list[float], fraction: float) -> float:
    ranked = sorted(values)
    return ranked[max(0, math.ceil(len(ranked) * fraction) - 1)]


def _mib(kb: int) -> float:
    return kb / 1024


# ------------------------------------------------------------------ the server process


def _proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Server:
    """The served API's process: its peak RSS around a measured step."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.resettable = True

    def start(self) -> int:
        """Reset the peak; the RSS before the step (kB)."""
        self.resettable = _reset_peak(self.pid) and self.resettable
        return _proc_kb(self.pid, "VmRSS")

    def peak(self) -> int:
        return _proc_kb(self.pid, "VmHWM")


# ------------------------------------------------------------------ helpers


async def _dataset(http: httpx.AsyncClient, headers: dict[str, str], name: str) -> str:
    created = await http.post("/api/v1/datasets", json={"name": name}, headers=headers)
    assert created.status_code == 201, created.text
    return str(created.json()["data"]["id"])


async def _load(
    http: httpx.AsyncClient, headers: dict[str, str], dataset: str, chunks: list[bytes], rows: int
) -> float:
    """Seconds of one streamed NDJSON `bulk_insert` of the prepared chunks."""

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    started = time.perf_counter()
    answer = await http.post(
        f"{ROWS}/bulk_insert",
        params={"dataset": dataset, "on_conflict": "error"},
        content=body(),
        headers={**headers, "Content-Type": "application/x-ndjson"},
    )
    seconds = time.perf_counter() - started
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["inserted"] == rows, answer.text[:500]
    return seconds


def _pieces(n: int, size: int) -> list[tuple[int, int]]:
    """How `Writer._docs` cuts a sorted run of `n` small rows (`size` bytes of values)."""
    if n <= MAX_ROWS and size <= MAX_BYTES:
        return [(0, n)]
    per = math.ceil(n / math.ceil(n / TARGET_ROWS))
    return [(a, min(a + per, n)) for a in range(0, n, per)]


def _bucket_docs(dataset_id: ObjectId, times: list[int], lines: list[bytes]) -> list[Any]:
    """The bucket documents `Writer._docs` writes for a first insert into an empty dataset."""
    docs = []
    for seq, (a, b) in enumerate(_pieces(len(times), sum(map(len, lines)))):
        t, v = times[a:b], lines[a:b]
        docs.append(
            {
                "_id": f"{dataset_id}:{seq}",
                "dataset_id": dataset_id,
                "lo": to_datetime(t[0]),
                "hi": to_datetime(t[-1]),
                "n": len(t),
                "t": Binary(pack_times(list(t))),
                "v": Binary(pack_values(list(v))),
            }
        )
    return docs


# ------------------------------------------------------------------ 1. bulk_insert


async def _bulk_insert(
    http: httpx.AsyncClient, headers: dict[str, str], scratch: Any
) -> tuple[Row, dict[str, Any]]:
    rows = [
        {"timestamp": format_timestamp(T0 + n * STEP), "values": _values(n)}
        for n in range(INSERT_ROWS)
    ]
    times = [T0 + n * STEP for n in range(INSERT_ROWS)]
    api_s: list[float] = []
    raw_s: list[float] = []
    build_s: list[float] = []
    body_mb = 0.0
    for run in range(REPEAT):
        dataset = await _dataset(http, headers, f"bulk insert {run}")
        body = orjson.dumps({"dataset": dataset, "rows": rows})
        body_mb = len(body) / 1e6
        started = time.perf_counter()
        answer = await http.post(
            f"{ROWS}/bulk_insert",
            content=body,
            headers={**headers, "Content-Type": "application/json"},
        )
        api_s.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text[:500]
        assert answer.json()["inserted"] == INSERT_ROWS, answer.text[:500]

        started = time.perf_counter()
        lines = [encode_values(row["values"]) for row in rows]
        docs = _bucket_docs(ObjectId(), times, lines)
        build_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        await scratch.insert_many(docs, ordered=False)
        raw_s.append(time.perf_counter() - started)
    api_rate = INSERT_ROWS / statistics.median(api_s)
    raw_rate = INSERT_ROWS / statistics.median(raw_s)
    row = Row(
        f"bulk_insert {INSERT_ROWS:,} rows x 5 values, JSON ({body_mb:.1f} MB), median of {REPEAT}",
        f"{api_rate:,.0f} rows/s ({statistics.median(api_s):.2f} s)",
        f"{raw_rate:,.0f} rows/s ({statistics.median(raw_s):.2f} s, insert_many of "
        f"{len(_pieces(INSERT_ROWS, INSERT_ROWS * 60))} prepared buckets)",
        f"{api_rate / raw_rate:.2f}x",
        ">= 0.8x; seed ~100,000 rows/s",
    )
    return row, {
        "bulk_insert": {"rows": INSERT_ROWS, "api_s": api_s, "raw_s": raw_s, "raw_build_s": build_s}
    }


# ------------------------------------------------------------------ 2. NDJSON loads


async def _ndjson_loads(
    http: httpx.AsyncClient, headers: dict[str, str], server: Server
) -> tuple[list[Row], dict[str, Any], str]:
    """Loads of 100,000 and BIG rows; returns the BIG dataset for downloads and aggregates."""
    small_chunks = _ndjson_chunks(SMALL_LOAD)
    small_s, small_peak, small_before = [], [], []
    for run in range(3):
        dataset = await _dataset(http, headers, f"ndjson {SMALL_LOAD} {run}")
        small_before.append(server.start())
        small_s.append(await _load(http, headers, dataset, small_chunks, SMALL_LOAD))
        small_peak.append(server.peak())
    del small_chunks
    big_chunks = _ndjson_chunks(BIG)
    big_mb = sum(map(len, big_chunks)) / 1e6
    big = await _dataset(http, headers, f"ndjson {BIG}")
    big_before = server.start()
    big_s = await _load(http, headers, big, big_chunks, BIG)
    big_peak = server.peak()
    del big_chunks
    small_rate = SMALL_LOAD / statistics.median(small_s)
    big_rate = BIG / big_s
    rows = [
        Row(
            f"NDJSON load of {BIG:,} rows ({big_mb:.0f} MB) vs of {SMALL_LOAD:,}, rows/s",
            f"{big_rate:,.0f} rows/s ({big_s:.1f} s)",
            f"{small_rate:,.0f} rows/s at {SMALL_LOAD:,} (median of 3)",
            f"{big_rate / small_rate:.2f}x",
            "seed ~100,000 rows/s",
        ),
        Row(
            f"server peak RSS during the NDJSON load, {BIG:,} vs {SMALL_LOAD:,} rows",
            f"{_mib(big_peak):.0f} MiB (from {_mib(big_before):.0f})",
            f"{_mib(max(small_peak)):.0f} MiB (from {_mib(small_before[0]):.0f}; max of 3)",
            f"{big_peak / max(small_peak):.2f}x",
            "flat (same peak)" + ("" if server.resettable else " [peak not resettable]"),
        ),
    ]
    figures = {
        "ndjson_load": {
            "small_rows": SMALL_LOAD,
            "small_s": small_s,
            "small_rss_before_kb": small_before,
            "small_peak_kb": small_peak,
            "big_rows": BIG,
            "big_s": big_s,
            "big_mb": big_mb,
            "big_rss_before_kb": big_before,
            "big_peak_kb": big_peak,
            "peak_reset": server.resettable,
        }
    }
    return rows, figures, big


# ------------------------------------------------------------------ 3. range reads


async def _reads(
    api: str, headers: dict[str, str], dataset: str, total: int, rng: random.Random
) -> list[float]:
    """Seconds of READS reads of 10,000 rows at random positions (after one unmeasured)."""
    connection = await HttpConnection.open(api)
    seconds: list[float] = []
    try:
        for n in range(READS + 1):
            first = rng.randrange(0, total - READ_ROWS + 1)
            start = T0 + first * STEP
            query = urlencode(
                {
                    "dataset": dataset,
                    "start": format_timestamp(start),
                    "end": format_timestamp(start + READ_ROWS * STEP),
                    "limit": READ_ROWS,
                }
            )
            started = time.perf_counter()
            status, answer = await connection.request("GET", f"{ROWS}?{query}", headers=headers)
            elapsed = time.perf_counter() - started
            assert status == 200, answer[:300]
            page = orjson.loads(answer)
            assert len(page["data"]) == READ_ROWS, len(page["data"])
            assert page["data"][0]["timestamp"] == format_timestamp(start)
            if n:
                seconds.append(elapsed)
    finally:
        await connection.close()
    return seconds


async def _range_reads(
    http: httpx.AsyncClient, api: str, server: Server
) -> tuple[list[Row], dict[str, Any]]:
    _owner, headers = await bench_user(http)
    small = await _dataset(http, headers, f"reads {READ_ROWS}")
    await _load(http, headers, small, _ndjson_chunks(READ_ROWS), READ_ROWS)
    chunks = _ndjson_chunks(HUGE)
    huge_mb = sum(map(len, chunks)) / 1e6
    huge = await _dataset(http, headers, f"reads {HUGE}")
    before = server.start()
    load_s = await _load(http, headers, huge, chunks, HUGE)
    peak = server.peak()
    del chunks
    rng = random.Random(23)
    small_s = await _reads(api, headers, small, READ_ROWS, rng)
    huge_s = await _reads(api, headers, huge, HUGE, rng)
    small_p50, small_p99 = _percentile(small_s, 0.5) * 1000, _percentile(small_s, 0.99) * 1000
    huge_p50, huge_p99 = _percentile(huge_s, 0.5) * 1000, _percentile(huge_s, 0.99) * 1000
    rows = [
        Row(
            f"NDJSON load of {HUGE:,} rows ({huge_mb:.0f} MB), rows/s; server peak RSS",
            f"{HUGE / load_s:,.0f} rows/s ({load_s:.0f} s); peak {_mib(peak):.0f} MiB "
            f"(from {_mib(before):.0f})",
            "",
            "",
            "",
        ),
        Row(
            f"range read of {READ_ROWS:,} rows out of {HUGE:,} vs out of {READ_ROWS:,}, "
            f"p50/p99 of {READS}",
            f"{huge_p50:.0f}/{huge_p99:.0f} ms",
            f"{small_p50:.0f}/{small_p99:.0f} ms (out of {READ_ROWS:,})",
            f"{huge_p50 / small_p50:.2f}x",
            "same order",
        ),
    ]
    figures = {
        "huge_load": {
            "rows": HUGE,
            "s": load_s,
            "mb": huge_mb,
            "rss_before_kb": before,
            "peak_kb": peak,
        },
        "range_read": {"small_s": small_s, "huge_s": huge_s},
    }
    return rows, figures


# ------------------------------------------------------------------ 4. download


async def _download(
    http: httpx.AsyncClient, headers: dict[str, str], client: Any, owner: ObjectId, dataset: str
) -> tuple[list[Row], dict[str, Any]]:
    buckets = client[tenant_db_name(owner)][ROW_BUCKETS]
    ds = ObjectId(dataset)

    async def api(gzip: bool, output: str = "csv") -> tuple[float, int, int]:
        started = time.perf_counter()
        size = 0
        newlines = 0
        async with http.stream(
            "GET",
            f"{ROWS}/bulk_download",
            params={"dataset": dataset, "output": output},
            headers={**headers, "Accept-Encoding": "gzip" if gzip else "identity"},
        ) as answer:
            assert answer.status_code == 200, (await answer.aread())[:300]
            async for chunk in answer.aiter_raw():
                size += len(chunk)
                if not gzip:
                    newlines += chunk.count(b"\n")
        return time.perf_counter() - started, size, newlines

    async def raw() -> tuple[float, int]:
        started = time.perf_counter()
        count = 0
        async for doc in buckets.find({"dataset_id": ds}):
            times = unpack_times(bytes(doc["t"]))
            values = orjson.loads(b"[" + bytes(doc["v"]).replace(b"\n", b",") + b"]")
            assert len(values) == len(times)
            count += len(times)
        return time.perf_counter() - started, count

    api_s, raw_s, gzip_s = [], [], []
    csv_bytes = gzip_bytes = 0
    for _run in range(RUNS):
        seconds, csv_bytes, lines = await api(False)
        assert lines == BIG + 1, lines  # the header, then one line a row
        api_s.append(seconds)
        seconds, count = await raw()
        assert count == BIG, count
        raw_s.append(seconds)
    ndjson_s: list[float] = []
    ndjson_bytes = 0
    for _run in range(RUNS):
        seconds, gzip_bytes, _ = await api(True)
        gzip_s.append(seconds)
        seconds, ndjson_bytes, lines = await api(False, "ndjson")
        assert lines == BIG, lines
        ndjson_s.append(seconds)
    api_t, raw_t, gzip_t = map(statistics.median, (api_s, raw_s, gzip_s))
    ndjson_t = statistics.median(ndjson_s)
    rows = [
        Row(
            f"bulk_download CSV of {BIG:,} rows ({csv_bytes / 1e6:.0f} MB), median of {RUNS}",
            f"{BIG / api_t:,.0f} rows/s, {csv_bytes / 1e6 / api_t:.1f} MB/s ({api_t:.2f} s)",
            f"{BIG / raw_t:,.0f} rows/s ({raw_t:.2f} s, find by dataset_id, t and v decoded)",
            f"{raw_t / api_t:.2f}x",
            ">= 0.5x",
        ),
        Row(
            f"bulk_download CSV of {BIG:,} rows, gzip ({gzip_bytes / 1e6:.0f} MB sent)",
            f"{BIG / gzip_t:,.0f} rows/s, {csv_bytes / 1e6 / gzip_t:.1f} MB/s of CSV "
            f"({gzip_t:.2f} s)",
            "",
            f"{raw_t / gzip_t:.2f}x",
            "",
        ),
        Row(
            f"bulk_download NDJSON of {BIG:,} rows ({ndjson_bytes / 1e6:.0f} MB), for comparison",
            f"{BIG / ndjson_t:,.0f} rows/s, {ndjson_bytes / 1e6 / ndjson_t:.1f} MB/s "
            f"({ndjson_t:.2f} s)",
            "",
            f"{raw_t / ndjson_t:.2f}x",
            "",
        ),
    ]
    figures = {
        "download_csv": {
            "rows": BIG,
            "csv_bytes": csv_bytes,
            "gzip_bytes": gzip_bytes,
            "api_s": api_s,
            "gzip_s": gzip_s,
            "raw_s": raw_s,
            "ndjson_bytes": ndjson_bytes,
            "ndjson_s": ndjson_s,
        },
    }
    return rows, figures


# ------------------------------------------------------------------ 5. aggregate


async def _aggregates(
    http: httpx.AsyncClient, headers: dict[str, str], dataset: str
) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    expected = math.ceil(BIG * STEP / 3_600_000)
    for columns in (KEYS[:1], KEYS):
        seconds = []
        for _run in range(RUNS):
            started = time.perf_counter()
            answer = await http.get(
                f"{ROWS}/aggregate",
                params={
                    "dataset": dataset,
                    "bucket": "1h",
                    "agg": "avg",
                    "columns": ",".join(columns),
                },
                headers=headers,
            )
            seconds.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text[:300]
            data = answer.json()["data"]
            assert len(data) == expected and sum(b["count"] for b in data) == BIG, len(data)
        median = statistics.median(seconds)
        rows.append(
            Row(
                f"aggregate {BIG:,} rows to 1h buckets, avg of {len(columns)} column(s), "
                f"median of {RUNS}",
                f"{median:.2f} s ({BIG / median:,.0f} rows/s)",
                "",
                "",
                "< 2 s",
            )
        )
        figures[f"aggregate_{len(columns)}_columns_s"] = seconds
    return rows, figures


# ------------------------------------------------------------------ 6. SSE fan-out


class SseClient:
    """One `text/event-stream` response on its own connection (HTTP/1.1, chunked)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.chunked = False

    @classmethod
    async def open(cls, api: str, path: str, headers: dict[str, str]) -> SseClient:
        host, port = api.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 22)
        lines = [f"GET {path} HTTP/1.1", "Host: bench", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            body = await reader.read(2000)
            writer.close()
            raise RuntimeError(f"stream refused: {status} {body[:300]!r}")
        client = cls(reader, writer)
        client.chunked = b"transfer-encoding: chunked" in head.lower()
        return client

    async def events(self) -> AsyncIterator[tuple[bytes, bytes | None, bytes, float]]:
        """`(event, id, data, arrival)` as each event arrives."""
        buffer = b""
        while True:
            if self.chunked:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    return
                data = (await self.reader.readexactly(size + 2))[:-2]
            else:
                data = await self.reader.read(1 << 16)
                if not data:
                    return
            arrival = time.perf_counter()
            buffer += data
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                kind, event_id, payload = b"message", None, b""
                for line in block.split(b"\n"):
                    name, _, value = line.partition(b": ")
                    if name == b"event":
                        kind = value
                    elif name == b"id":
                        event_id = value
                    elif name == b"data":
                        payload = value
                yield kind, event_id, payload, arrival

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def _paced_inserts(
    api: str, headers: dict[str, str], dataset: str, stamps: list[bytes], sent: dict[bytes, float]
) -> list[float]:
    """Insert one row per stamp (`POST /rows`), SSE_GAP_SECONDS apart; records in `sent`
    when each request started; returns the requests' seconds."""
    connection = await HttpConnection.open(api)
    seconds: list[float] = []
    request_headers = {**headers, "Content-Type": "application/json"}
    try:
        schedule = time.perf_counter()
        for k, stamp in enumerate(stamps):
            body = orjson.dumps(
                {"dataset": dataset, "timestamp": stamp.decode(), "values": _values(k + 1)}
            )
            sent[stamp] = time.perf_counter()
            status, answer = await connection.request(
                "POST", ROWS, body=body, headers=request_headers
            )
            seconds.append(time.perf_counter() - sent[stamp])
            assert status == 201, answer[:300]
            pause = schedule + (k + 1) * SSE_GAP_SECONDS - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
    finally:
        await connection.close()
    return seconds


async def _fan_out(
    http: httpx.AsyncClient, api: str, headers: dict[str, str]
) -> tuple[list[Row], dict[str, Any]]:
    dataset = await _dataset(http, headers, "stream fan-out")
    first = T0 + 10 * 86_400_000
    # The same paced inserts with no stream open: what an insert costs by itself.
    before = [format_timestamp(first + k * STEP).encode() for k in range(SSE_INSERTS)]
    alone_s = await _paced_inserts(api, headers, dataset, before, {})
    first += SSE_INSERTS * STEP
    stamps = [format_timestamp(first + k * STEP).encode() for k in range(SSE_INSERTS)]
    sent: dict[bytes, float] = {}
    arrivals: list[dict[bytes, float]] = [{} for _ in range(STREAMS)]
    connected = [asyncio.Event() for _ in range(STREAMS)]
    path = f"{ROWS}/stream?{urlencode({'dataset': dataset})}"

    async def listen(number: int) -> None:
        stream = await SseClient.open(api, path, headers)
        try:
            async for kind, event_id, payload, arrival in stream.events():
                if kind == b"connected":
                    connected[number].set()
                elif kind == b"data" and event_id is not None:
                    arrivals[number][event_id] = arrival
                    if len(arrivals[number]) >= SSE_INSERTS:
                        return
                elif kind == b"error":
                    raise RuntimeError(f"stream {number} ended: {payload[:300]!r}")
        finally:
            await stream.close()

    started = time.perf_counter()
    listeners = [asyncio.create_task(listen(n)) for n in range(STREAMS)]
    all_connected = asyncio.ensure_future(asyncio.gather(*(e.wait() for e in connected)))
    await asyncio.wait(
        [all_connected, *listeners], timeout=120, return_when=asyncio.FIRST_COMPLETED
    )
    for task in listeners:
        if task.done():
            task.result()  # a stream that ended before every stream connected failed
    assert all_connected.done(), "the streams did not all connect within 120 s"
    open_s = time.perf_counter() - started

    insert_s = await _paced_inserts(api, headers, dataset, stamps, sent)
    _done, pending = await asyncio.wait(listeners, timeout=60)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    latencies = [
        (arrival - sent[stamp]) * 1000 for got in arrivals for stamp, arrival in got.items()
    ]
    delivered = len(latencies)
    expected = STREAMS * SSE_INSERTS
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)

    def p50_p99(seconds: list[float]) -> str:
        return f"{_percentile(seconds, 0.5) * 1000:.0f}/{_percentile(seconds, 0.99) * 1000:.0f}"

    rows = [
        Row(
            f"SSE fan-out: {STREAMS} streams, {SSE_INSERTS} single inserts "
            f"{SSE_GAP_SECONDS * 1000:.0f} ms apart, insert->receipt p50/p99",
            f"{p50:.0f}/{p99:.0f} ms ({delivered:,}/{expected:,} delivered)",
            f"POST /rows p50/p99 {p50_p99(insert_s)} ms ({p50_p99(alone_s)} ms with no "
            f"stream open); {STREAMS} streams opened in {open_s:.1f} s",
            "",
            "",
        )
    ]
    figures = {
        "sse_fan_out": {
            "streams": STREAMS,
            "inserts": SSE_INSERTS,
            "delivered": delivered,
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": max(latencies, default=0),
            "insert_ms": [s * 1000 for s in insert_s],
            "insert_alone_ms": [s * 1000 for s in alone_s],
            "open_s": open_s,
        },
    }
    return rows, figures


# ------------------------------------------------------------------ run


async def _run(api: str, mongodb_url: str, server: Server) -> tuple[list[Row], dict[str, Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    scratch_db = f"bench_rows_raw_{ObjectId()}"
    rows: list[Row] = []
    figures: dict[str, Any] = {}

    def note(step: str) -> None:
        print(f"rows: {step} ({time.strftime('%H:%M:%S')})", flush=True)

    try:
        async with httpx.AsyncClient(base_url=api, timeout=3600) as http:
            owner, headers = await bench_user(http)
            # NDJSON first: the server's memory has not yet been raised by anything.
            note(f"NDJSON loads of {SMALL_LOAD:,} and {BIG:,} rows")
            new_rows, more, big = await _ndjson_loads(http, headers, server)
            ndjson_rows = new_rows
            figures.update(more)
            note(f"JSON bulk_insert of {INSERT_ROWS:,} rows x {REPEAT}")
            scratch = client[scratch_db]["row_buckets"]
            tenant = client[tenant_db_name(owner)][ROW_BUCKETS]
            for index in await (await tenant.list_indexes()).to_list(None):
                if index["name"] != "_id_":
                    await scratch.create_index(list(index["key"].items()), name=index["name"])
            insert_row, more = await _bulk_insert(http, headers, scratch)
            rows.append(insert_row)
            rows += ndjson_rows
            figures.update(more)
            note(f"bulk_download CSV of {BIG:,} rows")
            new_rows, more = await _download(http, headers, client, owner, big)
            download_rows = new_rows
            figures.update(more)
            note(f"aggregates of {BIG:,} rows")
            aggregate_rows, more = await _aggregates(http, headers, big)
            figures.update(more)
            note(f"range reads (loading {HUGE:,} rows first)")
            new_rows, more = await _range_reads(http, api, server)
            rows += new_rows + download_rows + aggregate_rows
            figures.update(more)
            note(f"SSE fan-out over {STREAMS} streams")
            new_rows, more = await _fan_out(http, api, headers)
            rows += new_rows
            figures.update(more)
        return rows, {"rows": figures}
    finally:
        with contextlib.suppress(Exception):
            await client.drop_database(scratch_db)
        await client.close()


def _serve_and_run(mongodb_url: str, extra_env: dict[str, str]) -> tuple[list[Row], dict[str, Any]]:
    pids: list[int] = []
    env = {
        **extra_env,
        "QUARRY_MAX_STREAMS_PER_USER": os.environ.get(
            "QUARRY_MAX_STREAMS_PER_USER", str(max(10, STREAMS + 10))
        ),
    }
    with tempfile.TemporaryDirectory(prefix="quarry-bench-rows-") as tmp:
        log = Path(tmp) / "server.log"
        try:
            with served_api(mongodb_url, pids=pids, extra_env=env, log=log) as api:
                return asyncio.run(_run(api, mongodb_url, Server(pids[0])))
        except BaseException:
            if log.exists():
                print("rows: the server's log ends:\n" + log.read_text()[-4000:])
            raise


def run_all(mongodb_url: str) -> tuple[list[Row], dict[str, Any]]:
    """On `QUARRY_BENCH_MONGODB_URL` when set; else on an embedded engine of its own
    that the API serves as its data directory's (as `quarry serve` does)."""
    if os.environ.get("QUARRY_BENCH_MONGODB_URL"):
        return _serve_and_run(mongodb_url, {})
    with embedded_engine(BACKEND) as engine:
        return _serve_and_run(engine.url, engine_env(engine))
