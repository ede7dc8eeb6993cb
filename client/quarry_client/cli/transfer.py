"""`quarry import` and `quarry export`: whole collections in and out as files.

An import streams the file from disk (the server takes a JSON array, one object,
or JSON Lines, any of them in Extended JSON, up to 1 GiB) with a bar for the
bytes sent and, for JSON Lines, the records sent; an export streams the server's
answer to a file or stdout as it arrives."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Annotated, Literal

import typer

from quarry_client import models as m
from quarry_client.cli.options import JsonOption, ProfileOption
from quarry_client.cli.output import (
    GLOBAL_JSON,
    SHOWN_DETAILS,
    CliError,
    Output,
    detail_line,
)
from quarry_client.cli.progress import transfer_bar
from quarry_client.cli.resolve import resolve_database
from quarry_client.cli.session import TRANSFER_TIMEOUT, connect

LINE_SUFFIXES = {".ndjson", ".jsonl"}
#: Bytes read to tell JSON Lines from a JSON document.
SNIFF_BYTES = 1 << 20

DatabaseOption = Annotated[
    str, typer.Option("--database", "-d", metavar="NAME_OR_ID", help="The database (name or id).")
]


class RecordCounter:
    """Counts the lines of a JSON Lines file up to the position the upload has
    reached, reading a second handle on the same file (the page cache makes that
    cheap); starts again from zero when a retried upload starts again."""

    def __init__(self, path: Path) -> None:
        self._handle: IO[bytes] = path.open("rb")
        self._position = 0
        self.records = 0

    def advance(self, position: int) -> int:
        if position < self._position:
            self._handle.seek(0)
            self._position = self.records = 0
        while self._position < position:
            chunk = self._handle.read(min(position - self._position, 1 << 20))
            if not chunk:
                break
            self._position += len(chunk)
            self.records += chunk.count(b"\n")
        return self.records

    def close(self) -> None:
        self._handle.close()


def require_file(path: Path) -> None:
    """Refuse a path that is not a readable file before anything is sent."""
    if not path.is_file():
        raise CliError(f"{path}: no such file.", error_code="FILE_ERROR")
    if not os.access(path, os.R_OK):
        raise CliError(f"{path}: not readable.", error_code="FILE_ERROR")


def is_json_lines(path: Path) -> bool:
    """A `.ndjson`/`.jsonl` file, or one whose first line is a whole JSON object
    followed by another line (a JSON array or a pretty-printed object is not)."""
    if path.suffix.lower() in LINE_SUFFIXES:
        return True
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES).lstrip(b"\xef\xbb\xbf \t\r\n")
    first, newline, rest = head.partition(b"\n")
    if not first.startswith(b"{") or not newline or not rest.strip():
        return False
    try:
        return isinstance(json.loads(first), dict)
    except ValueError:
        return False


def import_file(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            # Checked when opened: a missing file is bad input (exit 1), not usage.
            help="JSON array, JSON object or JSON Lines (Extended JSON allowed).",
        ),
    ],
    database: DatabaseOption,
    collection: Annotated[
        str | None,
        typer.Option(
            "--collection",
            "-c",
            help="The collection (default: the file's name without extension).",
        ),
    ] = None,
    on_error: Annotated[
        Literal["abort", "skip"],
        typer.Option(
            "--on-error", help="abort: one bad record imports nothing; skip: import the good ones."
        ),
    ] = "abort",
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Import a JSON, JSON Lines or Extended JSON file into a collection (streamed)."""
    require_file(file)
    with connect(json_output=json_output, profile=profile, timeout=TRANSFER_TIMEOUT) as session:
        target = resolve_database(session.client, database)
        counter = RecordCounter(file) if is_json_lines(file) else None
        try:
            with transfer_bar(f"Importing {file.name}", file.stat().st_size) as bar:

                def progress(sent: int, total: int | None) -> None:
                    bar.bytes(sent, total)
                    if counter is not None:
                        bar.records(counter.advance(sent))
                    if total is not None and sent >= total:
                        bar.describe(f"Sent {file.name}; the server is importing it")

                answer = session.client.databases.import_file(
                    target.id, collection, file, on_error=on_error, progress=progress
                )
        finally:
            if counter is not None:
                counter.close()
        _report_import(session.output, answer, target.name)


def _report_import(output: Output, answer: m.ImportAnswer, database: str) -> None:
    errors = answer.errors or []
    summary = {
        "database": database,
        "collection": answer.collection,
        "inserted_count": answer.inserted_count,
        "skipped_count": answer.skipped_count,
        "error_count": len(errors),
        "errors": errors,
    }
    lines = [
        f"Imported into {database}.{answer.collection}: {answer.inserted_count:,} inserted, "
        f"{answer.skipped_count:,} skipped."
    ]
    if errors:
        shown = errors[:SHOWN_DETAILS]
        lines.append(f"The first {len(shown)} of the skipped records' errors (--json has more):")
        lines += [f"  {detail_line(error.model_dump())}" for error in shown]
    output.result(summary, "\n".join(lines))


def export_collection(
    database: DatabaseOption,
    collection: Annotated[str, typer.Option("--collection", "-c", help="The collection.")],
    export_format: Annotated[
        Literal["json", "ndjson", "csv"], typer.Option("--format", "-f", help="The file format.")
    ] = "json",
    filters: Annotated[
        str | None,
        typer.Option(
            "--filter",
            metavar="JSON",
            help='Only matching documents, e.g. \'{"age": {"$gte": 18}}\'.',
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write here (default: stdout).", dir_okay=False
        ),
    ] = None,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Export a collection as JSON, JSON Lines or CSV, to a file or stdout (streamed)."""
    if out is None and (json_output or GLOBAL_JSON.get()):
        raise CliError("With --json the summary goes to stdout: give the export a file with -o.")
    with connect(json_output=json_output, profile=profile, timeout=TRANSFER_TIMEOUT) as session:
        target = resolve_database(session.client, database)
        query = _filter(filters)
        chunks = session.client.databases.iter_export(
            target.id, collection, format=export_format, filter=query
        )
        written = _write_export(chunks, out)
        if out is not None:
            session.output.result(
                {
                    "database": target.name,
                    "collection": collection,
                    "format": export_format,
                    "path": str(out),
                    "bytes": written,
                },
                f"Exported {target.name}.{collection} to {out} "
                f"({written:,} bytes, {export_format}).",
            )


def _filter(text: str | None) -> dict[str, object] | None:
    if text is None:
        return None
    try:
        query = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--filter is not valid JSON: {exc}.") from exc
    if not isinstance(query, dict):
        raise CliError("--filter must be a JSON object.")
    return query


def _write_export(chunks: Iterable[bytes], out: Path | None) -> int:
    """Write the chunks as they arrive; a file is written under a temporary name
    and renamed at the end, so a failed export leaves no truncated file behind."""
    written = 0
    if out is None:
        stdout = sys.stdout.buffer
        for chunk in chunks:
            stdout.write(chunk)
            written += len(chunk)
        stdout.flush()
        return written
    partial = out.with_name(f".{out.name}.partial")
    try:
        with transfer_bar(f"Exporting to {out.name}", None) as bar, partial.open("wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                written += len(chunk)
                bar.bytes(written)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return written
