"""What the review of the rows feature found, each pinned by a test that failed
before its fix: an offset read that re-read the directory mid-way, a writer whose
lease lapsed unnoticed, a lost clean-up trigger, timestamps and values that were
500s, an aggregate sum beyond 64 bits, an endless NDJSON line, and a newest-first
backfill that left a bucket per request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import orjson
import pytest
from bson import ObjectId

from app.clock import utc_now
from app.errors import ErrorCode
from app.wiring import state_of
from data_api.datasets.repository import LEASES, ROW_BUCKETS, tenant_db_name
from data_api.rows.store import LostLock, RowStore
from tests.fixtures.engine import DatabaseServer
from tests.fixtures.entries import Sync
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.mailbox import Inbox
from tests.fixtures.rows import ROWS, RowsOwner, ndjson, reference_rows, rows_owner, series


@pytest.fixture(scope="module")
async def owner(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RowsOwner]:
    async with rows_owner(
        database_server,
        smtp_server,
        sync_client,
        tmp_path_factory.mktemp("rows-review") / "data",
        maintenance_interval_seconds=3600,
    ) as found:
        yield found


def store_of(owner: RowsOwner) -> RowStore:
    return state_of(owner.app).get(RowStore)  # type: ignore[no-any-return]


async def test_an_offset_read_that_rereads_the_directory_goes_on_after_what_it_skipped(
    owner: RowsOwner,
) -> None:
    dataset = await owner.dataset()
    rows = series(0, 6000)
    assert (await owner.bulk(dataset, rows)).status_code == 200
    store = store_of(owner)
    ds = ObjectId(dataset)
    # The directory as a reader saw it, then a write replaces the bucket where the
    # skip ends: the reader's first fetch finds it gone and reads the directory again.
    stale = await store.directory(owner.owner_id, ds)
    replaced = await owner.bulk(
        dataset, [{"timestamp": 2600 * 1000, "values": {"i": -1}}], on_conflict="replace"
    )
    assert replaced.json()["replaced"] == 1
    seen: list[int] = []
    async for times, _lines in store.scan(
        owner.owner_id, ds, start=None, end=None, skip=2500, batch_rows=1, directory=stale
    ):
        seen += list(times)
    assert seen == [n * 1000 for n in range(2500, 6000)]


async def test_a_writer_whose_lease_lapsed_and_was_cleaned_cannot_commit(
    owner: RowsOwner,
) -> None:
    dataset = await owner.dataset()
    assert (await owner.bulk(dataset, series(0, 10))).status_code == 200
    before = owner.stored_rows(dataset)
    store = store_of(owner)
    ds = ObjectId(dataset)
    control = state_of(owner.app).database.control
    with pytest.raises(LostLock):
        async with store.writing(owner.owner_id, ds) as writer:
            times = [n * 1000 for n in range(100, 3100)]
            await writer.insert(times, [b'{"i":1}'] * len(times), "error")
            # Its lease lapses unnoticed (a stall); maintenance takes it over and
            # removes the staged buckets.
            await control[LEASES].update_one(
                {"_id": f"rows:{dataset}"}, {"$set": {"until": utc_now() - timedelta(seconds=1)}}
            )
            await store.clean_lapsed()
            # The write believes its lease is fresh (it renewed a moment ago).
            writer.renewed_at = asyncio.get_running_loop().time()
            await writer.commit()
    # Nothing of it is visible, and nothing names a missing bucket.
    assert owner.stored_rows(dataset) == before
    page = await owner.read(dataset, limit=100)
    assert page["pagination"]["count"] == 10


async def test_a_clean_up_marker_makes_maintenance_remove_orphans(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    assert (await owner.bulk(dataset, series(0, 5))).status_code == 200
    ds = ObjectId(dataset)
    tenant = owner.sync[tenant_db_name(owner.owner_id)]
    # What a writer that died left (its lease was taken by a racing writer, who did
    # not know), and the marker the one that saw the lapsed lease left.
    tenant[ROW_BUCKETS].insert_one(
        {"_id": f"{dataset}:999", "dataset_id": ds, "n": 0, "t": b"", "v": b""}
    )
    control = owner.sync[owner.control_db]
    control[LEASES].insert_one({"_id": f"rows:{dataset}:clean", "holder": "", "until": utc_now()})
    await store_of(owner).clean_lapsed()
    assert tenant[ROW_BUCKETS].find_one({"_id": f"{dataset}:999"}) is None
    assert control[LEASES].find_one({"_id": f"rows:{dataset}:clean"}) is None
    assert len(owner.stored_rows(dataset)) == 5


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999-01:00"]
)
async def test_an_offset_that_leaves_the_date_range_is_an_invalid_timestamp(
    owner: RowsOwner, timestamp: str
) -> None:
    dataset = await owner.dataset()
    response = await owner.bulk(dataset, [{"timestamp": timestamp, "values": {}}])
    assert_envelope(response, 422, ErrorCode.INVALID_TIMESTAMP)
    assert owner.directory(dataset) is None


@pytest.mark.parametrize("start", ["²", "--5", "9" * 5000])
async def test_odd_query_timestamps_are_invalid_not_errors(owner: RowsOwner, start: str) -> None:
    dataset = await owner.dataset()
    response = await owner.http.get(
        ROWS, params={"dataset": dataset, "start": start}, headers=owner.headers
    )
    assert_envelope(response, 422, ErrorCode.INVALID_TIMESTAMP)


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity"])
async def test_a_single_row_refuses_numbers_json_cannot_carry(
    owner: RowsOwner, value: bytes
) -> None:
    dataset = await owner.dataset()
    body = b'{"dataset": "%s", "timestamp": 1, "values": {"x": %s}}' % (dataset.encode(), value)
    response = await owner.http.post(
        ROWS, content=body, headers={**owner.headers, "content-type": "application/json"}
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert owner.directory(dataset) is None


async def test_a_single_row_with_an_integer_beyond_64_bits_is_not_a_500(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    huge = b"1" + b"0" * 30
    body = b'{"dataset": "%s", "timestamp": 1, "values": {"x": %s}}' % (dataset.encode(), huge)
    response = await owner.http.post(
        ROWS, content=body, headers={**owner.headers, "content-type": "application/json"}
    )
    # Taken as the number it is, like bulk_insert (orjson) does: a float.
    assert response.status_code == 201, response.text
    assert owner.stored_rows(dataset) == [(1, {"x": 1e30})]


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


async def test_an_endless_ndjson_line_is_refused_and_nothing_is_stored(owner: RowsOwner) -> None:
    dataset = await owner.dataset()
    good = ndjson(series(0, 3))

    async def body() -> AsyncIterator[bytes]:
        yield good
        for _ in range(40):  # 2.5 MiB without a newline
            yield b"x" * 65536

    response = await owner.http.post(
        f"{ROWS}/bulk_insert",
        params={"dataset": dataset},
        content=body(),
        headers={**owner.headers, "content-type": "application/x-ndjson"},
    )
    found = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert found["details"][0]["loc"] == ["line", 4]
    assert owner.directory(dataset) is None
    assert owner.buckets(dataset) == []


async def test_a_newest_first_backfill_fills_the_gap_without_a_bucket_per_request(
    owner: RowsOwner,
) -> None:
    dataset = await owner.dataset()
    # Two full buckets with a gap between them.
    early = [{"timestamp": n, "values": {}} for n in range(2000)]
    late = [{"timestamp": 1_000_000 + n, "values": {}} for n in range(1000)]
    assert (await owner.bulk(dataset, early)).status_code == 200
    assert (await owner.bulk(dataset, late)).status_code == 200
    before = len(owner.buckets(dataset))
    gap = list(range(999_999, 999_949, -1))  # newest first, one row per request
    for ts in gap:
        response = await owner.bulk(dataset, [{"timestamp": ts, "values": {"g": 1}}])
        assert response.status_code == 200, response.text
    assert len(owner.buckets(dataset)) <= before + 1
    stored = owner.stored_rows(dataset)
    assert len(stored) == 3050
    page = await owner.read(dataset, start=999_949, end=1_000_000, limit=100)
    assert page["data"] == reference_rows(stored, 999_949, 1_000_000)
