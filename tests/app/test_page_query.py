"""Page queries (app/db/page_query.py): on the embedded engine the read planner's
finds and counts (`EmbeddedAdapter.find_page`) answer exactly what the driver's find
+ count answer, served by SQL wherever the planner can answer (the typed fields
declared) and by FerretDB where it cannot (dotted paths, non-ASCII search text);
lookups and reads by `_id`s likewise; and documents read from FerretDB's stored
form equal what FerretDB itself returns."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import Int64, ObjectId, Regex, Timestamp
from bson.binary import Binary
from fastapi import FastAPI

from app.db import After, Before, Contains, Database, Eq, FindSpec, IdIn, PageQuery
from app.db.page_query import find_page_mongo
from app.engine import EngineSql
from app.wiring import state_of
from tests.fixtures.engine import DatabaseServer
from tests.fixtures.entries import Sync, module_app, module_settings
from tests.fixtures.mailbox import Inbox

BASE = datetime(2026, 1, 1, tzinfo=UTC)
#: The typed fields of the seeded collections (as Quarry declares its own).
ITEM_FIELDS = {
    "owner_id": "id",
    "is_public": "bool",
    "name": "string",
    "tags": "[id]",
    "updated_at": "date",
    "expires_at": "date",
}
LINK_FIELDS = {"item_id": "id", "user": "string"}
OWNERS = [ObjectId() for _ in range(3)]
TAGS = [ObjectId() for _ in range(2)]


def rows() -> list[dict[str, Any]]:
    docs = []
    for n in range(60):
        doc: dict[str, Any] = {
            "_id": ObjectId(),
            "owner_id": OWNERS[n % 3],
            "is_public": n % 4 == 0,
            "name": ["Alpha 50% off", "beta_release", "Gamma\\path", "Äpfel"][n % 4] + f" {n}",
            "tags": [TAGS[n % 2]] if n % 5 == 0 else [],
            # Ties on purpose: the order falls back to _id.
            "updated_at": BASE + timedelta(minutes=n // 3),
            "metadata": {"year": [2024, "2024", 2025][n % 3], "flag": n % 2 == 0},
        }
        if n % 6 == 1:
            doc["expires_at"] = None
        elif n % 6 != 2:
            doc["expires_at"] = BASE + timedelta(days=n - 30)
        docs.append(doc)
    return docs


@pytest.fixture(scope="module")
async def module_database(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Database]:
    """One app for the module's page tests (its typed indexes are built once)."""
    data_dir = tmp_path_factory.mktemp("pages") / "data"
    settings = module_settings(database_server, smtp_server, data_dir)
    async with module_app(database_server, sync_client, settings) as (app, _):
        yield state_of(app).database


@pytest.fixture(scope="module")
async def seeded(
    module_database: Database,
) -> AsyncIterator[tuple[Database, str, list[dict[str, Any]]]]:
    database = module_database
    db_name = f"quarry_test_pages_{uuid.uuid4().hex[:8]}"
    docs = rows()
    await database.client[db_name]["items"].insert_many(docs)
    await database.client[db_name]["items"].create_index("owner_id")
    await database.client[db_name]["links"].insert_many(
        [{"item_id": d["_id"], "user": "u1"} for d in docs[:10]]
    )
    await database.db(db_name)["items"].declare_fields(ITEM_FIELDS)
    await database.db(db_name)["links"].declare_fields(LINK_FIELDS)
    if isinstance(database.engine_reads, EngineSql):
        await database.engine_reads.indexes_settled()
    try:
        yield database, db_name, docs
    finally:
        await database.client.drop_database(db_name)


