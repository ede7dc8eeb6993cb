"""Quarry's own reads on the read planner: the dataset list, audit pages, entry lists,
lookups and reads by `_id`s are planned finds and counts (`EmbeddedAdapter.find_page`)
over the typed indexes Quarry declares for its own collections — there is no second
SQL compiler.

- The planner's shapes for these reads — equality on an array of ObjectIds (a
  dataset's `tags`) and the case-insensitive search of ASCII text (`Contains`) —
  answer what FerretDB answers, `_id` by `_id` in order and count by count, over
  seeded edge values; what they cannot answer exactly (non-ASCII text, a field
  holding another shape) is FerretDB's.
- The case fold the planner applies in PostgreSQL is Go's `(?i)` on ASCII text,
  checked over every Unicode code point on both sides.
- EXPLAIN: the control collections' page reads use their typed indexes.
- A dataset list and an audit page through the app are served by the planner.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import psycopg
import pytest
from bson import ObjectId
from fastapi import FastAPI
from httpx import AsyncClient

import app.engine.sql as engine_sql_module
from app.audit import AuditLog
from app.audit.records import TYPED_FIELDS as AUDIT_FIELDS
from app.audit.visibility import AuditFilter, Visibility
from app.db import After, Contains, Database, Eq, FindSpec, IdIn, PageQuery, page_filter, page_sort
from app.engine import EngineSql
from app.engine.planned_reads import count_statement, find_statement
from app.engine.planner import FOLD_FROM, FOLD_TO, plan_read
from app.engine.typed_indexes import ID_FAMILY, TypedIndex
from app.wiring import state_of
from data_api.datasets.repository import CATALOGUE_FIELDS, TENANT_FIELDS
from tests.fixtures.accounts import register_account
from tests.fixtures.engine import TEST_BACKEND, DatabaseServer
from tests.fixtures.entries import Sync, module_app, module_settings
from tests.fixtures.mailbox import Inbox
from tests.fixtures.values import plan_nodes

pytestmark = pytest.mark.skipif(
    TEST_BACKEND != "postgresql", reason="the read planner belongs to the PostgreSQL backend"
)

SEED = 25
BASE = datetime(2026, 1, 1, tzinfo=UTC)
TAGS = [ObjectId(f"{n:024x}") for n in (1, 2, 0xABC, 2**95)] + [ObjectId() for _ in range(2)]
#: Strings around Go's `(?i)` simple case folding and PostgreSQL's lower().
STRINGS = [
    "Kelvin", "\u212aelvin", "kELVIN", "\u017ftuff", "STUFF", "\u017f", "İstanbul",
    "istanbul", "\u0131", "ß", "SS", "ẞ", "ﬁle", "FILE", "a b", "a\tb", "A\tB", "50% off",
    "a_b", "aXb", "back\\slash", "(paren)", "dot.dot", "", "Ünïcode", "ünïcode", "k", "K",
    "s", "S", "😀 smile", "x*y", "q?", "[br]", "{c}", "^$", "#&~-", "Ǆ", "ǅ", "ǆ", "Ω",
    "ω", "\u2126", "\u212b", "å", "µ", "μ", "\x01ctl", "line\nbreak", "ŉ", "ǰ",
]  # fmt: skip
#: Search texts: ASCII ones are the planner's, the others FerretDB's.
SEARCHES = [
    "k", "K", "kel", "KELVIN", "s", "stuff", "S", "i", "I", "istanbul", "ss", "fi", "file",
    "a b", "A\tb", "\t", "50%", "%", "_", "a_b", "\\", "back\\S", "(", ")", ".", "dot.d",
    "*", "?", "[", "{", "^", "$", "#&~-", "", " ", "x", "\x01", "\n", "N",
    "😀", "ß", "ünï", "\u0131", "Ω", "ǅ", "\u212a",
]  # fmt: skip
ITEM_FIELDS = {
    "tags": "[id]",
    "name": "string",
    "description": "string",
    "updated_at": "date",
    "owner": "int",
}
DOCUMENTS = 240
WINDOWS = [(1, 0, 7), (-1, 3, 7), (-1, 0, 0)]


def served(database: Database, db_name: str) -> Counter[str]:
    assert isinstance(database.engine_reads, EngineSql)
    return database.engine_reads.planner_stats.of(db_name)


def make_documents(rng: random.Random) -> list[dict[str, Any]]:
    documents = []
    for n in range(DOCUMENTS):
        document: dict[str, Any] = {"_id": ObjectId(), "owner": n % 3}
        roll = rng.random()
        if roll < 0.1:
            pass  # no tags
        elif roll < 0.2:
            document["tags"] = None
        else:
            document["tags"] = rng.sample(TAGS, rng.randint(0, 3)) + (
                [TAGS[0]] if rng.random() < 0.05 else []  # a tag twice
            )
        for name in ("name", "description"):
            roll = rng.random()
            if roll < 0.1:
                continue
            document[name] = None if roll < 0.15 else rng.choice(STRINGS) + rng.choice(["", " x"])
        document["updated_at"] = BASE + timedelta(minutes=rng.randint(0, 30))  # ties
        documents.append(document)
    return documents


@pytest.fixture(scope="module")
async def served_app(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
    """One app for the module (the control collections' typed indexes built once)."""
    data_dir = tmp_path_factory.mktemp("own-reads") / "data"
    settings = module_settings(database_server, smtp_server, data_dir)
    async with module_app(database_server, sync_client, settings) as served:
        database = state_of(served[0]).database
        if not isinstance(database.engine_reads, EngineSql):
            pytest.skip("no embedded engine SQL (external MongoDB)")
        await database.engine_reads.indexes_settled()
        yield served


@dataclass
class Edges:
    database: Database
    db_name: str

    def raw(self, collection: str = "items") -> Any:
        """FerretDB itself: the driver, no adapter in between."""
        return self.database.client[self.db_name][collection]


@pytest.fixture(scope="module")
async def edges(served_app: tuple[FastAPI, AsyncClient]) -> AsyncIterator[Edges]:
    database = state_of(served_app[0]).database
    db_name = f"quarry_test_own_{uuid.uuid4().hex[:8]}"
    await database.client[db_name]["items"].insert_many(make_documents(random.Random(SEED)))
    await database.db(db_name)["items"].declare_fields(ITEM_FIELDS)
    assert isinstance(database.engine_reads, EngineSql)
    await database.engine_reads.indexes_settled()
    try:
        yield Edges(database, db_name)
    finally:
        await database.client.drop_database(db_name)


async def unresolved(clauses: Any) -> dict[str, Any]:
    async def nothing(*_: Any) -> list[Any]:
        raise AssertionError("no semi-join here")

    return await page_filter(clauses, nothing)


async def differential(
    edges: Edges,
    filter: dict[str, Any],
    *,
    plannable: bool,
    windows: list[tuple[int, int, int]] = WINDOWS,
) -> None:
    """The planner's answer (or none, when not `plannable`) equals FerretDB's in
    every window, and the count too."""
    sql = edges.database.engine_reads
    assert isinstance(sql, EngineSql)
    for direction, skip, limit in windows:
        sort = [("updated_at", direction), ("_id", direction)] if limit else []
        what = f"filter={filter!r} sort={sort} skip={skip} limit={limit}"
        spec = FindSpec(filter=filter, sort=sort, skip=skip, limit=limit)
        rows = await sql.find(edges.db_name, "items", spec)
        expected = await edges.raw().find(filter, sort=sort, skip=skip, limit=limit).to_list(None)
        if not plannable:
            assert rows is None, what
            continue
        assert rows is not None, what
        found_ids = [bson.encode({"_id": row["_id"]}) for row in rows]
        expected_ids = [bson.encode({"_id": doc["_id"]}) for doc in expected]
        if not sort:
            found_ids, expected_ids = sorted(found_ids), sorted(expected_ids)
        assert found_ids == expected_ids, what
    counted = await sql.count_matching(edges.db_name, "items", filter)
    expected_count = await edges.raw().count_documents(filter)
    assert counted == (expected_count if plannable else None), filter
    # Through the adapter (planned or not) the page is FerretDB's.
    query = PageQuery(clauses=(), sort_desc="updated_at", offset=2, limit=9)
    cursor = edges.database.db(edges.db_name)["items"].find(
        filter, sort=page_sort(query), skip=2, limit=9
    )
    through = await cursor.to_list()
    reference = await edges.raw().find(filter, sort=page_sort(query), skip=2, limit=9).to_list()
    assert through == reference, filter


def tag_filters() -> list[dict[str, Any]]:
    unknown = ObjectId()
    filters: list[dict[str, Any]] = []
    for tag in [*TAGS, unknown]:
        filters += [{"tags": tag}, {"tags": {"$eq": tag}}, {"$nor": [{"tags": tag}]}]
    filters += [
        {"$or": [{"tags": TAGS[0]}, {"tags": TAGS[3]}, {"owner": 1}]},
        {"tags": TAGS[1], "owner": {"$ne": 2}},
        {"$and": [{"tags": TAGS[1]}, {"tags": TAGS[2]}]},
    ]
    return filters


async def test_tag_equality_answers_what_ferretdb_answers(edges: Edges) -> None:
    before = served(edges.database, edges.db_name)["served"]
    filters = tag_filters()
    for filter in filters:
        await differential(edges, filter, plannable=True)
    # Every window's find and the count, by SQL (the adapter's page too).
    assert served(edges.database, edges.db_name)["served"] - before == len(filters) * 5


@pytest.mark.parametrize(
    "filter",
    [
        {"tags": None},
        {"tags": {"$ne": TAGS[0]}},
        {"tags": {"$in": [TAGS[0]]}},
        {"tags": [TAGS[0]]},
        {"tags": "0" * 24},
        {"tags": {"$size": 1}},
    ],
    ids=["null", "ne", "in", "whole array", "string", "size"],
)
async def test_other_array_conditions_are_ferretdbs(edges: Edges, filter: dict[str, Any]) -> None:
    await differential(edges, filter, plannable=False)


async def test_case_insensitive_search_answers_what_ferretdb_answers(edges: Edges) -> None:
    before = served(edges.database, edges.db_name)
    planned = 0
    for number, text in enumerate(SEARCHES):
        filter = await unresolved(((Contains(("name", "description"), text),),))
        plannable = text.isascii()
        planned += plannable
        # Every match (no limit), the count and a page through the adapter.
        await differential(edges, filter, plannable=plannable, windows=WINDOWS[2:])
        if plannable and number % 5 == 0:  # under a negation, beside other conditions
            negated = {"$nor": [filter], "owner": {"$in": [0, 2]}}
            await differential(edges, negated, plannable=True, windows=WINDOWS[:1])
            planned += 1
    after = served(edges.database, edges.db_name)
    assert after["served"] - before["served"] == planned * 3
    assert any(not text.isascii() for text in SEARCHES)


@pytest.mark.parametrize(
    ("pattern", "options"),
    [("a.b", "i"), ("a+", "i"), ("^K", "i"), ("[k]", "i"), ("k|s", "i"), ("\\d", "i"),
     ("\\w", "i"), ("kel", ""), ("kel", "im")],
)  # fmt: skip
async def test_other_regular_expressions_are_ferretdbs(
    edges: Edges, pattern: str, options: str
) -> None:
    await differential(edges, {"name": {"$regex": pattern, "$options": options}}, plannable=False)


@pytest.mark.parametrize(
    ("odd", "filter"),
    [
        ({"tags": TAGS[0]}, {"tags": TAGS[0]}),
        ({"tags": [TAGS[0], "x"]}, {"tags": TAGS[0]}),
        ({"tags": {"a": TAGS[0]}}, {"tags": TAGS[0]}),
        ({"tags": [TAGS[0], None]}, {"tags": TAGS[0]}),
        ({"name": 5}, {"name": {"$regex": "k", "$options": "i"}}),
        ({"name": ["Kelvin"]}, {"name": {"$regex": "k", "$options": "i"}}),
    ],
    ids=["scalar", "mixed", "object", "null element", "number", "array of strings"],
)
async def test_a_document_of_another_shape_sends_the_read_to_ferretdb(
    served_app: tuple[FastAPI, AsyncClient], odd: dict[str, Any], filter: dict[str, Any]
) -> None:
    database = state_of(served_app[0]).database
    db_name = f"quarry_test_own_{uuid.uuid4().hex[:8]}"
    documents = [
        {"_id": n, "tags": [TAGS[0]], "name": "Kelvin", "updated_at": BASE} for n in range(3)
    ]
    await database.client[db_name]["items"].insert_many([*documents, {"_id": 9, **odd}])
    await database.db(db_name)["items"].declare_fields(ITEM_FIELDS)
    assert isinstance(database.engine_reads, EngineSql)
    await database.engine_reads.indexes_settled()
    edges = Edges(database, db_name)
    await differential(edges, filter, plannable=False)
    assert served(database, db_name)["guard"] >= 1
    await database.client[db_name]["items"].delete_one({"_id": 9})
    await differential(edges, filter, plannable=True)


# ------------------------------------------------------------------ the case fold


FOLD_CHECK = Path(__file__).parent / "fold_check"


async def test_the_fold_table_is_gos(database_server: DatabaseServer) -> None:
    """For every Unicode scalar value c and ASCII character p: Go's `(?i)p` matches c
    exactly when PostgreSQL's `translate(c, FOLD_FROM, FOLD_TO)` is p lower-cased —
    the condition under which the planner's search is FerretDB's."""
    go = shutil.which("go")
    if go is None or database_server.engine is None:
        pytest.skip("needs Go (the FerretDB build's) and the embedded engine")
    listed = subprocess.run(
        [go, "run", "."], cwd=FOLD_CHECK, capture_output=True, text=True, check=True, timeout=300
    ).stdout
    by_go = {tuple(int(n) for n in line.split()) for line in listed.splitlines()}
    conninfo = database_server.engine.postgres_conninfo()
    assert conninfo
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT c, translate(chr(c), %s, %s) FROM generate_series(1, 1114111) AS c "
            "WHERE c NOT BETWEEN 55296 AND 57343 AND translate(chr(c), %s, %s) <> chr(c)",
            (FOLD_FROM, FOLD_TO, FOLD_FROM, FOLD_TO),
        )
        translated = {int(c): str(t) for c, t in await cursor.fetchall()}
    by_postgresql = set()
    for c in set(translated) | set(range(1, 128)):
        folded = translated.get(c, chr(c))
        for p in range(1, 128):
            if p != c and folded == chr(p).lower():
                by_postgresql.add((c, p))
    assert by_postgresql == by_go
    assert (0x212A, ord("k")) in by_go and (0x017F, ord("S")) in by_go
    assert not [pair for pair in by_go if pair[0] == 0x130]  # İ folds to no ASCII letter


