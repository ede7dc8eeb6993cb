# Generated from quarry_client/_async by client/scripts/unasync.py. Do not edit.
"""Downloads into local files: the one way every resource saves a streamed answer."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

Destination = str | os.PathLike[str] | IO[bytes]


def save_chunks(chunks: Iterable[bytes], to: Destination) -> int:
    """Write `chunks` to `to` as they arrive; the bytes written.

    A path is opened when the first chunk is in hand (the server has answered),
    closed after, and removed again if the download fails part-way, so a failed
    download leaves no half file behind; an empty answer leaves an empty file. A
    binary file object is written to as it is and left open."""
    if not isinstance(to, str | os.PathLike):
        return _copy(chunks, to)
    path = Path(to)
    try:
        with _LazyFile(path) as file:
            return _copy(chunks, file)
    except BaseException:
        _remove(path)
        raise


def _copy(chunks: Iterable[bytes], file: IO[bytes] | _LazyFile) -> int:
    written = 0
    for chunk in chunks:
        file.write(chunk)
        written += len(chunk)
    return written


def _remove(path: Path) -> None:
    """Drop a partly written download (a quick local call, blocking in both flavours)."""
    path.unlink(missing_ok=True)


class _LazyFile:
    """A file opened for writing at its first `write` (or at the end, empty)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def write(self, data: bytes) -> int:
        if self._file is None:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed in __exit__
        return self._file.write(data)

    def __enter__(self) -> _LazyFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._file is None:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed here
        self._file.close()
