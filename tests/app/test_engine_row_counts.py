"""Row counters of the embedded engine (shadow_indexes.sql, `quarry_count_*`): an
unfiltered count reads a few counter rows kept by triggers instead of the whole
table, and is exactly `count(*)` — under concurrent writers, across installation
on a filled table, compaction, and a collection dropped and made again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from psycopg import sql
from pymongo.errors import BulkWriteError

from app.db import Database
from app.engine import EngineSql
from app.engine.planned_reads import rows_counted
from app.wiring import state_of
from tests.fixtures.engine import TEST_BACKEND, DatabaseServer
from tests.fixtures.values import plan_nodes

pytestmark = pytest.mark.skipif(
    TEST_BACKEND != "postgresql", reason="row counters belong to the PostgreSQL backend"
)


@dataclass
class Counted:
    database: Database
    sql: EngineSql
    owner: psycopg.AsyncConnection[Any]
    owner_conninfo: str
    db_name: str

    def raw(self, collection: str) -> Any:
        return self.database.client[self.db_name][collection]

    async def table(self, collection: str) -> str:
        cursor = await self.owner.execute(
            sql.SQL(
                "SELECT _jsonb ->> 'table' FROM {}._ferretdb_database_metadata "
                "WHERE _jsonb ->> '_id' = %s"
            ).format(sql.Identifier(self.db_name)),
            (collection,),
        )
        row = await cursor.fetchone()
        assert row is not None
        return str(row[0])

    async def counter(self, collection: str) -> int | None:
        cursor = await self.owner.execute(
            "SELECT quarry_count_of(%s, %s)", (self.db_name, await self.table(collection))
        )
        row = await cursor.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    async def rows(self, collection: str) -> int:
        cursor = await self.owner.execute(
            sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(self.db_name, await self.table(collection))
            )
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def slots(self, collection: str) -> list[int]:
        cursor = await self.owner.execute(
            "SELECT slot FROM quarry_row_counts WHERE token = quarry_count_token(%s::regclass) "
            "ORDER BY slot",
            (f'"{self.db_name}"."{await self.table(collection)}"',),
        )
        return [int(r[0]) for r in await cursor.fetchall()]

    async def uninstall(self, collection: str) -> None:
        """What a collection made before counters existed looks like."""
        table = await self.table(collection)
        relation = f'"{self.db_name}"."{table}"'
        cursor = await self.owner.execute("SELECT quarry_count_token(%s::regclass)", (relation,))
        row = await cursor.fetchone()
        assert row is not None and row[0] is not None
        token = row[0]
        for kind in "idt":
            await self.owner.execute(
                sql.SQL("DROP TRIGGER {} ON {}").format(
                    sql.Identifier(f"qcount_{kind}_{token}"),
                    sql.Identifier(self.db_name, table),
                )
            )
        await self.owner.execute("DELETE FROM quarry_row_counts WHERE token = %s", (token,))


@pytest.fixture
async def counted(app: FastAPI, database_server: DatabaseServer) -> AsyncIterator[Counted]:
    database = state_of(app).database
    if not isinstance(database.engine_reads, EngineSql) or database_server.engine is None:
        pytest.skip("no embedded engine SQL (external MongoDB)")
    owner = database_server.engine.superuser_conninfo()
    assert owner
    async with await psycopg.AsyncConnection.connect(owner, autocommit=True) as connection:
        db_name = f"quarry_test_counts_{uuid.uuid4().hex[:8]}"
        yield Counted(database, database.engine_reads, connection, owner, db_name)
        await database.client.drop_database(db_name)


async def test_a_new_collection_is_counted_from_its_creation(counted: Counted) -> None:
    await counted.database.client[counted.db_name].create_collection("items")
    assert await counted.counter("items") == 0  # installed in FerretDB's creating transaction
    raw = counted.raw("items")
    await raw.insert_many([{"_id": n, "v": n} for n in range(500)])
    await raw.insert_one({"_id": "one"})
    await raw.delete_many({"v": {"$lt": 100}})
    await raw.delete_one({"_id": "one"})
    await raw.delete_one({"_id": "nothing"})
    await raw.replace_one({"_id": "new"}, {"x": 1}, upsert=True)
    await raw.update_many({}, {"$set": {"w": 1}})
    assert await counted.rows("items") == 401
    assert await counted.counter("items") == 401
    db = counted.database.db(counted.db_name)
    assert await db["items"].count_documents({}) == 401
    # A write that fails changes nothing: an ordered insert stopping at a duplicate
    # keeps what it inserted before it, and so does the count.
    with pytest.raises(BulkWriteError):
        await raw.insert_many([{"_id": "d1"}, {"_id": 200}, {"_id": "d2"}])
    assert await counted.rows("items") == await counted.counter("items")
    # Renamed, the collection keeps its counter (FerretDB keeps the table).
    await raw.rename("renamed")
    assert await counted.counter("renamed") == await counted.rows("renamed")
    # Made by an insert (FerretDB creates the collection on the fly) as well.
    await counted.raw("implicit").insert_one({"_id": 1})
    assert await counted.counter("implicit") == 1


async def test_an_unfiltered_count_reads_the_counter_not_the_table(counted: Counted) -> None:
    raw = counted.raw("items")
    await raw.insert_many([{"_id": n} for n in range(50)])
    db = counted.database.db(counted.db_name)
    assert await db["items"].count_documents({}) == 50
    # A counter row the table does not back (only a superuser can write one): the
    # answer follows it, so the count did not read the table.
    await counted.owner.execute(
        "UPDATE quarry_row_counts SET n = n + 1000 WHERE token = quarry_count_token(%s::regclass) "
        "AND slot = 0",
        (f'"{counted.db_name}"."{await counted.table("items")}"',),
    )
    assert await counted.sql.count(counted.db_name, "items") == 1050
    assert await db["items"].count_documents({}) == 1050


async def test_concurrent_writers_keep_the_count_exact_and_compaction_keeps_the_sum(
    counted: Counted,
) -> None:
    raw = counted.raw("items")
    await raw.insert_one({"_id": "seed"})

    async def writer(w: int) -> None:
        for n in range(40):
            await raw.insert_many([{"_id": f"{w}-{n}-{k}", "w": w} for k in range(3)])
            if n % 4 == 0:
                await raw.delete_one({"_id": f"{w}-{n}-0"})

    async def same_snapshot(done: asyncio.Event) -> int:
        """The counter and count(*) read by one statement, again and again while
        the writers work: always equal."""
        table = sql.Identifier(counted.db_name, await counted.table("items"))
        statement = sql.SQL("SELECT quarry_count_of(%s, %s), (SELECT count(*) FROM {})").format(
            table
        )
        checks = 0
        async with await psycopg.AsyncConnection.connect(
            counted.owner_conninfo, autocommit=True
        ) as connection:
            while not done.is_set() or checks < 5:
                cursor = await connection.execute(
                    statement, (counted.db_name, await counted.table("items"))
                )
                row = await cursor.fetchone()
                assert row is not None and row[0] == row[1], row
                checks += 1
        return checks

    done = asyncio.Event()

    async def writers() -> None:
        await asyncio.gather(*(writer(w) for w in range(12)))
        done.set()

    _, checks = await asyncio.gather(writers(), same_snapshot(done))
    assert checks >= 5
    expected = 1 + 12 * (40 * 3 - 10)
    assert await counted.rows("items") == expected
    assert await counted.counter("items") == expected
    assert len(await counted.slots("items")) > 1  # one row per writing backend (and slot 0)
    await counted.owner.execute("CALL quarry_count_compact()")
    assert await counted.slots("items") == [0]
    assert await counted.counter("items") == expected


async def test_compaction_beside_writers_loses_nothing(counted: Counted) -> None:
    raw = counted.raw("items")
    await raw.insert_one({"_id": "seed"})
    done = asyncio.Event()

    async def writer(w: int) -> None:
        for n in range(30):
            await raw.insert_many([{"_id": f"{w}-{n}-{k}"} for k in range(2)])
            await raw.delete_one({"_id": f"{w}-{n}-1"})

    async def writers() -> None:
        await asyncio.gather(*(writer(w) for w in range(6)))
        done.set()

    async def compactor() -> int:
        rounds = 0
        async with await psycopg.AsyncConnection.connect(
            counted.owner_conninfo, autocommit=True
        ) as connection:
            while not done.is_set() or rounds < 3:
                await connection.execute("CALL quarry_count_compact()")
                rounds += 1
        return rounds

    _, rounds = await asyncio.gather(writers(), compactor())
    assert rounds >= 3
    assert await counted.rows("items") == 1 + 6 * 30
    assert await counted.counter("items") == 1 + 6 * 30


async def test_a_collection_without_a_counter_is_counted_then_gets_one_beside_writers(
    counted: Counted,
) -> None:
    raw = counted.raw("items")
    await raw.insert_many([{"_id": n} for n in range(300)])
    await counted.uninstall("items")
    assert await counted.counter("items") is None
    db = counted.database.db(counted.db_name)
    assert await db["items"].count_documents({}) == 300  # count(*) meanwhile

    stop, installed = asyncio.Event(), asyncio.Event()
    after = [0] * 4

    async def writer(w: int) -> None:
        written = 0
        while not stop.is_set():
            await raw.insert_one({"_id": f"w{w}-{written}"})
            written += 1
            if installed.is_set():
                after[w] += 1
                if min(after) >= 10:
                    stop.set()

    writers = [asyncio.create_task(writer(w)) for w in range(4)]
    await asyncio.sleep(0.05)  # the writers are under way before, during and after it
    async with await psycopg.AsyncConnection.connect(
        counted.owner_conninfo, autocommit=True
    ) as installer:
        cursor = await installer.execute(
            "SELECT quarry_count_install(%s, %s)", (counted.db_name, await counted.table("items"))
        )
        assert (await cursor.fetchone()) == (True,)
    installed.set()
    await asyncio.gather(*writers)
    assert await counted.counter("items") == await counted.rows("items")
    # Installing again changes nothing.
    cursor = await counted.owner.execute(
        "SELECT quarry_count_install(%s, %s)", (counted.db_name, await counted.table("items"))
    )
    assert (await cursor.fetchone()) == (False,)


async def test_a_collection_dropped_and_made_again_starts_from_zero(counted: Counted) -> None:
    raw = counted.raw("items")
    await raw.insert_many([{"_id": n} for n in range(20)])
    old = await counted.table("items")
    await raw.drop()
    await raw.insert_one({"_id": 1})
    assert await counted.table("items") == old  # FerretDB's table name comes back
    assert await counted.counter("items") == 1
    await counted.owner.execute("CALL quarry_count_compact()")
    cursor = await counted.owner.execute(
        "SELECT count(*) FROM quarry_row_counts c WHERE NOT EXISTS "
        "(SELECT 1 FROM pg_trigger t WHERE t.tgname = 'qcount_i_' || c.token)"
    )
    assert (await cursor.fetchone()) == (0,)  # the dropped table's rows are gone
    assert await counted.counter("items") == 1


async def test_the_count_statement_never_scans_a_counted_table(counted: Counted) -> None:
    await counted.raw("items").insert_many([{"_id": n} for n in range(2000)])
    table = await counted.table("items")
    statement = rows_counted(counted.db_name, table).as_string(counted.owner)
    cursor = await counted.owner.execute(
        "EXPLAIN (ANALYZE, COSTS OFF, FORMAT JSON) SELECT " + statement
    )
    row = await cursor.fetchone()
    assert row is not None
    scans = [n for n in plan_nodes(row[0][0]["Plan"]) if n["Node Type"] == "Seq Scan"]
    assert [(s["Relation Name"], s.get("Actual Loops")) for s in scans] == [(table, 0)]
    assert await counted.database.db(counted.db_name)["items"].count_documents({}) == 2000


async def test_a_counter_without_its_base_row_is_no_count(counted: Counted) -> None:
    """A table whose slot 0 is missing (a dump restored without this table's counter
    rows): its count is count(*), and compaction does not fold rows into nothing."""
    raw = counted.raw("items")
    await raw.insert_many([{"_id": n} for n in range(30)])
    relation = f'"{counted.db_name}"."{await counted.table("items")}"'
    await counted.owner.execute(
        "DELETE FROM quarry_row_counts WHERE token = quarry_count_token(%s::regclass) AND slot = 0",
        (relation,),
    )
    assert await counted.counter("items") is None
    assert await counted.database.db(counted.db_name)["items"].count_documents({}) == 30
    await counted.owner.execute("CALL quarry_count_compact()")
    assert await counted.slots("items") != []  # left as they were
