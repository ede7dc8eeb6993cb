"""Servers refuse FerretDB's SQLite backend: it has neither the write door nor the SQL
reads. `quarry serve` and `quarry engine start` exit with a message that names
`quarry engine migrate`, whether the setting asks for SQLite or the data directory
holds only SQLite data; an app's lifespan refuses the same way. The migration
itself (tests/app/test_engine_migrate.py) still starts the SQLite engine, as a tool.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from pymongo import MongoClient

from app.engine import EmbeddedEngine, EngineError, free_port
from app.main import create_app
from app.settings import Settings
from tests.fixtures.engine import run_quarry, serve_process


@pytest.fixture
def sqlite_data(tmp_path: Path, engine_binary: Path) -> Path:
    """A data directory with SQLite data only, as an earlier Quarry left it."""
    data = tmp_path / "data"
    engine = EmbeddedEngine.start(binary=engine_binary, data_dir=data / "db", backend="sqlite")
    try:
        client: MongoClient = MongoClient(engine.url)
        client["shop_123456"].products.insert_one({"sku": "a"})
        client.close()
    finally:
        engine.stop()
    return data


def refused(output: str) -> bool:
    return "quarry engine migrate" in output and "Traceback" not in output


def serve_output(tmp_path: Path, engine_binary: Path, **env: str) -> tuple[int, str]:
    """`quarry serve`'s exit code and output; one still serving after a minute is
    stopped (SIGINT, as Ctrl-C) and reported as such."""
    server = serve_process(tmp_path, engine_binary, free_port(), **env)
    try:
        output, _ = server.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
        return -1, "still serving after 60 s:\n" + output
    return server.returncode, output


def test_serve_with_the_sqlite_setting_is_refused(tmp_path: Path, engine_binary: Path) -> None:
    code, output = serve_output(tmp_path, engine_binary, QUARRY_EMBEDDED_BACKEND="sqlite")
    assert code == 1 and refused(output), output
    assert "QUARRY_EMBEDDED_BACKEND=sqlite is refused" in output
    # Nothing was started: no SQLite files, no socket.
    assert not (tmp_path / "data" / "db").exists()
    assert not list((tmp_path / "data").rglob("*.sock"))


def test_serve_on_sqlite_data_with_the_sqlite_setting_is_refused(
    sqlite_data: Path, engine_binary: Path
) -> None:
    code, output = serve_output(sqlite_data.parent, engine_binary, QUARRY_EMBEDDED_BACKEND="sqlite")
    assert code == 1 and refused(output), output


def test_serve_on_sqlite_data_offers_only_the_migration(
    sqlite_data: Path, engine_binary: Path
) -> None:
    code, output = serve_output(sqlite_data.parent, engine_binary)
    assert code == 1 and refused(output), output
    assert "QUARRY_EMBEDDED_BACKEND=sqlite" not in output
    assert not (sqlite_data / "pg").exists()


def test_engine_start_with_the_sqlite_setting_is_refused(
    tmp_path: Path, engine_binary: Path
) -> None:
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("QUARRY_")},
        "QUARRY_DATA_DIR": str(tmp_path / "data"),
        "QUARRY_FERRETDB_BIN": str(engine_binary),
        "QUARRY_EMBEDDED_BACKEND": "sqlite",
    }

    def quarry(*args: str) -> subprocess.CompletedProcess[str]:
        return run_quarry(env, *args)

    started = quarry("engine", "start")
    if started.returncode == 0:
        quarry("engine", "stop")
    assert started.returncode == 1 and refused(started.stderr), started.stdout + started.stderr
    assert quarry("engine", "status").returncode == 3
    assert not (tmp_path / "data" / "engine.json").exists()


async def test_an_app_with_the_sqlite_setting_does_not_start(
    tmp_path: Path, engine_binary: Path
) -> None:
    settings = Settings(
        env="test",
        mongodb_url="",
        data_dir=tmp_path / "data",
        ferretdb_bin=engine_binary,
        embedded_backend="sqlite",
    )
    app = create_app(settings)
    with pytest.raises(EngineError, match="quarry engine migrate"):
        async with app.router.lifespan_context(app):
            pass
    assert not (tmp_path / "data" / "db").exists()
