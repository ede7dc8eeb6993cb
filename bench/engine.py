"""Engine figures: the embedded engine's PostgreSQL backend (the default) beside its
SQLite backend. Each gets a fresh engine in a temporary directory — one after the
other in one run, so that neither's work disturbs the other's figures — and its
own `quarry serve`, and is measured through the API and with the raw driver on
that same engine:

1. reads by the unique `email` field (`GET /api/crud?filters={"email": ...}` with
   an API key vs `find_one`) at 10,000 and 100,000 documents, with 1 and with 32
   clients for `QUARRY_BENCH_SECONDS` (default 10): p50, p99, requests/s;
2. `update_many` of 1,000 and of 4,000 of 20,000 documents (`PATCH /api/crud`
   with `{"price": {"$lt": n}}` and `{"$inc": {"price": 1}}`): seconds, status;
3. imports of 100,000 and 1,000,000 documents (`POST /api/import_data` vs
   `insert_many` batches, as bench/management.py does): documents/s and the
   server's peak RSS (a fresh server per import);
4. a sorted range page at 100,000 documents (`score` in [10, 20), `score`
   descending, 50 a page) vs `find().sort().limit(50)`, median of 3 — the API's
   first page also counts the matches for its total (`after=` does too);
5. `POST /api/crud/count` of everything and of that range vs `count_documents`.

The engine is registered in its data directory (as `quarry engine start` does) and
the API serves on that directory, so it uses the engine as a server on its own
data would — with direct PostgreSQL counts (app/engine/sql.py).
The collections are created through the API (`email` unique, so its index exists)
and loaded with the raw driver's `insert_many`. Ratios are Quarry's speed over the
raw driver's (1.00: as fast). SQLite is slow (a read by a unique field scans), so
there every operation gets `QUARRY_BENCH_ENGINE_CAP_SECONDS` (default 60), and the
table says "> 60 s (stopped)" for one still running then. The raw client gives up
(its socket timeout is the cap), the API's client too; but neither uvicorn nor
FerretDB on SQLite stops the work when its client leaves, so after a stop the
server is killed and the engine restarted on its data (SQLite rolls back the
write) before the next figure. A load on SQLite starts requests for the same
seconds and stops at the cap; an update whose smaller size was stopped is not run
at the larger one.
The 1,000,000-document import runs on SQLite only with `QUARRY_BENCH_ENGINE_FULL=1`.
`QUARRY_BENCH_ENGINE_BACKENDS` (default `postgresql`; a server on SQLite is refused, so
`sqlite` no longer serves) picks the backends.
Skipped when `QUARRY_BENCH_MONGODB_URL` is set: these figures are the embedded
engine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import AutoReconnect, NetworkTimeout

from app.engine import EmbeddedEngine
from app.schema import compile_schema
from bench.crud import FIELDS, create_account, make_document, physical_name
from bench.harness import (
    CappedLoad,
    HttpConnection,
    Row,
    capped_loop,
    embedded_engine,
    engine_env,
    register_engine,
    served_api,
)
from bench.management import api_import, peak_rss_mib, raw_insert, write_import_file

T = TypeVar("T")
Document = dict[str, Any]

CAP = float(os.environ.get("QUARRY_BENCH_ENGINE_CAP_SECONDS", "60"))
FULL = os.environ.get("QUARRY_BENCH_ENGINE_FULL") == "1"
BACKENDS = tuple(os.environ.get("QUARRY_BENCH_ENGINE_BACKENDS", "postgresql").split(","))
SECONDS = float(os.environ.get("QUARRY_BENCH_SECONDS", "10"))
READ_SIZES = (10_000, 100_000)
CLIENTS = (1, 32)
UPDATE_DOCS = 20_000
UPDATE_SIZES = (1_000, 4_000)
IMPORT_SIZES = (100_000, 1_000_000)
#: Imports above this size run on SQLite only with QUARRY_BENCH_ENGINE_FULL=1.
SQLITE_IMPORT_LIMIT = 100_000
PAGE_SIZE = 50
REPEATS = 3
BATCH = 5_000
#: Without a cap (PostgreSQL), an operation still gives up after an hour.
NO_CAP = 3600.0
SCORE_RANGE = {"score": {"$gte": 10, "$lt": 20}}
ITEM_FIELDS = [*FIELDS, {"name": "price", "type": "int"}]
SIDES = ("api", "raw")
COLLECTIONS = [
    {"name": "users", "fields": FIELDS},
    *({"name": f"items_{side}_{n}", "fields": ITEM_FIELDS} for side in SIDES for n in UPDATE_SIZES),
]


def _progress(message: str) -> None:
    print(f"[bench engine] {message}", file=sys.stderr, flush=True)


class Server:
    """`quarry serve` on one engine that can be killed and started again (same
    control database and secret, so accounts and API keys stay valid): uvicorn
    carries on with a request whose client gave up, so after one it is killed."""

    def __init__(self, mongodb_url: str, env: dict[str, str]) -> None:
        self.mongodb_url, self.env = mongodb_url, env
        self.pids: list[int] = []
        self.stack = contextlib.ExitStack()
        self.base = ""

    def start(self) -> None:
        self.stack = contextlib.ExitStack()
        self.base = self.stack.enter_context(
            served_api(self.mongodb_url, pids=self.pids, extra_env=self.env)
        )

    def kill(self) -> None:
        os.kill(self.pids[-1], signal.SIGKILL)
        self.stack.close()

    def close(self) -> None:
        self.stack.close()


@dataclass
class Bench:
    """One backend's engine, served API, raw client, and the benchmark's database."""

    backend: str
    cap: float | None
    engine: EmbeddedEngine
    server: Server
    client: AsyncMongoClient[Document]
    db_name: str = ""
    database_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def budget(self) -> float:
        return self.cap or NO_CAP

    def collection(self, name: str) -> AsyncCollection[Document]:
        return self.client[self.db_name][name]

    def target(self, name: str) -> dict[str, str]:
        return {"database_id": self.database_id, "collection_name": name}


def server_env(backend: str, secret: str) -> dict[str, str]:
    env = {"QUARRY_CONTROL_DB": f"quarry_bench_engine_{backend}", "QUARRY_SECRET_KEY": secret}
    if backend == "sqlite":
        # Past the cap, so that the client's cap (not the server's 504) stops a read.
        env["QUARRY_QUERY_TIMEOUT_MS"] = str(int(min(CAP * 2, 3600) * 1000))
    return env


def restart_engine(engine: EmbeddedEngine) -> None:
    """Stop the engine (SQLite rolls back what it was writing) and start it again on
    its data and port: FerretDB on SQLite carries on with a command whose client
    has gone — an `update_many` of 4,000 of 20,000 documents for minutes, holding
    the write lock, so that other writes fail with "database is locked"."""
    _progress(f"{engine.backend}: a stopped operation runs on in the engine: restarting it")
    engine.stop()
    engine.restart()
    register_engine(engine)


async def recover(bench: Bench) -> None:
    """After a stopped operation: a fresh engine (see `restart_engine`) and server."""
    bench.server.kill()
    restart_engine(bench.engine)
    bench.server.start()
    for _ in range(5):
        # The raw client's pooled connections died with the engine.
        with contextlib.suppress(AutoReconnect):
            await bench.client.admin.command("ping")
            return
    await bench.client.admin.command("ping")


async def timed(
    operation: Callable[[], Awaitable[T]], budget: float
) -> tuple[float | None, T | None]:
    """Seconds `operation` took and its result, or None, None when it was stopped
    after `budget` s."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(budget):
            result = await operation()
    except (TimeoutError, httpx.TimeoutException, NetworkTimeout):
        return None, None
    return time.perf_counter() - started, result


