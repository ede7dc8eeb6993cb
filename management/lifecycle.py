"""Start and stop the management package with the app: control-database indexes,
the maintenance task, and the index violation checks (`management.index_checks`).

The maintenance task finishes what a failed request could not: it rolls back
imports whose journal no live request holds (`management.journal`), and it
completes databases and collections left `creating` or `dropping` for longer
than `QUARRY_STALE_AFTER_SECONDS` (undoing a creation, finishing a drop). It runs
every `QUARRY_MAINTENANCE_INTERVAL_SECONDS` and simply tries again later while
the database is unreachable.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from pymongo.errors import PyMongoError

from app.clock import utc_now
from app.db import Database, Document
from app.settings import Settings
from app.wiring import AppState
from management import repository as repo
from management.index_checks import CHECK_INTERVAL_SECONDS, TASK_NAME, ViolationChecks
from management.indexes import indexed_field_types
from management.journal import JournalEntry, journal_entries
from management.service import ready_collections

logger = logging.getLogger("quarry.management")
#: The key of this package's control indexes in `Database.indexes_ready`.
MANAGEMENT = "management"


async def recover_imports(database: Database, settings: Settings) -> int:
    """Roll back every unclaimed journal entry (imports, multi-document CRUD
    inserts and updates); the number rolled back."""
    finished = 0
    for path in journal_entries(settings.data_dir / "import-journal"):
        entry = JournalEntry.claim(path)
        if entry is None:
            continue
        try:
            deleted = await entry.roll_back(database)
        except PyMongoError:
            entry.release()
            raise
        logger.info("rolled back an interrupted write (%d documents undone)", deleted)
        entry.remove()
        finished += 1
    return finished


async def finish_stale_changes(database: Database, settings: Settings) -> int:
    older_than = utc_now() - timedelta(seconds=settings.stale_after_seconds)
    records = await repo.stale_databases(db=database.control, older_than=older_than)
    for record in records:
        if record.get("state") in ("creating", "dropping"):
            await _finish_database(database, record)
            continue
        await _finish_collections(database, record)
    return len(records)


async def _finish_database(database: Database, record: Document) -> None:
    """Drop a database left `creating` or `dropping` — unless its lock is held: a
    slow create or drop is still running, not interrupted."""
    name = f"database:{record['_id']}"
    token = await repo.acquire_lock(db=database.control, name=name, wait_seconds=0)
    if token is None:
        return
    try:
        current = await repo.reload_database(db=database.control, database_id=record["_id"])
        if current is None or current.get("state") not in ("creating", "dropping"):
            return
        await repo.drop_physical_database(database=database, db_name=current["dbName"])
        await repo.delete_database_record(db=database.control, database_id=current["_id"])
        logger.info("finished %s database %s", current["state"], current["_id"])
    finally:
        await repo.release_lock(db=database.control, name=name, token=token)


async def _finish_collections(database: Database, record: Document) -> None:
    token = await repo.acquire_lock(
        db=database.control, name=f"database:{record['_id']}", wait_seconds=0
    )
    if token is None:
        return
    try:
        current = await repo.reload_database(db=database.control, database_id=record["_id"])
        if current is None:
            return
        kept = []
        for entry in current.get("collections", []):
            if entry.get("state", "ready") == "ready":
                kept.append(entry)
                continue
            await repo.drop_collection(
                database=database, db_name=current["dbName"], name=entry["name"]
            )
        await repo.save_collections(
            db=database.control, database_id=current["_id"], collections=kept
        )
    finally:
        await repo.release_lock(db=database.control, name=f"database:{record['_id']}", token=token)


async def declare_all_fields(database: Database) -> int:
    """Tell the engine every ready collection's indexed fields (its typed indexes are
    then checked, and built where missing, in the background); the number told."""
    told = 0
    for record in await repo.ready_databases(db=database.control):
        for entry in ready_collections(record):
            await repo.declare_fields(
                database=database,
                db_name=record["dbName"],
                collection=entry["name"],
                fields=indexed_field_types(entry),
            )
            told += 1
    return told


def maintenance_pass(
    database: Database, settings: Settings, *, declared: bool = False
) -> Callable[[], Awaitable[None]]:
    """One round of maintenance; `declared`: the collections' indexed fields were
    told to the engine already (at start), else the first round tells them."""

    async def work() -> None:
        nonlocal declared
        try:
            if MANAGEMENT not in database.indexes_ready:
                await repo.ensure_indexes(db=database.control)
                database.indexes_ready.add(MANAGEMENT)
            if not declared:
                await declare_all_fields(database)
                declared = True
            await recover_imports(database, settings)
            await finish_stale_changes(database, settings)
            await repo.drop_stale_undo_scratch(database=database)
        except PyMongoError as exc:
            logger.warning("management maintenance postponed: %s", type(exc).__name__)

    return work


@contextlib.asynccontextmanager
async def lifecycle(state: AppState) -> AsyncIterator[None]:
    """Creates the control indexes (or leaves it to the maintenance task) and runs it,
    and the background count of index violations after schema changes."""
    database, settings = state.database, state.settings
    declared = False
    try:
        await repo.ensure_indexes(db=database.control)
        database.indexes_ready.add(MANAGEMENT)
        # At once, not a maintenance interval later: an upgraded or restarted server's
        # typed indexes start building (in the background) before the first request.
        await declare_all_fields(database)
        declared = True
    except PyMongoError as exc:
        logger.warning("management indexes not created yet (%s); retrying", type(exc).__name__)
    checks = state.provide(ViolationChecks(database))
    async with (
        state.background.every(
            "management-maintenance",
            maintenance_pass(database, settings, declared=declared),
            settings.maintenance_interval_seconds,
        ),
        state.background.every(TASK_NAME, checks.run_due, CHECK_INTERVAL_SECONDS),
    ):
        yield
    state.forget(ViolationChecks)
