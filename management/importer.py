"""The first pass of an import: parse the uploaded file incrementally, validate
every record, and spool the converted documents to disk as BSON.

Runs in a worker thread (it is CPU work) over the upload's temporary file, so
memory stays flat whatever the file size: one record at a time is in memory,
the converted documents go to an unnamed temporary file (gone in every outcome,
a crash included) and client-supplied `_id`s to the import's journal.

Formats: a JSON array of objects, one object, or NDJSON/JSON Lines (any
whitespace-separated sequence of objects), detected from the first byte after an
optional UTF-8 BOM. Parsing is ijson's C backend; on broken JSON the file is
parsed again with ijson's pure-Python backend, which reports the position, to
name the byte offset, line and column (for files up to `PRECISE_OFFSET_BYTES`;
beyond that the message gives the range of bytes the parser had read).

Documents without `_id` get ObjectIds from `RangedIds`: 4 bytes of time and 5
random bytes shared by the whole import, then a counter. The ids of one import
therefore form a range no other writer produces, and a rollback deletes that
range in one statement instead of listing the ids.
"""

from __future__ import annotations

import io
import re
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import bson
import ijson
import ijson.backends.python as ijson_python
from bson.raw_bson import RawBSONDocument

from app.kit import RangedIds
from app.schema import CompiledSchema
from management.errors import ImportRecordsInvalid, InvalidImportFile

BOM = b"\xef\xbb\xbf"
MAX_REPORTED_ERRORS = 100
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
PRECISE_OFFSET_BYTES = 64 * 1024 * 1024
_INDEX = struct.Struct("<I")
_WHITESPACE = b" \t\r\n"


@dataclass
class ImportPlan:
    """What the first pass found and spooled."""

    total: int = 0
    valid: int = 0
    invalid: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    spool: IO[bytes] | None = None
    user_ids: int = 0

    def note_errors(self, problems: list[dict[str, Any]], index: int) -> None:
        self.invalid += 1
        for problem in problems:
            if len(self.errors) < MAX_REPORTED_ERRORS:
                self.errors.append({"index": index, **problem})


# ----------------------------------------------------------------------- parsing


def _skip_bom(source: BinaryIO) -> int:
    source.seek(0)
    start = len(BOM) if source.read(len(BOM)) == BOM else 0
    source.seek(start)
    return start


def _first_byte(source: BinaryIO, start: int) -> bytes:
    while True:
        chunk = source.read(4096)
        if not chunk:
            source.seek(start)
            return b""
        stripped = chunk.lstrip(_WHITESPACE)
        if stripped:
            source.seek(start)
            return stripped[:1]


def iter_records(source: BinaryIO) -> Iterator[Any]:
    """Top-level records of an array, a single object or NDJSON; raises on other shapes."""
    start = _skip_bom(source)
    first = _first_byte(source, start)
    if not first:
        raise InvalidImportFile(
            "The file is empty: expected a JSON array, an object or JSON Lines."
        )
    if first == b"[":
        records = ijson.items(source, "item", use_float=True)
    elif first == b"{":
        records = ijson.items(source, "", multiple_values=True, use_float=True)
    else:
        raise InvalidImportFile(
            "The file is not JSON of an accepted shape: expected a JSON array of objects, "
            "one object, or JSON Lines (one object per line)."
        )
    try:
        yield from records
    except ijson.JSONError as exc:
        raise InvalidImportFile(describe_parse_error(source, start, exc)) from None


_AT = re.compile(r" at (\d+)$")