async def api_request(
    bench: Bench, method: str, path: str, **kwargs: Any
) -> tuple[float | None, httpx.Response | None]:
    """One timed request through the API, within the cap."""
    async with httpx.AsyncClient(base_url=bench.server.base, timeout=bench.budget) as http:
        seconds, response = await timed(
            lambda: http.request(method, path, headers=bench.headers, **kwargs), bench.budget
        )
    if seconds is None:
        await recover(bench)
    return seconds, response


async def median_of(
    operation: Callable[[], Awaitable[float | None]],
) -> float | None:
    """Median seconds of REPEATS runs of `operation` (seconds or None), None once one stops."""
    times = []
    for _ in range(REPEATS):
        seconds = await operation()
        if seconds is None:
            return None
        times.append(seconds)
    return statistics.median(times)


def item(i: int) -> Document:
    return {**make_document(i), "price": i}


async def load(
    bench: Bench,
    name: str,
    numbers: range,
    document: Callable[[int], Document],
    fields: list[dict[str, Any]],
) -> None:
    """`document(i)` for each of `numbers` into `name`, typed as the API stores them."""
    schema = compile_schema(fields)
    collection = bench.collection(name)
    for start in range(numbers.start, numbers.stop, BATCH):
        documents = [
            schema.validate(document(i))[0] for i in range(start, min(start + BATCH, numbers.stop))
        ]
        await collection.insert_many(documents, ordered=False)


