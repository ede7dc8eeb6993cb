"""`quarry entries upload|list|download`: files in datasets.

Uploads walk directories recursively and stream each file from disk; with
`--skip-existing` a file whose SHA-256 is already among the dataset's entries
(or earlier in the same upload) is not sent again, so an interrupted upload of
a directory can simply be run again. Downloads resume a partial file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from quarry_client._sync.entries import file_sha256, partial_path
from quarry_client.cli.options import JsonOption, ProfileOption
from quarry_client.cli.output import CliError, count, table, when
from quarry_client.cli.progress import transfer_bar
from quarry_client.cli.resolve import resolve_dataset
from quarry_client.cli.session import TRANSFER_TIMEOUT, connect

entries_app = typer.Typer(help="Upload, list and download files in datasets.", no_args_is_help=True)

DatasetArgument = Annotated[
    str, typer.Argument(metavar="DATASET", help="The dataset's id (or its unique name).")
]


def files_to_upload(paths: Iterable[Path]) -> list[Path]:
    """The files named, and every file under the directories named (sorted, no
    symbolic-link loops followed), each once."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for root, directories, names in os.walk(path):
                directories.sort()
                for name in sorted(names):
                    candidate = Path(root) / name
                    if candidate.is_file():
                        found.setdefault(candidate, None)
        elif path.is_file():
            found.setdefault(path, None)
        else:
            raise CliError(f"{path}: no such file or directory.", error_code="FILE_ERROR")
    return list(found)


def _split_existing(files: list[Path], existing: set[str]) -> tuple[list[Path], list[Path]]:
    """(files to send, files skipped): a file is skipped when its SHA-256 is
    already stored, or already in this upload."""
    send, skip = [], []
    seen = set(existing)
    with transfer_bar("Hashing", sum(f.stat().st_size for f in files)) as bar:
        done = 0
        for file in files:
            digest = file_sha256(file)
            done += file.stat().st_size
            bar.bytes(done)
            (skip if digest in seen else send).append(file)
            seen.add(digest)
    return send, skip


@entries_app.command("upload")
def upload_entries(
    dataset: DatasetArgument,
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="FILES_OR_DIRS...", help="Files, and directories to walk."),
    ],
    skip_existing: Annotated[
        bool,
        typer.Option("--skip-existing", help="Skip files whose SHA-256 the dataset already holds."),
    ] = False,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Upload files (directories recursively) into a dataset, streamed, with progress."""
    files = files_to_upload(paths)
    if not files:
        raise CliError("There is no file to upload in the paths given.", error_code="FILE_ERROR")
    with connect(json_output=json_output, profile=profile, timeout=TRANSFER_TIMEOUT) as session:
        target = resolve_dataset(session.client, dataset)
        skipped: list[Path] = []
        if skip_existing:
            files, skipped = _split_existing(
                files, session.client.entries.existing_sha256(target.id)
            )
        uploaded = []
        if files:
            total = sum(f.stat().st_size for f in files)
            with transfer_bar(f"Uploading {count(len(files), 'file')}", total) as bar:
                uploaded = session.client.entries.upload(target.id, files, progress=bar.bytes)
        sent = sum(entry.size for entry in uploaded)
        session.output.result(
            {
                "dataset_id": target.id,
                "uploaded_count": len(uploaded),
                "skipped_count": len(skipped),
                "bytes": sent,
                "entries": uploaded,
                "skipped": [str(path) for path in skipped],
            },
            f"Uploaded {count(len(uploaded), 'file')} ({sent:,} bytes) to {target.name}"
            + (f"; skipped {len(skipped):,} already there." if skip_existing else "."),
        )


@entries_app.command("list")
def list_entries(
    dataset: DatasetArgument,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the entries whose home is a dataset, oldest first."""
    with connect(json_output=json_output, profile=profile) as session:
        target = resolve_dataset(session.client, dataset)
        found = list(session.client.entries.iterate(target.id))
        rows = [
            (e.id, e.name, e.content_type, f"{e.size:,}", e.text_status, when(e.created_at))
            for e in found
        ]
        columns = ["id", "name", "type", "bytes", "text", "created"]
        session.output.result(found, table(target.name, columns, rows) if found else "No entries.")


@entries_app.command("download")
def download_entry(
    entry_id: Annotated[str, typer.Argument(metavar="ENTRY_ID", help="The entry's id.")],
    out: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Where to save it (a directory: its filename there).",
        ),
    ] = Path("."),
    no_resume: Annotated[
        bool,
        typer.Option(
            "--no-resume", help="Fetch it whole even if a partial (.part) file of it is there."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing file that is not this entry's.")
    ] = False,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Download an entry's file (kept as FILE.<entry id>.part until complete; an
    interrupted download resumes from there)."""
    with connect(json_output=json_output, profile=profile, timeout=TRANSFER_TIMEOUT) as session:
        entry = session.client.entries.get(entry_id)
        target = out / entry.filename if out.is_dir() else out
        part = partial_path(target, entry.id)
        partial = part.stat().st_size if part.is_file() and not no_resume else 0
        with transfer_bar(f"Downloading {entry.filename}", entry.size) as bar:
            path = session.client.entries.download(
                entry_id, out, resume=not no_resume, overwrite=force, progress=bar.bytes
            )
        resumed = 0 < partial < entry.size
        session.output.result(
            {
                "id": entry.id,
                "path": str(path),
                "size": entry.size,
                "sha256": entry.sha256,
                "resumed_from": partial if resumed else 0,
            },
            f"Saved {entry.filename} to {path} ({entry.size:,} bytes"
            + (f", resumed from {partial:,}" if resumed else "")
            + (", SHA-256 checked)." if entry.sha256 else ")."),
        )
