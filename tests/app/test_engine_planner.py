"""The read planner (app/engine/planner.py): what it answers by SQL is what FerretDB
answers itself, it reads through the typed indexes, and it leaves to FerretDB
what it cannot answer exactly (undeclared or mixed-type fields, a field whose
type changed until its documents hold the new type).

The differential test draws seeded random filters, sorts, skips and limits over
documents full of edge values and compares the `_id`s in order and the counts of
the SQL path with FerretDB's own evaluation (the raw driver on the same
collection) — and, for some, the whole documents the adapter returns.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import psycopg
import pytest
from bson import Int64, ObjectId
from fastapi import FastAPI
from pymongo import MongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import WriteError

from app.db import Database, FindSpec
from app.engine import EngineSql
from app.engine.adapter import TARGETED_CONCURRENCY
from app.engine.planned_reads import PlannedCursor, count_statement, find_statement
from app.engine.planner import MAX_BRANCHES, Unplannable, plan_read, projection_plan
from app.kit import to_plain
from app.wiring import state_of
from tests.fixtures.engine import TEST_BACKEND, DatabaseServer
from tests.fixtures.values import plan_nodes

pytestmark = pytest.mark.skipif(
    TEST_BACKEND != "postgresql", reason="the read planner belongs to the PostgreSQL backend"
)

#: `QUARRY_PLANNER_SEED=<n>` runs the differential test with other data and queries.
SEED = int(os.environ.get("QUARRY_PLANNER_SEED", "252"))
#: Field → schema type, all declared `index: true`.
TYPES = {"n": "float", "i": "int", "s": "string", "d": "date", "b": "bool", "o": "id"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OIDS = [ObjectId(f"{n:024x}") for n in (0, 1, 0xFF, 2**95, 2**96 - 1)] + [
    ObjectId() for _ in range(4)
]
POOLS: dict[str, list[Any]] = {
    "n": [
        0, 1, -1, 7, 2147483647, -2147483648, Int64(2147483648), Int64(-2147483649),
        2**53 - 1, Int64(2**53), Int64(2**53 + 1), float(2**53), float(2**53 + 2),
        9007199254740993.0, 2.0**63, -(2.0**63), Int64(2**63 - 1), Int64(-(2**63)),
        Int64(2**62), 2.0**62, 1152921504606846976.0, Int64(1152921504606846977),
        -0.0, 0.0, 0.1 + 0.2, 0.3, 1e-300, 5e-324, 1e300, -1e300, 1.5, -1.5, 2.5,
    ],
    "i": [0, 1, -1, 42, 2147483647, -2147483648, Int64(2**31), Int64(2**53 + 1),
          Int64(2**63 - 1), Int64(-(2**63)), Int64(-5)],
    "s": ["", "a", "A", "b", "ab", "é", "e\u0301", "ﬁ", "fi", "😀", "\x01", "\x1f", "\x7f",
          "z", "Z", "中文", " ", "a b", "%", "_x"],
    "d": [EPOCH, EPOCH - timedelta(milliseconds=1), EPOCH + timedelta(milliseconds=1),
          datetime(1900, 1, 1, tzinfo=UTC), datetime(1969, 7, 20, 20, 17, tzinfo=UTC),
          datetime(2024, 2, 29, 12, 0, 0, 123000, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)],
    "b": [True, False],
    "o": OIDS,
}  # fmt: skip
#: Values the filters use besides the stored ones (between and beyond them).
EXTRA: dict[str, list[Any]] = {
    "n": [0.5, -0.5, 3, Int64(3), 1e308, -1e308, 9.223372036854775e18, 2**53 + 1.0, 4],
    "i": [2, Int64(2), 2.0, 41.5, 2**62],
    "s": ["aa", "y", "éa", "😁", "b\x01"],
    "d": [datetime(2000, 1, 1, tzinfo=UTC), EPOCH - timedelta(days=1)],
    "b": [],
    "o": [ObjectId(f"{2**80:024x}")],
}
IDS: list[Any] = [
    1, -1, 0, 2, 3.5, -7.25, Int64(2**62), Int64(-(2**63)), 2.0**60, 1e300,
    "", "a", "B", "é", "😀", "id-1", "id-10", "id-2", *OIDS,
]  # fmt: skip
DOCUMENTS = 500
QUERIES = int(os.environ.get("QUARRY_PLANNER_QUERIES", "500"))


def stored_value(rng: random.Random, name: str) -> Any:
    return rng.choice(POOLS[name])


def make_documents(rng: random.Random) -> list[dict[str, Any]]:
    ids = list(IDS) + [ObjectId() for _ in range(DOCUMENTS - len(IDS))]
    documents = []
    for _id in ids:
        document: dict[str, Any] = {"_id": _id}
        for name in TYPES:
            roll = rng.random()
            if roll < 0.12:
                continue  # missing
            document[name] = None if roll < 0.2 else stored_value(rng, name)
        document["u"] = rng.choice([1, "1", None, [1, 2], {"x": 1}])  # undeclared, mixed
        documents.append(document)
    rng.shuffle(documents)
    return documents


# ------------------------------------------------------------------ the queries


def value(rng: random.Random, name: str, *, nullable: bool) -> Any:
    if name == "_id":
        return rng.choice([*IDS, "zz", 1.5, Int64(2)])
    choices = POOLS[name] + EXTRA[name]
    if nullable and rng.random() < 0.15:
        return None
    return rng.choice(choices)


def leaf(rng: random.Random) -> dict[str, Any]:
    name = rng.choice([*TYPES, "_id"])
    op = rng.choice(
        ["=", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$type"]
    )
    if op == "=":
        return {name: value(rng, name, nullable=name != "_id")}
    if op in ("$eq", "$ne"):
        return {name: {op: value(rng, name, nullable=name != "_id")}}
    if op in ("$gt", "$gte", "$lt", "$lte"):
        condition = {op: value(rng, name, nullable=False)}
        if rng.random() < 0.4:  # a range: two bounds on one field
            other = rng.choice(["$lt", "$lte"] if op in ("$gt", "$gte") else ["$gt", "$gte"])
            condition[other] = value(rng, name, nullable=False)
        return {name: condition}
    if op in ("$in", "$nin"):
        items = [value(rng, name, nullable=name != "_id") for _ in range(rng.randint(0, 4))]
        return {name: {op: items}}
    if op == "$exists":
        return {name: {"$exists": rng.random() < 0.5}}
    aliases = ["number", "string", "objectId", "null", "double", "int", "long", "date", "bool"]
    return {name: {"$type": rng.sample(aliases, rng.randint(1, 3))}}


def random_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.1 and depth == 0:
        return {}
    if roll < 0.4 and depth < 2:
        operator = rng.choice(["$and", "$or", "$nor"])
        return {
            operator: [random_filter(rng, depth + 1) or leaf(rng) for _ in range(rng.randint(1, 3))]
        }
    merged: dict[str, Any] = {}
    for _ in range(rng.randint(1, 2)):
        merged.update(leaf(rng))
    return merged


def random_sort(rng: random.Random) -> list[tuple[str, int]]:
    names = rng.sample(list(TYPES), rng.randint(0, 3))
    keys = [(name, rng.choice([1, -1])) for name in names]
    return [*keys, ("_id", rng.choice([1, -1]))]


# ------------------------------------------------------------------ fixtures


@dataclass
class Seeded:
    database: Database
    sql: EngineSql
    db_name: str
    collection: str
    documents: list[dict[str, Any]]

    def stats(self) -> Counter[str]:
        """How the planner answered reads of this test's database."""
        return self.sql.planner_stats.of(self.db_name)

    @property
    def raw(self) -> AsyncCollection[dict[str, Any]]:
        """FerretDB itself: the driver, with no adapter in between."""
        return self.database.client[self.db_name][self.collection]