QUERIES = {
    "owner": ((Eq("owner_id", OWNERS[0]),),),
    "public or tag": ((Eq("is_public", True), Eq("tags", TAGS[1])),),
    "not public": ((Eq("is_public", False),),),
    "nested number or string": ((Eq("metadata.year", 2024), Eq("metadata.year", "2024")),),
    "nested bool": ((Eq("metadata.flag", True),),),
    "after": ((After("expires_at", BASE),),),
    "after or missing": ((After("expires_at", BASE, or_missing=True),),),
    "before": ((Before("expires_at", BASE),),),
    "between numbers": ((After("metadata.year", 2024),), (Before("metadata.year", 2026),)),
    "contains percent": ((Contains(("name",), "50%"),),),
    "contains underscore": ((Contains(("name",), "A_R"),),),
    "contains case": ((Contains(("name",), "GAMMA\\P"),),),
    "contains non-ascii case": ((Contains(("name",), "äPFEL"),),),
    "semi-join": ((IdIn("links", "item_id", ((Eq("user", "u1"),),)),),),
    "semi-join on a missing collection": ((IdIn("nothing", "item_id", ()),),),
    "and of ors": (
        (Eq("owner_id", OWNERS[1]), Eq("is_public", True)),
        (After("expires_at", BASE - timedelta(days=10), or_missing=True),),
    ),
    "everything": (),
}


#: What the planner leaves to FerretDB: dotted paths, non-ASCII search text (and a
#: semi-join on nothing reads the whole other collection, which FerretDB streams).
FALLS_BACK = {
    "nested number or string",
    "nested bool",
    "between numbers",
    "contains non-ascii case",
}


def served(database: Database, db_name: str) -> int:
    if not isinstance(database.engine_reads, EngineSql):
        return 0
    return database.engine_reads.planner_stats.of(db_name)["served"]


@pytest.mark.parametrize("name", QUERIES)
@pytest.mark.parametrize("window", [(0, 7), (5, 7), (55, 10)])
@pytest.mark.parametrize("ascending", [False, True], ids=["desc", "asc"])
async def test_a_page_is_the_same_through_sql_and_through_the_driver(
    seeded: Any, name: str, window: tuple[int, int], ascending: bool
) -> None:
    database, db_name, _ = seeded
    offset, limit = window
    query = PageQuery(
        clauses=QUERIES[name],
        sort_desc="updated_at",
        offset=offset,
        limit=limit,
        ascending=ascending,
    )
    before = served(database, db_name)
    through_engine = await database.find_page(db_name, "items", query)
    if isinstance(database.engine_reads, EngineSql):
        # The planner itself answers the find and the count, no quiet fallback (a
        # count without a filter is the table's row counter, not a planned count).
        answered = served(database, db_name) - before
        planned = 1 + bool(QUERIES[name]) + (name == "semi-join")
        assert answered == (0 if name in FALLS_BACK else planned), answered
    through_driver = await find_page_mongo(
        database.client[db_name], "items", query, max_time_ms=10_000
    )
    assert through_engine[1] == through_driver[1]
    assert through_engine[0] == through_driver[0]
    if name != "semi-join on a missing collection":
        assert through_driver[1] > 0, "a query that matches nothing proves little"


async def test_documents_read_from_the_stored_form_equal_what_ferretdb_returns(
    app: FastAPI,
) -> None:
    database: Database = state_of(app).database
    if database.engine_reads is None:
        pytest.skip("the stored form is read only on the embedded engine's PostgreSQL")
    db_name = f"quarry_test_sjson_{uuid.uuid4().hex[:8]}"
    document = {
        "_id": ObjectId(),
        "string": "text ünïcode",
        "int": 7,
        "long": Int64(2**40),
        "double": 2.5,
        "whole_double": 3.0,
        "bool": True,
        "null": None,
        "date": datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC),
        "binary": Binary(b"\x00\x01\xff", 0),
        "uuid": Binary(uuid.uuid4().bytes, 4),
        "regex": Regex("^a.*z$", "im"),
        "timestamp": Timestamp(1_700_000_000, 3),
        "nested": {"list": [1, "two", {"three": [None, False]}], "empty": {}},
        "empty_list": [],
        "updated_at": BASE,
    }
    await database.client[db_name]["kinds"].insert_one(document)
    await database.db(db_name)["kinds"].declare_fields({"updated_at": "date"})
    await database.engine_reads.indexes_settled()
    try:
        query = PageQuery(clauses=(), sort_desc="updated_at")
        spec = FindSpec(filter={}, sort=[("updated_at", -1), ("_id", -1)], limit=20)
        page = await database.engine_reads.find(db_name, "kinds", spec)
        assert page is not None
        assert all(isinstance(row, dict) for row in page), "read from the stored form"
        rows, total = await database.find_page(db_name, "kinds", query)
        stored = await database.client[db_name]["kinds"].find_one({"_id": document["_id"]})
        assert total == 1 and stored is not None
        assert rows == [stored]
        assert list(rows[0]) == list(stored)  # field order kept
    finally:
        await database.client.drop_database(db_name)


