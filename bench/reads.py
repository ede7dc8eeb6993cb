"""Reads through the documents API (issue #25, `python -m bench reads`): the shapes
users send, on a collection whose schema declares typed indexes, at 100,000 and
1,000,000 documents, each beside the same query run as raw SQL on the same index
(the read planner's own statement, `app.engine.planned_reads`: the physical limit
here) and, up to `RAW_DRIVER_UP_TO` documents, beside the raw driver (PyMongo
straight to FerretDB on the same collection, capped per shape).

On a fresh embedded engine of its own (PostgreSQL; the planner needs it), served
as its data directory's (`engine_env`), a collection `items` is created through
`POST /api/create_database` with `sku` (string, unique), `price` (float, index),
`qty` (int, index), `created` (date, index) and unindexed `category`, `name`,
`views`, `note`, and filled by `POST /api/import_data` of an NDJSON file — timed,
beside raw `insert_many` of the same typed documents into a collection with the
same unique index (the import's goal, with the typed indexes maintained). Before
any read is timed the typed indexes are checked valid in PostgreSQL's catalog and
the builder idle (`wait_for_typed_indexes`), and the table is analysed (what
autovacuum does within a minute of a fill).

Per shape (`SHAPES`, `GET /api/crud`, 20 per page; `POST /api/crud/count`):
`RUNS` sequential requests, p50/p90 (1 client), then 32 clients for `SECONDS`
with `wrk` (a Lua script per shape; requests/s, p50/p99) — or, without `wrk`, an
in-process 32-way asyncio client, and the table says so. Then cursor iteration of
the whole collection (`after=next_cursor`, 1,000 per page) in documents/s,
`update_many` `$inc` of exactly 1,000 documents (`PUT /api/crud`), and a
duplicate `sku` refused with 409. The single-document update with the write door
is `python -m bench writes` (bench/writes.py), not repeated here.

Environment: `QUARRY_BENCH_READS_SIZES` (default `100000,1000000`),
`QUARRY_BENCH_READS_RUNS` (sequential requests per shape, default 30),
`QUARRY_BENCH_READS_SECONDS` (32-client run per shape, default 5),
`QUARRY_BENCH_READS_RAW_CAP` (seconds the raw driver gets per shape, at most 3
attempts, default 30). Skipped when `QUARRY_BENCH_MONGODB_URL` is set.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
from psycopg import sql
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from app.db import FindSpec
from app.engine import EmbeddedEngine
from app.engine.planned_reads import (
    PlannerStats,
    Prepared,
    prepare_count,
    prepare_find,
    rows_counted,
)
from app.engine.planner import FAMILY_OF_SCHEMA_TYPE
from app.engine.typed_indexes import KeyCatalog
from app.schema import compile_filter, compile_schema
from bench.crud import create_account, physical_name
from bench.harness import (
    BACKEND,
    RESULTS,
    HttpConnection,
    Row,
    closed_loop,
    control_db,
    embedded_engine,
    engine_env,
    print_table,
    served_api,
)
from bench.management import import_file, raw_insert, write_import_file
from data_api.documents.query import parse_sort

SIZES = tuple(
    int(size)
    for size in os.environ.get("QUARRY_BENCH_READS_SIZES", "100000,1000000").split(",")
    if size.strip()
)
RUNS = int(os.environ.get("QUARRY_BENCH_READS_RUNS", "30"))
SECONDS = float(os.environ.get("QUARRY_BENCH_READS_SECONDS", "5"))
RAW_CAP = float(os.environ.get("QUARRY_BENCH_READS_RAW_CAP", "30"))
RAW_ATTEMPTS = 3
#: The raw driver (FerretDB evaluating the query itself) is compared up to this size.
RAW_DRIVER_UP_TO = 100_000
CLIENTS = 32
PAGE_SIZE = 20
ITERATION_PAGE = 1000
UPDATED = 1000
COLLECTION = "items"
FIELDS: list[dict[str, Any]] = [
    {"name": "sku", "type": "string", "required": True, "unique": True},
    {"name": "price", "type": "float", "index": True},
    {"name": "qty", "type": "int", "index": True},
    {"name": "created", "type": "date", "index": True},
    {"name": "category", "type": "string"},
    {"name": "name", "type": "string"},
    {"name": "views", "type": "int"},
    {"name": "note", "type": "string"},
]
#: Indexed fields → the key family their typed index has (what the planner serves).
TYPED = {
    f["name"]: FAMILY_OF_SCHEMA_TYPE[f["type"]] for f in FIELDS if f.get("index") or f.get("unique")
}
START = datetime(2021, 1, 1, tzinfo=UTC)
SPAN_SECONDS = 3 * 365 * 86_400
_MASK = 2**64 - 1


def _mix(i: int, salt: int) -> int:
    """A well-spread, repeatable number for document `i` (splitmix64's finaliser):
    the import file and the raw insert make the same documents without a shared
    random state."""
    x = ((i << 3) + salt) * 0x9E3779B97F4A7C15 & _MASK
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return x ^ (x >> 31)


def catalogue_document(i: int) -> dict[str, Any]:
    created = START + timedelta(seconds=_mix(i, 3) % SPAN_SECONDS)
    return {
        "sku": f"SKU-{i:08d}",
        "price": (_mix(i, 1) % 100_000) / 100,  # 0.00-999.99: price < 100 is 10%
        "qty": _mix(i, 2) % 10_000,
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "category": f"c{_mix(i, 4) % 50}",
        "name": f"Product number {i:08d}",
        "views": 0,
        "note": "lorem ipsum dolor sit amet " * (1 + _mix(i, 5) % 4),
    }


@dataclass(frozen=True)
class Shape:
    """One read a user sends: a find page (`GET /api/crud`) or a count."""

    name: str
    filters: dict[str, Any] = field(default_factory=dict)
    sort: dict[str, int] | None = None
    page: int = 1
    count: bool = False

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"page": self.page, "page_size": PAGE_SIZE}
        if self.filters:
            params["filters"] = json.dumps(self.filters)
        if self.sort:
            params["sort"] = json.dumps(self.sort)
        return params


SHAPES = [
    Shape("unfiltered page 1"),
    Shape("unfiltered page 200", page=200),
    Shape("sort price desc + limit 20", sort={"price": -1}),
    Shape(
        "range created (30 days) + sort created",
        filters={"created": {"$gte": "2022-01-01T00:00:00Z", "$lt": "2022-01-31T00:00:00Z"}},
        sort={"created": 1},
    ),
    Shape(
        "$in qty (5 values) + sort price desc",
        filters={"qty": {"$in": [7, 77, 777, 4242, 7777]}},
        sort={"price": -1},
    ),
    Shape(
        "$or qty < 10 / price >= 999, sort created desc",
        filters={"$or": [{"qty": {"$lt": 10}}, {"price": {"$gte": 999.0}}]},
        sort={"created": -1},
    ),
    Shape("filtered count, price < 100 (10%)", filters={"price": {"$lt": 100}}, count=True),
]
#: Matches `UPDATED` documents whatever the size (`sku` is the document's number).
UPDATE_FILTER = {"sku": {"$gte": "SKU-00000000", "$lt": f"SKU-{UPDATED:08d}"}}


# ----------------------------------------------------------------- measuring


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def sequential(call: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    """Milliseconds of `runs` calls one after the other — fewer (at least 3) when
    they have taken `RAW_CAP` seconds: a read FerretDB answers takes seconds."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < runs:
        if len(times) >= RAW_ATTEMPTS and time.perf_counter() - started > RAW_CAP:
            break
        began = time.perf_counter()
        await call()
        times.append((time.perf_counter() - began) * 1000)
    return times


async def capped(call: Callable[[], Awaitable[object]]) -> tuple[list[float], bool]:
    """Milliseconds of up to `RAW_ATTEMPTS` calls within `RAW_CAP` seconds in all, and
    whether the cap stopped them (the raw driver takes seconds a query here)."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < RAW_ATTEMPTS:
        remaining = RAW_CAP - (time.perf_counter() - started)
        if remaining <= 0:
            return times, True
        began = time.perf_counter()
        try:
            await asyncio.wait_for(call(), remaining)
        except TimeoutError:
            return times, True
        times.append((time.perf_counter() - began) * 1000)
    return times, False


def summary(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(times),
        "p90_ms": percentile(times, 0.9),
        "runs": len(times),
    }


# --------------------------------------------------------------- the engine side


async def table_of(connection: psycopg.AsyncConnection[Any], db_name: str, collection: str) -> str:
    """FerretDB's table of the collection."""
    cursor = await connection.execute(
        sql.SQL(
            "SELECT _jsonb ->> 'table' FROM {}._ferretdb_database_metadata "
            "WHERE _jsonb ->> '_id' = %s"
        ).format(sql.Identifier(db_name)),
        (collection,),
    )
    row = await cursor.fetchone()
    assert row is not None, f"no table for {db_name}.{collection}"
    return str(row[0])


async def wait_for_typed_indexes(owner: str, db_name: str, *, most: float = 1800) -> float:
    """Seconds until every typed index of `items` is valid (as the planner reads the
    catalog) and the builder has left the database; then the table is analysed."""
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(owner, autocommit=True) as connection:
        table = await table_of(connection, db_name, COLLECTION)
        while True:
            keys = await KeyCatalog().keys(connection, db_name, table)
            await connection.execute("SELECT pg_stat_clear_snapshot()")
            cursor = await connection.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = quarry_typed_index_builder(%s) AND state = 'active'",
                (db_name,),
            )
            row = await cursor.fetchone()
            building = bool(row and row[0])
            if keys.id_order and dict(keys.fields) == TYPED and not building:
                break
            if time.perf_counter() - started > most:
                raise RuntimeError(f"typed indexes of {db_name} not built in {most:.0f} s")
            await asyncio.sleep(0.5)
        waited = time.perf_counter() - started
        await connection.execute(
            sql.SQL("ANALYZE {}").format(sql.Identifier(db_name, table)), prepare=False
        )
    return waited