def engine_sql(database: Database) -> EngineSql:
    if not isinstance(database.engine_reads, EngineSql):
        pytest.skip("no embedded engine SQL (external MongoDB)")
    return database.engine_reads


async def seed(
    database: Database, documents: list[dict[str, Any]], types: dict[str, str]
) -> Seeded:
    sql = engine_sql(database)
    db_name = f"quarry_test_planner_{uuid.uuid4().hex[:8]}"
    raw = database.client[db_name]["items"]
    for start in range(0, len(documents), 5000):
        await raw.insert_many(documents[start : start + 5000])
    await database.db(db_name)["items"].declare_fields(types)
    await sql.indexes_settled()
    return Seeded(database, sql, db_name, "items", documents)


@pytest.fixture
async def seeded(app: FastAPI) -> AsyncIterator[Seeded]:
    database = state_of(app).database
    rng = random.Random(SEED)
    yield await seed(database, make_documents(rng), TYPES)


def described(filter: Any, sort: Any = None, skip: int = 0, limit: int = 0) -> str:
    return f"filter={filter!r} sort={sort!r} skip={skip} limit={limit}"


# ------------------------------------------------------------------ differential


async def test_sql_answers_what_ferretdb_answers(seeded: Seeded) -> None:
    rng = random.Random(SEED + 1)
    started = time.monotonic()
    served_before = seeded.stats()["served"]
    handle = seeded.database.db(seeded.db_name)[seeded.collection]
    for number in range(QUERIES):
        filter = random_filter(rng) or leaf(rng)
        sort = random_sort(rng)
        skip = rng.choice([0, 0, 0, 1, 5, 37, 390])
        limit = rng.choice([1, 5, 20, 100, 1000])
        unsorted = number % 10 == 5  # the whole answer, in no promised order
        if unsorted:
            sort, skip, limit = [], 0, 0
        what = described(filter, sort, skip, limit)
        spec = FindSpec(filter=filter, sort=sort, skip=skip, limit=limit)
        rows = await seeded.sql.find(seeded.db_name, seeded.collection, spec)
        assert rows is not None, f"not served: {what}"
        expected = await seeded.raw.find(filter, sort=sort, skip=skip, limit=limit).to_list(None)
        found_ids = [bson.encode({"_id": row["_id"]}) for row in rows]
        expected_ids = [bson.encode({"_id": doc["_id"]}) for doc in expected]
        if unsorted:
            found_ids, expected_ids = sorted(found_ids), sorted(expected_ids)
        assert found_ids == expected_ids, what
        counted = await seeded.sql.count_matching(seeded.db_name, seeded.collection, filter)
        assert counted == await seeded.raw.count_documents(filter), f"count: {what}"
        if number % 10 == 0 and not unsorted:  # the adapter's documents: the driver's
            documents = await handle.find(filter, sort=sort, skip=skip, limit=limit).to_list()
            assert [bson.encode(d) for d in documents] == [bson.encode(d) for d in expected], what
    through_adapter = (QUERIES + 9) // 10
    assert seeded.stats()["served"] - served_before == 2 * QUERIES + through_adapter
    assert time.monotonic() - started < 90


