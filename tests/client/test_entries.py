"""The client's entries (files) and search surfaces against a real server: streamed
multi-file uploads (retried ones send the files again), a 50 MB entry whose
interrupted download is resumed with `Range`/`If-Range` and checked by SHA-256,
text, batch, listing, keyword search, and the errors as typed exceptions."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import MongoClient
from quarry_client import (
    NO_RETRY,
    AsyncQuarry,
    BadRequest,
    ChecksumMismatch,
    NotFound,
    Quarry,
    QuarryError,
    RangeNotSatisfiable,
    RateLimited,
    ValidationError,
)
from quarry_client import models as m
from quarry_client._sync.entries import file_sha256, partial_path

from tests.fixtures.engine import DatabaseServer
from tests.fixtures.mailbox import Inbox
from tests.fixtures.quarry_server import logged_in, serve_quarry

BIG_SIZE = 50 * 1024 * 1024
#: How much of the big file the "interrupted" download keeps.
PARTIAL_SIZE = 12 * 1024 * 1024
#: How long the server may take to extract a file's text and index it.
TEXT_DEADLINE = 30.0


@dataclass(frozen=True)
class LocalFile:
    path: Path
    sha256: str


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> LocalFile:
    """50 MB of random bytes on disk, written a megabyte at a time."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(BIG_SIZE // (1024 * 1024)):
            chunk = os.urandom(1024 * 1024)
            digest.update(chunk)
            out.write(chunk)
    return LocalFile(path, digest.hexdigest())


@pytest.fixture(scope="module")
def quarry(quarry_url: str, smtp_server: Inbox) -> Iterator[Quarry]:
    """One account for this module's blocking tests, each test in datasets of its
    own (the server allows 20 registrations an hour from one address)."""
    with logged_in(quarry_url, smtp_server) as client:
        yield client


@pytest.fixture(scope="module")
def shared_dataset(quarry: Quarry) -> str:
    """A dataset for the tests that look only at their own entries (creating
    datasets is rate limited to 10 a minute)."""
    return new_dataset(quarry)


def new_dataset(client: Quarry) -> str:
    response = client.transport.request(
        "POST", "/api/v1/datasets", json={"name": f"files-{uuid.uuid4().hex[:8]}"}
    )
    dataset_id: str = response.json()["data"]["id"]
    return dataset_id


async def new_async_dataset(client: AsyncQuarry) -> str:
    response = await client.transport.request(
        "POST", "/api/v1/datasets", json={"name": f"files-{uuid.uuid4().hex[:8]}"}
    )
    dataset_id: str = response.json()["data"]["id"]
    return dataset_id


def write_files(folder: Path, contents: dict[str, bytes]) -> list[Path]:
    paths = []
    for name, content in contents.items():
        path = folder / name
        path.write_bytes(content)
        paths.append(path)
    return paths


