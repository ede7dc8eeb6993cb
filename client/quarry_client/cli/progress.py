"""Progress bars for transfers, drawn on stderr (stdout stays for results).

A bar is drawn only when stderr is a terminal: piped into a log file, a bar
would be a stream of control characters; the command's final counts say it all."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)


class TransferBar:
    """One bar: bytes done of a total (when known), and records when countable."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def bytes(self, done: int, total: int | None = None) -> None:
        """Bytes done so far (and the total, when it becomes known)."""
        if total is not None:
            self._progress.update(self._task, completed=done, total=total)
        else:
            self._progress.update(self._task, completed=done)

    def records(self, count: int, noun: str = "records") -> None:
        self._progress.update(self._task, records=f"{count:,} {noun}")

    def describe(self, description: str) -> None:
        """A new label, e.g. once the upload is done and the server is at work."""
        self._progress.update(self._task, description=description)


@contextlib.contextmanager
def transfer_bar(description: str, total: int | None) -> Iterator[TransferBar]:
    """A bar on stderr for the length of the block (not drawn when piped)."""
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[records]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
    with progress:
        task = progress.add_task(description, total=total, records="")
        yield TransferBar(progress, task)
