"""Import figures (issue #4): documents/s through `POST /api/import_data` beside
raw `insert_many(ordered=False)` of the same documents into the same engine, the
server's peak RSS for two file sizes (streaming: it should not grow with the
file), and the schema compiler's validation rate on one core.

Each size gets a fresh server process so that its peak RSS (`VmHWM`) belongs to
that import alone. The raw side inserts already-parsed documents in batches of
5,000 — it does not pay for JSON parsing, the API does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient
from pymongo.errors import NetworkTimeout

from app.schema import compile_schema
from bench.harness import Row, served_api

SIZES = tuple(
    int(size) for size in os.environ.get("QUARRY_BENCH_IMPORT_SIZES", "100000,1000000").split(",")
)
RAW_BATCH = 5_000
FIELDS = [
    {"name": "email", "type": "string", "required": True},
    {"name": "name", "type": "string"},
    {"name": "age", "type": "int"},
    {"name": "score", "type": "float"},
    {"name": "active", "type": "bool"},
    {"name": "signup_date", "type": "date"},
    {"name": "city", "type": "string"},
]
#: The same collection with typed indexes declared (issue #25: imports keep >= 0.8x
#: raw with them): the read planner's indexes are maintained by every insert.
INDEXED_FIELDS = [
    {**field, "unique": True} if field["name"] == "email" else
    {**field, "index": True} if field["name"] in ("age", "score", "signup_date") else field
    for field in FIELDS
]  # fmt: skip


def import_document(i: int) -> dict[str, Any]:
    return {
        "email": f"user{i:07d}@example.com",
        "name": f"User Number {i:07d} of the benchmark",
        "age": 18 + i % 70,
        "score": i * 0.37 % 100,
        "active": i % 3 != 0,
        "signup_date": f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}T10:{i % 60:02d}:00Z",
        "city": ("Berlin", "Oslo", "Lisbon", "Kyoto")[i % 4],
    }


def write_import_file(
    path: Path, count: int, document: Callable[[int], dict[str, Any]] = import_document
) -> int:
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps(document(i)) + "\n")
    return path.stat().st_size


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def api_import(
    api: str,
    path: Path,
    *,
    budget: float = 3600,
    fields: list[dict[str, Any]] = FIELDS,
    beside: list[str] | None = None,
) -> tuple[float, int]:
    """Seconds and documents inserted by `POST /api/import_data` of `path`, for a
    new account and database whose collection has `fields`; raises
    `httpx.TimeoutException` after `budget` s. Each name of `beside` is another,
    empty collection of the same database with the same fields, whose MongoDB
    namespace is appended to it as `db.collection` (for the raw driver)."""
    async with httpx.AsyncClient(base_url=api, timeout=budget) as http:
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        await http.post(
            "/core/register",
            json={"email": email, "firstName": "B", "lastName": "M", "password": "benchmark-pass"},
        )
        tokens = (
            await http.post("/core/login", json={"email": email, "password": "benchmark-pass"})
        ).json()
        headers = {"Authorization": f"Bearer {tokens['access']}"}
        others = list(beside or [])
        created = await http.post(
            "/api/create_database",
            json={
                "db_name": f"bench_{uuid.uuid4().hex[:6]}",
                "collections": [{"name": name, "fields": fields} for name in ["events", *others]],
            },
            headers=headers,
        )
        database_id = created.json()["database"]["id"]
        if beside is not None:
            metadata = await http.get(
                "/api/get_metadata", params={"database_id": database_id}, headers=headers
            )
            db_name = metadata.json()["data"]["dbName"]
            beside[:] = [f"{db_name}.{name}" for name in others]
        return await import_file(
            http, database_id=database_id, collection="events", path=path, headers=headers
        )


async def import_file(
    http: httpx.AsyncClient,
    *,
    database_id: str,
    collection: str,
    path: Path,
    headers: dict[str, str],
) -> tuple[float, int]:
    """Seconds and documents inserted by one `POST /api/import_data` of `path`."""
    with path.open("rb") as handle:
        started = time.perf_counter()
        response = await http.post(
            "/api/import_data",
            data={"database_id": database_id, "collection_name": collection},
            files={"json_file": (f"{collection}.ndjson", handle, "application/x-ndjson")},
            headers=headers,
        )
        elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text[:500]
    return elapsed, int(response.json()["inserted_count"])


async def raw_insert(
    mongodb_url: str,
    count: int,
    *,
    budget: float | None = None,
    fields: list[dict[str, Any]] = FIELDS,
    document: Callable[[int], dict[str, Any]] = import_document,
    unique: tuple[str, ...] = (),
    into: str | None = None,
) -> tuple[float, int]:
    """Seconds and documents inserted by `insert_many` batches of `count` documents
    (`document(i)` typed by `fields`' schema), into a new collection with a unique
    index on each of `unique` (as the API's collection has, made before the clock
    starts) — or into the existing, empty collection `into` (`db.collection`). With
    a `budget` (seconds) no batch starts after it and the client gives up on a
    batch that outlives it: the documents inserted by then are the answer."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_url, socketTimeoutMS=budget * 1000 if budget else None
    )
    if into is None:
        collection = client["quarry_bench_raw"][f"events_{uuid.uuid4().hex[:6]}"]
    else:
        db_name, _, name = into.partition(".")
        collection = client[db_name][name]
    for name in unique:
        await collection.create_index(name, unique=True)
    schema = compile_schema(fields)
    # Typed as the API stores them (dates as dates) and built before the clock starts.
    documents = [schema.validate(document(i))[0] for i in range(count)]
    inserted = 0
    started = time.perf_counter()
    with contextlib.suppress(NetworkTimeout):
        for start in range(0, count, RAW_BATCH):
            if budget is not None and time.perf_counter() - started > budget:
                break
            await collection.insert_many(documents[start : start + RAW_BATCH], ordered=False)
            inserted += len(documents[start : start + RAW_BATCH])
    elapsed = time.perf_counter() - started
    if into is None:
        await client.drop_database("quarry_bench_raw")
    await client.close()
    return elapsed, inserted