# ------------------------------------------------------------------ EXPLAIN


@dataclass
class Control:
    """A copy of the control and tenant collections' shapes, declared as Quarry
    declares its own, with enough documents that PostgreSQL prefers an index."""

    database: Database
    db_name: str
    connection: psycopg.AsyncConnection[Any]
    tables: dict[str, str]
    users: list[ObjectId]


@pytest.fixture(scope="module")
async def control(
    served_app: tuple[FastAPI, AsyncClient], database_server: DatabaseServer
) -> AsyncIterator[Control]:
    database = state_of(served_app[0]).database
    rng = random.Random(SEED)
    db_name = f"quarry_test_own_{uuid.uuid4().hex[:8]}"
    db = database.client[db_name]
    users = [ObjectId() for _ in range(200)]
    datasets = [
        {
            "_id": ObjectId(),
            "owner_id": rng.choice(users),
            "is_public": rng.random() < 0.02,
            "tags": rng.sample(TAGS, rng.randint(0, 1)) if rng.random() < 0.05 else [],
            "state": "live",
            "name": f"dataset {n}",
            "description": rng.choice(["", "about rain", "Kelvin scale"]),
            "updated_at": BASE + timedelta(minutes=rng.randint(0, 100_000)),
            "expires_at": BASE + timedelta(days=rng.randint(-10, 300)),
        }
        for n in range(6000)
    ]
    await db["datasets"].insert_many(datasets)
    await db["shares"].insert_many(
        {
            "key": f"{d['_id']}:{u}",
            "user_id": u,
            "dataset_id": d["_id"],
            "created_at": BASE,
            "expires_at": None,
        }
        for d, u in ((rng.choice(datasets), rng.choice(users)) for _ in range(3000))
    )
    await db["audit_log"].insert_many(
        {
            "_id": ObjectId(),
            "seq": n,
            "at": BASE + timedelta(seconds=n),
            "action": rng.choice(["dataset.read", "dataset.update", "entry.upload"]),
            "actor_user_id": rng.choice(users),
            "dataset_id": rng.choice(datasets)["_id"],
        }
        for n in range(1, 6001)
    )
    await db["entries"].insert_many(
        {
            "_id": ObjectId(),
            "dataset_id": rng.choice(datasets[:300])["_id"],
            "name": f"file {n}",
            "size": rng.randint(0, 10**6),
            "created_at": BASE + timedelta(seconds=n),
        }
        for n in range(6000)
    )
    handle = database.db(db_name)
    for collection in ("datasets", "shares"):
        await handle[collection].declare_fields(CATALOGUE_FIELDS[collection])
    await handle["audit_log"].declare_fields(AUDIT_FIELDS)
    await handle["entries"].declare_fields(TENANT_FIELDS["entries"])
    assert isinstance(database.engine_reads, EngineSql)
    await database.engine_reads.indexes_settled()
    assert database_server.engine is not None
    superuser = database_server.engine.superuser_conninfo()
    conninfo = database_server.engine.postgres_conninfo()
    assert superuser and conninfo
    async with await psycopg.AsyncConnection.connect(superuser, autocommit=True) as owner:
        cursor = await owner.execute(
            psycopg.sql.SQL(
                "SELECT _jsonb ->> '_id', _jsonb ->> 'table' FROM {}._ferretdb_database_metadata"
            ).format(psycopg.sql.Identifier(db_name))
        )
        tables = {str(c): str(t) for c, t in await cursor.fetchall()}
        for table in tables.values():  # statistics, as a server's autovacuum keeps them
            await owner.execute(
                psycopg.sql.SQL("ANALYZE {}").format(psycopg.sql.Identifier(db_name, table))
            )
    try:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
            yield Control(database, db_name, connection, tables, users)
    finally:
        await database.client.drop_database(db_name)


