"""A data directory written by the previous release (`PREVIOUS_RELEASE`, its own
code and engine build, its PostgreSQL cluster in the directory) is served by the
current code: the audit chain written before verifies with the current
`quarry audit verify`, and every case of `cases.py` still answers, id by id."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.mailbox import Inbox
from tests.fixtures.quarry_server import server_environment
from tests.upgrade.cases import CASES
from tests.upgrade.harness import (
    CONTROL_DB,
    CURRENT,
    Api,
    Written,
    previous_release,
    served,
)


@dataclass
class Upgraded:
    api: Api
    written: dict[str, Written]
    verified: subprocess.CompletedProcess[str]


def verify_audit_chain(data_dir: Path, inbox: Inbox) -> subprocess.CompletedProcess[str]:
    """The current `quarry audit verify` on `data_dir` (it starts the engine for itself)."""
    environment = server_environment(
        database_url="", data_dir=data_dir, smtp_port=inbox.port, port=0
    )
    environment["QUARRY_CONTROL_DB"] = CONTROL_DB
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "audit", "verify"],
        cwd=CURRENT.root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
async def upgraded(smtp_server: Inbox) -> AsyncIterator[Upgraded]:
    # Not under pytest's basetemp: PostgreSQL's own account must reach the directory.
    root = Path(tempfile.mkdtemp(prefix="quarry-upgrade-"))
    data_dir = root / "data"
    written = {case.name: Written() for case in CASES}
    try:
        with (
            previous_release(root) as previous,
            served(previous, data_dir=data_dir, inbox=smtp_server) as url,
        ):
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                for case in CASES:
                    await case.write(Api(http, smtp_server, url), written[case.name])
        verified = verify_audit_chain(data_dir, smtp_server)
        with served(CURRENT, data_dir=data_dir, inbox=smtp_server) as url:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                yield Upgraded(Api(http, smtp_server, url), written, verified)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_audit_chain_written_before_verifies_after(upgraded: Upgraded) -> None:
    assert upgraded.verified.returncode == 0, upgraded.verified.stderr
    assert "audit chain intact" in upgraded.verified.stdout


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_what_was_written_before_the_upgrade_still_answers(
    upgraded: Upgraded, case: object
) -> None:
    await case.check(upgraded.api, upgraded.written[case.name])  # type: ignore[attr-defined]
