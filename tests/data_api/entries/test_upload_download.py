"""Uploading entries and downloading them (`spec/entries.md`): what an upload
stores (GridFS files and chunks, the entry record, its home item and catalogue
row), the multipart rules (several files, `name`, `metadata`, the order of the
parts, refusals that leave nothing behind), the per-file size limit, sniffed
content types, and the download's HTTP: byte-identical bodies, `ETag` and
`If-None-Match`, single ranges and `If-Range`, RFC 6266 file names.

One module-wide app and uploader serve the tests that need the default settings;
each test uploads the files it looks at, and the tests that check that nothing
was stored compare the owner's totals before and after.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI

from app.errors import ErrorCode
from app.wiring import state_of
from tests.fixtures.accounts import Account, register_account
from tests.fixtures.datasets import QUIET_SETTINGS, create_dataset, user_id_of
from tests.fixtures.engine import DatabaseServer
from tests.fixtures.entries import (
    BOUNDARY,
    CHUNK,
    ENTRIES,
    MULTIPART,
    Part,
    Stored,
    Sync,
    closing_boundary,
    download,
    file,
    form_field,
    module_app,
    module_settings,
    multipart_body,
    part_head,
    post_parts,
    upload,
    upload_one,
)
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.mailbox import Inbox

#: Bigger than three GridFS chunks, not a whole number of them.
MULTI_CHUNK_BYTES = 3 * CHUNK + CHUNK // 2 + 17
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
#: Quotes, spaces, non-ASCII letters and a dash outside Latin-1.
AWKWARD_NAME = 'rapport "final" été 2026 — ü.txt'


@dataclass
class Uploader:
    app: FastAPI
    http: httpx.AsyncClient
    account: Account
    owner_id: ObjectId
    dataset_id: str
    stored: Stored

    @property
    def headers(self) -> dict[str, str]:
        return self.account.bearer


@pytest.fixture(scope="module")
async def uploader(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Uploader]:
    settings = module_settings(
        database_server, smtp_server, tmp_path_factory.mktemp("uploads") / "data"
    )
    async with module_app(database_server, sync_client, settings) as (app, http):
        account = await register_account(http, smtp_server)
        owner_id = await user_id_of(http, account)
        dataset = await create_dataset(http, account.bearer, name="uploads")
        # The owner's tenant database exists before the first test.
        await upload_one(http, account.bearer, dataset["id"], "seed.bin", b"seed")
        stored = Stored(sync_client, settings.control_db, owner_id)
        yield Uploader(app, http, account, owner_id, dataset["id"], stored)


@dataclass(frozen=True)
class Uploaded:
    entry: dict[str, Any]
    data: bytes

    @property
    def id(self) -> str:
        return str(self.entry["id"])

    @property
    def size(self) -> int:
        return len(self.data)


@pytest.fixture(scope="module")
async def big(uploader: Uploader) -> Uploaded:
    """A random multi-chunk file, uploaded once for the download tests."""
    data = os.urandom(MULTI_CHUNK_BYTES)
    entry = await upload_one(
        uploader.http, uploader.headers, uploader.dataset_id, "random.bin", data
    )
    return Uploaded(entry, data)


UploadFile = Callable[..., Awaitable["Uploaded"]]


@pytest.fixture
def upload_file(uploader: Uploader) -> UploadFile:
    """Upload one file (and form fields) as the module's uploader."""

    async def factory(filename: str, data: bytes, **fields: Any) -> Uploaded:
        entry = await upload_one(
            uploader.http, uploader.headers, uploader.dataset_id, filename, data, **fields
        )
        return Uploaded(entry, data)

    return factory


# ---------------------------------------------------------------- what an upload stores


async def test_an_upload_answers_201_with_the_entry(
    uploader: Uploader, upload_file: UploadFile
) -> None:
    uploaded = await upload_file("Notes.TXT", b"plain revenue notes\n")
    entry = uploaded.entry
    assert entry["dataset_id"] == uploader.dataset_id
    assert (entry["name"], entry["filename"], entry["file_type"]) == (
        "Notes.TXT",
        "Notes.TXT",
        "txt",
    )
    assert (entry["content_type"], entry["size"]) == ("text/plain", 20)
    assert entry["sha256"] == hashlib.sha256(uploaded.data).hexdigest()
    assert entry["metadata"] == {}
    assert entry["text_status"] == "pending"
    assert entry["created_by"] == str(uploader.owner_id)
    assert entry["created_at"] == entry["updated_at"]