# ----------------------------------------------------------------------- reads


async def api_read_load(bench: Bench, docs: int, clients: int) -> CappedLoad:
    connections = [await HttpConnection.open(bench.server.base) for _ in range(clients)]
    idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
    for connection in connections:
        idle.put_nowait(connection)
    path = f"/api/crud?database_id={bench.database_id}&collection_name=users&filters="

    async def read() -> None:
        email = f"user{random.randrange(docs):07d}@example.com"
        connection = await idle.get()
        status, body = await connection.request(
            "GET", path + quote(json.dumps({"email": email})), headers=bench.headers
        )
        idle.put_nowait(connection)
        assert status == 200 and email.encode() in body, body[:300]

    try:
        result = await capped_loop(read, concurrency=clients, seconds=SECONDS, cap=bench.budget)
    finally:
        for connection in connections:
            await connection.close()
    if result.stopped:
        await recover(bench)
    return result


async def raw_read_load(bench: Bench, docs: int, clients: int) -> CappedLoad:
    users = bench.collection("users")

    async def read() -> None:
        email = f"user{random.randrange(docs):07d}@example.com"
        assert await users.find_one({"email": email}) is not None

    result = await capped_loop(read, concurrency=clients, seconds=SECONDS, cap=bench.budget)
    if result.stopped:
        await recover(bench)
    return result


async def reads(bench: Bench) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    loaded = 0
    for docs in READ_SIZES:
        await load(bench, "users", range(loaded, docs), make_document, FIELDS)
        loaded = docs
        for clients in CLIENTS:
            _progress(f"{bench.backend}: unique reads at {docs:,} docs, {clients} clients")
            figures[f"read_{docs}_{clients}"] = {
                "api": await api_read_load(bench, docs, clients),
                "raw": await raw_read_load(bench, docs, clients),
            }
    return figures


# ------------------------------------------------------------- page and count


async def api_median(
    bench: Bench, method: str, path: str, check: Callable[[Any], bool], **kwargs: Any
) -> float | None:
    async def once() -> float | None:
        seconds, response = await api_request(bench, method, path, **kwargs)
        if response is not None:
            assert response.status_code == 200 and check(response.json()), response.text[:300]
        return seconds

    return await median_of(once)


async def raw_median(bench: Bench, operation: Callable[[], Awaitable[object]]) -> float | None:
    async def once() -> float | None:
        seconds, _ = await timed(operation, bench.budget)
        if seconds is None:
            await recover(bench)
        return seconds

    return await median_of(once)


async def page_and_counts(bench: Bench) -> dict[str, Any]:
    _progress(f"{bench.backend}: sorted range page and counts")
    users = bench.collection("users")
    params = {
        **bench.target("users"),
        "filters": json.dumps(SCORE_RANGE),
        "sort": json.dumps({"score": -1}),
        "page_size": PAGE_SIZE,
    }

    def full_page(answer: Any) -> bool:
        return len(answer["data"]) == PAGE_SIZE

    figures: dict[str, Any] = {
        "page_api_s": await api_median(bench, "GET", "/api/crud", full_page, params=params),
        "page_raw_s": await raw_median(
            bench, lambda: users.find(SCORE_RANGE).sort("score", -1).limit(PAGE_SIZE).to_list()
        ),
    }
    for name, query in (("all", {}), ("range", SCORE_RANGE)):
        expected = await users.count_documents(query)
        figures[f"count_{name}_api_s"] = await api_median(
            bench,
            "POST",
            "/api/crud/count",
            lambda answer, expected=expected: answer["count"] == expected,
            json={**bench.target("users"), "filters": query},
        )
        figures[f"count_{name}_raw_s"] = await raw_median(
            bench, lambda query=query: users.count_documents(query)
        )
        figures[f"count_{name}"] = expected
    return figures


