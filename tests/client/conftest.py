"""Fixtures for the client and CLI tests: one real `quarry serve` process for the
session (on the session's engine), and logged-in clients for new accounts."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from quarry_client import AsyncQuarry, Quarry

from tests.fixtures.engine import DatabaseServer
from tests.fixtures.mailbox import Inbox
from tests.fixtures.quarry_server import logged_in, serve_quarry


@pytest.fixture(scope="session")
def quarry_url(database_server: DatabaseServer, smtp_server: Inbox) -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="quarry-client-server-"))
    with serve_quarry(
        database_url=database_server.url, data_dir=root / "data", smtp_port=smtp_server.port
    ) as url:
        yield url
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_quarry(quarry_url: str, smtp_server: Inbox) -> Iterator[Callable[..., Any]]:
    """Factory: a logged-in client for a new account (closed after the test)."""
    opened: list[Any] = []

    def factory(*, async_: bool = False, **options: Any) -> Any:
        client = logged_in(quarry_url, smtp_server, async_=async_, **options)
        opened.append(client)
        return client

    yield factory
    for client in opened:
        if isinstance(client, Quarry):
            client.close()


@pytest.fixture
def quarry(make_quarry: Callable[..., Any]) -> Quarry:
    client: Quarry = make_quarry()
    return client


@pytest.fixture
async def aquarry(make_quarry: Callable[..., Any]) -> AsyncIterator[AsyncQuarry]:
    client: AsyncQuarry = make_quarry(async_=True)
    yield client
    await client.aclose()