@pytest.mark.smoke
async def test_an_upload_stores_gridfs_documents_the_record_the_item_and_the_home_row(
    uploader: Uploader, upload_file: UploadFile
) -> None:
    uploaded = await upload_file("notes.txt", b"revenue")
    stored, oid = uploader.stored, ObjectId(uploaded.id)
    files_doc = stored.files_doc(oid)
    assert files_doc is not None
    assert (files_doc["length"], files_doc["chunkSize"], files_doc["filename"]) == (
        7,
        CHUNK,
        "notes.txt",
    )
    assert files_doc["metadata"] == {
        "contentType": "text/plain",
        "sha256": hashlib.sha256(b"revenue").hexdigest(),
    }
    assert stored.chunks(oid) == [0]
    assert stored.stored_bytes(oid) == b"revenue"
    record = stored.entry(oid)
    assert record is not None and record["dataset_id"] == ObjectId(uploader.dataset_id)
    assert record["created_by"] == uploader.owner_id
    [item] = stored.items(oid)
    assert item["_id"] == f"{uploader.dataset_id}:{oid}"
    assert item["dataset_id"] == item["home_dataset_id"] == ObjectId(uploader.dataset_id)
    home = stored.home(oid)
    assert home is not None
    assert (home["owner_id"], home["home_dataset_id"]) == (
        uploader.owner_id,
        ObjectId(uploader.dataset_id),
    )
    assert stored.marker(oid) is None


async def test_a_name_field_names_the_entry_and_keeps_the_filename(
    upload_file: UploadFile,
) -> None:
    uploaded = await upload_file("q4.txt", b"forecast", name="  Q4 forecast  ")
    assert (uploaded.entry["name"], uploaded.entry["filename"]) == ("Q4 forecast", "q4.txt")


async def test_a_path_in_the_filename_keeps_only_its_last_segment(
    upload_file: UploadFile,
) -> None:
    uploaded = await upload_file("C:\\Users\\ada\\..\\report.txt", b"x")
    assert uploaded.entry["filename"] == "report.txt"


async def test_the_metadata_field_is_stored_on_the_entry(
    uploader: Uploader, upload_file: UploadFile
) -> None:
    metadata = {"team": "finance", "year": 2026, "tags": ["a", "b"], "owner": {"name": "Ada"}}
    uploaded = await upload_file("m.txt", b"x", metadata=metadata)
    assert uploaded.entry["metadata"] == metadata
    record = uploader.stored.entry(uploaded.id)
    assert record is not None and record["metadata"] == metadata


async def test_the_dataset_id_may_be_given_as_a_query_parameter(uploader: Uploader) -> None:
    response = await post_parts(
        uploader.http,
        uploader.headers,
        [file("q.txt", b"query")],
        params={"dataset_id": uploader.dataset_id},
    )
    assert response.status_code == 201, response.text
    entry = response.json()["data"]
    assert entry["dataset_id"] == uploader.dataset_id
    assert uploader.stored.stored_bytes(entry["id"]) == b"query"


async def test_a_dataset_id_in_the_query_and_another_in_the_form_is_422(
    uploader: Uploader,
) -> None:
    other = await create_dataset(uploader.http, uploader.headers, name="other")
    before = uploader.stored.totals()
    response = await post_parts(
        uploader.http,
        uploader.headers,
        [form_field("dataset_id", other["id"]), file("q.txt", b"query")],
        params={"dataset_id": uploader.dataset_id},
    )
    body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert [d["loc"] for d in body["details"]] == [["dataset_id"]]
    assert uploader.stored.totals() == before


async def test_an_empty_filename_is_named_file(upload_file: UploadFile) -> None:
    uploaded = await upload_file("", b"nameless")
    assert (uploaded.entry["filename"], uploaded.entry["file_type"]) == ("file", "")


# ---------------------------------------------------------------- several files