# --------------------------------------------------------------------- updates


def update_query(n: int) -> tuple[Document, Document]:
    return {"price": {"$lt": n}}, {"$inc": {"price": 1}}


async def raw_update(bench: Bench, n: int) -> dict[str, Any]:
    items = bench.collection(f"items_raw_{n}")
    seconds, result = await timed(lambda: items.update_many(*update_query(n)), bench.budget)
    if seconds is None:
        await recover(bench)
    return {"seconds": seconds, "matched_count": None if result is None else result.matched_count}


async def api_update(bench: Bench, n: int) -> dict[str, Any]:
    query, change = update_query(n)
    body = {**bench.target(f"items_api_{n}"), "filters": query, "update_data": change}
    seconds, response = await api_request(bench, "PATCH", "/api/crud", json=body)
    if response is None:
        return {"seconds": None}
    outcome = {"seconds": seconds, "status": response.status_code}
    if response.status_code == 200:
        return {**outcome, "matched_count": response.json()["matched_count"]}
    return {**outcome, "answer": response.text[:500]}


async def updates(bench: Bench) -> dict[str, Any]:
    for side in SIDES:
        for n in UPDATE_SIZES:
            await load(bench, f"items_{side}_{n}", range(UPDATE_DOCS), item, ITEM_FIELDS)
    figures: dict[str, Any] = {}
    last: dict[str, dict[str, Any]] = {}
    for n in UPDATE_SIZES:
        _progress(f"{bench.backend}: update_many of {n:,} of {UPDATE_DOCS:,}")
        for side, update in (("raw", raw_update), ("api", api_update)):
            if side in last and last[side]["seconds"] is None:
                # A bigger update of the same documents would only be stopped later.
                last[side] = {"seconds": None, "not_run": True}
            else:
                last[side] = await update(bench, n)
        figures[f"update_{n}"] = dict(last)
    return figures


# --------------------------------------------------------------------- imports


def imports(engine: EmbeddedEngine, env: dict[str, str], files: ImportFiles) -> dict[str, Any]:
    backend, mongodb_url = engine.backend, engine.url
    cap = CAP if backend == "sqlite" else None
    figures: dict[str, Any] = {}
    for size in IMPORT_SIZES:
        if backend == "sqlite" and size > SQLITE_IMPORT_LIMIT and not FULL:
            figures[f"import_{size}"] = {"skipped": True}
            continue
        path = files.get(size)
        _progress(f"{backend}: import of {size:,} docs")
        pids: list[int] = []
        with served_api(mongodb_url, pids=pids, extra_env=env) as api:
            try:
                api_seconds: float | None = asyncio.run(
                    api_import(api, path, budget=cap or NO_CAP)
                )[0]
            except httpx.TimeoutException:
                api_seconds = None
            rss = peak_rss_mib(pids[0])
            if api_seconds is None:
                os.kill(pids[0], signal.SIGKILL)  # the import would run on in it
        if api_seconds is None:
            restart_engine(engine)
        raw_seconds, raw_inserted = asyncio.run(raw_insert(mongodb_url, size, budget=cap))
        if raw_inserted < size:
            restart_engine(engine)
        figures[f"import_{size}"] = {
            "api_seconds": api_seconds,
            "raw_seconds": raw_seconds,
            "raw_inserted": raw_inserted,
            "peak_rss_mib": rss,
            "file_bytes": path.stat().st_size,
        }
    return figures