@dataclass
class Statements:
    """The planner's statements for the shapes, on the reader's connection."""

    connection: psycopg.AsyncConnection[Any]
    db_name: str
    table: str
    finds: dict[str, Prepared | None]
    counts: dict[str, Prepared | None]
    unfiltered_count: sql.Composed

    @classmethod
    async def prepare(cls, reader: str, db_name: str) -> Statements:
        """What the documents service asks the adapter for (filter compiled by the
        schema, sort with `_id` last, `page_size + 1` documents from the page's
        offset), planned the way the adapter plans it."""
        connection = await psycopg.AsyncConnection.connect(
            reader, autocommit=True, options="-c default_transaction_read_only=on"
        )
        table = await table_of(connection, db_name, COLLECTION)
        keys = await KeyCatalog().keys(connection, db_name, table)
        schema = compile_schema(FIELDS)
        stats = PlannerStats()
        finds: dict[str, Prepared | None] = {}
        counts: dict[str, Prepared | None] = {}
        for shape in SHAPES:
            query = compile_filter(shape.filters, schema)
            if query:
                counts[shape.name] = prepare_count(
                    keys, stats, schema=db_name, table=table, filter=query
                )
            if shape.count:
                continue
            spec = FindSpec(
                filter=query,
                sort=parse_sort(json.dumps(shape.sort) if shape.sort else None),
                skip=(shape.page - 1) * PAGE_SIZE,
                limit=PAGE_SIZE + 1,
            )
            finds[shape.name] = prepare_find(keys, stats, schema=db_name, table=table, spec=spec)
        unfiltered = sql.SQL("SELECT {}").format(rows_counted(db_name, table))
        return cls(connection, db_name, table, finds, counts, unfiltered)

    def statements(self, shape: Shape) -> dict[str, tuple[sql.Composable, dict[str, Any]] | None]:
        """The statements the API's answer to `shape` runs: the find and the count
        (a first page counts every match unless it is the last page)."""
        out: dict[str, tuple[sql.Composable, dict[str, Any]] | None] = {}
        if not shape.count:
            found = self.finds[shape.name]
            out["find"] = None if found is None else (found.statement, found.params)
        if shape.filters:
            counted = self.counts[shape.name]
            out["count"] = None if counted is None else (counted.statement, counted.params)
        else:
            out["count"] = (self.unfiltered_count, {})
        return out

    async def time(self, statement: sql.Composable, params: dict[str, Any]) -> list[float]:
        async def run() -> None:
            cursor = await self.connection.execute(statement, params)
            await cursor.fetchall()

        await run()
        return await sequential(run, RUNS)

    async def explain(self, statement: sql.Composable, params: dict[str, Any]) -> str:
        cursor = await self.connection.execute(
            sql.SQL("EXPLAIN (ANALYZE, BUFFERS) {}").format(statement), params
        )
        return "\n".join(str(row[0]) for row in await cursor.fetchall())


