"""The search indexer keeps its lease through a rebuild that takes longer than one
lease, so no second worker writes into the generation being replaced."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from fastapi import FastAPI

from app.clock import utc_now
from app.wiring import state_of
from data_api.datasets.repository import Catalogue
from data_api.search import indexer as indexer_module
from data_api.search.indexer import LEASE, SearchIndexer
from data_api.search.lifecycle import INDEXER_TASK


class SlowIndexes:
    """Stands in for the tantivy layer only: a rebuild that takes `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def rebuild(self, tenant_id: str, entries: Any) -> int:
        time.sleep(self.seconds)
        return len(list(entries))


async def test_a_rebuild_longer_than_the_lease_keeps_the_lease(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexer_module, "LEASE_SECONDS", 0.6)
    state = state_of(app)
    catalogue = state.get(Catalogue)
    async with state.background.paused(INDEXER_TASK):  # the app's own indexer stays out
        await state.get(SearchIndexer).release()
        first = SearchIndexer(catalogue=catalogue, indexes=SlowIndexes(2.0))  # type: ignore[arg-type]
        now = utc_now()
        assert await catalogue.take_lease(
            name=LEASE, holder=first.holder, now=now, until=now + timedelta(seconds=0.6)
        )
        rebuilding = asyncio.create_task(first.rebuild(ObjectId()))
        await asyncio.sleep(1.2)  # two leases' time into the rebuild
        later = utc_now()
        taken = await catalogue.take_lease(
            name=LEASE, holder="another-worker", now=later, until=later + timedelta(seconds=0.6)
        )
        assert await rebuilding == 0
        assert not taken
