"""The embedded engine: owned by the app's lifespan, gone after shutdown (clean,
Ctrl-C or killed owner) with its PostgreSQL server, restarted after a crash of
either process, data kept across restarts, one engine per data directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from app.engine import EmbeddedEngine, EngineError, free_port, pid_alive
from app.main import create_app
from app.settings import Settings
from app.wiring import state_of
from tests.fixtures.engine import REPO, run_quarry, serve_process


def embedded_settings(tmp_path: Path, engine_binary: Path, **overrides) -> Settings:
    return Settings(
        env="test",
        mongodb_url="",
        data_dir=tmp_path / "data",
        ferretdb_bin=engine_binary,
        control_db="quarry_engine_test",
        **overrides,
    )


def postgres_pids(data_dir: Path) -> list[int]:
    """Every live process of the PostgreSQL cluster under `data_dir` (postmaster first)."""
    out = subprocess.run(
        ["pgrep", "-f", "--", f"postgres -D {data_dir.resolve()}/pg/data"],
        capture_output=True,
        text=True,
    )
    postmasters = [int(p) for p in out.stdout.split() if pid_alive(int(p))]
    children = []
    for pid in postmasters:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        children += [int(k) for k in kids.stdout.split() if pid_alive(int(k))]
    return postmasters + children


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def test_lifespan_engine_is_gone_after_shutdown(tmp_path, engine_binary) -> None:
    app = create_app(embedded_settings(tmp_path, engine_binary))
    async with app.router.lifespan_context(app):
        engine = state_of(app).get(EmbeddedEngine)
        assert engine.owned and pid_alive(engine.pid)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            body = (await http.get("/health")).json()
        assert body["database"] == "connected" and body["engine"] == "ferretdb-postgresql"
        assert (tmp_path / "data" / "pg" / "data" / "PG_VERSION").is_file()
        postgres = postgres_pids(tmp_path / "data")
        assert engine.postgres_pid in postgres
    assert not pid_alive(engine.pid)
    wait_for(lambda: not postgres_pids(tmp_path / "data"), timeout=10)


async def test_data_survives_a_restart(tmp_path, engine_binary) -> None:
    settings = embedded_settings(tmp_path, engine_binary)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await state_of(app).database.control["kept"].insert_one({"_id": "x", "value": 42})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        doc = await state_of(app).database.control["kept"].find_one({"_id": "x"})
    assert doc == {"_id": "x", "value": 42}


async def _wait_healthy_after(app, engine, first_pid: int) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if engine.pid != first_pid and (await http.get("/health")).status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert engine.pid != first_pid
        assert (await http.get("/health")).status_code == 200
        # The data is still there after the restart, and PostgreSQL where it was
        # (the direct counts reach it).
        assert await state_of(app).database.control["kept"].find_one({"_id": "x"}) is not None
        counted = await state_of(app).database.engine_reads.count("quarry_engine_test", "kept")
        assert counted == 1


async def test_crashed_engine_is_restarted_by_the_app(tmp_path, engine_binary) -> None:
    app = create_app(embedded_settings(tmp_path, engine_binary))
    async with app.router.lifespan_context(app):
        engine = state_of(app).get(EmbeddedEngine)
        await state_of(app).database.control["kept"].insert_one({"_id": "x"})
        first_pid, first_postgres = engine.pid, engine.postgres_pid
        os.kill(first_pid, signal.SIGKILL)
        await _wait_healthy_after(app, engine, first_pid)
        # The old PostgreSQL server went with the engine that ran it.
        assert not pid_alive(first_postgres)
        assert engine.postgres_pid not in (None, first_postgres)
    assert not pid_alive(engine.pid)


async def test_crashed_postgres_is_restarted_by_the_app(tmp_path, engine_binary) -> None:
    app = create_app(embedded_settings(tmp_path, engine_binary))
    async with app.router.lifespan_context(app):
        engine = state_of(app).get(EmbeddedEngine)
        await state_of(app).database.control["kept"].insert_one({"_id": "x"})
        first_pid, first_postgres = engine.pid, engine.postgres_pid
        os.kill(first_postgres, signal.SIGKILL)
        await _wait_healthy_after(app, engine, first_pid)
        assert engine.postgres_pid not in (None, first_postgres)
    assert not pid_alive(engine.pid)
    wait_for(lambda: not postgres_pids(tmp_path / "data"), timeout=10)


def test_second_engine_on_same_data_dir_is_refused(tmp_path, engine_binary) -> None:
    first = EmbeddedEngine.start(binary=engine_binary, data_dir=tmp_path / "pg")
    try:
        with pytest.raises(EngineError, match="already using"):
            EmbeddedEngine.start(binary=engine_binary, data_dir=tmp_path / "pg")
        # Not with the other backend either: one engine per data directory.
        with pytest.raises(EngineError, match="already using"):
            EmbeddedEngine.start(binary=engine_binary, data_dir=tmp_path / "db", backend="sqlite")
    finally:
        first.stop()
    assert not pid_alive(first.pid)


def test_engine_and_postgres_die_with_an_owner_killed_by_sigkill(tmp_path, engine_binary) -> None:
    script = (
        "import sys, time; from pathlib import Path; from app.engine import EmbeddedEngine; "
        f"e = EmbeddedEngine.start(binary=Path({str(engine_binary)!r}), "
        f"data_dir=Path({str(tmp_path / 'data' / 'pg')!r})); "
        "print(e.pid, e.postgres_pid, flush=True); time.sleep(600)"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    engine_pid, postgres_pid = map(int, owner.stdout.readline().split())
    assert pid_alive(engine_pid) and pid_alive(postgres_pid)
    assert postgres_pid in postgres_pids(tmp_path / "data")
    owner.kill()
    owner.wait()
    wait_for(lambda: not pid_alive(engine_pid), timeout=10)
    wait_for(lambda: not postgres_pids(tmp_path / "data"), timeout=20)


def _engine_pids(data_root: Path) -> list[int]:
    """Engine processes (either backend) on the data directory `data_root`."""
    pattern = f"-(postgres-data|data-dir)={data_root.resolve()}/(pg/data|db)( |$)"
    out = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split() if pid_alive(int(p))]


def test_quarry_serve_answers_over_http_and_ctrl_c_stops_the_engine(
    tmp_path, engine_binary
) -> None:
    port = free_port()
    server = serve_process(tmp_path, engine_binary, port)
    try:
        wait_for(lambda: _healthy(port), timeout=60)
        body = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert body["engine"] == "ferretdb-postgresql"
        engines = _engine_pids(tmp_path / "data")
        assert len(engines) == 1
        assert postgres_pids(tmp_path / "data")
        server.send_signal(signal.SIGINT)
        server.wait(timeout=40)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0
    wait_for(lambda: not _engine_pids(tmp_path / "data"), timeout=10)
    wait_for(lambda: not postgres_pids(tmp_path / "data"), timeout=10)


def test_serve_with_two_workers_shares_one_recorded_engine(tmp_path, engine_binary) -> None:
    port = free_port()
    server = serve_process(tmp_path, engine_binary, port, QUARRY_WORKERS="2")
    try:
        wait_for(lambda: _healthy(port), timeout=60)
        body = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert body["engine"] == "ferretdb-postgresql"
        assert len(_engine_pids(tmp_path / "data")) == 1
        # Recorded for the workers (with its PostgreSQL port for direct counts).
        record = json.loads((tmp_path / "data" / "engine.json").read_text())
        assert record["backend"] == "postgresql" and record["postgres_port"]
        # No worker owns it: the serving process restarts it after a crash.
        os.kill(record["pid"], signal.SIGKILL)

        def restarted() -> bool:
            try:
                current = json.loads((tmp_path / "data" / "engine.json").read_text())
            except (OSError, ValueError):
                return False
            return current["pid"] != record["pid"] and _healthy(port)

        wait_for(restarted, timeout=60)
        assert len(_engine_pids(tmp_path / "data")) == 1
        server.send_signal(signal.SIGINT)
        server.wait(timeout=40)
    finally:
        if server.poll() is None:
            server.kill()
    assert not (tmp_path / "data" / "engine.json").exists()
    wait_for(lambda: not _engine_pids(tmp_path / "data"), timeout=10)
    wait_for(lambda: not postgres_pids(tmp_path / "data"), timeout=10)


def test_quarry_serve_killed_by_sigkill_leaves_no_engine_processes(tmp_path, engine_binary) -> None:
    port = free_port()
    server = serve_process(tmp_path, engine_binary, port)
    try:
        wait_for(lambda: postgres_pids(tmp_path / "data") and _healthy(port), timeout=60)
        assert _engine_pids(tmp_path / "data")
    finally:
        server.kill()
        server.wait()
    wait_for(lambda: not _engine_pids(tmp_path / "data"), timeout=10)
    wait_for(lambda: not postgres_pids(tmp_path / "data"), timeout=20)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_without_go_says_how_to_fix_it(tmp_path) -> None:
    server = serve_process(
        tmp_path,
        tmp_path / "missing" / "ferretdb",
        free_port(),
        PATH=str(Path(sys.executable).parent),
    )
    output, _ = server.communicate(timeout=30)
    assert server.returncode == 1
    assert "needs the Go toolchain" in output
    assert "QUARRY_MONGODB_URL" in output
    assert "Traceback" not in output


def test_engine_cli_start_status_stop_and_server_reuse(tmp_path, engine_binary) -> None:
    env = {
        **os.environ,
        "QUARRY_DATA_DIR": str(tmp_path / "data"),
        "QUARRY_FERRETDB_BIN": str(engine_binary),
    }

    def quarry(*args: str) -> subprocess.CompletedProcess[str]:
        return run_quarry(env, *args)

    assert quarry("engine", "status").returncode == 3
    started = quarry("engine", "start")
    assert started.returncode == 0, started.stderr
    try:
        status = quarry("engine", "status")
        assert status.returncode == 0 and "running" in status.stdout
        assert "ferretdb-postgresql" in status.stdout
        postgres_pid = int(re.search(r"postgres pid (\d+)", status.stdout).group(1))
        assert postgres_pid in postgres_pids(tmp_path / "data")
        url = re.search(r"mongodb://\S+", status.stdout).group(0).rstrip(",")
        client: MongoClient = MongoClient(url, serverSelectionTimeoutMS=2000)
        client.quarry_cli.things.insert_one({"a": 1})
        client.close()

        # A server on the same data directory uses this engine instead of starting its own.
        from app.engine import read_registered

        settings = embedded_settings(tmp_path, engine_binary)
        assert read_registered(settings) is not None
    finally:
        stopped = quarry("engine", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert quarry("engine", "status").returncode == 3
    wait_for(lambda: not _engine_pids(tmp_path / "data"), timeout=10)
    wait_for(lambda: not postgres_pids(tmp_path / "data"), timeout=10)


async def test_app_uses_the_engine_started_from_the_cli(tmp_path, engine_binary) -> None:
    settings = embedded_settings(tmp_path, engine_binary)
    from app.engine import register, unregister

    detached = EmbeddedEngine.start(
        binary=engine_binary, data_dir=settings.engine_data_dir, detached=True
    )
    register(settings, detached)
    try:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            assert state_of(app).get(EmbeddedEngine).pid == detached.pid
            assert state_of(app).get(EmbeddedEngine).owned is False
        # Not ours to stop: it keeps running after the app shuts down.
        assert pid_alive(detached.pid)
    finally:
        detached.stop()
        unregister(settings)
