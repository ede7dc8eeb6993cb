"""Extraction survives the worker that took it on (`spec/entries.md`, "restart-safe"):
an entry left `pending` by a server that died mid-extraction is extracted by the
next server once the dead one's lease on the job lapses; a job that keeps dying
ends `failed` instead of looping forever. The "crash" is a server stopped before
it finished, its job left claimed in the catalogue as a dead worker leaves it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from bson import ObjectId
from fastapi import FastAPI

from app.clock import utc_now
from app.wiring import state_of
from data_api.entries.extraction import Extractor
from tests.fixtures.accounts import register_account
from tests.fixtures.datasets import QUIET_SETTINGS, create_dataset
from tests.fixtures.entries import upload_one, wait_for_text
from tests.fixtures.mailbox import Inbox

JOBS = "extraction_jobs"


async def _pending_entry(
    app: FastAPI, http: httpx.AsyncClient, inbox: Inbox, text: bytes
) -> tuple[Any, str]:
    """An account and an entry uploaded while the extractor's loop is stopped (it
    stays pending; `start()` resumes it)."""
    extractor = state_of(app).get(Extractor)
    extractor.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await extractor.task
    account = await register_account(http, inbox)
    dataset = await create_dataset(http, account.bearer)
    entry = await upload_one(http, account.bearer, dataset["id"], "notes.txt", text)
    assert entry["text_status"] == "pending"
    return account, entry["id"]


async def test_an_entry_left_pending_by_a_dead_worker_is_extracted_after_its_lease_lapses(
    make_client: Callable[..., Any], sync_client: Any, inbox: Inbox
) -> None:
    async with make_client(**QUIET_SETTINGS) as (first, http):
        settings = state_of(first).settings
        account, entry_id = await _pending_entry(first, http, inbox, b"quarterly revenue notes")
        jobs = sync_client[settings.control_db][JOBS]
        # The dead worker had claimed it: a lease that has just lapsed, one attempt.
        jobs.update_one(
            {"_id": ObjectId(entry_id)},
            {"$set": {"lease_until": utc_now() - timedelta(seconds=1), "attempts": 1}},
        )
    async with make_client(
        **QUIET_SETTINGS, control_db=settings.control_db, data_dir=settings.data_dir
    ) as (_, http):
        entry = await wait_for_text(http, account.bearer, entry_id)
        assert entry["text_status"] == "done"
        assert entry["text_chars"] == len("quarterly revenue notes")
        text = await http.get(f"/api/v1/entries/{entry_id}/text", headers=account.bearer)
        assert text.text == "quarterly revenue notes"
    assert jobs.find_one({"_id": ObjectId(entry_id)}) is None


async def test_a_live_lease_of_another_worker_is_not_taken_over(
    make_client: Callable[..., Any], sync_client: Any, inbox: Inbox
) -> None:
    async with make_client(**QUIET_SETTINGS) as (app, http):
        account, entry_id = await _pending_entry(app, http, inbox, b"still being worked on")
        jobs = sync_client[state_of(app).settings.control_db][JOBS]
        until = utc_now() + timedelta(hours=1)
        jobs.update_one({"_id": ObjectId(entry_id)}, {"$set": {"lease_until": until}})
        state_of(app).get(Extractor).start()
        await state_of(app).get(Extractor).run_due()
        entry = (await http.get(f"/api/v1/entries/{entry_id}", headers=account.bearer)).json()
        assert entry["data"]["text_status"] == "pending"
        assert jobs.find_one({"_id": ObjectId(entry_id)})["attempts"] == 0


async def test_a_job_that_keeps_dying_ends_failed_with_its_reason(
    make_client: Callable[..., Any], sync_client: Any, inbox: Inbox
) -> None:
    async with make_client(**QUIET_SETTINGS) as (app, http):
        account, entry_id = await _pending_entry(app, http, inbox, b"never extracted")
        jobs = sync_client[state_of(app).settings.control_db][JOBS]
        jobs.update_one(
            {"_id": ObjectId(entry_id)},
            {"$set": {"lease_until": utc_now() - timedelta(seconds=1), "attempts": 3}},
        )
        state_of(app).get(Extractor).start()
        entry = await wait_for_text(http, account.bearer, entry_id)
        assert entry["text_status"] == "failed"
        assert "3 attempts" in entry["text_error"]
        assert jobs.find_one({"_id": ObjectId(entry_id)}) is None


async def test_copies_left_by_a_dead_process_are_removed_at_start_and_live_ones_kept(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    data_dir = tmp_path / "restart-data"
    temp = data_dir / "tmp"
    temp.mkdir(parents=True)
    gone = temp / f"extract-{_exited_pid()}-left"
    kept = temp / f"extract-{os.getpid()}-in-flight"
    gone.write_bytes(b"x")
    kept.write_bytes(b"y")
    async with make_client(**QUIET_SETTINGS, data_dir=data_dir):
        assert not gone.exists()
        assert kept.exists()


def _exited_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
