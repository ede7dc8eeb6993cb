"""GIN shadow indexes on FerretDB's PostgreSQL tables (app/engine/shadow_indexes.sql).

Every index Quarry declares — schema fields marked unique/index, the control
database's lookup fields, GridFS's — gets a GIN `jsonb_path_ops` index on the same
keys, created with it and dropped with it, back after a restart, and used by
PostgreSQL for FerretDB's equality filters from the first request. FerretDB's
internal layout is checked here so that an upgrade that changes it fails loudly.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gridfs
import psycopg
import pytest
from pymongo import MongoClient

from app.engine import EmbeddedEngine, EngineSql
from app.wiring import state_of
from tests.fixtures.documents import Crud
from tests.fixtures.engine import TEST_BACKEND, DatabaseServer

pytestmark = pytest.mark.skipif(
    TEST_BACKEND != "postgresql", reason="shadow indexes belong to the PostgreSQL backend"
)


#: One key of a GIN shadow index's definition.
GIN_KEY = re.compile(r"\(_jsonb -> '([^']+)'::text\)\) jsonb_path_ops")


def pg_connect(engine: EmbeddedEngine) -> psycopg.Connection[Any]:
    conninfo = engine.superuser_conninfo()
    assert conninfo is not None
    return psycopg.connect(conninfo, autocommit=True)


@pytest.fixture
def pg(database_server: DatabaseServer) -> Iterator[psycopg.Connection[Any]]:
    if database_server.engine is None:
        pytest.skip("running against an external MongoDB")
    with pg_connect(database_server.engine) as connection:
        yield connection


def metadata_rows(pg: psycopg.Connection[Any], schema: str) -> list[dict[str, Any]]:
    rows = pg.execute(
        psycopg.sql.SQL("SELECT _jsonb FROM {}._ferretdb_database_metadata").format(
            psycopg.sql.Identifier(schema)
        )
    ).fetchall()
    return [row[0] for row in rows]


def gin_indexes(pg: psycopg.Connection[Any], schema: str, table: str) -> dict[str, str]:
    rows = pg.execute(
        "SELECT indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = %s AND tablename = %s AND indexname LIKE 'qgin%%'",
        (schema, table),
    ).fetchall()
    return dict(rows)


def shadow_of(pg: psycopg.Connection[Any], schema: str, collection: str, keys: list[str]) -> str:
    """The GIN index on `collection` covering exactly `keys` (asserting there is one)."""
    (meta,) = [m for m in metadata_rows(pg, schema) if m["_id"] == collection]
    for name, definition in gin_indexes(pg, schema, meta["table"]).items():
        assert definition.count("jsonb_path_ops") == len(re.findall(GIN_KEY, definition))
        if sorted(re.findall(GIN_KEY, definition)) == sorted(keys):
            return name
    raise AssertionError(f"no GIN index on {schema}.{collection} for {keys}")


def plan_strings(node: Any) -> Iterator[str]:
    """Every string in a PostgreSQL JSON plan (conditions, index names, …)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from plan_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from plan_strings(value)


def test_ferretdb_layout_is_what_the_shadow_indexes_read(
    pg: psycopg.Connection[Any], sync_client: MongoClient
) -> None:
    """If FerretDB changes its tables, this fails (and so does the trigger, loudly)."""
    sync_client.layout_probe.things.create_index([("a", 1), ("b", -1)], name="a_b", unique=True)
    try:
        columns = pg.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'layout_probe' ORDER BY table_name"
        ).fetchall()
        assert ("_ferretdb_database_metadata", "_jsonb", "jsonb") in columns
        (meta,) = metadata_rows(pg, "layout_probe")
        assert meta["_id"] == "things"
        assert isinstance(meta["table"], str) and meta["table"].startswith("things_")
        assert (meta["table"], "_jsonb", "jsonb") in columns
        indexes = {index["name"]: index for index in meta["indexes"]}
        assert indexes["a_b"]["key"] == {"a": 1, "b": -1}
        assert indexes["a_b"]["unique"] is True
        assert isinstance(indexes["a_b"]["pgindex"], str)
        assert indexes["_id_"]["key"] == {"_id": 1}
        # FerretDB's filter for an equality, the expression the GIN index is built on.
        plan = sync_client.layout_probe.command("explain", {"find": "things", "filter": {"a": "x"}})
        assert plan["filterPushdown"] is True
        conditions = " ".join(plan_strings(plan["queryPlanner"]))
        assert "._jsonb -> 'a'::text) @> '\"x\"'::jsonb" in conditions, conditions
    finally:
        sync_client.drop_database("layout_probe")


