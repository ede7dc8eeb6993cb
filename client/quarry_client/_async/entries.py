"""File entries (upload, resumable download, text) and keyword search (`entries.md`).

Uploads stream each file from disk (opened only while its bytes go out, never
read whole into memory), many files per multipart request; the body is given to
the transport as a factory, so a request retried after 429/503 sends the files
again from their start. Downloads write chunk by chunk and resume a partial file
with `Range` + `If-Range` (the entry's ETag is its SHA-256, so a changed file is
sent whole, never spliced); the result is checked against the entry's SHA-256."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, TypeAlias

import httpx

from quarry_client import models as m
from quarry_client._async.transport import AsyncTransport
from quarry_client.errors import ChecksumMismatch, QuarryError
from quarry_client.routes import entries as r

#: Files per upload request the server takes (`MAX_FILES_PER_UPLOAD`).
MAX_FILES_PER_REQUEST = 1000
#: Files per upload request by default: one request is all or nothing.
FILES_PER_REQUEST = 100
#: About how many bytes go up in one request (a bigger file goes alone), so a
#: retried request does not send gigabytes again.
BYTES_PER_REQUEST = 256 * 1024 * 1024
#: Bytes read at a time when hashing a file.
HASH_CHUNK = 1024 * 1024

#: `progress(bytes_done, total_bytes)`, called as bytes go out or come in.
Progress: TypeAlias = Callable[[int, int], None]
#: A file to upload: a path, an open binary file (sent from its current
#: position), or `(filename, open binary file)`.
UploadSource: TypeAlias = str | os.PathLike[str] | IO[bytes] | tuple[str, IO[bytes]]
EntrySort: TypeAlias = Literal["created_at", "name", "size"]
SearchSort: TypeAlias = Literal["relevance", "created_at", "name", "size"]
Order: TypeAlias = Literal["asc", "desc"]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 (hex) of a file on disk, read a chunk at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class AsyncEntries:
    """Files in datasets: `quarry.entries`."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def upload(
        self,
        dataset_id: str,
        paths_or_files: UploadSource | Iterable[UploadSource],
        *,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        progress: Progress | None = None,
        files_per_request: int = FILES_PER_REQUEST,
        bytes_per_request: int = BYTES_PER_REQUEST,
    ) -> list[m.EntryOut]:
        """Upload files into a dataset (streamed); their entries, in the files' order.

        Files go up `files_per_request` at a time (at most 1000) and about
        `bytes_per_request` per request; each request is all or nothing, so an error
        leaves the entries of the requests before it in place. `name` names the
        entry of a single file; `metadata` is given to every entry."""
        sources = _sources(paths_or_files)
        if not sources:
            raise ValueError("There is no file to upload.")
        if name is not None and len(sources) != 1:
            raise ValueError("`name` names the entry of a single file.")
        if not 1 <= files_per_request <= MAX_FILES_PER_REQUEST:
            raise ValueError(f"files_per_request must be 1 to {MAX_FILES_PER_REQUEST}.")
        fields = {"dataset_id": dataset_id}
        if name is not None:
            fields["name"] = name
        if metadata is not None:
            fields["metadata"] = json.dumps(metadata)
        meter = _Meter(sum(s.size for s in sources), progress)
        entries: list[m.EntryOut] = []
        for group in _groups(sources, files_per_request, bytes_per_request):
            entries.extend(await self._upload_group(fields, group, meter))
        return entries

    async def _upload_group(
        self, fields: dict[str, str], group: list[_Source], meter: _Meter
    ) -> list[m.EntryOut]:
        parts: list[_Part] = []

        def files() -> list[tuple[str, tuple[str, _Part, str]]]:
            # Called for each try: the files are read again from their start.
            _close_parts(parts)
            parts[:] = [_Part(source, meter) for source in group]
            meter.restart()
            return [("file", (p.source.filename, p, "application/octet-stream")) for p in parts]

        try:
            response = await self._t.request(
                r.UPLOAD.method,
                r.UPLOAD.url(),
                data=fields,
                files=files,
                http_timeout=self._t.transfer_timeout(),
            )
        finally:
            _close_parts(parts)
        meter.finish()
        answer = m.UploadAnswer.model_validate_json(response.content)
        return [answer.data] if answer.data is not None else list(answer.entries or [])

    async def get(self, entry_id: str) -> m.EntryOut:
        """An entry's record (not its text)."""
        answer: m.EntryAnswer = await self._t.call(r.GET, path={"entry_id": entry_id})
        return answer.data

    async def update(
        self, entry_id: str, *, name: str | None = None, metadata: dict[str, Any] | None = None
    ) -> m.EntryOut:
        """Rename an entry and/or merge into its metadata (a None value removes a key)."""
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if metadata is not None:
            body["metadata"] = metadata
        answer: m.EntryAnswer = await self._t.call(r.UPDATE, path={"entry_id": entry_id}, body=body)
        return answer.data

    async def delete(self, entry_id: str) -> None:
        """Delete an entry: its bytes, text, search postings and links."""
        await self._t.call(r.DELETE, path={"entry_id": entry_id})

    async def text(self, entry_id: str) -> str:
        """The extracted text (`Conflict` TEXT_NOT_READY while extraction is pending)."""
        response = await self._t.request(r.TEXT.method, r.TEXT.url(entry_id=entry_id))
        return response.content.decode("utf-8")

    async def batch(
        self,
        dataset_id: str,
        ids: Sequence[str] | None = None,
        *,
        limit: int = 50,
        offset: int = 0,
    ) -> m.BatchAnswer:
        """Entries of a dataset in one call: `ids` in that order (unknown ones in
        `missing_ids`), or the page at `offset`/`limit`."""
        body: dict[str, Any] = {"dataset_id": dataset_id, "limit": limit, "offset": offset}
        if ids is not None:
            body["ids"] = [*ids]
        answer: m.BatchAnswer = await self._t.call(r.BATCH, body=body)
        return answer

    async def batch_content(
        self, ids: Sequence[str], *, max_chars: int | None = None
    ) -> m.BatchContentAnswer:
        """The extracted text of many entries, each cut at `max_chars` (server: 100,000)."""
        body: dict[str, Any] = {"ids": [*ids]}
        if max_chars is not None:
            body["max_chars"] = max_chars
        answer: m.BatchContentAnswer = await self._t.call(r.BATCH_CONTENT, body=body)
        return answer

    async def iter_download(self, entry_id: str, start: int = 0) -> AsyncIterator[bytes]:
        """The entry's bytes from offset `start` on, as they arrive
        (`RangeNotSatisfiable` when `start` is at or past the end of a non-empty file).
        Close the iterator when stopping early, to end the request."""
        headers = {"Range": f"bytes={start}-"} if start else None
        url = r.DOWNLOAD.url(entry_id=entry_id)
        async with self._t.stream(r.DOWNLOAD.method, url, headers=headers) as response:
            skip = start if response.status_code == 200 else 0
            async for chunk in response.aiter_bytes():
                if skip >= len(chunk):
                    skip -= len(chunk)
                    continue
                yield chunk[skip:] if skip else chunk
                skip = 0

    async def download(
        self,
        entry_id: str,
        to: str | os.PathLike[str],
        *,
        resume: bool = True,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> Path:
        """Save an entry's bytes to `to` (a file, or a directory to save it in under
        its filename); the path written.

        The bytes go to `<to>.<entry id>.part` first, renamed to `to` once their
        SHA-256 is the entry's: an interrupted download leaves only the `.part` file, and with
        `resume` the next call completes it with a `Range` request (`If-Range`: the
        entry's ETag, so a changed entry comes whole); a `.part` that turns out not
        to be this entry's start is fetched again in full. A full download that does
        not match is removed and raises `ChecksumMismatch`. An existing `to` that is
        already this entry's file is kept without a download; any other existing
        `to` raises `FileExistsError` unless `overwrite`. `progress(bytes_done,
        size)` starts at the resumed size."""
        entry = await self.get(entry_id)
        target = _target_path(Path(to), entry)
        if target.is_dir():
            raise IsADirectoryError(f"{target} is a directory; give a file path.")
        if target.exists():
            if _is_entry_file(target, entry):
                return target
            if not overwrite:
                raise FileExistsError(
                    f"{target} already exists and is not entry {entry.id}'s file; remove it, "
                    "choose another path, or overwrite it."
                )
        part = partial_path(target, entry.id)
        offset = _resumable_size(part, entry) if resume else 0
        digest = await self._save(entry, part, offset, progress)
        if offset and entry.sha256 is not None and digest != entry.sha256:
            digest = await self._save(entry, part, 0, progress)
        if entry.sha256 is not None and digest != entry.sha256:
            part.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{target}: SHA-256 {digest} is not the entry's {entry.sha256}; nothing was kept."
            )
        os.replace(part, target)
        return target

    async def _save(
        self, entry: m.EntryOut, target: Path, offset: int, progress: Progress | None
    ) -> str:
        """Write the entry's bytes from `offset` on after the first `offset` bytes
        already in `target`; the SHA-256 of the whole file."""
        if offset and offset >= entry.size:
            return file_sha256(target)
        headers = {}
        if offset:
            headers = {"Range": f"bytes={offset}-", "If-Range": f'"{entry.sha256}"'}
        url = r.DOWNLOAD.url(entry_id=entry.id)
        async with self._t.stream(r.DOWNLOAD.method, url, headers=headers) as response:
            offset = _answered_offset(response, offset)
            digest = _prefix_digest(target, offset)
            done = offset
            _report(progress, done, entry.size)
            with target.open("ab" if offset else "wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    _report(progress, done, entry.size)
        return digest.hexdigest()

    async def list(
        self,
        dataset_id: str,
        *,
        sort: EntrySort = "created_at",
        order: Order = "desc",
        page: int = 1,
        page_size: int = 20,
    ) -> m.EntryListAnswer:
        """One page of the entries whose home is this dataset (`data`, `pagination`)."""
        params = {"sort": sort, "order": order, "page": page, "page_size": page_size}
        answer: m.EntryListAnswer = await self._t.call(
            r.LIST, path={"dataset_id": dataset_id}, params=params
        )
        return answer

    async def iterate(
        self,
        dataset_id: str,
        *,
        sort: EntrySort = "created_at",
        order: Order = "asc",
        page_size: int = 100,
    ) -> AsyncIterator[m.EntryOut]:
        """Every entry whose home is this dataset, a page at a time."""
        pages = self._t.every_page(
            r.LIST,
            path={"dataset_id": dataset_id},
            params={"sort": sort, "order": order},
            page_size=page_size,
        )
        async for entry in pages:
            yield entry

    async def existing_sha256(self, dataset_id: str) -> set[str]:
        """The SHA-256 values of the dataset's entries (to skip files already uploaded)."""
        found: set[str] = set()
        async for entry in self.iterate(dataset_id):
            if entry.sha256:
                found.add(entry.sha256)
        return found


class AsyncSearch:
    """Keyword search over entries' text: `quarry.search`."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def search(
        self,
        query: str,
        *,
        dataset_ids: Sequence[str] | None = None,
        file_types: Sequence[str] | None = None,
        sort_by: SearchSort = "relevance",
        sort_order: Order = "desc",
        page: int = 1,
        page_size: int = 20,
    ) -> m.SearchAnswer:
        """Search every dataset you can read (or only `dataset_ids`): hits, pagination, took_ms."""
        body = _search_body(query, file_types, sort_by, sort_order, page, page_size)
        if dataset_ids is not None:
            body["dataset_ids"] = [*dataset_ids]
        answer: m.SearchAnswer = await self._t.call(r.SEARCH, body=body)
        return answer

    async def search_dataset(
        self,
        dataset_id: str,
        query: str,
        *,
        file_types: Sequence[str] | None = None,
        sort_by: SearchSort = "relevance",
        sort_order: Order = "desc",
        page: int = 1,
        page_size: int = 20,
    ) -> m.SearchAnswer:
        """Search one dataset's items (linked entries included)."""
        body = _search_body(query, file_types, sort_by, sort_order, page, page_size)
        answer: m.SearchAnswer = await self._t.call(
            r.SEARCH_DATASET, path={"dataset_id": dataset_id}, body=body
        )
        return answer


def _search_body(
    query: str,
    file_types: Sequence[str] | None,
    sort_by: str,
    sort_order: str,
    page: int,
    page_size: int,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "query": query,
        "sort_by": sort_by,
        "sort_order": sort_order,
        "page": page,
        "page_size": page_size,
    }
    if file_types is not None:
        body["file_types"] = [*file_types]
    return body


# Uploads ---------------------------------------------------------------------


@dataclass
class _Source:
    """One file to upload: a path (opened by us) or the caller's open file."""

    filename: str
    size: int
    path: Path | None = None
    file: IO[bytes] | None = None
    #: Where the caller's file starts (its position when given).
    base: int = 0

    def open_at(self, position: int) -> IO[bytes]:
        if self.path is not None:
            opened = self.path.open("rb")
            opened.seek(position)
            return opened
        assert self.file is not None
        self.file.seek(self.base + position)
        return self.file


def _sources(given: UploadSource | Iterable[UploadSource]) -> list[_Source]:
    """The files to upload, each measured (a path must be a regular file)."""
    single = isinstance(given, (str, os.PathLike)) or hasattr(given, "read") or _is_pair(given)
    items: Iterable[Any] = [given] if single else given  # type: ignore[list-item]
    return [_source(item) for item in items]


def _is_pair(item: Any) -> bool:
    """`(filename, open file)`, not a tuple of paths."""
    return isinstance(item, tuple) and len(item) == 2 and hasattr(item[1], "read")


def _source(item: Any) -> _Source:
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory: give the files in it.")
        return _Source(filename=path.name, size=path.stat().st_size, path=path)
    filename, file = item if _is_pair(item) else (_name_of(item), item)
    if isinstance(file, io.TextIOBase):
        raise TypeError(f"{filename}: open the file in binary mode ('rb').")
    try:
        base = file.tell()
        size = file.seek(0, os.SEEK_END) - base
        file.seek(base)
    except (AttributeError, OSError) as exc:
        raise ValueError(f"{filename}: give a path, or a seekable binary file.") from exc
    return _Source(filename=filename, size=size, file=file, base=base)


def _name_of(file: Any) -> str:
    name = getattr(file, "name", None)
    return Path(name).name if isinstance(name, str) and name else "upload"


def _groups(sources: list[_Source], most_files: int, most_bytes: int) -> list[list[_Source]]:
    """The files split into requests of at most `most_files` and about `most_bytes`."""
    groups: list[list[_Source]] = []
    current: list[_Source] = []
    size = 0
    for source in sources:
        if current and (len(current) >= most_files or size + source.size > most_bytes):
            groups.append(current)
            current, size = [], 0
        current.append(source)
        size += source.size
    if current:
        groups.append(current)
    return groups


@dataclass
class _Meter:
    """Bytes sent for the progress callback, across requests and their retries."""

    total: int
    callback: Progress | None
    #: Bytes of the requests that have been answered.
    done: int = 0
    #: Bytes of the request under way (back to 0 when it is sent again).
    sent: int = 0

    def restart(self) -> None:
        self.sent = 0
        _report(self.callback, self.done, self.total)

    def add(self, count: int) -> None:
        self.sent += count
        _report(self.callback, self.done + self.sent, self.total)

    def finish(self) -> None:
        self.done += self.sent
        self.sent = 0


class _Part:
    """One file as httpx reads it into the multipart body: opened only while its
    bytes go out, counted for the progress callback, and cut at the size measured
    beforehand (the `Content-Length` sent). httpx measures it with tell/seek and
    rewinds it with `seek(0)` before reading."""

    def __init__(self, source: _Source, meter: _Meter) -> None:
        self.source = source
        self.meter = meter
        self.position = 0
        self.file: IO[bytes] | None = None

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        origin = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.source.size}
        self.position = origin[whence] + offset
        self.close()
        return self.position

    def read(self, size: int = -1) -> bytes:
        left = self.source.size - self.position
        size = left if size < 0 else min(size, left)
        if size <= 0:
            self.close()
            return b""
        if self.file is None:
            self.file = self.source.open_at(self.position)
        chunk = self.file.read(size)
        if not chunk:
            raise OSError(f"{self.source.filename} got shorter while it was being uploaded.")
        self.position += len(chunk)
        self.meter.add(len(chunk))
        return chunk

    def close(self) -> None:
        if self.file is not None and self.source.path is not None:
            self.file.close()
        self.file = None