# -------------------------------------------------------------- the API side


@dataclass(frozen=True)
class Api:
    base: str
    database_id: str
    headers: dict[str, str]

    def find_path(self, shape: Shape, **extra: Any) -> str:
        target = {"database_id": self.database_id, "collection_name": COLLECTION}
        return "/api/crud?" + urlencode({**target, **shape.params(), **extra})

    def count_body(self, shape: Shape) -> bytes:
        return json.dumps(
            {
                "database_id": self.database_id,
                "collection_name": COLLECTION,
                "filters": shape.filters,
            }
        ).encode()


async def timed_requests(
    api: Api, method: str, path: str, *, body: bytes = b"", status: int = 200
) -> tuple[list[float], bytes]:
    """Milliseconds of `RUNS` requests on one keep-alive connection (after one
    untimed), each answered `status`, and the last answer's body."""
    connection = await HttpConnection.open(api.base)
    headers = {**api.headers, "Content-Type": "application/json"} if body else api.headers
    answer = b""

    async def one() -> None:
        nonlocal answer
        answered, answer = await connection.request(method, path, body=body, headers=headers)
        assert answered == status, answer[:300]

    try:
        await one()
        return await sequential(one, RUNS), answer
    finally:
        await connection.close()


async def api_sequential(api: Api, shape: Shape) -> tuple[list[float], int]:
    """Milliseconds of `RUNS` requests (after one untimed) and what one answered
    (documents on the page, or the count)."""
    if shape.count:
        times, answer = await timed_requests(
            api, "POST", "/api/crud/count", body=api.count_body(shape)
        )
        return times, int(json.loads(answer)["count"])
    times, answer = await timed_requests(api, "GET", api.find_path(shape))
    return times, len(json.loads(answer)["data"])