async def test_projections_match_ferretdb(seeded: Seeded) -> None:
    handle = seeded.database.db(seeded.db_name)[seeded.collection]
    sort = [("s", 1), ("_id", 1)]
    projections: list[dict[str, Any]] = [
        {"n": 1, "s": 1}, {"s": 1, "n": 1, "_id": 0}, {"n": 0, "u": 0}, {"_id": 0}, {"_id": 1},
        {"missing": 1}, {"u": True, "_id": False},
    ]  # fmt: skip
    for projection in projections:
        expected = await seeded.raw.find({"i": {"$gte": 0}}, projection, sort=sort).to_list(None)
        served = seeded.stats()["served"]
        found = await handle.find({"i": {"$gte": 0}}, projection, sort=sort, limit=500).to_list()
        assert seeded.stats()["served"] == served + 1, projection
        assert [bson.encode(d) for d in found] == [bson.encode(d) for d in expected], projection


async def test_find_one_and_counts_through_the_adapter(seeded: Seeded) -> None:
    handle = seeded.database.db(seeded.db_name)[seeded.collection]
    filter = {"$or": [{"n": {"$gt": 2**53}}, {"s": {"$in": ["é", "😀"]}}]}
    served = seeded.stats()["served"]
    found = await handle.find_one(filter)
    assert found is not None and await seeded.raw.count_documents({**filter, "_id": found["_id"]})
    assert await handle.count_documents(filter) == await seeded.raw.count_documents(filter)
    assert seeded.stats()["served"] == served + 2
    assert await handle.find_one({"n": {"$gt": 1e308}}) is None


async def test_a_long_or_is_one_condition_and_a_short_one_is_read_by_branches(
    seeded: Seeded,
) -> None:
    """Read branch by branch, each `$or` alternative excludes the earlier ones, so the
    statement grows with the square of their number (1,000 alternatives made 65 MB of
    SQL and held the event loop for seconds): past `MAX_BRANCHES` it is one condition,
    and either way the answer is FerretDB's."""
    typed = {"s": "string", "i": "number", "n": "number"}
    sort = [("n", 1), ("_id", 1)]
    short = {"$or": [{"s": "a"}, {"i": {"$gte": 0}}]}
    long = {"$or": [{"s": f"v{n}"} for n in range(1000)] + short["$or"]}
    assert len(plan_read(short, sort, typed).branches or []) == 2
    assert plan_read(long, sort, typed).branches is None
    assert len(plan_read({"$or": [{"s": "a"}] * MAX_BRANCHES}, sort, typed).branches or []) == (
        MAX_BRANCHES
    )
    handle = seeded.database.db(seeded.db_name)[seeded.collection]
    for filter in (short, long):
        served = seeded.stats()["served"]
        found = await handle.find(filter, sort=sort, limit=20).to_list()
        expected = await seeded.raw.find(filter, sort=sort, limit=20).to_list(None)
        assert [bson.encode(d) for d in found] == [bson.encode(d) for d in expected]
        assert seeded.stats()["served"] == served + 1


async def test_a_deep_page_of_an_or_is_served(seeded: Seeded) -> None:
    """skip + limit past 32,767 (sent as int2, their sum overflowed: a fallback)."""
    handle = seeded.database.db(seeded.db_name)[seeded.collection]
    filter, sort = {"$or": [{"s": "a"}, {"i": {"$gte": 0}}]}, [("n", 1), ("_id", 1)]
    served = seeded.stats()["served"]
    assert await handle.find(filter, sort=sort, skip=32_760, limit=20).to_list() == []
    assert seeded.stats()["served"] == served + 1
    page = await handle.find(filter, sort=sort, skip=3, limit=32_765).to_list()
    expected = await seeded.raw.find(filter, sort=sort, skip=3).to_list(None)
    assert [d["_id"] for d in page] == [d["_id"] for d in expected]


@pytest.mark.parametrize(
    ("filter", "projection"),
    [
        ({"s": {"$type": {}}}, None),  # unhashable
        ({"s": {"$type": [[1]]}}, None),
        ({"s": {"$exists": 1}}, None),  # FerretDB reads a non-bool its own way
        ({"_id": {"$exists": 0}}, None),
        ({"s": "a"}, ["s"]),  # the driver's list form
    ],
)
def test_shapes_it_does_not_expect_are_unplannable_not_errors(
    filter: dict[str, Any], projection: Any
) -> None:
    with pytest.raises(Unplannable):
        plan_read(filter, [("s", 1)], {"s": "string"})
        projection_plan(projection)


async def test_a_planned_cursor_consumes_what_it_hands_out() -> None:
    """As the driver's cursor: `to_list(n)` then iteration go on where it stopped."""
    documents = [{"_id": n} for n in range(5)]

    async def planned() -> list[dict[str, Any]]:
        return list(documents)

    def fallback() -> Any:
        raise AssertionError("FerretDB is not asked when SQL answered")

    cursor = PlannedCursor(planned, fallback)
    assert await cursor.to_list(2) == documents[:2]
    assert [d async for d in cursor] == documents[2:]
    assert await cursor.to_list() == []