def dataset_list(user: ObjectId, *, search: str | None = None, tag: ObjectId | None = None) -> Any:
    """The clauses `DatasetService.list` builds for a reader who is no admin."""
    live_share = IdIn(
        "shares",
        "dataset_id",
        ((Eq("user_id", user),), (After("expires_at", BASE, or_missing=True),)),
    )
    clauses: list[Any] = [
        (Eq("state", "live"),),
        (After("expires_at", BASE),),
        (Eq("owner_id", user), Eq("is_public", True), live_share, Eq("tags", TAGS[0])),
    ]
    if search is not None:
        clauses.append((Contains(("name", "description"), search),))
    if tag is not None:
        clauses.append((Eq("tags", tag),))
    return tuple(clauses)


async def explain(
    control: Control, collection: str, query: PageQuery, *, compare: bool = False
) -> set[str]:
    """The index names the page's find and count read (asserting no Seq Scan);
    `compare`: and the page and total are FerretDB's."""
    adapter = await control.database.adapter()
    resolve = adapter._values  # type: ignore[attr-defined]
    filter = await page_filter(query.clauses, lambda *a: resolve(control.db_name, *a))
    sql = control.database.engine_reads
    assert isinstance(sql, EngineSql)
    table = control.tables[collection]
    keys = await sql.catalog.keys(control.connection, control.db_name, table)
    plan = plan_read(filter, page_sort(query), keys.fields)
    statement, params = find_statement(control.db_name, table, plan, query.limit, query.offset)
    used: set[str] = set()
    for text, arguments in (
        (statement, params),
        (count_statement(control.db_name, table, plan), plan.params),
    ):
        cursor = await control.connection.execute(
            psycopg.sql.SQL("EXPLAIN (FORMAT JSON) ") + text, arguments
        )
        row = await cursor.fetchone()
        assert row is not None
        nodes = plan_nodes(row[0][0]["Plan"])
        seq_scans = [n for n in nodes if n["Node Type"] == "Seq Scan"]
        assert not seq_scans, (collection, query, seq_scans)
        used |= {n["Index Name"] for n in nodes if "Index Name" in n}
    # Every guard (of `_id` and of each field the plan reads) is read from its index:
    # the btree's leading column, the GIN's `[false]` mark.
    guards = {TypedIndex(name, family).name(table) for name, family in plan.families.items()}
    assert guards | {TypedIndex("_id", ID_FAMILY).name(table)} <= used, (collection, query)
    documents, total = await control.database.find_page(control.db_name, collection, query)
    if not compare:  # FerretDB takes a second or so for each over these collections
        return used
    raw = control.database.client[control.db_name][collection]
    expected = await raw.find(
        filter, sort=page_sort(query), skip=query.offset, limit=query.limit
    ).to_list()
    assert [d["_id"] for d in documents] == [d["_id"] for d in expected]
    assert total == await raw.count_documents(filter)
    return used


