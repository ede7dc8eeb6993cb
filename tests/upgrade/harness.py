"""The upgrade harness: a data directory written by an earlier release of Quarry,
served by the current code.

`previous_release()` checks the pinned commit `PREVIOUS_RELEASE` out into a git
worktree; `served(release, ...)` runs that release's own `quarry serve` (its own
code, its own engine build) on a data directory of the test's, with the embedded
engine — PostgreSQL cluster and all — kept in that directory, exactly as a user's
installation keeps it. The test writes through the old server, stops it, serves
the same directory with the current code, and checks that everything written
still answers (`tests/upgrade/cases.py`).

Each issue that changes stored state adds an `UpgradeCase` to `CASES` (what it
writes before the upgrade, and what must hold after it), and moves
`PREVIOUS_RELEASE` on when a release ships; the same secret key and control
database are used on both sides, as an upgrade in place keeps them.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from tests.fixtures.engine import REPO
from tests.fixtures.mailbox import Inbox
from tests.fixtures.quarry_server import serve_quarry

#: The release whose data directory is upgraded: main as it stood before the
#: layout moved into packages (issue 24).
PREVIOUS_RELEASE = "27b18e73f6bb187f19098fe899133e16329c253e"
CONTROL_DB = "quarry"
#: Building the old release's engine (cached by Go) and starting PostgreSQL.
START_SECONDS = 300.0


@dataclass(frozen=True)
class Release:
    """A tree of Quarry's code; the current one is the repository itself."""

    name: str
    root: Path


CURRENT = Release("current", REPO)


def git(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *arguments], cwd=REPO, capture_output=True, text=True, check=False
    )


@contextlib.contextmanager
def previous_release(parent: Path) -> Iterator[Release]:
    """`PREVIOUS_RELEASE` checked out beside the repository (a git worktree)."""
    git("worktree", "prune")  # what a killed run left registered
    assert git("cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}").returncode == 0, (
        f"{PREVIOUS_RELEASE} is not in this clone's history (a shallow clone?): the "
        "upgrade tests need it; fetch it (git fetch --unshallow)"
    )
    root = parent / "previous"
    added = git("worktree", "add", "--detach", "--force", str(root), PREVIOUS_RELEASE)
    assert added.returncode == 0, added.stderr
    try:
        yield Release(PREVIOUS_RELEASE[:12], root)
    finally:
        git("worktree", "remove", "--force", str(root))


@contextlib.contextmanager
def served(release: Release, *, data_dir: Path, inbox: Inbox) -> Iterator[str]:
    """`release`'s `quarry serve` on `data_dir` (embedded engine) until the block
    ends, stopped as an operator would (SIGTERM); its base URL. Both sides use the
    same control database and secret key."""
    with serve_quarry(
        database_url="",
        data_dir=data_dir,
        smtp_port=inbox.port,
        code_root=None if release is CURRENT else release.root,
        start_seconds=START_SECONDS,
        QUARRY_CONTROL_DB=CONTROL_DB,
    ) as url:
        yield url


@dataclass
class Api:
    """One server's HTTP API, and the test inbox its mail goes to."""

    http: httpx.AsyncClient
    inbox: Inbox
    url: str


@dataclass
class Written:
    """What a case wrote before the upgrade, to check after it."""

    values: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value


class UpgradeCase(Protocol):
    """What one kind of stored state must survive: written through the old
    server, checked through the new one (status, `error_code`, stored content)."""

    name: str

    async def write(self, api: Api, written: Written) -> None: ...

    async def check(self, api: Api, written: Written) -> None: ...