async def test_ddl_with_an_empty_search_path_passes_the_engine_triggers(
    app: FastAPI, database_server: DatabaseServer
) -> None:
    """pg_restore runs with an empty search_path and quotes names that start with a
    digit (Quarry's physical names may): the triggers must find their functions."""
    assert database_server.engine is not None
    conninfo = database_server.engine.superuser_conninfo()
    assert conninfo
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
        await connection.execute('CREATE SCHEMA "9planner"')
        try:
            await connection.execute("SET search_path = ''")
            await connection.execute('CREATE TABLE "9planner".t (a int)')
            await connection.execute('CREATE INDEX planner_idx ON "9planner".t (a)')
            await connection.execute('DROP INDEX "9planner".planner_idx')
            await connection.execute('DROP TABLE "9planner".t')
        finally:
            await connection.execute("SET search_path = public")
            await connection.execute('DROP SCHEMA "9planner" CASCADE')


async def test_writes_by_filter_go_by_id_where_the_planner_finds_them(seeded: Seeded) -> None:
    """update_many and delete_many on typed fields find their documents through the
    planner and write them by `_id` (FerretDB read the whole collection for each):
    the stored result is what FerretDB's own update_many and delete_many store."""
    handle = seeded.database.db(seeded.db_name)[seeded.collection]
    twin = seeded.database.client[seeded.db_name]["twin"]
    await twin.insert_many(seeded.documents)
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (
            {"s": {"$in": ["a", "é", "😀"]}, "n": {"$gte": -1e308}},
            {"$set": {"u": "set"}, "$inc": {"n": 2.5}},
        ),
        ({"n": {"$gte": 1e300}}, {"$unset": {"b": ""}}),
        (
            {"$or": [{"b": True}, {"i": {"$lt": 0}}], "n": {"$gte": -10, "$lte": 10}},
            {"$mul": {"n": 2}},
        ),
        ({"s": "no such value"}, {"$set": {"u": 1}}),
    ]
    for filter, update in cases:
        served = seeded.stats()["served"]
        ours = await handle.update_many(filter, update)
        assert seeded.stats()["served"] == served + 1, filter
        theirs = await twin.update_many(filter, update)
        assert (ours.matched_count, ours.modified_count) == (
            theirs.matched_count,
            theirs.modified_count,
        ), filter
    for filter in ({"d": {"$lt": EPOCH}}, {"o": {"$in": OIDS[:3]}}):
        served = seeded.stats()["served"]
        deleted = await handle.delete_many(filter)
        assert seeded.stats()["served"] == served + 1, filter
        assert deleted.deleted_count == (await twin.delete_many(filter)).deleted_count
    sort = [("_id", 1)]
    stored = await seeded.raw.find({}, sort=sort).to_list(None)
    expected = await twin.find({}, sort=sort).to_list(None)
    assert [bson.encode(d) for d in stored] == [bson.encode(d) for d in expected]


async def test_an_int32_increment_by_id_becomes_a_long_where_it_would_overflow(
    seeded: Seeded,
) -> None:
    handle = seeded.database.db(seeded.db_name)[seeded.collection]
    edge = {"i": {"$in": [2147483647, 0]}}
    before = {d["_id"]: d["i"] for d in await seeded.raw.find(edge).to_list(None)}
    assert 2147483647 in before.values() and 0 in before.values()
    served = seeded.stats()["served"]
    result = await handle.update_many(edge, {"$inc": {"i": 1}})
    assert seeded.stats()["served"] == served + 1
    assert result.modified_count == len(before)
    for document_id, old in before.items():
        stored = await seeded.raw.find_one({"_id": document_id})
        assert stored is not None
        assert stored["i"] == old + 1
        assert isinstance(stored["i"], Int64) == (old == 2147483647), stored


async def test_a_write_by_filter_that_fails_stops_and_changes_nothing_more(
    seeded: Seeded,
) -> None:
    """`$inc` of a string field fails on the first document: no further write starts,
    the failure is raised (not a hang, not a partial success), and nothing changed."""
    handle = seeded.database.db(seeded.db_name)[seeded.collection]
    filter = {"s": {"$in": ["a", "b", "z", "é"]}}
    before = await seeded.raw.find(filter, sort=[("_id", 1)]).to_list(None)
    assert len(before) > TARGETED_CONCURRENCY
    served = seeded.stats()["served"]
    with pytest.raises(WriteError):
        await handle.update_many(filter, {"$inc": {"s": 1}})
    assert seeded.stats()["served"] == served + 1
    after = await seeded.raw.find(filter, sort=[("_id", 1)]).to_list(None)
    assert [bson.encode(d) for d in after] == [bson.encode(d) for d in before]


async def test_an_any_order_find_is_read_by_the_planner(seeded: Seeded) -> None:
    """An unsorted, limited find is FerretDB's (which documents it returns is its
    natural order) unless any matches will do, as for an update's undo log."""
    handle = seeded.database.db(seeded.db_name)[seeded.collection]
    filter = {"i": {"$gte": 0}}
    served = seeded.stats()["served"]
    natural = await handle.find(filter, limit=5).to_list()
    assert seeded.stats()["served"] == served
    found = await handle.find(filter, limit=5, any_order=True).to_list()
    assert seeded.stats()["served"] == served + 1
    assert len(natural) == len(found) == 5
    expected = await seeded.raw.find(filter, sort=[("_id", 1)], limit=5).to_list(None)
    assert [bson.encode(d) for d in found] == [bson.encode(d) for d in expected]