def _close_parts(parts: list[_Part]) -> None:
    for part in parts:
        part.close()


# Downloads -------------------------------------------------------------------


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def _target_path(to: Path, entry: m.EntryOut) -> Path:
    """`to`, or the entry's filename inside `to` when it is a directory."""
    if not to.is_dir():
        return to
    name = entry.filename if entry.filename not in ("", ".", "..") else entry.id
    return to / name


def partial_path(target: Path, entry_id: str) -> Path:
    """Where a download of the entry to `target` keeps its bytes until they are
    complete (named for the entry, so no other file of the user's is taken for it)."""
    return target.with_name(f"{target.name}.{entry_id}.part")


def _is_entry_file(target: Path, entry: m.EntryOut) -> bool:
    """`target` is a regular file with the entry's size and SHA-256."""
    return (
        target.is_file()
        and entry.sha256 is not None
        and target.stat().st_size == entry.size
        and file_sha256(target) == entry.sha256
    )


def _resumable_size(target: Path, entry: m.EntryOut) -> int:
    """How much of `target` a download may keep: its size when it is a regular
    file no bigger than the entry and the entry's ETag is known; else 0."""
    if entry.sha256 is None or not target.is_file():
        return 0
    size = target.stat().st_size
    return size if size <= entry.size else 0


def _answered_offset(response: httpx.Response, asked: int) -> int:
    """Where the answer's bytes start: `asked` for a 206, 0 for a whole file (200:
    the entry changed, so `If-Range` did not match)."""
    if response.status_code != 206:
        return 0
    content_range = response.headers.get("Content-Range", "")
    if not content_range.startswith(f"bytes {asked}-"):
        raise QuarryError(
            f"The server sent the range {content_range!r} for bytes {asked}-.",
            status_code=response.status_code,
            request_id=response.headers.get("X-Request-ID"),
        )
    return asked


def _prefix_digest(target: Path, size: int) -> Any:
    """A SHA-256 fed with the first `size` bytes of `target`."""
    digest = hashlib.sha256()
    if size:
        with target.open("rb") as file:
            left = size
            while left and (chunk := file.read(min(HASH_CHUNK, left))):
                digest.update(chunk)
                left -= len(chunk)
    return digest