class ImportFiles:
    """The JSON Lines files of the imports, written once for all backends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.paths: dict[int, Path] = {}

    def get(self, size: int) -> Path:
        if size not in self.paths:
            path = self.directory / f"events_{size}.ndjson"
            write_import_file(path, size)
            self.paths[size] = path
        return self.paths[size]


# ----------------------------------------------------------------- per backend


async def measure(engine: EmbeddedEngine, env: dict[str, str]) -> dict[str, Any]:
    backend, mongodb_url = engine.backend, engine.url
    cap = CAP if backend == "sqlite" else None
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        mongodb_url,
        maxPoolSize=max(CLIENTS),
        tz_aware=True,
        socketTimeoutMS=cap * 1000 if cap else None,
    )
    server = Server(mongodb_url, env)
    server.start()
    try:
        bench = Bench(backend, cap, engine, server, client)
        async with httpx.AsyncClient(base_url=server.base, timeout=60) as http:
            bench.database_id, bench.headers = await create_account(
                http, db_name="engine_bench", collections=COLLECTIONS
            )
        bench.db_name = await physical_name(client, env["QUARRY_CONTROL_DB"], bench.database_id)
        return {**await reads(bench), **await page_and_counts(bench), **await updates(bench)}
    finally:
        server.close()
        await client.close()


def measure_backend(backend: str, files: ImportFiles) -> dict[str, Any]:
    started = time.perf_counter()
    env = server_env(backend, secrets.token_urlsafe(48))
    with embedded_engine(backend) as engine:
        env.update(engine_env(engine))
        figures = asyncio.run(measure(engine, env))
        figures.update(imports(engine, env, files))
    figures["seconds"] = time.perf_counter() - started
    _progress(f"{backend}: done in {figures['seconds']:.0f} s")
    return figures


# ------------------------------------------------------------------------ rows


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def _stopped(seconds: float | None = None) -> str:
    """A figure cut off at the cap, or one that had run `seconds` when it was."""
    return f"> {CAP:g} s (stopped)" if seconds is None else f"> {_duration(seconds)} (stopped)"


def _timing(seconds: float | None) -> str:
    return _stopped() if seconds is None else _duration(seconds)


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _speed_ratio(api_seconds: float | None, raw_seconds: float | None) -> str:
    if api_seconds is None or raw_seconds is None:
        return "-"
    return f"{raw_seconds / api_seconds:.2f}"


def _latencies(result: CappedLoad) -> str:
    def one(ms: float, stopped: bool) -> str:
        return _stopped(ms / 1000) if stopped else _duration(ms / 1000)

    text = (
        f"p50 {one(result.p50_ms, result.p50_stopped)}, "
        f"p99 {one(result.p99_ms, result.p99_stopped)}, {_rate(result.throughput)} req/s"
    )
    return text + (f", {result.stopped} stopped" if result.stopped else "")


def _clients(docs: int, clients: int) -> str:
    return f"{docs // 1000}k, {clients} client{'s' * (clients > 1)}"


def _read_rows(backend: str, figures: dict[str, Any]) -> list[Row]:
    rows = []
    for docs in READ_SIZES:
        for clients in CLIENTS:
            api, raw = (
                figures[f"read_{docs}_{clients}"]["api"],
                figures[f"read_{docs}_{clients}"]["raw"],
            )
            ratio = f"{api.throughput / raw.throughput:.2f}" if raw.throughput else "-"
            goal = "p99 < 25 ms" if backend == "postgresql" and clients > 1 else ""
            rows.append(
                Row(
                    f"unique read {_clients(docs, clients)} [{backend}]",
                    _latencies(api),
                    _latencies(raw),
                    ratio,
                    goal,
                )
            )
    return rows


def _backend_ratio(fast: CappedLoad, slow: CappedLoad) -> str:
    if slow.requests == 0:
        # Not one request in slow.seconds: the slow side's rate is below 1 / that.
        return f"> {fast.throughput * slow.seconds:,.0f}x"
    return f"{fast.throughput / slow.throughput:,.0f}x"


def _ratio_rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    if not {"postgresql", "sqlite"} <= results.keys():
        return []
    rows = []
    docs = READ_SIZES[-1]
    for clients in CLIENTS:
        pg, sq = (results[b][f"read_{docs}_{clients}"] for b in ("postgresql", "sqlite"))
        rows.append(
            Row(
                f"unique read {_clients(docs, clients)}: postgresql ÷ sqlite req/s",
                _backend_ratio(pg["api"], sq["api"]),
                _backend_ratio(pg["raw"], sq["raw"]),
                "-",
                "≥ 50x (Quarry)",
            )
        )
    return rows


def _update_row(backend: str, n: int, entry: dict[str, Any]) -> Row:
    api, raw = entry["api"], entry["raw"]

    def text(side: dict[str, Any]) -> str:
        if side.get("not_run"):
            return f"not run (a smaller one was {_stopped()})"
        if side["seconds"] is None:
            return _stopped()
        status = f", {side['status']}" if "status" in side else ""
        if "answer" in side:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                status += f" {json.loads(side['answer'])['error_code']}"
            return f"{_duration(side['seconds'])}{status}"
        return f"{_duration(side['seconds'])}{status}, matched {side['matched_count']:,}"

    goal = "200 in < 2 s" if backend == "postgresql" and n == UPDATE_SIZES[0] else ""
    return Row(
        f"update_many {n:,} of {UPDATE_DOCS:,} [{backend}]",
        text(api),
        text(raw),
        _speed_ratio(api["seconds"], raw["seconds"]),
        goal,
    )


def _import_row(backend: str, size: int, entry: dict[str, Any]) -> Row:
    figure = f"import {size:,} docs, docs/s [{backend}]"
    if entry.get("skipped"):
        return Row(figure, "skipped (QUARRY_BENCH_ENGINE_FULL=1 runs it)", "", "", "≥ 0.80")
    raw_rate = entry["raw_inserted"] / entry["raw_seconds"]
    raw = _rate(raw_rate)
    if entry["raw_inserted"] < size:
        raw += f" ({entry['raw_inserted']:,} docs in the {CAP:g} s cap)"
    rss = f"peak RSS {entry['peak_rss_mib']:.0f} MiB"
    if entry["api_seconds"] is None:
        # Not done within the cap: slower than the whole file in that time.
        bound = size / CAP
        return Row(
            figure,
            f"< {_rate(bound)} (not done in {CAP:g} s, stopped), {rss}",
            raw,
            f"< {bound / raw_rate:.2f}",
            "≥ 0.80",
        )
    api_rate = size / entry["api_seconds"]
    return Row(figure, f"{_rate(api_rate)}, {rss}", raw, f"{api_rate / raw_rate:.2f}", "≥ 0.80")


def rows_for(results: dict[str, dict[str, Any]]) -> list[Row]:
    """Each figure's rows for every backend, one below the other."""
    backends = list(results)
    at = f"{READ_SIZES[-1] // 1000}k"
    rows: list[Row] = []
    for index in range(len(READ_SIZES) * len(CLIENTS)):
        rows += [_read_rows(b, results[b])[index] for b in backends]
    rows += _ratio_rows(results)
    for b in backends:
        f = results[b]
        rows.append(
            Row(
                f"sorted range page of {PAGE_SIZE} at {at} (API: + total count) [{b}]",
                _timing(f["page_api_s"]),
                _timing(f["page_raw_s"]),
                _speed_ratio(f["page_api_s"], f["page_raw_s"]),
                "",
            )
        )
    for name, label in (("all", "{}"), ("range", "score range")):
        for b in backends:
            f = results[b]
            rows.append(
                Row(
                    f"count {label} at {at} (= {f[f'count_{name}']:,}) [{b}]",
                    _timing(f[f"count_{name}_api_s"]),
                    _timing(f[f"count_{name}_raw_s"]),
                    _speed_ratio(f[f"count_{name}_api_s"], f[f"count_{name}_raw_s"]),
                    "",
                )
            )
    for n in UPDATE_SIZES:
        rows += [_update_row(b, n, results[b][f"update_{n}"]) for b in backends]
    for size in IMPORT_SIZES:
        rows += [_import_row(b, size, results[b][f"import_{size}"]) for b in backends]
    return rows


def _plain(value: Any) -> Any:
    """The figures as JSON-ready values (load results as dicts)."""
    if isinstance(value, CappedLoad):
        return asdict(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@contextlib.contextmanager
def _import_files() -> Iterator[ImportFiles]:
    with tempfile.TemporaryDirectory(prefix="quarry-bench-engine-") as tmp:
        yield ImportFiles(Path(tmp))


def run_all() -> tuple[list[Row], dict[str, Any]]:
    if os.environ.get("QUARRY_BENCH_MONGODB_URL"):
        skipped = "skipped (QUARRY_BENCH_MONGODB_URL is set)"
        return [Row("engine backends, postgresql vs sqlite", skipped, "", "", "")], {}
    results: dict[str, dict[str, Any]] = {}
    with _import_files() as files:
        for backend in BACKENDS:
            results[backend] = measure_backend(backend, files)
    return rows_for(results), {
        "engine": {"cap_seconds": CAP, "full": FULL, "backends": _plain(results)}
    }