async def test_control_page_reads_use_the_typed_indexes(control: Control) -> None:
    before = served(control.database, control.db_name)["served"]
    user = control.users[7]
    pages = [
        ("datasets", PageQuery(dataset_list(user), sort_desc="updated_at", limit=20)),
        ("datasets", PageQuery(dataset_list(user, search="kelvin"), sort_desc="updated_at")),
        ("datasets", PageQuery(dataset_list(user, tag=TAGS[1]), sort_desc="updated_at")),
        (
            "shares",
            PageQuery(((Eq("user_id", user),),), sort_desc="created_at", limit=5),
        ),
        (
            "audit_log",
            PageQuery(
                ((Eq("actor_user_id", user), Eq("action", "entry.upload")), (After("seq", 100),)),
                sort_desc="seq",
                limit=21,
                ascending=True,
            ),
        ),
        (
            "entries",
            PageQuery(((Eq("dataset_id", ObjectId()),),), sort_desc="name", offset=0, limit=20),
        ),
    ]
    found = []
    for number, (collection, query) in enumerate(pages):
        found.append((collection, await explain(control, collection, query, compare=number == 0)))
    for collection, names in found:
        assert names, collection  # read through indexes, and all of them typed keys
        assert all(name.startswith("qk_") for name in names), (collection, names)
    # Each page: its semi-join (the dataset list's), its find and its count, by SQL.
    assert served(control.database, control.db_name)["served"] - before == 3 * 4 + 3 * 2


