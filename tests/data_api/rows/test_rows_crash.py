"""Rows writes are all or nothing when the engine dies under them (`spec/rows.md`,
Storage): a 100,000-row bulk insert (JSON) and a 100,000-row NDJSON load, each
with the embedded engine killed (SIGKILL) while the request runs. The request
fails; after a restart the dataset shows every row or none (through the API and
in storage); the buckets the write left that no directory names are removed —
by the maintenance sweep once the write's lease lapsed, or by the next writer,
which takes the lapsed lease over and cleans up first; and the next insert into
the dataset succeeds.

The app runs under uvicorn in this process (the requests cross a real socket);
its rows lease lasts the store's minimum of 5 s (`stale_after_seconds=1`), and
its own maintenance timer is far off, so that only this module sweeps.

When to kill: a JSON insert writes all its buckets in one `insert_many`, a few
milliseconds before the directory write that makes them visible; that write is
held back by a lock in the engine's PostgreSQL, and the engine is killed once
every bucket is stored. An NDJSON load stages buckets every 10,000 lines and makes them visible
only after its last line, so its body stops after 30,000 lines, and the engine
is killed once their buckets are stored.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from bson import ObjectId

from app.errors import ErrorCode
from app.wiring import state_of
from data_api.datasets.repository import LEASES, ROW_DIRS
from data_api.rows.store import RowStore
from tests.fixtures.engine import DatabaseServer
from tests.fixtures.entries import Sync
from tests.fixtures.mailbox import Inbox
from tests.fixtures.rows import ROWS, RowsOwner, ndjson, reference_rows, rows_owner, series
from tests.fixtures.served import eventually, holding_writes, uvicorn_serving

ROW_COUNT = 100_000
#: 2026-01-01T00:00:00Z
T0 = 1_767_225_600_000
#: Rows an NDJSON load sends before it stops to let the engine be killed (three of
#: the service's batches of 10,000, each staged as buckets of 1,000 rows).
NDJSON_BEFORE_KILL = 30_000
STAGED_BUCKETS = NDJSON_BEFORE_KILL // 1000
#: The request, and everything the tests wait for, fit in this.
WAIT_SECONDS = 60.0


@dataclass
class Crashing:
    owner: RowsOwner
    url: str
    engine: DatabaseServer

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=WAIT_SECONDS)

    def lease_held(self, dataset: str) -> bool:
        leases = self.owner.sync[self.owner.control_db][LEASES]
        return leases.count_documents({"_id": f"rows:{dataset}"}) == 1

    def stored_count(self, dataset: str) -> int:
        return int(
            self.owner.tenant()["row_buckets"].count_documents({"dataset_id": ObjectId(dataset)})
        )

    def orphans(self, dataset: str) -> list[str]:
        """Buckets of the dataset that its directory does not name."""
        directory = self.owner.directory(dataset)
        packed = array("q")
        if directory is not None:
            packed.frombytes(bytes(directory["b"]))
        named = {f"{dataset}:{seq}" for seq in packed[2::4]}
        return sorted(b["_id"] for b in self.owner.buckets(dataset) if b["_id"] not in named)


@pytest.fixture(scope="module")
async def crashing(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Crashing]:
    if not database_server.stoppable:
        pytest.skip("needs the embedded engine to kill it")
    data_dir = tmp_path_factory.mktemp("rows-crash") / "data"
    async with (
        rows_owner(
            database_server,
            smtp_server,
            sync_client,
            data_dir,
            stale_after_seconds=1,
            maintenance_interval_seconds=3600,
        ) as owner,
        uvicorn_serving(owner.app) as url,
    ):
        yield Crashing(owner, url, database_server)


# ---------------------------------------------------------------- helpers


async def failed(request: asyncio.Task[httpx.Response]) -> None:
    """The request got an error: the 503 envelope of a lost database, or (the
    server gave up on the body) a broken connection."""
    try:
        response = await asyncio.wait_for(request, WAIT_SECONDS)
    except httpx.TransportError:
        return
    assert response.status_code >= 500, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error_code"] == ErrorCode.DATABASE_UNAVAILABLE.value, body


async def kill_when(
    crashing: Crashing, ready: Callable[[], bool], request: asyncio.Task[Any]
) -> None:
    """Kill the engine (SIGKILL) once `ready` holds, the request still running."""
    await eventually(lambda: request.done() or ready(), seconds=WAIT_SECONDS)
    assert not request.done(), f"the request ended before the kill: {request.result()}"
    await asyncio.to_thread(crashing.engine.kill)


async def restart_if_killed(crashing: Crashing) -> None:
    engine = crashing.engine.engine
    if engine is not None and not engine.running():
        await asyncio.to_thread(crashing.engine.start)


async def visible_count(crashing: Crashing, dataset: str) -> int:
    """How many rows the API and storage show, which must agree."""
    owner = crashing.owner
    page = await owner.read(dataset, limit=1)
    stored = await asyncio.to_thread(owner.stored_rows, dataset)
    assert page["pagination"]["count"] == len(stored)
    return len(stored)


def expected_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return reference_rows((row["timestamp"], row["values"]) for row in rows)


async def assert_all_or_nothing(
    crashing: Crashing, dataset: str, rows: list[dict[str, Any]]
) -> int:
    found = await visible_count(crashing, dataset)
    assert found in (0, len(rows)), f"{found} of {len(rows)} rows are visible"
    if found:
        stored = await asyncio.to_thread(crashing.owner.stored_rows, dataset)
        assert reference_rows(stored) == expected_rows(rows)
    return found


async def sweep_until_clean(crashing: Crashing, dataset: str) -> None:
    """Run the maintenance sweep until it took the dead write's lease once it lapsed,
    cleaned up and dropped it: no lease left, no bucket the directory does not name."""
    store = state_of(crashing.owner.app).get(RowStore)

    def clean() -> bool:
        return not crashing.lease_held(dataset) and not crashing.orphans(dataset)

    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        await store.clean_lapsed()
        if await asyncio.to_thread(clean):
            return
        assert time.monotonic() < deadline, "the sweep did not clean up after the dead write"
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------- JSON


async def test_a_json_bulk_insert_the_engine_dies_under_is_all_or_nothing_and_swept(
    crashing: Crashing,
) -> None:
    owner = crashing.owner
    rows = series(T0, ROW_COUNT, a=1.5, b=2, c=3.25, d=-4, e=True)
    headers = {**owner.headers, "content-type": "application/json"}
    dataset = await owner.dataset("json-crash")
    body = orjson.dumps({"dataset": dataset, "rows": rows})
    conninfo = crashing.engine.engine.superuser_conninfo() if crashing.engine.engine else None
    if conninfo is None:
        pytest.skip("holding the write back takes a lock in the engine's PostgreSQL")
    # The directory write that makes the buckets visible waits behind a lock, so
    # the engine dies with every bucket stored and none named, whatever the
    # machine's speed (a poll for the lease alone could miss a fast write).
    tenant = owner.tenant().name
    async with crashing.client() as http:
        with holding_writes(conninfo, tenant, ROW_DIRS):
            request = asyncio.create_task(
                http.post(f"{ROWS}/bulk_insert", content=body, headers=headers)
            )
            try:
                await kill_when(
                    crashing,
                    lambda: crashing.stored_count(dataset) == ROW_COUNT // 1000,
                    request,
                )
                await failed(request)
            finally:
                request.cancel()
                await restart_if_killed(crashing)

    before = await assert_all_or_nothing(crashing, dataset, rows)
    await sweep_until_clean(crashing, dataset)
    assert await assert_all_or_nothing(crashing, dataset, rows) == before

    again = await owner.bulk(dataset, rows, on_conflict="skip")
    assert again.status_code == 200, again.text
    assert again.json() == {
        "success": True,
        "inserted": ROW_COUNT - before,
        "skipped": before,
        "replaced": 0,
        "total": ROW_COUNT,
    }
    assert await assert_all_or_nothing(crashing, dataset, rows) == ROW_COUNT
    assert await asyncio.to_thread(crashing.orphans, dataset) == []
    assert not await asyncio.to_thread(crashing.lease_held, dataset)


# ---------------------------------------------------------------- NDJSON


@pytest.mark.parametrize("cleaner", ["sweep", "next_writer"])
async def test_an_ndjson_load_the_engine_dies_under_shows_nothing_and_is_cleaned_up(
    crashing: Crashing, cleaner: str
) -> None:
    """Cleaned up by the sweep, or (no sweep) by the next load: it waits for the dead
    load's lease to lapse, takes it over and removes the orphans before it writes."""
    owner = crashing.owner
    dataset = await owner.dataset("ndjson-crash")
    rows = series(T0, ROW_COUNT, a=0.5, b="x", c=None)
    lines = ndjson(rows).splitlines(keepends=True)
    killed = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, NDJSON_BEFORE_KILL, 5000):
            yield b"".join(lines[start : start + 5000])
        await killed.wait()
        for start in range(NDJSON_BEFORE_KILL, ROW_COUNT, 5000):
            yield b"".join(lines[start : start + 5000])

    params = {"dataset": dataset, "on_conflict": "error"}
    headers = {**owner.headers, "content-type": "application/x-ndjson"}
    async with crashing.client() as http:
        request = asyncio.create_task(
            http.post(f"{ROWS}/bulk_insert", params=params, content=body(), headers=headers)
        )
        try:
            await kill_when(
                crashing, lambda: crashing.stored_count(dataset) >= STAGED_BUCKETS, request
            )
            killed.set()
            await failed(request)
        finally:
            request.cancel()
            await restart_if_killed(crashing)

    # Nothing of the load is visible; what it staged is still stored, unnamed.
    assert await visible_count(crashing, dataset) == 0
    assert owner.directory(dataset) is None
    assert len(await asyncio.to_thread(crashing.orphans, dataset)) >= STAGED_BUCKETS

    if cleaner == "sweep":
        await sweep_until_clean(crashing, dataset)
        assert owner.buckets(dataset) == []
    again = await owner.load(dataset, ndjson(rows))
    assert again.status_code == 200, again.text
    assert again.json() == {
        "success": True,
        "inserted": ROW_COUNT,
        "skipped": 0,
        "replaced": 0,
        "total": ROW_COUNT,
    }
    assert await assert_all_or_nothing(crashing, dataset, rows) == ROW_COUNT
    assert await asyncio.to_thread(crashing.orphans, dataset) == []
    assert len(owner.buckets(dataset)) == ROW_COUNT // 1000
    assert not await asyncio.to_thread(crashing.lease_held, dataset)