async def test_planned_documents_are_the_drivers_for_every_kind(app: FastAPI) -> None:
    """A planned page (read from the stored form straight into the driver's form, or
    decoded and put through BSON) holds exactly what FerretDB returns for every
    BSON kind it stores: the same values, types and field order, and the same API
    JSON."""
    database = state_of(app).database
    kinds: list[dict[str, Any]] = []
    for n in range(30):
        kinds.append(
            {
                "_id": ObjectId(f"{n + 1:024x}"),
                "n": [1.5, -0.0, 1e300, 5e-324, 2.0**63, 0.1 + 0.2][n % 6],
                "int": [7, -(2**31), 2**31 - 1][n % 3],
                "long": [Int64(2**40), Int64(-(2**63)), Int64(2**63 - 1), Int64(0)][n % 4],
                "string": 'text ünïcode 😀 \u2028 "q" 1234567890123456789012',
                "bool": bool(n % 2),
                "null": None,
                "date": EPOCH + timedelta(milliseconds=[-1, 1, 86_400_123][n % 3] * (n + 1)),
                "old": datetime(1900, 1, 1, 0, 0, 0, 1000, tzinfo=UTC),
                "last": datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
                "binary": bson.Binary(b"\x00\x01\xff", 0),
                "uuid": bson.Binary(uuid.UUID(int=n).bytes, 4),
                "other": bson.Binary(b"\xde\xad", 5),
                "regex": bson.Regex("^a.*z$", "im"),
                "timestamp": bson.Timestamp(1_700_000_000, n),
                "oid": OIDS[n % len(OIDS)],
                "nested": {"list": [1, "two", {"three": [None, False, Int64(3)]}], "empty": {}},
                "empty_list": [],
            }
        )
        if n % 2:  # only kinds the stored form is read into the driver's form from
            for name in ("uuid", "other", "regex", "timestamp"):
                del kinds[-1][name]
    seeded = await seed(database, kinds, {"n": "float"})
    handle = database.db(seeded.db_name)[seeded.collection]
    for projection in (None, {"nested": 1, "uuid": 1, "date": 1}):
        served = seeded.stats()["served"]
        found = await handle.find({}, projection, sort=[("_id", 1)], limit=100).to_list()
        assert seeded.stats()["served"] == served + 1
        expected = await seeded.raw.find({}, projection, sort=[("_id", 1)]).to_list(None)
        assert len(found) == len(kinds)
        codec = seeded.raw.codec_options  # UUIDs as uuid.UUID
        encoded = [bson.encode(d, codec_options=codec) for d in found]
        assert encoded == [bson.encode(d, codec_options=codec) for d in expected]
        assert [list(d) for d in found] == [list(d) for d in expected]
        assert repr(found) == repr(expected)  # the types too (bytes, UUID, datetime zones)
        assert json.dumps(to_plain(found)) == json.dumps(to_plain(expected))


async def test_nan_cannot_be_stored(seeded: Seeded) -> None:
    """So the number keys never meet one (FerretDB refuses it on PostgreSQL)."""
    with pytest.raises(Exception):  # noqa: B017 (FerretDB drops the connection)
        await seeded.raw.insert_one({"n": float("nan")})
    assert await seeded.raw.count_documents({}) == len(seeded.documents)


# ------------------------------------------------------------------ the indexes


@dataclass
class Explained:
    seeded: Seeded
    connection: psycopg.AsyncConnection[Any]
    table: str
    names: dict[str, str]  # field → its typed index's name

    async def scans(self, statement: Any, params: list[Any]) -> list[dict[str, Any]]:
        """The scans of the statement's plan (every node that reads the table)."""
        cursor = await self.connection.execute(
            psycopg.sql.SQL("EXPLAIN (FORMAT JSON) ") + statement, params
        )
        row = await cursor.fetchone()
        assert row is not None
        nodes = plan_nodes(row[0][0]["Plan"])
        return [n for n in nodes if n.get("Relation Name") == self.table or "Index Name" in n]


@pytest.fixture
async def explained(app: FastAPI, database_server: DatabaseServer) -> AsyncIterator[Explained]:
    """20,000 documents: enough that PostgreSQL prefers an index wherever one helps."""
    rng = random.Random(SEED)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    documents = [
        {
            "price": round(rng.uniform(0, 1000), 2),
            "qty": rng.randint(0, 10_000),
            "name": f"item {rng.randint(0, 5000):05d}",
            "when": start + timedelta(minutes=rng.randint(0, 10**6)),
        }
        for _ in range(20_000)
    ]
    types = {"price": "float", "qty": "int", "name": "string", "when": "date"}
    seeded = await seed(state_of(app).database, documents, types)
    conninfo = database_server.engine.postgres_conninfo() if database_server.engine else None
    assert conninfo
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
        cursor = await connection.execute(
            psycopg.sql.SQL(
                "SELECT _jsonb ->> 'table' FROM {}._ferretdb_database_metadata "
                "WHERE _jsonb ->> '_id' = 'items'"
            ).format(psycopg.sql.Identifier(seeded.db_name))
        )
        table = (await cursor.fetchone())[0]  # type: ignore[index]
        cursor = await connection.execute(
            "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass "
            "AND c.relname LIKE 'qk%%'",
            (f'"{seeded.db_name}"."{table}"',),
        )
        names = {json.loads(comment)["field"]: name for name, comment in await cursor.fetchall()}
        yield Explained(seeded, connection, table, names)