# ------------------------------------------------------------------ through the app


async def test_the_dataset_list_and_audit_pages_are_planned(
    served_app: tuple[FastAPI, AsyncClient], smtp_server: Inbox
) -> None:
    app, http = served_app
    database = state_of(app).database
    control_db = database.control_db_name
    account = await register_account(http, smtp_server)
    word = f"w{uuid.uuid4().hex[:8]}"
    for name in (f"Kelvin {word}", f"other {word.upper()}"):
        response = await http.post("/api/v1/datasets", json={"name": name}, headers=account.bearer)
        assert response.status_code in (200, 201), response.text
    assert isinstance(database.engine_reads, EngineSql)
    await database.engine_reads.indexes_settled()
    before = served(database, control_db)
    response = await http.get(
        "/api/v1/datasets", params={"search": word.upper()}, headers=account.bearer
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 2
    after = served(database, control_db)
    # The shares semi-join, the page's find and its count.
    assert after["served"] - before["served"] >= 3, (before, after)
    assert after["unplannable"] == before["unplannable"]
    me = (await http.get("/core/me", headers=account.bearer)).json()
    user = ObjectId(me["data"]["id"])
    audit = state_of(app).find(AuditLog)
    assert audit is not None
    expected = (
        await database.client[control_db]["audit_log"]
        .find({"actor_user_id": user}, sort=[("seq", -1)], limit=3)
        .to_list()
    )
    assert expected, "the requests above are audited"
    before = served(database, control_db)["served"]
    records, _ = await audit.page(
        filters=AuditFilter(),
        visible=Visibility(everything=False, user_id=user),
        after=None,
        limit=2,
    )
    assert served(database, control_db)["served"] - before == 2  # find and count
    assert [r["_id"] for r in records] == [r["_id"] for r in expected[:2]]


def test_engine_sql_has_one_compiler() -> None:
    """The page, lookup and by-`_id` SQL are gone: the planner is the one compiler."""
    for gone in ("page", "lookups", "by_ids"):
        assert not hasattr(EngineSql, gone), gone
    assert not hasattr(engine_sql_module, "_Compiler")
