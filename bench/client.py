"""Client and CLI figures (issue 18), on one served API and its engine:

- `quarry import FILE` (the CLI, end to end: a process started, the file streamed
  as multipart with a progress bar, the answer printed) beside `curl` posting the
  same NDJSON file to `POST /api/import_data`, 1,000,000 records
  (`QUARRY_BENCH_CLIENT_IMPORT`), each side into a new database, alternating which
  goes first, `QUARRY_BENCH_CLIENT_REPEAT` rounds (default 3), medians. Goal: the
  CLI at >= 0.9x curl's rate.
- `Quarry.documents.iterate` (the blocking client: cursor pages of 1,000) over
  100,000 stored documents (`QUARRY_BENCH_CLIENT_ITERATE`) beside the raw driver on
  the same physical collection, two ways: one `find()` cursor (batches of 1,000),
  and the API's own access pattern (`_id > last`, sorted by `_id`, 1,000 at a time),
  which is what every cursor page costs the engine; and the async client beside
  them. `QUARRY_BENCH_CLIENT_ITERATE_REPEAT` rounds (default 1: on the embedded
  engine a page is a scan of the collection, so a round takes minutes).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import MongoClient
from quarry_client import AsyncQuarry, Quarry

from bench.harness import Row, control_db, served_api
from bench.management import FIELDS, write_import_file

IMPORT_RECORDS = int(os.environ.get("QUARRY_BENCH_CLIENT_IMPORT", "1000000"))
ITERATE_DOCUMENTS = int(os.environ.get("QUARRY_BENCH_CLIENT_ITERATE", "100000"))
REPEAT = int(os.environ.get("QUARRY_BENCH_CLIENT_REPEAT", "3"))
ITERATE_REPEAT = int(os.environ.get("QUARRY_BENCH_CLIENT_ITERATE_REPEAT", "1"))
PAGE = 1_000
PASSWORD = "benchmark-password-123"
QUARRY = Path(sys.executable).with_name("quarry")


def bench_account(api: str) -> tuple[Quarry, str]:
    """A logged-in client for a new account (verification is off on the bench
    API), and an API key for the command-line runs."""
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    quarry = Quarry(api, timeout=3600)
    quarry.auth.register(email, PASSWORD, first_name="B", last_name="C")
    quarry.auth.login(email, PASSWORD)
    return quarry, quarry.api_keys.create("bench").key


def new_database(quarry: Quarry) -> str:
    answer = quarry.transport.request(
        "POST",
        "/api/create_database",
        json={
            "db_name": f"bench_{uuid.uuid4().hex[:6]}",
            "collections": [{"name": "events", "fields": FIELDS}],
        },
    )
    return str(answer.json()["database"]["id"])


def curl_import(api: str, key: str, database_id: str, path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run(
        [
            "curl", "-sS", "--fail-with-body",
            "-H", f"Authorization: Api-Key {key}",
            "-F", f"database_id={database_id}",
            "-F", "collection_name=events",
            "-F", f"json_file=@{path};type=application/x-ndjson",
            f"{api}/api/import_data",
        ],
        capture_output=True,
        check=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    return elapsed, int(json.loads(done.stdout)["inserted_count"])


def cli_import(api: str, key: str, database_id: str, path: Path) -> tuple[float, int]:
    environment = {**os.environ, "QUARRY_URL": api, "QUARRY_API_KEY": key}
    started = time.perf_counter()
    done = subprocess.run(
        [
            *(str(QUARRY), "import", str(path), "--json"),
            *("--database", database_id, "--collection", "events"),
        ],
        capture_output=True,
        check=True,
        env=environment,
    )
    elapsed = time.perf_counter() - started
    return elapsed, int(json.loads(done.stdout)["inserted_count"])


def raw_collection(raw: MongoClient[dict[str, Any]], api: str, database_id: str) -> Any:
    record = raw[control_db(api)]["databases"].find_one({"_id": ObjectId(database_id)})
    assert record is not None
    return raw[record["dbName"]]["events"]


def raw_iteration(collection: Any) -> float:
    """One driver cursor over the whole collection."""
    started = time.perf_counter()
    count = sum(1 for _ in collection.find({}, batch_size=PAGE))
    elapsed = time.perf_counter() - started
    assert count == ITERATE_DOCUMENTS, count
    return elapsed


def raw_paged_iteration(collection: Any) -> float:
    """The driver doing what a cursor page does: the next 1,000 by `_id`."""
    started = time.perf_counter()
    count, last = 0, None
    while True:
        query = {} if last is None else {"_id": {"$gt": last}}
        page = list(collection.find(query).sort("_id", 1).limit(PAGE))
        count += len(page)
        if len(page) < PAGE:
            break
        last = page[-1]["_id"]
    elapsed = time.perf_counter() - started
    assert count == ITERATE_DOCUMENTS, count
    return elapsed


def client_iteration(quarry: Quarry, database_id: str) -> float:
    started = time.perf_counter()
    count = sum(1 for _ in quarry.documents.iterate(database_id, "events", page_size=PAGE))
    elapsed = time.perf_counter() - started
    assert count == ITERATE_DOCUMENTS, count
    return elapsed


async def async_client_iteration(api: str, quarry: Quarry, database_id: str) -> float:
    credentials = quarry.transport.credentials
    async with AsyncQuarry(
        api, access_token=credentials.access, refresh_token=credentials.refresh, timeout=3600
    ) as client:
        started = time.perf_counter()
        count = 0
        async for _ in client.documents.iterate(database_id, "events", page_size=PAGE):
            count += 1
        elapsed = time.perf_counter() - started
    assert count == ITERATE_DOCUMENTS, count
    return elapsed


def run_all(mongodb_url: str) -> tuple[list[Row], dict[str, Any]]:
    import asyncio

    figures: dict[str, Any] = {
        "curl_s": [], "cli_s": [], "raw_s": [], "raw_paged_s": [], "sync_s": [], "async_s": []
    }  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="quarry-bench-client-") as tmp,
        served_api(mongodb_url) as api,
        MongoClient(mongodb_url) as raw,
    ):
        big, small = Path(tmp) / "records.ndjson", Path(tmp) / "documents.ndjson"
        figures["import_bytes"] = write_import_file(big, IMPORT_RECORDS)
        write_import_file(small, ITERATE_DOCUMENTS)
        quarry, key = bench_account(api)
        with quarry:
            for round_ in range(REPEAT):
                sides = [("curl_s", curl_import), ("cli_s", cli_import)]
                for name, side in sides if round_ % 2 == 0 else sides[::-1]:
                    elapsed, inserted = side(api, key, new_database(quarry), big)
                    assert inserted == IMPORT_RECORDS, (name, inserted)
                    figures[name].append(elapsed)
            stored = new_database(quarry)
            curl_import(api, key, stored, small)
            collection = raw_collection(raw, api, stored)
            for _ in range(ITERATE_REPEAT):
                figures["raw_s"].append(raw_iteration(collection))
                figures["raw_paged_s"].append(raw_paged_iteration(collection))
                figures["sync_s"].append(client_iteration(quarry, stored))
                figures["async_s"].append(asyncio.run(async_client_iteration(api, quarry, stored)))
    return rows(figures), {"client": figures}


def rows(figures: dict[str, Any]) -> list[Row]:
    median = {
        name: statistics.median(values)
        for name, values in figures.items()
        if isinstance(values, list) and values
    }
    curl_rate = IMPORT_RECORDS / median["curl_s"]
    cli_rate = IMPORT_RECORDS / median["cli_s"]
    return [
        Row(
            f"quarry import, {IMPORT_RECORDS:,} NDJSON records (vs curl)",
            f"{cli_rate:,.0f} rec/s ({median['cli_s']:.1f} s)",
            f"curl {curl_rate:,.0f} rec/s ({median['curl_s']:.1f} s)",
            f"{cli_rate / curl_rate:.2f}x",
            ">= 0.9x",
        ),
        *(
            Row(
                f"{label} iterate, {ITERATE_DOCUMENTS:,} documents (vs {raw_label})",
                f"{ITERATE_DOCUMENTS / median[name]:,.0f} docs/s",
                f"{ITERATE_DOCUMENTS / median[raw]:,.0f} docs/s",
                f"{median[raw] / median[name]:.2f}x",
                "(reported)",
            )
            for label, name in (("Quarry", "sync_s"), ("AsyncQuarry", "async_s"))
            for raw_label, raw in (("one find cursor", "raw_s"), ("the same pages", "raw_paged_s"))
        ),
    ]