async def test_a_dropped_and_recreated_collection_is_read_afresh(app: FastAPI) -> None:
    """Table names are remembered; a dropped database or collection must not leave
    a page query reading a table that is gone (or answering from it)."""
    database: Database = state_of(app).database
    db_name = f"quarry_test_pages_{uuid.uuid4().hex[:8]}"
    query = PageQuery(clauses=(), sort_desc="updated_at")
    items = database.client[db_name]["items"]
    try:
        await items.insert_one({"_id": 1, "updated_at": BASE})
        assert (await database.find_page(db_name, "items", query))[1] == 1
        await database.client.drop_database(db_name)
        assert await database.find_page(db_name, "items", query) == ([], 0)
        await items.insert_many([{"_id": n, "updated_at": BASE} for n in (2, 3)])
        documents, total = await database.find_page(db_name, "items", query)
        assert total == 2 and [d["_id"] for d in documents] == [3, 2]
        await items.drop()
        await database.client[db_name]["other"].insert_one({"_id": 9})
        assert await database.find_page(db_name, "items", query) == ([], 0)
    finally:
        await database.client.drop_database(db_name)


async def test_lookups_find_what_the_driver_finds(seeded: Any) -> None:
    database, db_name, docs = seeded
    wanted = [
        ("items", "owner_id", OWNERS[0]),
        ("items", "_id", docs[7]["_id"]),
        ("items", "is_public", True),
        ("items", "tags", TAGS[0]),
        ("links", "user", "u1"),
        ("links", "user", "nobody"),
        ("no_such_collection", "x", 1),
    ]
    found = await database.lookups(db_name, wanted)
    db = database.client[db_name]
    for (collection, field, value), rows in zip(wanted, found, strict=True):
        expected = await db[collection].find({field: value}).to_list(None)
        key = lambda d: str(d["_id"])  # noqa: E731
        assert sorted(rows, key=key) == sorted(expected, key=key), (collection, field)
    if isinstance(database.engine_reads, EngineSql):
        assert served(database, db_name) >= 5  # the typed fields' and `_id`'s


async def test_by_ids_finds_what_the_driver_finds(seeded: Any) -> None:
    database, db_name, docs = seeded
    ids = [docs[3]["_id"], docs[9]["_id"], ObjectId(), docs[3]["_id"]]
    before = served(database, db_name)
    found = await database.by_ids(db_name, "items", ids)
    expected = await database.client[db_name]["items"].find({"_id": {"$in": ids}}).to_list(None)
    key = lambda d: str(d["_id"])  # noqa: E731
    assert sorted(found, key=key) == sorted(expected, key=key)
    assert len(found) == 2
    assert await database.by_ids(db_name, "no_such_collection", ids) == []
    if isinstance(database.engine_reads, EngineSql):
        assert served(database, db_name) == before + 1


async def test_engine_sql_without_a_reachable_postgresql_falls_back() -> None:
    unreachable = EngineSql("host=127.0.0.1 port=1 user=nobody dbname=nothing connect_timeout=1")
    spec = FindSpec(filter={"a": 1}, sort=[("at", -1), ("_id", -1)], limit=20)
    assert await unreachable.count("db", "c") is None
    assert await unreachable.find("db", "c", spec) is None
    assert await unreachable.count_matching("db", "c", {"a": 1}) is None
    await unreachable.close()