START_2020_FEB = datetime(2020, 2, 1, tzinfo=UTC)
EXPLAINED = [
    # (filter, sort, skip, limit, the fields whose index the answer must be read by)
    ({}, [("price", 1), ("_id", 1)], 0, 21, {"price"}),
    ({}, [("price", -1), ("_id", -1)], 0, 21, {"price"}),
    ({"price": {"$gte": 100, "$lt": 110}}, [("price", -1), ("_id", 1)], 0, 21, {"price"}),
    ({"when": {"$gte": datetime(2020, 3, 1, tzinfo=UTC), "$lt": datetime(2020, 3, 2, tzinfo=UTC)}},
     [("_id", 1)], 0, 21, {"when"}),
    ({"name": {"$in": ["item 00001", "item 04000", "item 02500"]}}, [("_id", 1)], 0, 21, {"name"}),
    ({"$or": [{"name": "item 00042"}, {"qty": {"$lt": 10}}]}, [("_id", 1)], 0, 21, {"name", "qty"}),
    ({}, [("when", -1), ("_id", 1)], 4000, 21, {"when"}),
    ({}, [("_id", 1)], 0, 21, {"_id"}),
    # A cursor page (data_api/documents/query.py's keyset filter after price 500).
    ({"$or": [{"price": {"$gt": 500.0}},
              {"$and": [{"price": {"$eq": 500.0}}, {"_id": {"$gt": ObjectId("f" * 24)}}]}]},
     [("price", 1), ("_id", 1)], 0, 21, {"price"}),
    ({"qty": {"$gte": 5000},
      "$or": [{"name": {"$gt": "item 04000"}}, {"when": {"$lt": START_2020_FEB}}]},
     [("when", -1), ("_id", 1)], 40, 21, {"when"}),
    ({"qty": 7}, [("price", 1), ("_id", 1)], 0, 21, {"qty"}),
]  # fmt: skip


@pytest.mark.parametrize(("filter", "sort", "skip", "limit", "indexes"), EXPLAINED)
async def test_planned_finds_read_the_typed_indexes(
    explained: Explained,
    filter: dict[str, Any],
    sort: list[tuple[str, int]],
    skip: int,
    limit: int,
    indexes: set[str],
) -> None:
    keys = await explained.seeded.sql.catalog.keys(
        explained.connection, explained.seeded.db_name, explained.table
    )
    plan = plan_read(filter, sort, keys.fields)
    statement, params = find_statement(explained.seeded.db_name, explained.table, plan, limit, skip)
    scans = await explained.scans(statement, params)
    assert not [s for s in scans if s["Node Type"] == "Seq Scan"], scans
    used = {s["Index Name"] for s in scans if "Index Name" in s}
    assert {explained.names[name] for name in indexes} <= used
    # Every guard is one descent of its index's leading column.
    guard_indexes = {explained.names["_id"]} | {explained.names[f] for f in plan.families}
    assert guard_indexes <= used


@pytest.mark.parametrize(
    ("filter", "index"),
    [
        ({"price": {"$gt": 990}}, "price"),
        ({"when": {"$lt": datetime(2020, 1, 3, tzinfo=UTC)}}, "when"),
        ({"name": {"$in": ["item 00001", "item 00002"]}}, "name"),
        ({"$or": [{"qty": {"$gte": 9990}}, {"price": {"$lt": 1}}]}, "qty"),
    ],
)
async def test_planned_counts_read_the_typed_indexes(
    explained: Explained, filter: dict[str, Any], index: str
) -> None:
    keys = await explained.seeded.sql.catalog.keys(
        explained.connection, explained.seeded.db_name, explained.table
    )
    plan = plan_read(filter, None, keys.fields)
    scans = await explained.scans(
        count_statement(explained.seeded.db_name, explained.table, plan), plan.params
    )
    assert not [s for s in scans if s["Node Type"] == "Seq Scan"], scans
    assert explained.names[index] in {s.get("Index Name") for s in scans}
    counted = await explained.seeded.sql.count_matching(
        explained.seeded.db_name, explained.seeded.collection, filter
    )
    assert counted == await explained.seeded.raw.count_documents(filter)


# ------------------------------------------------------------------ fallbacks


@pytest.mark.parametrize(
    "filter",
    [
        {"u": 1},  # not declared (and of mixed types)
        {"s": {"$regex": "^a"}},
        {"s": {"$not": {"$eq": "a"}}},
        {"o.x": 1},  # a dotted path
        {"n": {"$gt": "a"}},  # another type than the field's
        {"n": {"$gte": None}},
        {"s": ["a"]},  # an array
        {"$or": [{"s": "a"}, {"u": "1"}]},  # one undeclared field is enough
    ],
)
async def test_what_it_cannot_serve_falls_back_and_stays_correct(
    seeded: Seeded, filter: dict[str, Any]
) -> None:
    handle = seeded.database.db(seeded.db_name)[seeded.collection]
    before = seeded.stats()
    sort = [("s", 1), ("_id", 1)]
    found = await handle.find(filter, sort=sort, limit=50).to_list()
    expected = await seeded.raw.find(filter, sort=sort, limit=50).to_list(None)
    assert [bson.encode(d) for d in found] == [bson.encode(d) for d in expected]
    assert await handle.count_documents(filter) == await seeded.raw.count_documents(filter)
    assert seeded.stats()["served"] == before["served"]
    assert seeded.stats()["unplannable"] == before["unplannable"] + 2