def test_an_unknown_metadata_layout_fails_loudly(
    pg: psycopg.Connection[Any], sync_client: MongoClient
) -> None:
    sync_client.layout_probe2.things.insert_one({"a": 1})
    try:
        with pytest.raises(psycopg.errors.RaiseException, match="unknown layout"):
            pg.execute(
                "UPDATE layout_probe2._ferretdb_database_metadata "
                """SET _jsonb = jsonb_set(_jsonb, '{indexes}', '[{"name": "x"}]')"""
            )
        with pytest.raises(psycopg.errors.RaiseException, match="unknown layout"):
            pg.execute("""SELECT quarry_sync_gin('layout_probe2', '{"tables": []}')""")
    finally:
        sync_client.drop_database("layout_probe2")


async def test_every_index_quarry_declares_has_a_gin_shadow(
    pg: psycopg.Connection[Any], crud: Crud
) -> None:
    control = state_of(crud.app).settings.control_db
    # The control database: users by email, keys by hash, databases by owner and name …
    assert shadow_of(pg, control, "users", ["email"])
    assert shadow_of(pg, control, "users", ["_id"])
    assert shadow_of(pg, control, "api_keys", ["key_hash"])
    assert shadow_of(pg, control, "databases", ["displayName", "user_id"])
    assert shadow_of(pg, control, "login_attempts", ["scope", "window"])
    # … and the tenant's collection: its unique and indexed schema fields.
    db_name = (await crud.physical()).database.name
    assert shadow_of(pg, db_name, "users", ["email"])
    assert shadow_of(pg, db_name, "users", ["signup_date"])
    # Every FerretDB index with top-level keys, anywhere, has its shadow.
    for schema in (control, db_name):
        for meta in metadata_rows(pg, schema):
            for index in meta["indexes"]:
                keys = [k for k in index["key"] if "." not in k]
                assert shadow_of(pg, schema, meta["_id"], keys)


def test_gridfs_lookup_fields_have_gin_shadows(
    pg: psycopg.Connection[Any], sync_client: MongoClient
) -> None:
    gridfs.GridFS(sync_client.gridfs_probe).put(b"x" * 1000, filename="a.txt")
    try:
        assert shadow_of(pg, "gridfs_probe", "fs.chunks", ["files_id", "n"])
        assert shadow_of(pg, "gridfs_probe", "fs.files", ["filename", "uploadDate"])
    finally:
        sync_client.drop_database("gridfs_probe")


async def test_lookup_by_a_unique_field_uses_its_gin_index_from_the_first_request(
    pg: psycopg.Connection[Any], crud: Crud
) -> None:
    # Enough rows that no size estimate makes a scan cheaper: a table of a few pages
    # is read whole whatever its indexes, depending on its statistics at that moment
    # (a typed-index build beside it updates them), and the plan flipped under load.
    response = await crud.insert([{"email": f"u{i}@example.com"} for i in range(3000)])
    assert response.status_code == 201, response.text
    collection = await crud.physical()
    plan = await collection.database.command(
        "explain", {"find": "users", "filter": {"email": "u7@example.com"}}
    )
    text = json.dumps(plan["queryPlanner"])
    assert "Bitmap Index Scan" in text and "qgin_" in text, text
    # Through the API too: the answer comes back, and from the shadow index.
    found = await crud.find(filters=json.dumps({"email": "u7@example.com"}))
    assert found.status_code == 200 and found.json()["data"][0]["email"] == "u7@example.com"