async def test_several_file_parts_make_several_entries_each_an_item_of_the_dataset(
    uploader: Uploader,
) -> None:
    files = [("a.txt", b"alpha"), ("b.csv", b"x,y\n1,2\n"), ("c.bin", os.urandom(CHUNK + 5))]
    response = await upload(
        uploader.http, uploader.headers, uploader.dataset_id, files, metadata={"batch": 7}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True and "data" not in body
    entries = body["entries"]
    assert [e["filename"] for e in entries] == ["a.txt", "b.csv", "c.bin"]
    assert len({e["id"] for e in entries}) == 3
    for entry, (_, data) in zip(entries, files, strict=True):
        assert entry["metadata"] == {"batch": 7}
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert uploader.stored.stored_bytes(entry["id"]) == data
        [item] = uploader.stored.items(entry["id"])
        assert item["dataset_id"] == ObjectId(uploader.dataset_id)
        assert uploader.stored.marker(entry["id"]) is None
        got = await download(uploader.http, uploader.headers, entry["id"])
        assert got.content == data


# ---------------------------------------------------------------- refused uploads leave nothing


def refusal_cases(dataset_id: str) -> dict[str, list[Part]]:
    """Bodies refused with 422; where the body allows it, the refusal comes after a
    file has been streamed in."""
    target, a_file = form_field("dataset_id", dataset_id), file("a.txt", b"a" * 5000)
    return {
        "metadata that is not JSON": [target, a_file, form_field("metadata", "{not json")],
        "metadata that is a JSON array": [target, form_field("metadata", "[1, 2]"), a_file],
        "a metadata key with a dollar": [target, a_file, form_field("metadata", '{"$where": 1}')],
        "a name with two files": [target, form_field("name", "both"), a_file, file("b.txt", b"b")],
        "a file before the dataset id": [a_file, target],
        "no file": [target, form_field("name", "nothing")],
        "an unknown form field": [target, a_file, form_field("colour", "blue")],
        "a file part with another name": [target, a_file, Part("attachment", b"b", "b.txt")],
        "an empty name": [target, form_field("name", "   "), a_file],
    }


EXPECTED_LOC = {
    "metadata that is not JSON": ["metadata"],
    "metadata that is a JSON array": ["metadata"],
    "a metadata key with a dollar": ["metadata", "$where"],
    "a name with two files": ["name"],
    "a file before the dataset id": ["dataset_id"],
    "no file": ["file"],
    "an unknown form field": ["colour"],
    "a file part with another name": ["attachment"],
    "an empty name": ["name"],
}


@pytest.mark.parametrize("case", list(EXPECTED_LOC))
async def test_an_invalid_upload_is_422_and_stores_nothing(uploader: Uploader, case: str) -> None:
    before = uploader.stored.totals()
    parts = refusal_cases(uploader.dataset_id)[case]
    response = await post_parts(uploader.http, uploader.headers, parts)
    body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert [d["loc"] for d in body["details"]] == [EXPECTED_LOC[case]]
    assert uploader.stored.totals() == before


async def test_a_body_that_is_not_multipart_is_415(uploader: Uploader) -> None:
    before = uploader.stored.totals()
    response = await uploader.http.post(
        ENTRIES, json={"dataset_id": uploader.dataset_id}, headers=uploader.headers
    )
    assert_envelope(response, 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    assert uploader.stored.totals() == before


async def test_a_body_cut_before_its_closing_boundary_is_400_and_stores_nothing(
    uploader: Uploader,
) -> None:
    before = uploader.stored.totals()
    parts = [form_field("dataset_id", uploader.dataset_id), file("cut.txt", b"")]
    cut = multipart_body(parts).removesuffix(b"\r\n" + closing_boundary()) + b"half a file"
    response = await uploader.http.post(
        ENTRIES, content=cut, headers={**uploader.headers, "Content-Type": MULTIPART}
    )
    assert_envelope(response, 400, ErrorCode.BAD_REQUEST)
    assert uploader.stored.totals() == before


async def test_an_upload_into_an_unknown_dataset_is_404(uploader: Uploader) -> None:
    before = uploader.stored.totals()
    response = await upload(uploader.http, uploader.headers, str(ObjectId()), [("a.txt", b"a")])
    assert_envelope(response, 404, ErrorCode.DATASET_NOT_FOUND)
    assert uploader.stored.totals() == before


async def test_a_malformed_dataset_id_is_422_invalid_id(uploader: Uploader) -> None:
    response = await upload(uploader.http, uploader.headers, "not-an-id", [("a.txt", b"a")])
    assert_envelope(response, 422, ErrorCode.INVALID_ID)


# ---------------------------------------------------------------- the size limit

LIMIT = 100_000


@pytest.fixture
async def limited(
    make_client: Callable[..., Any], register_in: Callable[..., Any], sync_client: Sync
) -> AsyncIterator[Uploader]:
    """An app whose entries may be at most LIMIT bytes, and an uploader on it."""
    async with make_client(**QUIET_SETTINGS, max_entry_bytes=LIMIT) as (app, http):
        account = await register_in(http)
        owner_id = await user_id_of(http, account)
        dataset = await create_dataset(http, account.bearer, name="limited")
        await upload_one(http, account.bearer, dataset["id"], "seed.bin", b"seed")
        stored = Stored(sync_client, state_of(app).settings.control_db, owner_id)
        yield Uploader(app, http, account, owner_id, dataset["id"], stored)


async def test_a_file_of_exactly_the_limit_is_accepted(limited: Uploader) -> None:
    data = os.urandom(LIMIT)
    entry = await upload_one(limited.http, limited.headers, limited.dataset_id, "max.bin", data)
    assert entry["size"] == LIMIT
    assert limited.stored.stored_bytes(entry["id"]) == data


async def test_a_file_over_the_limit_is_413_and_leaves_nothing(limited: Uploader) -> None:
    before = limited.stored.totals()
    response = await upload(
        limited.http, limited.headers, limited.dataset_id, [("big.bin", os.urandom(LIMIT + 1))]
    )
    body = assert_envelope(response, 413, ErrorCode.PAYLOAD_TOO_LARGE)
    assert str(LIMIT) in body["message"]
    assert limited.stored.totals() == before


async def test_a_second_file_over_the_limit_takes_the_first_one_with_it(
    limited: Uploader,
) -> None:
    before = limited.stored.totals()
    files = [("small.txt", b"fits"), ("big.bin", os.urandom(3 * LIMIT))]
    response = await upload(limited.http, limited.headers, limited.dataset_id, files)
    assert_envelope(response, 413, ErrorCode.PAYLOAD_TOO_LARGE)
    assert limited.stored.totals() == before


async def test_several_files_each_under_the_limit_are_accepted_whatever_their_total(
    limited: Uploader,
) -> None:
    files = [(f"part{n}.bin", os.urandom(LIMIT - 10)) for n in range(12)]
    response = await upload(limited.http, limited.headers, limited.dataset_id, files)
    assert response.status_code == 201, response.text
    assert len(response.json()["entries"]) == 12


# ---------------------------------------------------------------- content types


async def test_png_bytes_sent_as_html_are_stored_and_served_as_png(
    uploader: Uploader,
) -> None:
    response = await post_parts(
        uploader.http,
        uploader.headers,
        [form_field("dataset_id", uploader.dataset_id), file("x.html", PNG, "text/html")],
    )
    assert response.status_code == 201, response.text
    entry = response.json()["data"]
    assert (entry["content_type"], entry["file_type"]) == ("image/png", "html")
    assert entry["text_status"] == "unsupported"
    got = await download(uploader.http, uploader.headers, entry["id"])
    assert got.headers["content-type"] == "image/png"
    # Served as an attachment that never runs as a page of this origin.
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-security-policy"] == "sandbox"


async def test_text_declared_as_pdf_is_stored_and_served_as_plain_text(
    uploader: Uploader,
) -> None:
    response = await post_parts(
        uploader.http,
        uploader.headers,
        [
            form_field("dataset_id", uploader.dataset_id),
            file("claims.pdf", b"just some words, not a PDF", "application/pdf"),
        ],
    )
    assert response.status_code == 201, response.text
    entry = response.json()["data"]
    assert entry["content_type"] == "text/plain"
    record = uploader.stored.entry(entry["id"])
    assert record is not None and record["content_type"] == "text/plain"
    got = await download(uploader.http, uploader.headers, entry["id"])
    assert got.headers["content-type"] == "text/plain"  # as stored: no charset added


# ---------------------------------------------------------------- downloads


@pytest.mark.parametrize("size", [0, 1, MULTI_CHUNK_BYTES], ids=["empty", "one byte", "chunks"])
async def test_a_download_is_byte_identical_to_the_upload(
    uploader: Uploader, upload_file: UploadFile, size: int
) -> None:
    uploaded = await upload_file("file.bin", os.urandom(size))
    assert uploaded.entry["size"] == size
    assert uploader.stored.chunks(uploaded.id) == list(range(math.ceil(size / CHUNK)))
    response = await download(uploader.http, uploader.headers, uploaded.id)
    assert response.status_code == 200, response.text
    assert response.content == uploaded.data
    assert response.headers["content-length"] == str(size)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == uploaded.entry["content_type"]


async def test_the_etag_is_the_quoted_sha256_of_the_bytes(
    uploader: Uploader, big: Uploaded
) -> None:
    sha = hashlib.sha256(big.data).hexdigest()
    assert big.entry["sha256"] == sha
    response = await download(uploader.http, uploader.headers, big.id)
    assert response.headers["etag"] == f'"{sha}"'
    assert hashlib.sha256(response.content).hexdigest() == sha


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "*", "W/{etag}", '"0000", {etag}'],
    ids=["the etag", "star", "weak", "in a list"],
)
async def test_if_none_match_with_the_etag_is_304_without_a_body(
    uploader: Uploader, big: Uploaded, if_none_match: str
) -> None:
    etag = f'"{big.entry["sha256"]}"'
    response = await download(
        uploader.http,
        uploader.headers,
        big.id,
        **{"If-None-Match": if_none_match.format(etag=etag)},
    )
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag


async def test_if_none_match_with_another_etag_is_the_whole_file(
    uploader: Uploader, big: Uploaded
) -> None:
    response = await download(uploader.http, uploader.headers, big.id, **{"If-None-Match": '"0"'})
    assert response.status_code == 200
    assert response.content == big.data


def range_cases(size: int) -> list[Any]:
    """(Range header, first byte, last byte) of satisfiable single ranges."""
    return [
        pytest.param("bytes=0-9", 0, 9, id="first bytes"),
        pytest.param(f"bytes={CHUNK - 5}-{CHUNK + 4}", CHUNK - 5, CHUNK + 4, id="across chunks"),
        pytest.param("bytes=2097152-2097152", 2 * CHUNK, 2 * CHUNK, id="one middle byte"),
        pytest.param("bytes=-5", size - 5, size - 1, id="suffix"),
        pytest.param("bytes=100-", 100, size - 1, id="open-ended"),
        pytest.param(f"bytes={size - 10}-{size + 1000}", size - 10, size - 1, id="end clipped"),
        pytest.param(f"bytes=-{size + 10}", 0, size - 1, id="suffix longer than the file"),
        pytest.param(f"bytes={size - 1}-", size - 1, size - 1, id="the last byte"),
    ]


@pytest.mark.parametrize(("header", "first", "last"), range_cases(MULTI_CHUNK_BYTES))
async def test_a_single_range_is_206_with_those_bytes(
    uploader: Uploader, big: Uploaded, header: str, first: int, last: int
) -> None:
    response = await download(uploader.http, uploader.headers, big.id, Range=header)
    assert response.status_code == 206, response.text
    assert response.headers["content-range"] == f"bytes {first}-{last}/{big.size}"
    assert response.headers["content-length"] == str(last - first + 1)
    assert response.content == big.data[first : last + 1]


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("bytes={size}-", id="open-ended at the size"),
        pytest.param("bytes={beyond}-", id="open-ended past the size"),
        pytest.param("bytes={size}-{beyond}", id="closed past the size"),
        pytest.param("bytes=-0", id="empty suffix"),
    ],
)
async def test_an_unsatisfiable_range_is_416_with_the_size(
    uploader: Uploader, big: Uploaded, header: str
) -> None:
    value = header.format(size=big.size, beyond=big.size + 5)
    response = await download(uploader.http, uploader.headers, big.id, Range=value)
    assert response.status_code == 416, (response.status_code, response.headers)
    assert_envelope(response, 416, ErrorCode.RANGE_NOT_SATISFIABLE)
    assert response.headers["content-range"] == f"bytes */{big.size}"