async def test_a_field_holding_another_type_falls_back_until_it_is_fixed(seeded: Seeded) -> None:
    handle = seeded.database.db(seeded.db_name)[seeded.collection]
    filter, sort = {"n": {"$gte": 0}}, [("n", -1), ("_id", 1)]
    odd = await seeded.raw.insert_one({"n": "not a number"})  # no validation on this path
    guarded = seeded.stats()["guard"]
    found = await handle.find(filter, sort=sort, limit=30).to_list()
    expected = await seeded.raw.find(filter, sort=sort, limit=30).to_list(None)
    assert [d["_id"] for d in found] == [d["_id"] for d in expected]
    assert await handle.count_documents(filter) == await seeded.raw.count_documents(filter)
    assert seeded.stats()["guard"] == guarded + 2
    # Only the fields a query uses are guarded: `s` is still served.
    assert await seeded.sql.count_matching(seeded.db_name, "items", {"s": "a"}) is not None
    await seeded.raw.delete_one({"_id": odd.inserted_id})
    assert await seeded.sql.count_matching(seeded.db_name, "items", filter) == (
        await seeded.raw.count_documents(filter)
    )


async def index_states(connection: psycopg.AsyncConnection[Any], schema: str) -> dict[str, bool]:
    """Typed index comment's field:family → valid, of every table in `schema`."""
    cursor = await connection.execute(
        "SELECT obj_description(c.oid, 'pg_class'), c.relname, i.indisvalid FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname LIKE 'qk%%'",
        (schema,),
    )
    return {f"{name}": valid for _, name, valid in await cursor.fetchall()}


async def test_after_a_type_change_sql_stays_off_until_the_guard_holds(
    seeded: Seeded, database_server: DatabaseServer
) -> None:
    """`s` becomes an int: while its new index builds, and while documents still hold
    strings, FerretDB answers; once every `s` is an int, SQL does again."""
    assert database_server.engine is not None
    conninfo = database_server.engine.postgres_conninfo()
    assert conninfo
    handle = seeded.database.db(seeded.db_name)[seeded.collection]
    filter, sort = {"s": {"$gte": 3}}, [("s", 1), ("_id", 1)]
    async with (
        await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as watcher,
        await psycopg.AsyncConnection.connect(conninfo) as blocker,
    ):
        before = await index_states(watcher, seeded.db_name)
        # An open snapshot: CREATE INDEX CONCURRENTLY cannot mark its index valid yet.
        await blocker.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        await blocker.execute("SELECT 1")
        await handle.declare_fields({**TYPES, "s": "int"})
        deadline = time.monotonic() + 30
        while True:
            states = await index_states(watcher, seeded.db_name)
            building = [name for name, valid in states.items() if name not in before and not valid]
            if building:
                break
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.05)
        unplannable = seeded.stats()["unplannable"]
        found = await handle.find(filter, sort=sort, limit=20).to_list()
        assert found == await seeded.raw.find(filter, sort=sort, limit=20).to_list(None)
        assert seeded.stats()["unplannable"] == unplannable + 1  # no valid index
        await blocker.rollback()
    await seeded.sql.indexes_settled()
    guarded = seeded.stats()["guard"]
    assert await seeded.sql.count_matching(seeded.db_name, "items", filter) is None
    assert seeded.stats()["guard"] == guarded + 1  # strings remain
    async for document in seeded.raw.find({"s": {"$type": "string"}}):
        await seeded.raw.update_one({"_id": document["_id"]}, {"$set": {"s": len(document["s"])}})
    served = seeded.stats()["served"]
    found = await handle.find(filter, sort=sort, limit=100).to_list()
    assert found == await seeded.raw.find(filter, sort=sort, limit=100).to_list(None)
    assert seeded.stats()["served"] == served + 1


