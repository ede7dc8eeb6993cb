"""SQLite data directories: refused on PostgreSQL until `quarry engine migrate` has
copied every database, collection, index and document (GridFS too) and verified it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import gridfs
import pytest
from bson import Binary, Int64, ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from app.engine import EmbeddedEngine, free_port
from app.engine import migrate as engine_migrate
from app.settings import Settings
from tests.fixtures.engine import run_quarry, serve_process

FILE_BYTES = os.urandom(700_000)  # several GridFS chunks


def _quarry(data: Path, engine_binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "QUARRY_DATA_DIR": str(data),
        "QUARRY_FERRETDB_BIN": str(engine_binary),
        "QUARRY_MONGODB_URL": "",
    }
    return run_quarry(env, *args, timeout=300)


def _fill_sqlite(data: Path, engine_binary: Path, *, extra_database: str | None = None) -> None:
    engine = EmbeddedEngine.start(binary=engine_binary, data_dir=data / "db", backend="sqlite")
    try:
        client: MongoClient = MongoClient(engine.url)
        shop = client["shop_123456"]
        shop.products.create_index("sku", unique=True, name="sku_unique")
        shop.products.create_index("price", name="price_index")
        shop.products.insert_many(
            [
                {
                    "_id": ObjectId(),
                    "sku": f"sku-{i}",
                    "price": i * 1.5,
                    "count32": i,
                    "count64": Int64(2**40 + i),
                    "when": dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
                    "tags": ["a", str(i)],
                    "nested": {"deep": {"flag": i % 2 == 0, "none": None}},
                    "blob": Binary(bytes([i % 256]) * 3),
                }
                for i in range(2_500)
            ]
        )
        shop.empty.insert_one({"_id": "x"})
        shop.empty.delete_many({})
        client["quarry"].users.create_index("email", unique=True, name="email_unique")
        client["quarry"].users.insert_one({"_id": "u1", "email": "a@example.com"})
        gridfs.GridFS(client["files_654321"]).put(FILE_BYTES, filename="report.bin")
        if extra_database:
            client[extra_database].things.insert_one({"a": 1})
        client.close()
    finally:
        engine.stop()


def _snapshot(url: str) -> dict[str, list[bytes]]:
    client: MongoClient = MongoClient(url, document_class=RawBSONDocument)
    try:
        return {
            f"{db}.{coll}": sorted(bytes(d.raw) for d in client[db][coll].find())
            for db in sorted(client.list_database_names())
            for coll in sorted(client[db].list_collection_names())
        }
    finally:
        client.close()


@pytest.fixture
def sqlite_data(tmp_path: Path, engine_binary: Path) -> Path:
    data = tmp_path / "data"
    _fill_sqlite(data, engine_binary)
    return data


def test_server_refuses_sqlite_data_without_postgresql_data(
    sqlite_data: Path, engine_binary: Path
) -> None:
    server = serve_process(sqlite_data.parent, engine_binary, free_port())
    output, _ = server.communicate(timeout=60)
    assert server.returncode == 1
    assert "quarry engine migrate" in output
    assert "Traceback" not in output
    # Never started empty: no cluster was made beside the SQLite data.
    assert not (sqlite_data / "pg").exists()


def test_migrate_copies_and_verifies_everything(sqlite_data: Path, engine_binary: Path) -> None:
    source = EmbeddedEngine.start(
        binary=engine_binary, data_dir=sqlite_data / "db", backend="sqlite"
    )
    try:
        before = _snapshot(source.url)
    finally:
        source.stop()

    result = _quarry(sqlite_data, engine_binary, "engine", "migrate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "copied and verified" in result.stdout
    assert (sqlite_data / "pg" / "data" / "PG_VERSION").is_file()
    assert not (sqlite_data / "pg.migrating").exists()

    engine = EmbeddedEngine.start(binary=engine_binary, data_dir=sqlite_data / "pg")
    try:
        assert _snapshot(engine.url) == before
        client: MongoClient = MongoClient(engine.url)
        products = client["shop_123456"].products
        indexes = {i["name"]: i for i in products.list_indexes()}
        assert indexes["sku_unique"]["unique"] is True
        assert dict(indexes["price_index"]["key"]) == {"price": 1}
        # The copied unique index is enforced and served by its GIN shadow index.
        with pytest.raises(Exception, match=r"duplicate key|E11000"):
            products.insert_one({"sku": "sku-7"})
        plan = client["shop_123456"].command(
            "explain", {"find": "products", "filter": {"sku": "x"}}
        )
        assert "qgin_" in str(plan["queryPlanner"])
        stored = gridfs.GridFS(client["files_654321"]).find_one({"filename": "report.bin"})
        assert stored.read() == FILE_BYTES
        assert client["shop_123456"].list_collection_names().count("empty") == 1
        client.close()
    finally:
        engine.stop()

    # A second run never writes into the cluster it made.
    again = _quarry(sqlite_data, engine_binary, "engine", "migrate")
    assert again.returncode == 1 and "already holds PostgreSQL data" in again.stdout


def test_migrate_that_cannot_finish_leaves_no_cluster(tmp_path: Path, engine_binary: Path) -> None:
    data = tmp_path / "data"
    _fill_sqlite(data, engine_binary, extra_database="pgstuff_111111")
    result = _quarry(data, engine_binary, "engine", "migrate")
    assert result.returncode == 1
    assert "pgstuff_111111" in result.stdout
    assert not (data / "pg").exists() and not (data / "pg.migrating").exists()
    # The SQLite data is untouched and the server still refuses to start empty.
    server = serve_process(tmp_path, engine_binary, free_port())
    output, _ = server.communicate(timeout=60)
    assert server.returncode == 1 and "quarry engine migrate" in output


def test_a_copy_that_differs_fails_verification_and_leaves_no_cluster(
    tmp_path: Path, engine_binary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verification is what stands between a faulty copy and the server: a copy
    that loses one document (simulated here) is caught, and nothing is kept."""
    data = tmp_path / "data"
    _fill_sqlite(data, engine_binary)
    copy = engine_migrate._copy_collection

    def lossy(src: MongoClient, dst: MongoClient, database: str, collection: str) -> int:
        copied = copy(src, dst, database, collection)
        if collection == "products":
            dst[database][collection].delete_one({})
        return copied

    monkeypatch.setattr(engine_migrate, "_copy_collection", lossy)
    lines: list[str] = []
    settings = Settings(data_dir=data, ferretdb_bin=engine_binary, mongodb_url="")
    assert engine_migrate.migrate_sqlite_to_postgresql(settings, report=lines.append) == 1
    assert any("shop_123456.products differs" in line for line in lines), lines
    assert not (data / "pg").exists() and not (data / "pg.migrating").exists()