async def test_any_range_of_an_empty_file_is_416(
    uploader: Uploader, upload_file: UploadFile
) -> None:
    empty = await upload_file("empty.bin", b"")
    response = await download(uploader.http, uploader.headers, empty.id, Range="bytes=0-")
    assert response.status_code == 416, (response.status_code, response.headers)
    assert_envelope(response, 416, ErrorCode.RANGE_NOT_SATISFIABLE)
    assert response.headers["content-range"] == "bytes */0"


@pytest.mark.parametrize(
    "header", ["bytes=0-1,5-6", "lines=0-9", "bytes=9-0"], ids=["several", "unit", "reversed"]
)
async def test_a_range_not_served_is_answered_with_the_whole_file(
    uploader: Uploader, big: Uploaded, header: str
) -> None:
    response = await download(uploader.http, uploader.headers, big.id, Range=header)
    assert response.status_code == 200
    assert "content-range" not in response.headers
    assert response.content == big.data


async def test_if_range_with_a_stale_etag_sends_the_whole_file(
    uploader: Uploader, big: Uploaded
) -> None:
    response = await download(
        uploader.http, uploader.headers, big.id, Range="bytes=0-9", **{"If-Range": '"stale"'}
    )
    assert response.status_code == 200
    assert response.content == big.data