_WRK_SCRIPT = """wrk.method = "{method}"
wrk.body = [==[{body}]==]
wrk.headers["Authorization"] = [==[{authorization}]==]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d %d\\n", summary.requests,
    summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_run(api: Api, shape: Shape, scratch: Path) -> dict[str, Any]:
    """`wrk` with one thread and `CLIENTS` connections for `SECONDS` on `shape`."""
    script = scratch / "shape.lua"
    script.write_text(
        _WRK_SCRIPT.format(
            method="POST" if shape.count else "GET",
            body=api.count_body(shape).decode() if shape.count else "",
            authorization=api.headers["Authorization"],
        )
    )
    path = "/api/crud/count" if shape.count else api.find_path(shape)
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{CLIENTS}",
            f"-d{SECONDS:g}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            api.base + path,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_RESULT"))
    requests, duration_us, errors, non_2xx, p50_us, p99_us = (int(v) for v in line.split()[1:])
    return {
        "tool": "wrk",
        "requests": requests,
        "throughput": requests / (duration_us / 1e6),
        "p50_ms": p50_us / 1000,
        "p99_ms": p99_us / 1000,
        "errors": errors,
        "non_2xx": non_2xx,
    }


async def asyncio_run(api: Api, shape: Shape) -> dict[str, Any]:
    """The in-process fallback for `wrk`: `CLIENTS` keep-alive connections."""
    idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
    for _ in range(CLIENTS):
        idle.put_nowait(await HttpConnection.open(api.base))
    failures = 0

    async def one() -> None:
        nonlocal failures
        connection = await idle.get()
        if shape.count:
            status, _ = await connection.request(
                "POST",
                "/api/crud/count",
                body=api.count_body(shape),
                headers={**api.headers, "Content-Type": "application/json"},
            )
        else:
            status, _ = await connection.request("GET", api.find_path(shape), headers=api.headers)
        idle.put_nowait(connection)
        failures += status != 200

    result = await closed_loop(one, concurrency=CLIENTS, seconds=SECONDS)
    while not idle.empty():
        await idle.get_nowait().close()
    return {"tool": "asyncio", **vars(result), "errors": 0, "non_2xx": failures}


async def api_iteration(api: Api) -> dict[str, Any]:
    """Documents/s of paging the whole collection by cursor, `ITERATION_PAGE` a page."""
    documents = pages = 0
    after: str | None = None
    async with httpx.AsyncClient(base_url=api.base, timeout=600) as http:
        started = time.perf_counter()
        while True:
            params: dict[str, Any] = {
                "database_id": api.database_id,
                "collection_name": COLLECTION,
                "page_size": ITERATION_PAGE,
            }
            if after:
                params["after"] = after
            response = await http.get("/api/crud", params=params, headers=api.headers)
            assert response.status_code == 200, response.text[:300]
            answer = response.json()
            documents += len(answer["data"])
            pages += 1
            after = answer["pagination"]["next_cursor"]
            if not after:
                break
        seconds = time.perf_counter() - started
    return {
        "documents": documents,
        "pages": pages,
        "seconds": seconds,
        "docs_per_s": documents / seconds,
    }


async def api_update_many(api: Api) -> list[float]:
    body = {
        "database_id": api.database_id,
        "collection_name": COLLECTION,
        "filters": UPDATE_FILTER,
        "update_data": {"$inc": {"views": 1}},
        "multi": True,
    }
    times: list[float] = []
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=api.base, timeout=3600) as http:
        while len(times) < RAW_ATTEMPTS and (not times or time.perf_counter() - started < RAW_CAP):
            began = time.perf_counter()
            response = await http.put("/api/crud", json=body, headers=api.headers)
            times.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, response.text[:300]
            assert response.json()["matched_count"] == UPDATED, response.text[:300]
    return times


async def api_by_id(api: Api) -> list[float]:
    """`GET /api/crud/{id}` of one document: what every request pays besides its
    query (authentication, the database's record, the collection's schema)."""
    async with httpx.AsyncClient(base_url=api.base, timeout=60) as http:
        page = await http.get(api.find_path(SHAPES[0]), headers=api.headers)
    document_id = page.json()["data"][0]["_id"]
    target = urlencode({"database_id": api.database_id, "collection_name": COLLECTION})
    times, _ = await timed_requests(api, "GET", f"/api/crud/{document_id}?{target}")
    return times


async def api_duplicate(api: Api) -> list[float]:
    """A document whose `sku` is taken: refused with 409."""
    document = catalogue_document(5)
    body = {"database_id": api.database_id, "collection_name": COLLECTION, "data": document}
    times, _ = await timed_requests(
        api, "POST", "/api/crud", body=json.dumps(body).encode(), status=409
    )
    return times


# ---------------------------------------------------------------- one size


async def _raw_driver(
    client: AsyncMongoClient[dict[str, Any]], db_name: str, size: int
) -> dict[str, Any]:
    """The shapes, the iteration, the update and the refusal by PyMongo straight to
    FerretDB on the collection the API reads, each capped."""
    items = client[db_name][COLLECTION]
    schema = compile_schema(FIELDS)
    figures: dict[str, Any] = {}
    for shape in SHAPES:
        query = compile_filter(shape.filters, schema)
        if shape.count:

            async def call(q: dict[str, Any] = query) -> object:
                return await items.count_documents(q)

        else:
            keys = parse_sort(json.dumps(shape.sort) if shape.sort else None)
            skip = (shape.page - 1) * PAGE_SIZE

            async def call(
                q: dict[str, Any] = query, k: list[tuple[str, int]] = keys, s: int = skip
            ) -> object:
                return await items.find(q, sort=k, skip=s, limit=PAGE_SIZE + 1).to_list()

        times, stopped = await capped(call)
        figures.setdefault("shapes", {})[shape.name] = {"times_ms": times, "capped": stopped}

    counted = 0

    async def iterate() -> None:
        nonlocal counted
        counted = 0
        async for _ in items.find({}, batch_size=ITERATION_PAGE):
            counted += 1

    times, stopped = await capped(iterate)
    figures["iteration"] = {
        "times_ms": times,
        "capped": stopped,
        "docs_per_s": size / (statistics.median(times) / 1000) if times else None,
    }
    update = compile_filter(UPDATE_FILTER, schema)

    async def update_many() -> None:
        result = await items.update_many(update, {"$inc": {"views": 1}})
        assert result.matched_count == UPDATED

    times, stopped = await capped(update_many)
    figures["update_many"] = {"times_ms": times, "capped": stopped}
    duplicate = schema.validate(catalogue_document(5))[0]

    async def refused() -> None:
        try:
            await items.insert_one(dict(duplicate or {}))
        except DuplicateKeyError:
            return
        raise AssertionError("the duplicate sku was accepted")

    figures["duplicate"] = summary(await sequential(refused, RUNS))
    return figures


async def _measure(api: Api, engine: EmbeddedEngine, size: int, scratch: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {"size": size}
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(engine.url, tz_aware=True)
    try:
        db_name = await physical_name(client, control_db(api.base), api.database_id)
        owner, reader = engine.superuser_conninfo(), engine.postgres_conninfo()
        assert owner and reader, "the read planner needs the engine's PostgreSQL"
        path = scratch / "items.ndjson"
        file_bytes = write_import_file(path, size, catalogue_document)
        async with httpx.AsyncClient(base_url=api.base, timeout=3600) as http:
            seconds, inserted = await import_file(
                http,
                database_id=api.database_id,
                collection=COLLECTION,
                path=path,
                headers=api.headers,
            )
        path.unlink()
        assert inserted == size, (inserted, size)
        figures["import"] = {
            "seconds": seconds,
            "docs_per_s": size / seconds,
            "file_bytes": file_bytes,
        }
        print(f"reads: {size:,} documents imported in {seconds:.1f} s", flush=True)
        figures["typed_indexes_wait_s"] = await wait_for_typed_indexes(owner, db_name)
        raw_seconds, _ = await raw_insert(
            engine.url, size, fields=FIELDS, document=catalogue_document, unique=("sku",)
        )
        figures["import"]["raw_seconds"] = raw_seconds
        figures["import"]["raw_docs_per_s"] = size / raw_seconds
        print(f"reads: raw insert_many of {size:,} in {raw_seconds:.1f} s", flush=True)

        statements = await Statements.prepare(reader, db_name)
        shapes: dict[str, Any] = {}
        for shape in SHAPES:
            times, answered = await api_sequential(api, shape)
            entry: dict[str, Any] = {"api": summary(times), "answered": answered, "sql": {}}
            for kind, statement in statements.statements(shape).items():
                if statement is None:
                    entry["sql"][kind] = "not planned: FerretDB answers"
                    continue
                plan = await statements.explain(*statement)
                entry["sql"][kind] = {
                    **summary(await statements.time(*statement)),
                    # The guards always read the typed indexes; the answer may not.
                    "seq_scan": "Seq Scan" in plan,
                    "explain": plan,
                }
            if shutil.which("wrk"):
                entry["clients"] = await asyncio.to_thread(wrk_run, api, shape, scratch)
            else:
                entry["clients"] = await asyncio_run(api, shape)
            shapes[shape.name] = entry
            print(f"reads: {shape.name}: p50 {entry['api']['p50_ms']:.1f} ms", flush=True)
        figures["shapes"] = shapes
        await statements.connection.close()
        figures["by_id"] = summary(await api_by_id(api))
        figures["iteration"] = await api_iteration(api)
        figures["update_many"] = summary(await api_update_many(api))
        figures["duplicate"] = summary(await api_duplicate(api))
        if size <= RAW_DRIVER_UP_TO:
            figures["raw_driver"] = await _raw_driver(client, db_name, size)
    finally:
        await client.close()
    return figures


def measure_size(size: int) -> dict[str, Any]:
    """One size on an engine and server of its own (so the sizes do not share caches)."""
    with (
        tempfile.TemporaryDirectory(prefix="quarry-bench-reads-") as tmp,
        embedded_engine(BACKEND) as engine,
        served_api(engine.url, extra_env=engine_env(engine)) as base,
    ):

        async def run() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=base, timeout=60) as http:
                database_id, headers = await create_account(
                    http,
                    db_name="reads_bench",
                    collections=[{"name": COLLECTION, "fields": FIELDS}],
                )
            return await _measure(Api(base, database_id, headers), engine, size, Path(tmp))

        return asyncio.run(run())


# ------------------------------------------------------------------ the table


def _ms(entry: dict[str, Any]) -> str:
    return f"{entry['p50_ms']:.1f} / {entry['p90_ms']:.1f}"


def _raw_cell(shape: Shape, entry: dict[str, Any], raw: dict[str, Any] | None) -> str:
    parts = []
    for kind in ("find", "count"):
        found = entry["sql"].get(kind)
        if isinstance(found, dict):
            whole = kind == "count" and not shape.filters
            index = " (the row counter)" if whole else ""
            index = index or (" (seq scan)" if found["seq_scan"] else "")
            parts.append(f"SQL {kind} {found['p50_ms']:.1f}{index}")
        elif found:
            parts.append(f"SQL {kind}: not planned")
    if raw is not None:
        if raw["times_ms"]:
            driver = f"driver {statistics.median(raw['times_ms']):,.0f}"
            parts.append(driver + (" (capped)" if raw["capped"] else ""))
        else:
            parts.append(f"driver capped (> {RAW_CAP:g} s)")
    return "; ".join(parts)


def rows_of(figures: dict[str, Any]) -> list[Row]:
    size = figures["size"]
    at = f"{size:,} docs"
    first = size == SIZES[0]
    raw = figures.get("raw_driver")
    imported = figures["import"]
    rows = [
        Row(
            f"fill by POST /api/import_data, typed indexes + unique sku, docs/s ({at})",
            f"{imported['docs_per_s']:,.0f}",
            f"{imported['raw_docs_per_s']:,.0f} (insert_many, unique sku)",
            f"{imported['docs_per_s'] / imported['raw_docs_per_s']:.2f}",
            ">= 0.80",
        )
    ]
    for shape in SHAPES:
        entry = figures["shapes"][shape.name]
        api = entry["api"]
        sql_ms = [v["p50_ms"] for v in entry["sql"].values() if isinstance(v, dict)]
        goal = "p50 < 50 ms" if shape.count else "p50 < 20 ms"
        rows.append(
            Row(
                f"{shape.name}, p50 / p90 ms (1 client, {at})",
                _ms(api),
                _raw_cell(shape, entry, raw["shapes"][shape.name] if raw else None),
                f"{api['p50_ms'] / sum(sql_ms):.1f}x SQL" if sql_ms else "",
                goal if first else "",
            )
        )
        clients = entry["clients"]
        problems = clients["errors"] + clients["non_2xx"]
        rows.append(
            Row(
                f"{shape.name}, req/s, p50 / p99 ms ({CLIENTS} clients, {clients['tool']})",
                f"{clients['throughput']:,.0f}, {clients['p50_ms']:.1f} / {clients['p99_ms']:.1f}"
                + (f" ({problems} failed)" if problems else ""),
                "",
                "",
                "",
            )
        )
    rows.append(
        Row(
            f"reference: GET /api/crud/{{id}}, p50 / p90 ms (1 client, {at})",
            _ms(figures["by_id"]),
            "",
            "",
            "",
        )
    )
    iteration = figures["iteration"]
    raw_iteration = raw["iteration"] if raw else None
    raw_rate = raw_iteration["docs_per_s"] if raw_iteration else None
    rows.append(
        Row(
            f"cursor iteration of the whole collection, docs/s ({ITERATION_PAGE}/page, {at})",
            f"{iteration['docs_per_s']:,.0f}",
            ""
            if raw_iteration is None
            else (f"{raw_rate:,.0f} (driver find cursor)" if raw_rate else "capped"),
            f"{iteration['docs_per_s'] / raw_rate:.2f}" if raw_rate else "",
            ">= 20,000/s",
        )
    )
    for key, label, goal in (
        (
            "update_many",
            f"update_many $inc of {UPDATED:,} (PUT /api/crud), median ms",
            "< 1,000 ms",
        ),
        ("duplicate", "refused duplicate insert (409), p50 ms", "< 20 ms"),
    ):
        ours = figures[key]["p50_ms"]
        theirs = raw[key] if raw else None
        if theirs is None:
            cell = ""
        elif "p50_ms" in theirs:
            cell = f"{theirs['p50_ms']:.1f}"
        elif theirs["times_ms"]:
            cell = f"{statistics.median(theirs['times_ms']):,.0f}" + (
                " (capped)" if theirs["capped"] else ""
            )
        else:
            cell = f"capped (> {RAW_CAP:g} s)"
        rows.append(Row(f"{label} ({at})", f"{ours:,.1f}", cell, "", goal if first else ""))
    return rows


def growth_rows(small: dict[str, Any], large: dict[str, Any]) -> list[Row]:
    """The page-shaped queries at the larger size against the smaller (goal: 2x),
    counts per 100,000 matched and iteration in documents/s."""
    rows = []
    ratio = f"{large['size'] // small['size']}x docs"
    for shape in SHAPES:
        before = small["shapes"][shape.name]
        after = large["shapes"][shape.name]
        if shape.count:
            per = [e["api"]["p50_ms"] / max(1, e["answered"]) * 100_000 for e in (before, after)]
            rows.append(
                Row(
                    f"{shape.name}: ms per 100,000 matched, {small['size']:,} -> {large['size']:,}",
                    f"{per[0]:.1f} -> {per[1]:.1f}",
                    "",
                    f"{per[1] / per[0]:.2f}x",
                    "flat",
                )
            )
            continue
        grown = after["api"]["p50_ms"] / before["api"]["p50_ms"]
        rows.append(
            Row(
                f"{shape.name}: p50 {small['size']:,} -> {large['size']:,} ({ratio})",
                f"{before['api']['p50_ms']:.1f} -> {after['api']['p50_ms']:.1f} ms",
                "",
                f"{grown:.2f}x",
                "<= 2x",
            )
        )
    return rows


def run_all(mongodb_url: str = "") -> tuple[list[Row], dict[str, Any]]:
    if os.environ.get("QUARRY_BENCH_MONGODB_URL"):
        return [Row("reads", "skipped (QUARRY_BENCH_MONGODB_URL is set)", "", "", "")], {}
    if not shutil.which("wrk"):
        print(
            "reads: wrk is not installed (Debian: apt-get install wrk); the 32-client "
            "figures come from the in-process asyncio client instead",
            flush=True,
        )
    measured = []
    for size in SIZES:
        figures = measure_size(size)
        measured.append(figures)
        # A 1M run takes a while: each size's table and figures as soon as it is done.
        print_table(rows_of(figures))
        (RESULTS.parent / f"reads-{size}.json").write_text(
            json.dumps(figures, indent=2, default=str) + "\n"
        )
    rows = [row for figures in measured for row in rows_of(figures)]
    for small, large in itertools.pairwise(measured):
        rows += growth_rows(small, large)
    return rows, {"reads": {str(figures["size"]): figures for figures in measured}}
