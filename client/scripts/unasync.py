"""Writes `quarry_client/_sync/` from `quarry_client/_async/`.

The async client is the source; the blocking client is the same code with the
async words taken out (the way httpcore keeps its two flavours identical), so the
two surfaces cannot differ. `tests/client/test_drift.py` checks the files are
current. Run after editing anything under `_async/`:

    .venv/bin/python client/scripts/unasync.py
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "quarry_client"
SOURCE, TARGET = PACKAGE / "_async", PACKAGE / "_sync"

HEADER = "# Generated from quarry_client/_async by client/scripts/unasync.py. Do not edit.\n"

#: Whole-word replacements, in order.
WORDS = [
    (r"\basync def\b", "def"),
    (r"\basync for\b", "for"),
    (r"\basync with\b", "with"),
    (r"\bawait ", ""),
    (r"\basynccontextmanager\b", "contextmanager"),
    (r"\bAsyncLock\b", "Lock"),
    (r"\basync_sleep\b", "sync_sleep"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\banext\(", "next("),
    (r"\baclose\b", "close"),
    (r"\baread\b", "read"),
    (r"\baiter_bytes\b", "iter_bytes"),
    (r"\baiter_lines\b", "iter_lines"),
    (r"\baiter_raw\b", "iter_raw"),
    (r"\bAsync([A-Z]\w*)", r"\1"),
    (r"\bquarry_client\._async\b", "quarry_client._sync"),
]


def unasync(source: str) -> str:
    for pattern, replacement in WORDS:
        source = re.sub(pattern, replacement, source)
    return HEADER + source


def tidied(source: str, name: str) -> str:
    """`source` with its imports sorted and formatted as ruff would (renamed
    imports change their order and line lengths)."""
    path = str(TARGET / name)
    for command in (["check", "--select", "I", "--fix", "--quiet"], ["format"]):
        source = subprocess.run(  # noqa: S603 - our own interpreter and ruff
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", path, "-"],
            input=source,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return source


def rendered() -> dict[str, str]:
    """File name -> the blocking module it becomes."""
    return {
        path.name: tidied(unasync(path.read_text()), path.name)
        for path in sorted(SOURCE.glob("*.py"))
    }


def main() -> int:
    TARGET.mkdir(exist_ok=True)
    expected = rendered()
    for stale in TARGET.glob("*.py"):
        if stale.name not in expected:
            stale.unlink()
    for name, text in expected.items():
        (TARGET / name).write_text(text)
    print(f"wrote {len(expected)} modules to {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
