"""Running the `quarry` command line as a subprocess, as a user would: its own
HOME and XDG_CONFIG_HOME, and no QUARRY_* variable but the ones a test sets."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

QUARRY = Path(sys.executable).with_name("quarry")


def cli_environment(home: Path, **variables: str) -> dict[str, str]:
    """The environment of a user whose home (and config) is `home`."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("QUARRY_")}
    environment.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
    environment.update(variables)
    return environment


def run_quarry(
    environment: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`quarry ARGS…`, waited for; stdout and stderr captured as text."""
    return subprocess.run(
        [str(QUARRY), *args],
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_json(environment: dict[str, str], *args: str, stdin: str | None = None) -> Any:
    """`quarry ARGS… --json`, which must succeed; its stdout parsed."""
    done = run_quarry(environment, *args, "--json", stdin=stdin)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
    return json.loads(done.stdout)


def json_error(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON error object a failed `--json` command printed on stderr."""
    error: dict[str, Any] = json.loads(done.stderr.strip().splitlines()[-1])
    assert set(error) >= {"error_code", "message", "request_id", "details"}
    return error


class LineReader:
    """The lines of a running process's pipe, read on a thread, awaited with a deadline."""

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, done: Callable[[list[str]], bool], timeout: float) -> list[str]:
        """Lines until `done(lines)` holds; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not done(self.lines):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; lines so far: {self.lines}"
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"the stream ended; lines: {self.lines}"
            self.lines.append(line)
        return self.lines