@dataclass
class Traffic:
    requests: list[httpx.Request] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def downloads(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/download")]

    def uploads(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST" and r.url.path == "/api/v1/entries"]


@contextlib.contextmanager
def recorded(client: Quarry) -> Iterator[Traffic]:
    """The requests `client` sends and the statuses it gets inside the block."""
    traffic = Traffic()
    hooks = client.transport.http.event_hooks
    on_request, on_response = (
        traffic.requests.append,
        lambda r: traffic.statuses.append(r.status_code),
    )
    hooks["request"].append(on_request)
    hooks["response"].append(on_response)
    try:
        yield traffic
    finally:
        hooks["request"].remove(on_request)
        hooks["response"].remove(on_response)


def async_requests_sent(client: AsyncQuarry) -> list[httpx.Request]:
    """Every request `client` sends from now on (the client is the test's own)."""
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    client.transport.http.event_hooks["request"].append(record)
    return sent


def wait_for_text(client: Quarry, entry_id: str) -> m.EntryOut:
    """The entry once its text is extracted (polled, with a deadline)."""
    deadline = time.monotonic() + TEXT_DEADLINE
    while (entry := client.entries.get(entry_id)).text_status == "pending":
        assert time.monotonic() < deadline, "the text was not extracted in time"
        time.sleep(0.1)
    return entry


def wait_for_hits(search: Callable[[], m.SearchAnswer], count: int = 1) -> m.SearchAnswer:
    """The first answer of `search` with `count` hits (the index catches up within seconds)."""
    deadline = time.monotonic() + TEXT_DEADLINE
    while (found := search()).pagination.total_items < count:
        assert time.monotonic() < deadline, "the entry never became searchable"
        time.sleep(0.25)
    return found


def keep_first_part(chunks: Iterator[bytes], target: Path, size: int) -> int:
    """Write chunks to `target` until at least `size` bytes, then stop reading
    (an interrupted download); the bytes written."""
    written = 0
    with contextlib.closing(chunks), target.open("wb") as out:  # type: ignore[type-var]
        for chunk in chunks:
            out.write(chunk)
            written += len(chunk)
            if written >= size:
                break
    return written


# Uploads -----------------------------------------------------------------------


def test_several_files_go_up_in_one_request_as_entries_in_their_order(
    quarry: Quarry, shared_dataset: str, tmp_path: Path
) -> None:
    paths = write_files(tmp_path, {"b.txt": b"beta", "a.csv": b"x,y\n1,2\n", "c.bin": b"\0" * 10})
    with recorded(quarry) as traffic:
        entries = quarry.entries.upload(shared_dataset, paths, metadata={"team": "finance"})
    assert len(traffic.uploads()) == 1
    assert [e.filename for e in entries] == ["b.txt", "a.csv", "c.bin"]
    assert [e.size for e in entries] == [4, 8, 10]
    assert [e.sha256 for e in entries] == [file_sha256(p) for p in paths]
    stored = quarry.entries.batch(shared_dataset, [e.id for e in entries]).data
    assert [(e.filename, e.dataset_id, e.metadata) for e in stored] == [
        (name, shared_dataset, {"team": "finance"}) for name in ["b.txt", "a.csv", "c.bin"]
    ]


def test_many_files_are_split_into_requests_of_files_per_request(
    quarry: Quarry, shared_dataset: str, tmp_path: Path
) -> None:
    paths = write_files(tmp_path, {f"{n}.txt": f"file {n}".encode() for n in range(5)})
    with recorded(quarry) as traffic:
        entries = quarry.entries.upload(shared_dataset, paths, files_per_request=2)
    assert len(traffic.uploads()) == 3
    assert [e.filename for e in entries] == [p.name for p in paths]


def test_upload_progress_counts_every_byte_up_to_the_total(
    quarry: Quarry, shared_dataset: str, tmp_path: Path
) -> None:
    paths = write_files(tmp_path, {"one.bin": os.urandom(300_000), "two.bin": os.urandom(5)})
    calls: list[tuple[int, int]] = []
    quarry.entries.upload(
        shared_dataset, paths, progress=lambda done, total: calls.append((done, total))
    )
    assert calls[0] == (0, 300_005)
    assert calls[-1] == (300_005, 300_005)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_an_open_file_uploads_from_its_position_under_the_name_given(
    quarry: Quarry, shared_dataset: str
) -> None:
    file = io.BytesIO(b"HEADERpayload bytes")
    file.seek(6)
    [entry] = quarry.entries.upload(shared_dataset, ("payload.txt", file), name="The payload")
    assert (entry.name, entry.filename, entry.size) == ("The payload", "payload.txt", 13)
    assert entry.sha256 == hashlib.sha256(b"payload bytes").hexdigest()
    assert b"".join(quarry.entries.iter_download(entry.id)) == b"payload bytes"


def use_up_the_burst(client: Quarry) -> None:
    """Call until the rate limiter says no (the next call is refused too)."""
    with pytest.raises(RateLimited):
        for _ in range(10):
            client.transport.request("GET", "/core/me", retry=NO_RETRY)


def test_a_rate_limited_upload_is_retried_with_its_files_sent_again(
    database_server: DatabaseServer, smtp_server: Inbox, tmp_path: Path
) -> None:
    root = Path(tempfile.mkdtemp(prefix="quarry-client-entries-limited-"))
    paths = write_files(tmp_path, {"x.txt": b"x" * 100_000, "y.txt": b"y" * 50_000})
    with (
        serve_quarry(
            database_url=database_server.url,
            data_dir=root / "data",
            smtp_port=smtp_server.port,
            QUARRY_RATE_LIMIT_PER_MINUTE="60",
            QUARRY_RATE_LIMIT_BURST="2",
        ) as url,
        logged_in(url, smtp_server) as client,
    ):
        dataset_id = new_dataset(client)
        use_up_the_burst(client)
        calls: list[int] = []
        with recorded(client) as traffic:
            entries = client.entries.upload(
                dataset_id, paths, progress=lambda done, _total: calls.append(done)
            )
        listed = client.entries.list(dataset_id)
    shutil.rmtree(root, ignore_errors=True)
    assert traffic.statuses[0] == 429 and traffic.statuses[-1] == 201, traffic.statuses
    assert len(traffic.uploads()) == len(traffic.statuses)
    assert [e.sha256 for e in entries] == [file_sha256(p) for p in paths]
    assert listed.pagination.total_items == 2
    # Each try read the files from their start again.
    assert calls.count(0) == len(traffic.statuses) and calls[-1] == 150_000


def test_upload_refuses_a_name_for_several_files_and_a_directory(
    quarry: Quarry, tmp_path: Path
) -> None:
    paths = write_files(tmp_path, {"a.txt": b"a", "b.txt": b"b"})
    with recorded(quarry) as traffic:
        with pytest.raises(ValueError, match="single file"):
            quarry.entries.upload("0" * 24, paths, name="both")
        with pytest.raises(IsADirectoryError):
            quarry.entries.upload("0" * 24, [tmp_path])
    assert traffic.requests == []


def test_upload_to_an_unknown_dataset_is_not_found_with_code_and_request_id(
    quarry: Quarry, tmp_path: Path
) -> None:
    [path] = write_files(tmp_path, {"a.txt": b"a"})
    with pytest.raises(NotFound) as raised:
        quarry.entries.upload(str(ObjectId()), path)
    assert raised.value.status_code == 404
    assert raised.value.error_code == "DATASET_NOT_FOUND"
    assert raised.value.request_id


# Records -----------------------------------------------------------------------


def test_update_renames_and_merges_metadata(quarry: Quarry, shared_dataset: str) -> None:
    [entry] = quarry.entries.upload(
        shared_dataset, ("a.txt", io.BytesIO(b"a")), metadata={"keep": 1, "drop": 2}
    )
    # Not while the text is being extracted: on the embedded engine the extractor's
    # write can undo a concurrent one (reported to the lead).
    wait_for_text(quarry, entry.id)
    answered = quarry.entries.update(entry.id, name="Renamed", metadata={"drop": None, "new": 1})
    stored = quarry.entries.get(entry.id)
    assert answered.name == stored.name == "Renamed"
    assert answered.metadata == stored.metadata == {"keep": 1, "new": 1}


def test_update_with_a_bad_metadata_key_is_a_validation_error(
    quarry: Quarry, shared_dataset: str
) -> None:
    [entry] = quarry.entries.upload(shared_dataset, ("a.txt", io.BytesIO(b"a")))
    with pytest.raises(ValidationError) as raised:
        quarry.entries.update(entry.id, metadata={"$bad": 1})
    assert raised.value.status_code == 422
    assert raised.value.error_code == "VALIDATION_ERROR"


def test_deleted_entry_is_gone(quarry: Quarry, shared_dataset: str) -> None:
    [entry] = quarry.entries.upload(shared_dataset, ("a.txt", io.BytesIO(b"a")))
    quarry.entries.delete(entry.id)
    with pytest.raises(NotFound) as raised:
        quarry.entries.get(entry.id)
    assert raised.value.error_code == "ENTRY_NOT_FOUND"
    assert raised.value.request_id
    assert quarry.entries.batch(shared_dataset, [entry.id]).missing_ids == [entry.id]


def test_text_is_the_extracted_text_once_done(quarry: Quarry, shared_dataset: str) -> None:
    content = "Grüße aus Zürich"
    [entry] = quarry.entries.upload(shared_dataset, ("note.txt", io.BytesIO(content.encode())))
    assert wait_for_text(quarry, entry.id).text_status == "done"
    assert quarry.entries.text(entry.id) == content


def test_text_of_an_unknown_entry_is_not_found(quarry: Quarry) -> None:
    with pytest.raises(NotFound) as raised:
        quarry.entries.text(str(ObjectId()))
    assert raised.value.error_code == "ENTRY_NOT_FOUND"


def test_batch_by_ids_keeps_their_order_and_names_the_missing(
    quarry: Quarry, shared_dataset: str
) -> None:
    first, second = quarry.entries.upload(
        shared_dataset, [("1.txt", io.BytesIO(b"1")), ("2.txt", io.BytesIO(b"2"))]
    )
    unknown = str(ObjectId())
    answer = quarry.entries.batch(shared_dataset, [second.id, unknown, first.id])
    assert [e.id for e in answer.data] == [second.id, first.id]
    assert answer.missing_ids == [unknown]


def test_batch_pages_with_limit_and_offset(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    quarry.entries.upload(dataset_id, [(f"{n}.txt", io.BytesIO(b"x")) for n in range(3)])
    answer = quarry.entries.batch(dataset_id, limit=2, offset=2)
    assert len(answer.data) == 1
    assert (answer.pagination.total_items, answer.pagination.offset) == (3, 2)
    assert answer.pagination.has_previous and not answer.pagination.has_next


def test_batch_content_cuts_each_text_at_max_chars(quarry: Quarry, shared_dataset: str) -> None:
    [entry] = quarry.entries.upload(shared_dataset, ("long.txt", io.BytesIO(b"abcdefghij" * 10)))
    wait_for_text(quarry, entry.id)
    unknown = str(ObjectId())
    answer = quarry.entries.batch_content([entry.id, unknown], max_chars=5)
    assert [(t.id, t.text, t.truncated) for t in answer.data] == [(entry.id, "abcde", True)]
    assert answer.missing_ids == [unknown]


def test_list_pages_sorted_and_iterate_walks_every_page(quarry: Quarry) -> None:
    dataset_id = new_dataset(quarry)
    uploaded = quarry.entries.upload(
        dataset_id, [(f"{name}.txt", io.BytesIO(b"x")) for name in "ecadb"]
    )
    page = quarry.entries.list(dataset_id, sort="name", order="asc", page=2, page_size=2)
    assert [e.name for e in page.data] == ["c.txt", "d.txt"]
    assert page.pagination.has_next and page.pagination.total_items == 5
    walked = list(quarry.entries.iterate(dataset_id, sort="name", page_size=2))
    assert [e.name for e in walked] == ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"]
    assert {e.id for e in walked} == {e.id for e in uploaded}


def test_existing_sha256_lets_a_file_already_uploaded_be_skipped(
    quarry: Quarry, tmp_path: Path
) -> None:
    dataset_id = new_dataset(quarry)
    old, new = write_files(tmp_path, {"old.txt": b"uploaded before", "new.txt": b"not yet"})
    quarry.entries.upload(dataset_id, old)
    existing = quarry.entries.existing_sha256(dataset_id)
    assert existing == {hashlib.sha256(b"uploaded before").hexdigest()}
    assert file_sha256(old) in existing and file_sha256(new) not in existing


# Downloads ---------------------------------------------------------------------


def test_an_interrupted_50_mb_download_resumes_with_a_range_request(
    quarry: Quarry, shared_dataset: str, big_file: LocalFile, tmp_path: Path
) -> None:
    [entry] = quarry.entries.upload(shared_dataset, big_file.path)
    assert (entry.size, entry.sha256) == (BIG_SIZE, big_file.sha256)
    target = tmp_path / "copy.bin"
    part = partial_path(target, entry.id)
    partial = keep_first_part(quarry.entries.iter_download(entry.id), part, PARTIAL_SIZE)
    assert PARTIAL_SIZE <= partial < BIG_SIZE
    calls: list[tuple[int, int]] = []
    with recorded(quarry) as traffic:
        written = quarry.entries.download(
            entry.id, target, progress=lambda done, total: calls.append((done, total))
        )
    assert written == target and file_sha256(target) == big_file.sha256
    assert not part.exists()
    [resumed] = traffic.downloads()
    assert resumed.headers["Range"] == f"bytes={partial}-"
    assert resumed.headers["If-Range"] == f'"{big_file.sha256}"'
    assert traffic.statuses[-1] == 206
    assert calls[0] == (partial, BIG_SIZE) and calls[-1] == (BIG_SIZE, BIG_SIZE)


async def test_async_50_mb_upload_and_resumed_download(
    aquarry: AsyncQuarry, big_file: LocalFile, tmp_path: Path
) -> None:
    dataset_id = await new_async_dataset(aquarry)
    calls: list[int] = []
    [entry] = await aquarry.entries.upload(
        dataset_id, big_file.path, progress=lambda done, _total: calls.append(done)
    )
    assert entry.sha256 == big_file.sha256 and calls[-1] == BIG_SIZE
    target = tmp_path / "copy.bin"
    partial = 0
    async with contextlib.aclosing(aquarry.entries.iter_download(entry.id)) as chunks:
        with partial_path(target, entry.id).open("wb") as out:
            async for chunk in chunks:
                out.write(chunk)
                partial += len(chunk)
                if partial >= PARTIAL_SIZE:
                    break
    sent = async_requests_sent(aquarry)
    await aquarry.entries.download(entry.id, target)
    assert file_sha256(target) == big_file.sha256
    downloads = [r for r in sent if r.url.path.endswith("/download")]
    assert [r.headers.get("Range") for r in downloads] == [f"bytes={partial}-"]


def test_resuming_over_a_foreign_partial_file_fetches_the_whole_file(
    quarry: Quarry, shared_dataset: str, tmp_path: Path
) -> None:
    content = os.urandom(200_000)
    [entry] = quarry.entries.upload(shared_dataset, ("data.bin", io.BytesIO(content)))
    target = tmp_path / "data.bin"
    partial_path(target, entry.id).write_bytes(b"not the start of this entry")
    with recorded(quarry) as traffic:
        quarry.entries.download(entry.id, target)
    assert target.read_bytes() == content
    assert not partial_path(target, entry.id).exists()
    assert [r.headers.get("Range") for r in traffic.downloads()] == ["bytes=27-", None]


def test_a_complete_file_is_checked_without_downloading_it_again(
    quarry: Quarry, shared_dataset: str, tmp_path: Path
) -> None:
    [entry] = quarry.entries.upload(shared_dataset, ("done.txt", io.BytesIO(b"all here")))
    target = tmp_path / "done.txt"
    target.write_bytes(b"all here")
    with recorded(quarry) as traffic:
        quarry.entries.download(entry.id, target)
    assert traffic.downloads() == []
    assert target.read_bytes() == b"all here"


def test_download_without_resume_overwrites_and_into_a_directory_uses_the_filename(
    quarry: Quarry, shared_dataset: str, tmp_path: Path
) -> None:
    [entry] = quarry.entries.upload(shared_dataset, ("report.txt", io.BytesIO(b"final text")))
    (tmp_path / "report.txt").write_bytes(b"final")
    with recorded(quarry) as traffic:
        written = quarry.entries.download(entry.id, tmp_path, resume=False, overwrite=True)
    assert written == tmp_path / "report.txt"
    assert written.read_bytes() == b"final text"
    assert [r.headers.get("Range") for r in traffic.downloads()] == [None]


def test_a_download_never_replaces_another_file_unless_told_to(
    quarry: Quarry, shared_dataset: str, tmp_path: Path
) -> None:
    [entry] = quarry.entries.upload(shared_dataset, ("notes.txt", io.BytesIO(b"the entry")))
    mine = tmp_path / "notes.txt"
    mine.write_bytes(b"my own notes, not the entry")
    with recorded(quarry) as traffic, pytest.raises(FileExistsError):
        quarry.entries.download(entry.id, tmp_path)
    assert traffic.downloads() == []
    assert mine.read_bytes() == b"my own notes, not the entry"
    assert not partial_path(mine, entry.id).exists()


def test_a_download_whose_bytes_do_not_match_the_sha256_raises_and_is_removed(
    quarry: Quarry,
    shared_dataset: str,
    sync_client: MongoClient[dict[str, Any]],
    tmp_path: Path,
) -> None:
    [entry] = quarry.entries.upload(shared_dataset, ("data.bin", io.BytesIO(b"\1" * 1000)))
    # The stored bytes change behind the server's back (same length, other bytes).
    chunks = sync_client[f"qt_{entry.created_by}"]["entries.chunks"]
    changed = chunks.update_one(
        {"files_id": ObjectId(entry.id), "n": 0}, {"$set": {"data": b"\2" * 1000}}
    )
    assert changed.modified_count == 1
    target = tmp_path / "data.bin"
    with pytest.raises(ChecksumMismatch) as raised:
        quarry.entries.download(entry.id, target)
    assert isinstance(raised.value, QuarryError)
    assert entry.sha256 and entry.sha256 in str(raised.value)
    assert not target.exists() and not partial_path(target, entry.id).exists()


def test_iter_download_from_an_offset_yields_the_tail(quarry: Quarry, shared_dataset: str) -> None:
    [entry] = quarry.entries.upload(shared_dataset, ("abc.txt", io.BytesIO(b"0123456789")))
    assert b"".join(quarry.entries.iter_download(entry.id, start=7)) == b"789"


def test_iter_download_past_the_end_is_range_not_satisfiable(
    quarry: Quarry, shared_dataset: str
) -> None:
    [entry] = quarry.entries.upload(shared_dataset, ("abc.txt", io.BytesIO(b"0123456789")))
    with pytest.raises(RangeNotSatisfiable) as raised:
        list(quarry.entries.iter_download(entry.id, start=10))
    assert raised.value.status_code == 416
    assert raised.value.error_code == "RANGE_NOT_SATISFIABLE"
    assert raised.value.request_id


# Search ------------------------------------------------------------------------


def test_search_finds_an_uploaded_text_file_by_a_word_in_it(
    quarry: Quarry, shared_dataset: str
) -> None:
    word = f"zebra{uuid.uuid4().hex[:6]}"
    text = f"The quarterly {word} forecast for Q4."
    [entry] = quarry.entries.upload(shared_dataset, ("forecast.txt", io.BytesIO(text.encode())))
    assert wait_for_text(quarry, entry.id).text_status == "done"
    found = wait_for_hits(lambda: quarry.search.search(word))
    [hit] = found.data
    assert (hit.entry.id, hit.dataset_id) == (entry.id, shared_dataset)
    assert any(f"<mark>{word}</mark>" in snippet for snippet in hit.snippets)
    assert found.pagination.total_items == 1 and found.took_ms >= 0


def test_search_dataset_filters_by_file_type_and_sorts_by_name(
    quarry: Quarry, shared_dataset: str
) -> None:
    dataset_id = new_dataset(quarry)
    word = f"walrus{uuid.uuid4().hex[:6]}"
    body = f"a {word} here".encode()
    uploaded = quarry.entries.upload(
        dataset_id,
        [("b.md", io.BytesIO(body)), ("a.md", io.BytesIO(body)), ("c.txt", io.BytesIO(body))],
    )
    [elsewhere] = quarry.entries.upload(shared_dataset, ("d.md", io.BytesIO(body)))
    for entry in [*uploaded, elsewhere]:
        wait_for_text(quarry, entry.id)
    wait_for_hits(lambda: quarry.search.search(word), count=4)
    found = quarry.search.search_dataset(
        dataset_id, word, file_types=["md"], sort_by="name", sort_order="asc"
    )
    assert [hit.entry.name for hit in found.data] == ["a.md", "b.md"]
    assert {hit.dataset_id for hit in found.data} == {dataset_id}


def test_a_query_with_a_syntax_error_is_invalid_query(quarry: Quarry) -> None:
    with pytest.raises(BadRequest) as raised:
        quarry.search.search('"unclosed phrase')
    assert raised.value.status_code == 400
    assert raised.value.error_code == "INVALID_QUERY"
    assert raised.value.request_id


async def test_async_listing_text_and_search(aquarry: AsyncQuarry) -> None:
    dataset_id = await new_async_dataset(aquarry)
    word = f"okapi{uuid.uuid4().hex[:6]}"
    uploaded = await aquarry.entries.upload(
        dataset_id, [(f"{n}.txt", io.BytesIO(f"{word} {n}".encode())) for n in range(3)]
    )
    walked = [e.id async for e in aquarry.entries.iterate(dataset_id, page_size=2)]
    assert sorted(walked) == sorted(e.id for e in uploaded)
    await wait_until(lambda: text_done(aquarry, uploaded[0].id))
    assert await aquarry.entries.text(uploaded[0].id) == f"{word} 0"
    await wait_until(lambda: has_hits(aquarry, dataset_id, word, 3), interval=0.25)
    found = await aquarry.search.search_dataset(dataset_id, word, page_size=2, page=2)
    assert len(found.data) == 1 and found.pagination.total_items == 3


async def text_done(client: AsyncQuarry, entry_id: str) -> bool:
    return (await client.entries.get(entry_id)).text_status == "done"


async def has_hits(client: AsyncQuarry, dataset_id: str, word: str, count: int) -> bool:
    found = await client.search.search(word, dataset_ids=[dataset_id])
    return found.pagination.total_items == count


async def wait_until(check: Callable[[], Awaitable[bool]], interval: float = 0.1) -> None:
    deadline = time.monotonic() + TEXT_DEADLINE
    while not await check():
        assert time.monotonic() < deadline, "the server did not catch up in time"
        await asyncio.sleep(interval)