def _validation_rate() -> float:
    schema = compile_schema(
        [
            *FIELDS,
            {"name": "tags", "type": "array", "items": "string"},
            {"name": "ref", "type": "id"},
            {"name": "meta", "type": "object"},
        ]
    )
    documents = [
        {
            **import_document(i),
            "tags": ["a", "b"],
            "ref": "60c72b2f9b1d8b1a2d3e4567",
            "meta": {"k": i},
        }
        for i in range(50_000)
    ]
    started = time.perf_counter()
    for index, document in enumerate(documents):
        schema.validate(document, index=index)
    return len(documents) / (time.perf_counter() - started)


def run_all(mongodb_url: str) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    rate = _validation_rate()
    rows.append(
        Row(
            "schema validation, 10 fields (docs/s, 1 core)",
            f"{rate:.0f}",
            "-",
            "-",
            "well above insert rate",
        )
    )
    figures["validation_docs_per_s"] = rate
    with tempfile.TemporaryDirectory(prefix="quarry-bench-import-") as tmp:
        for size in SIZES:
            path = Path(tmp) / f"events_{size}.ndjson"
            file_bytes = write_import_file(path, size)
            pids: list[int] = []
            with served_api(mongodb_url, pids=pids) as api:
                api_seconds, inserted = asyncio.run(api_import(api, path))
                rss = peak_rss_mib(pids[0])
            assert inserted == size
            raw_seconds, _ = asyncio.run(raw_insert(mongodb_url, size))
            api_rate, raw_rate = size / api_seconds, size / raw_seconds
            rows.append(
                Row(
                    f"import {size:,} docs ({file_bytes / size:.0f} B each), docs/s",
                    f"{api_rate:.0f}",
                    f"{raw_rate:.0f}",
                    f"{api_rate / raw_rate:.2f}",
                    ">= 0.80",
                )
            )
            rows.append(
                Row(
                    f"server peak RSS, import of {size:,} docs (MiB)",
                    f"{rss:.0f}",
                    "-",
                    "-",
                    "flat",
                )
            )
            figures[f"import_{size}"] = {
                "api_seconds": api_seconds,
                "raw_seconds": raw_seconds,
                "api_docs_per_s": api_rate,
                "raw_docs_per_s": raw_rate,
                "peak_rss_mib": rss,
                "file_bytes": file_bytes,
            }
            new_rows, figures[f"import_{size}_indexed"] = _indexed_import(mongodb_url, path, size)
            rows += new_rows
            path.unlink()
    return rows, figures


def _indexed_import(mongodb_url: str, path: Path, size: int) -> tuple[list[Row], dict[str, Any]]:
    """The same import into a collection with typed indexes (`INDEXED_FIELDS`), beside
    raw `insert_many` into a second collection the API made with the same fields —
    so with the same indexes (the typed ones, FerretDB's unique index and Quarry's
    shadows), built while it was empty: what the API adds to the engine's own cost
    of keeping them. The raw insert into a collection with the unique index only is
    reported too: what the typed indexes cost the writes that keep them."""
    raw_side: list[str] = ["raw_side"]
    with served_api(mongodb_url) as api:
        api_seconds, inserted = asyncio.run(
            api_import(api, path, fields=INDEXED_FIELDS, beside=raw_side)
        )
        assert inserted == size
        raw_seconds, _ = asyncio.run(
            raw_insert(mongodb_url, size, fields=INDEXED_FIELDS, into=raw_side[0])
        )
    unique_seconds, _ = asyncio.run(
        raw_insert(mongodb_url, size, fields=INDEXED_FIELDS, unique=("email",))
    )
    api_rate, raw_rate = size / api_seconds, size / raw_seconds
    unique_rate = size / unique_seconds
    rows = [
        Row(
            f"import {size:,} docs, typed indexes (email unique; age, score, date index), docs/s",
            f"{api_rate:.0f}",
            f"{raw_rate:.0f} (same indexes)",
            f"{api_rate / raw_rate:.2f}",
            ">= 0.80",
        ),
        Row(
            f"raw insert {size:,} docs: same typed indexes / unique index only",
            f"{raw_rate:.0f}",
            f"{unique_rate:.0f}",
            f"{raw_rate / unique_rate:.2f}",
            "what the indexes cost",
        ),
    ]
    return rows, {
        "api_seconds": api_seconds,
        "raw_seconds": raw_seconds,
        "raw_unique_only_seconds": unique_seconds,
        "api_docs_per_s": api_rate,
        "raw_docs_per_s": raw_rate,
        "raw_unique_only_docs_per_s": unique_rate,
    }
