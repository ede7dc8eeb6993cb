"""A rows write holds its dataset's lease and makes its buckets visible only by
the directory it commits (`spec/rows.md`, Storage): a reader that skipped by an
older directory reads it again when a write replaced a bucket under it; a writer
whose lease lapsed and was cleaned up cannot commit; and the marker a writer
leaves on seeing a lapsed lease makes maintenance remove the orphans. Maintenance
of this module's app is off, so only the tests move leases."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from bson import ObjectId

from app.clock import utc_now
from app.wiring import state_of
from data_api.datasets.repository import LEASES, ROW_BUCKETS, tenant_db_name
from data_api.rows.store import LostLock, RowStore
from tests.fixtures.rows import RowsOwner, module_owner, series

owner = module_owner("rows-leases", maintenance_interval_seconds=3600)


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
