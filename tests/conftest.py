"""Session fixtures: a real database server, the app with its lifespan, an HTTP client.

The server is the embedded FerretDB engine, started once per session on a free
port in a temporary directory, on PostgreSQL (or on SQLite with
`QUARRY_TEST_EMBEDDED_BACKEND=sqlite`, which `make test` uses for the tests marked
`smoke`) — or the MongoDB named by `QUARRY_TEST_MONGODB_URL`.
Each test gets its own control-database name, and every database a test creates
is dropped after it (autouse), so tests run in any order.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from pymongo import MongoClient

from app.engine import EmbeddedEngine, build_engine, default_binary, free_port
from app.main import create_app
from app.settings import Settings
from tests.fixtures.engine import SYSTEM_DATABASES, TEST_BACKEND, DatabaseServer, running
from tests.fixtures.mailbox import Inbox
from tests.fixtures.routes import install_test_routes

#: Fixtures every package uses: accounts (`register`, `register_in`), databases
#: (`owner`, `other_owner`, `create_database`) and documents (`crud`, `make_crud`).
pytest_plugins = ["tests.fixtures.accounts", "tests.fixtures.databases", "tests.fixtures.documents"]


@pytest.fixture(scope="session")
def engine_binary() -> Path:
    return build_engine(default_binary())


@pytest.fixture(scope="session")
def database_server(request: pytest.FixtureRequest) -> Iterator[DatabaseServer]:
    external = os.environ.get("QUARRY_TEST_MONGODB_URL")
    if external:
        yield DatabaseServer(url=external, engine=None)
        return
    binary: Path = request.getfixturevalue("engine_binary")
    # Not under pytest's basetemp: a second pytest session resets that tree's
    # root to 0700, which would lock PostgreSQL's own user out of its data.
    root = Path(tempfile.mkdtemp(prefix="quarry-test-engine-"))
    data_dir = root / ("pg" if TEST_BACKEND == "postgresql" else "db")
    engine = EmbeddedEngine.start(binary=binary, data_dir=data_dir, backend=TEST_BACKEND)
    try:
        yield DatabaseServer(url=engine.url, engine=engine)
    finally:
        engine.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sync_client(database_server: DatabaseServer) -> Iterator[MongoClient[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(
        database_server.url, serverSelectionTimeoutMS=5000, tz_aware=True
    )
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _drop_databases_created_by_the_test(
    request: pytest.FixtureRequest,
) -> Iterator[None]:
    if "database_server" not in request.fixturenames:
        yield
        return
    client: MongoClient[dict[str, Any]] = request.getfixturevalue("sync_client")
    before = set(client.list_database_names())
    yield
    server: DatabaseServer = request.getfixturevalue("database_server")
    if server.engine is not None and not server.engine.running():
        server.start()
    for name in set(client.list_database_names()) - before - SYSTEM_DATABASES:
        client.drop_database(name)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[Inbox]:
    """A real SMTP server (aiosmtpd) on a free loopback port; mails land in the inbox."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.port = controller.port
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def inbox(smtp_server: Inbox) -> Inbox:
    smtp_server.clear()
    return smtp_server


@pytest.fixture
def make_settings(
    database_server: DatabaseServer, tmp_path: Path, smtp_server: Inbox
) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "env": "test",
            "mongodb_url": database_server.url,
            "control_db": f"quarry_test_{uuid.uuid4().hex[:12]}",
            "data_dir": tmp_path / "data",
            "mongodb_timeout_ms": 1000,
            "retry_after_seconds": 3,
            "public_url": "http://testserver",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_server.port,
            # Cheap hashing keeps the suite fast; tests/auth checks the real defaults.
            "argon2_time_cost": 1,
            "argon2_memory_kib": 1024,
            "argon2_parallelism": 1,
        }
        values.update(overrides)
        return Settings(**values)

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def make_client(
    make_settings: Callable[..., Settings], database_server: DatabaseServer
) -> Callable[..., contextlib.AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]:
    """An app with its own settings, lifespan running, and a client for it."""

    @contextlib.asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        application = create_app(make_settings(**overrides))
        install_test_routes(application)
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with (
            running(application, database_server),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
        ):
            yield application, http

    return factory


@pytest.fixture
async def app(settings: Settings, database_server: DatabaseServer) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    install_test_routes(application)
    async with running(application, database_server):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