def describe_parse_error(source: BinaryIO, start: int, error: Exception) -> str:
    """'Broken JSON at byte N (line L, column C): reason' for the file in `source`."""
    size = source.seek(0, io.SEEK_END)
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else "invalid JSON"
    if size > PRECISE_OFFSET_BYTES:
        return f"Broken JSON: {first_line} (the file is too large to locate the byte exactly)."
    source.seek(start)
    text = source.read().decode("utf-8", errors="replace")
    position: int | None = None
    reason = first_line
    try:
        prefix = "item" if text.lstrip()[:1] == "[" else ""
        for _ in ijson_python.items(io.BytesIO(text.encode()), prefix, multiple_values=True):
            pass
    except ijson.JSONError as exc:
        match = _AT.search(str(exc))
        if match:
            position = int(match.group(1))
            reason = _AT.sub("", str(exc))
        elif "Incomplete" in str(exc):
            position, reason = len(text), "the file ends in the middle of a value"
    if position is None:
        return f"Broken JSON: {reason}."
    before = text[:position]
    line = before.count("\n") + 1
    column = position - (before.rfind("\n") + 1) + 1
    offset = start + len(before.encode("utf-8"))
    return f"Broken JSON at byte {offset} (line {line}, column {column}): {reason}."


# ---------------------------------------------------------------------- pass one


def prepare_import(
    *,
    source: BinaryIO,
    schema: CompiledSchema,
    abort_on_error: bool,
    ids: RangedIds,
    ids_journal: BinaryIO,
    spool_dir: Path,
) -> ImportPlan:
    """Validate and spool every record. Raises `InvalidImportFile` for a file of the
    wrong shape and, with `abort_on_error`, `ImportRecordsInvalid` listing the first
    problems; with skip the plan carries them."""
    plan = ImportPlan()
    spool_dir.mkdir(parents=True, exist_ok=True)
    spool = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 - handed to the caller
    plan.spool = spool
    try:
        _spool_records(source, schema, abort_on_error, ids, ids_journal, spool, plan)
    except BaseException:
        spool.close()
        raise
    if abort_on_error and plan.invalid:
        spool.close()
        raise ImportRecordsInvalid(invalid=plan.invalid, total=plan.total, details=plan.errors)
    spool.seek(0)
    ids_journal.flush()
    return plan


def _spool_records(
    source: BinaryIO,
    schema: CompiledSchema,
    abort_on_error: bool,
    ids: RangedIds,
    ids_journal: BinaryIO,
    spool: IO[bytes],
    plan: ImportPlan,
) -> None:
    encode = bson.encode
    for index, record in enumerate(iter_records(source)):
        plan.total += 1
        if type(record) is not dict:
            raise InvalidImportFile(
                f"Record {index} is not a JSON object (found {type(record).__name__}); "
                "every element must be an object.",
                status_code=422,
            )
        document, problems = schema.validate(record, index=index)
        if document is None:
            plan.note_errors(problems, index)
            continue
        if abort_on_error and plan.invalid:
            continue  # nothing will be inserted; keep counting problems only
        if "_id" in document:
            ids_journal.write(encode({"_id": document["_id"], "i": index}))
            plan.user_ids += 1
        else:
            document = {"_id": ids.next(), **document}
        data = encode(document)
        if len(data) > MAX_DOCUMENT_BYTES:
            plan.note_errors(
                [{"loc": [index], "msg": "document larger than 16 MiB", "type": "too_large"}],
                index,
            )
            continue
        spool.write(_INDEX.pack(index))
        spool.write(data)
        plan.valid += 1


def read_batches(
    spool: IO[bytes], *, max_documents: int, max_bytes: int
) -> Iterator[tuple[list[int], list[RawBSONDocument]]]:
    """The spooled documents in batches: (record indices, encoded documents)."""
    indices: list[int] = []
    documents: list[RawBSONDocument] = []
    size = 0
    while True:
        head = spool.read(8)
        if len(head) < 8:
            break
        (index,) = _INDEX.unpack_from(head)
        length = struct.unpack_from("<i", head, 4)[0]
        data = head[4:] + spool.read(length - 4)
        indices.append(index)
        documents.append(RawBSONDocument(data))
        size += length
        if len(documents) >= max_documents or size >= max_bytes:
            yield indices, documents
            indices, documents, size = [], [], 0
    if documents:
        yield indices, documents