async def test_schemas_declare_typed_indexes_and_the_api_reads_through_them(
    make_crud: Any, app: FastAPI
) -> None:
    sql = engine_sql(state_of(app).database)
    crud = await make_crud(
        [
            {
                "name": "orders",
                "fields": [
                    {"name": "price", "type": "float", "index": True},
                    {"name": "sku", "type": "string", "unique": True},
                    {"name": "note", "type": "string"},
                ],
            }
        ]
    )
    rows = [{"price": (n * 37) % 101 / 4, "sku": f"sku-{n:03d}", "note": "x"} for n in range(120)]
    assert (await crud.insert(rows)).status_code == 201
    await sql.indexes_settled()
    physical = await crud.physical()
    db_name = physical.database.name
    served = sql.planner_stats.of(db_name)["served"]
    response = await crud.find(
        filters='{"price": {"$gte": 5, "$lt": 20}}', sort='{"price": -1}', page=2, page_size=10
    )
    assert response.status_code == 200, response.text
    body = response.json()
    expected = await physical.find(
        {"price": {"$gte": 5, "$lt": 20}}, sort=[("price", -1), ("_id", 1)], skip=10, limit=10
    ).to_list(None)
    assert [d["_id"] for d in body["data"]] == [str(d["_id"]) for d in expected]
    assert body["pagination"]["total_items"] == await physical.count_documents(
        {"price": {"$gte": 5, "$lt": 20}}
    )
    assert sql.planner_stats.of(db_name)["served"] >= served + 2  # the page and its count
    # Cursor pages: the keyset filter is served too, and pages join up.
    seen: list[str] = []
    after = None
    while True:
        params = {"sort": '{"price": 1}', "page_size": 25, "after": after}
        page = (await crud.find(**params)).json()
        seen += [d["_id"] for d in page["data"]]
        after = page["pagination"]["next_cursor"]
        if after is None:
            break
    everything = await physical.find({}, sort=[("price", 1), ("_id", 1)]).to_list(None)
    assert seen == [str(d["_id"]) for d in everything]
    # A field no longer indexed loses its typed index.
    response = await crud.http.post(
        "/api/update_schema",
        json={
            "database_id": crud.database_id,
            "collection_name": "orders",
            "fields": [{"name": "price", "type": "float"}, {"name": "sku", "type": "string"}],
        },
        headers=crud.account.bearer,
    )
    assert response.status_code == 200, response.text
    await sql.indexes_settled()
    unplannable = sql.planner_stats.of(db_name)["unplannable"]
    assert (await crud.find(filters='{"price": {"$gte": 5}}')).status_code == 200
    assert sql.planner_stats.of(db_name)["unplannable"] > unplannable


async def test_ferretdb_index_changes_beside_typed_index_builds_never_fail(app: FastAPI) -> None:
    """FerretDB's createIndexes/dropIndexes take the table's SHARE lock in a
    transaction that a concurrent build waits for: the build, never FerretDB, gives
    way (and is retried)."""
    rng = random.Random(SEED)
    documents = [
        {"a": rng.random(), "b": f"{rng.random()}", "c": rng.randint(0, 10**6)}
        for _ in range(20_000)
    ]
    seeded = await seed(state_of(app).database, documents, {})
    types = {"a": "float", "b": "string", "c": "int"}
    for round_number in range(6):
        wanted = dict(list(types.items())[: 1 + round_number % 3])
        await seeded.database.db(seeded.db_name)["items"].declare_fields(wanted)
        name = f"by_{round_number}"
        await seeded.raw.create_index([(rng.choice(list(types)), 1)], name=name)
        await seeded.raw.drop_index(name)
    await asyncio.wait_for(seeded.sql.indexes_settled(), 60)
    keys = await seeded.sql.count_matching(seeded.db_name, "items", {"a": {"$lt": 0.5}})
    assert keys == await seeded.raw.count_documents({"a": {"$lt": 0.5}})


@pytest.mark.parametrize("dropped", ["database", "collection"])
async def test_drops_beside_typed_index_builds_never_fail(app: FastAPI, dropped: str) -> None:
    """FerretDB's DROP SCHEMA / DROP TABLE raced a build ("tuple concurrently
    updated"); they wait for the table the builder is on instead."""
    database = state_of(app).database
    sql = engine_sql(database)
    rng = random.Random(SEED)
    documents = [{"a": rng.random(), "b": f"{rng.random()}"} for _ in range(20_000)]
    for _ in range(3):
        db_name = f"quarry_test_planner_{uuid.uuid4().hex[:8]}"
        await database.client[db_name]["items"].insert_many(documents)
        await database.db(db_name)["items"].declare_fields({"a": "float", "b": "string"})
        await asyncio.sleep(rng.uniform(0, 0.3))  # somewhere in the middle of the builds
        if dropped == "database":
            await database.client.drop_database(db_name)
        else:
            await database.client[db_name].drop_collection("items")
        for document in documents:
            document.pop("_id", None)
    await asyncio.wait_for(sql.indexes_settled(), 60)


async def test_ferretdb_ddl_never_waits_for_a_build(
    app: FastAPI, database_server: DatabaseServer
) -> None:
    """FerretDB holds its global metadata lock through a DDL statement: waiting there
    for a build would stop every request. Here the event loop the builder runs on is
    blocked by the very request that creates a collection, so only a DDL that never
    waits for the builder can finish."""
    rng = random.Random(SEED)
    documents = [{"a": rng.random(), "b": f"{rng.random()}"} for _ in range(50_000)]
    seeded = await seed(state_of(app).database, documents, {})
    blocking: MongoClient[dict[str, Any]] = MongoClient(
        database_server.url, socketTimeoutMS=10_000, serverSelectionTimeoutMS=5_000
    )
    try:
        for number in range(3):
            await seeded.database.db(seeded.db_name)["items"].declare_fields(
                {"a": "float", "b": "string"} if number % 2 == 0 else {"b": "string"}
            )
            await asyncio.sleep(0.05 + rng.uniform(0, 0.1))  # the builder is at work
            started = time.monotonic()
            blocking[seeded.db_name][f"fresh_{number}"].insert_one({"x": 1})  # loop blocked
            assert time.monotonic() - started < 3
    finally:
        blocking.close()
    await asyncio.wait_for(seeded.sql.indexes_settled(), 60)