async def test_if_range_with_the_current_etag_sends_the_range(
    uploader: Uploader, big: Uploaded
) -> None:
    etag = f'"{big.entry["sha256"]}"'
    response = await download(
        uploader.http, uploader.headers, big.id, Range="bytes=0-9", **{"If-Range": etag}
    )
    assert response.status_code == 206
    assert response.content == big.data[:10]


# ---------------------------------------------------------------- file names


def disposition_parameters(header: str) -> dict[str, str]:
    kind, _, rest = header.partition(";")
    assert kind == "attachment"
    found = re.fullmatch(r' filename="([^"]*)"; filename\*=UTF-8\'\'(\S+)', rest)
    assert found, header
    return {"filename": found.group(1), "filename*": found.group(2)}


async def test_a_filename_with_quotes_and_non_ascii_round_trips_in_content_disposition(
    uploader: Uploader, upload_file: UploadFile
) -> None:
    uploaded = await upload_file(AWKWARD_NAME, b"x")
    assert uploaded.entry["filename"] == uploaded.entry["name"] == AWKWARD_NAME
    response = await download(uploader.http, uploader.headers, uploaded.id)
    header = response.headers["content-disposition"]
    parameters = disposition_parameters(header)
    assert unquote(parameters["filename*"], encoding="utf-8", errors="strict") == AWKWARD_NAME
    fallback = parameters["filename"]
    assert fallback.isascii() and '"' not in fallback and "\\" not in fallback
    assert fallback.endswith(".txt")


async def test_a_non_ascii_filename_sent_by_httpx_is_stored_as_is(uploader: Uploader) -> None:
    response = await uploader.http.post(
        ENTRIES,
        data={"dataset_id": uploader.dataset_id},
        files={"file": ("été — ü.txt", b"x", "text/plain")},
        headers=uploader.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["data"]["filename"] == "été — ü.txt"


async def test_a_filename_with_quotes_sent_as_browsers_do_is_stored_with_its_quotes(
    uploader: Uploader,
) -> None:
    response = await uploader.http.post(
        ENTRIES,
        data={"dataset_id": uploader.dataset_id},
        files={"file": (AWKWARD_NAME, b"x", "text/plain")},
        headers=uploader.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["data"]["filename"] == AWKWARD_NAME


async def test_a_part_named_by_filename_star_is_a_file(uploader: Uploader) -> None:
    dataset = form_field("dataset_id", uploader.dataset_id)
    body = b"".join(
        [
            part_head(dataset) + uploader.dataset_id.encode() + b"\r\n",
            f"--{BOUNDARY}\r\n".encode(),
            b'Content-Disposition: form-data; name="file"; '
            b"filename*=UTF-8''%C3%A9t%C3%A9.txt\r\n",
            b"Content-Type: text/plain\r\n\r\n",
            b"summer\r\n",
            closing_boundary(),
        ]
    )
    response = await uploader.http.post(
        ENTRIES, content=body, headers={**uploader.headers, "Content-Type": MULTIPART}
    )
    assert response.status_code == 201, response.text
    assert response.json()["data"]["filename"] == "été.txt"