def test_prepared_statements_keep_using_the_gin_index(
    pg: psycopg.Connection[Any], sync_client: MongoClient
) -> None:
    """FerretDB binds the field name (`_jsonb->$1 @> $2`) and caches prepared
    statements; after PostgreSQL's five custom plans a generic plan could not use
    the expression index — `plan_cache_mode=force_custom_plan` keeps it in use."""
    things = sync_client.plan_probe.things
    things.create_index("code", unique=True)
    things.insert_many([{"code": f"c{i}"} for i in range(2000)])
    try:
        (meta,) = metadata_rows(pg, "plan_probe")
        table = psycopg.sql.Identifier("plan_probe", meta["table"])
        query = psycopg.sql.SQL("EXPLAIN SELECT _jsonb FROM {} WHERE _jsonb->%s @> %s").format(
            table
        )
        with pg.cursor() as cursor:
            for i in range(12):
                plan = cursor.execute(query, ("code", json.dumps(f"c{i}")), prepare=True).fetchall()
                assert "qgin_" in str(plan), plan
    finally:
        sync_client.drop_database("plan_probe")


async def test_dropping_an_index_drops_its_shadow(pg: psycopg.Connection[Any], crud: Crud) -> None:
    db_name = (await crud.physical()).database.name
    (meta,) = [m for m in metadata_rows(pg, db_name) if m["_id"] == "users"]
    name = shadow_of(pg, db_name, "users", ["signup_date"])
    response = await crud.http.post(
        "/api/update_schema",
        json={
            "database_id": crud.database_id,
            "collection_name": "users",
            "fields": [{"name": "email", "type": "string", "unique": True}],
        },
        headers=crud.headers,
    )
    assert response.status_code == 200, response.text
    assert name not in gin_indexes(pg, db_name, meta["table"])
    assert shadow_of(pg, db_name, "users", ["email"])
    # Dropping the collection's database takes the rest with it.
    await state_of(crud.app).database.client.drop_database(db_name)
    assert gin_indexes(pg, db_name, meta["table"]) == {}


def test_missing_shadows_are_found_again_at_start(tmp_path: Path, engine_binary: Path) -> None:
    engine = EmbeddedEngine.start(binary=engine_binary, data_dir=tmp_path / "pg")
    try:
        client: MongoClient = MongoClient(engine.url)
        client.restart_probe.things.create_index("code", unique=True)
        client.close()
        with pg_connect(engine) as connection:
            shadow = shadow_of(connection, "restart_probe", "things", ["code"])
            connection.execute(f"DROP INDEX restart_probe.{shadow}")
        engine.stop()
        engine.restart()
        # Rebuilt after the start, beside traffic (CREATE INDEX CONCURRENTLY).
        deadline = time.monotonic() + 30
        with pg_connect(engine) as connection:
            while True:
                try:
                    assert shadow_of(connection, "restart_probe", "things", ["code"]) == shadow
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            valid = connection.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = %s",
                (shadow,),
            ).fetchone()
            assert valid == (True,)
    finally:
        engine.stop()


async def test_an_unfiltered_count_is_exact_and_read_with_sql(
    pg: psycopg.Connection[Any], crud: Crud, sync_client: MongoClient
) -> None:
    """FerretDB's collStats count is an estimate above ANALYZE's 30,000-row sample and
    its count decodes every document; the engine layer counts rows in SQL."""
    collection = await crud.physical()
    users = sync_client[collection.database.name]["users"]
    users.insert_many([{"email": f"u{i}@example.com"} for i in range(35_001)])
    database = state_of(crud.app).database
    assert database.engine_reads is not None
    assert await database.engine_reads.count(collection.database.name, "users") == 35_001
    assert await database.collection_size(collection.database.name, "users") == 35_001
    counted = await crud.post("/api/crud/count", filters={})
    assert counted.json()["count"] == 35_001
    listed = await crud.find(page_size=10)
    assert listed.json()["pagination"]["total_items"] == 35_001
    # A collection FerretDB does not know answers None: the caller asks FerretDB.
    assert await database.engine_reads.count(collection.database.name, "missing") is None
    assert await database.engine_reads.count("no_such_database", "users") is None


async def test_the_direct_sql_connection_cannot_write(crud: Crud, database_server) -> None:
    engine_sql = EngineSql(database_server.engine.postgres_conninfo())
    try:
        connection = await engine_sql._connect()
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            await connection.execute("CREATE TABLE quarry_must_not_exist (x int)")
    finally:
        await engine_sql.close()
