"""`quarry rows load|tail`: timeseries rows in bulk, and live.

`load` streams a CSV (header `timestamp,<value keys>`) or JSON Lines file
(`{"timestamp", "values"}` per line) in one request, with no row limit; `tail`
follows the dataset's Server-Sent Events and prints each new row as it arrives,
`{"timestamp", "values"}` per line with `--json` (the shape `load` reads)."""

from __future__ import annotations

import json
import queue
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Literal

import typer

from quarry_client import Quarry
from quarry_client._sync.rows import LoadProgress, StreamEvent
from quarry_client.cli.options import JsonOption, ProfileOption
from quarry_client.cli.output import CliError, Output
from quarry_client.cli.progress import transfer_bar
from quarry_client.cli.resolve import resolve_dataset
from quarry_client.cli.session import TRANSFER_TIMEOUT, connect
from quarry_client.cli.transfer import require_file

rows_app = typer.Typer(
    help="Load timeseries rows from a file, or follow new rows live.", no_args_is_help=True
)

DatasetArgument = Annotated[
    str, typer.Argument(metavar="DATASET", help="The dataset's id (or its unique name).")
]
FORMATS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson"}


def _file_format(path: Path, given: str | None) -> str:
    found = given or FORMATS.get(path.suffix.lower())
    if found is None:
        raise CliError(f"{path}: cannot tell CSV from JSON Lines by its name; pass --format.")
    return found


@rows_app.command("load")
def load_rows(
    dataset: DatasetArgument,
    file: Annotated[
        Path,
        # Checked by the command, not here: a missing file is bad input (exit 1), not usage.
        typer.Argument(metavar="FILE.csv|FILE.ndjson"),
    ],
    file_format: Annotated[
        Literal["csv", "ndjson"] | None,
        typer.Option("--format", help="The file's format (default: from its extension)."),
    ] = None,
    on_conflict: Annotated[
        Literal["error", "skip", "replace"],
        typer.Option(
            "--on-conflict",
            help="A row whose timestamp exists: error (load nothing), skip, or replace it.",
        ),
    ] = "error",
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Load rows from a CSV or JSON Lines file (streamed, with progress)."""
    require_file(file)
    kind = _file_format(file, file_format)
    with connect(json_output=json_output, profile=profile, timeout=TRANSFER_TIMEOUT) as session:
        target = resolve_dataset(session.client, dataset)
        with transfer_bar(f"Loading {file.name}", file.stat().st_size) as bar:

            def progress(sent: LoadProgress) -> None:
                bar.bytes(sent.bytes)
                bar.records(sent.rows, "rows")

            rows = session.client.rows
            load = rows.load_csv if kind == "csv" else rows.load_ndjson
            answer = load(target.id, file, on_conflict=on_conflict, progress=progress)
        session.output.result(
            {"dataset_id": target.id, **answer.model_dump(mode="json")},
            f"Loaded {file.name} into {target.name}: {answer.inserted:,} inserted, "
            f"{answer.skipped:,} skipped, {answer.replaced:,} replaced "
            f"(of {answer.total:,} rows).",
        )


@rows_app.command("tail")
def tail_rows(
    dataset: DatasetArgument,
    after: Annotated[
        str | None,
        typer.Option("--after", metavar="TIMESTAMP", help="Start after this row's timestamp."),
    ] = None,
    poll_interval: Annotated[
        int | None,
        typer.Option("--poll-interval", min=1, max=60, help="Seconds between the server's checks."),
    ] = None,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Follow a dataset's new rows as they are written (Ctrl-C to stop, exit 0)."""
    with connect(json_output=json_output, profile=profile) as session:
        target = resolve_dataset(session.client, dataset)
        if _follow(session.client, session.output, target.id, target.name, after, poll_interval):
            session.output.note("Stopped.")


class Interrupt:
    """Ctrl-C (SIGINT) while following, as a flag the main thread polls.

    Python's own handler raises `KeyboardInterrupt` wherever the main thread happens
    to be, and an exception raised while a finalizer runs (the garbage collector
    closing one of the HTTP stack's generators, say) is printed and dropped: the
    command then went on reading the stream for good. This handler only sets a
    flag, which cannot be lost, and the stream is read on a worker thread so the
    main thread is never blocked where it could not look at the flag."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


#: How often the main thread looks at the flag while no event arrives (seconds).
INTERRUPT_POLL_SECONDS = 0.05
_END = object()


def _follow(
    client: Quarry,
    output: Output,
    dataset_id: str,
    name: str,
    after: str | None,
    poll_interval: int | None,
) -> bool:
    """Print the stream's rows until it ends, fails (raised) or Ctrl-C is pressed
    (True)."""
    received: queue.Queue[object] = queue.Queue()

    def read() -> None:
        try:
            for event in client.rows.subscribe(
                dataset_id, last_event_id=after, poll_interval=poll_interval, control_events=True
            ):
                received.put(event)
        except BaseException as exc:  # handed to the main thread, which raises it
            received.put(exc)
        finally:
            received.put(_END)

    interrupt = Interrupt()
    previous = signal.signal(signal.SIGINT, interrupt)
    if previous is None:  # a handler not installed from Python: restore the default
        previous = signal.SIG_DFL
    try:
        # A daemon: once Ctrl-C is pressed, a read still waiting for the server
        # does not keep the process alive.
        threading.Thread(target=read, name="rows-tail", daemon=True).start()
        while not interrupt.requested:
            try:
                item = received.get(timeout=INTERRUPT_POLL_SECONDS)
            except queue.Empty:
                continue
            if item is _END:
                return False
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, StreamEvent)
            if item.event == "connected":
                output.note(f"Following the rows of {name} ({dataset_id}); Ctrl-C to stop.")
            elif item.event == "data":
                _print_row(output, item)
    finally:
        signal.signal(signal.SIGINT, previous)
    return True


def _print_row(output: Output, event: StreamEvent) -> None:
    if output.json_mode:
        output.json_line({"timestamp": event.timestamp, "values": event.values})
        return
    values = "  ".join(f"{key}={json.dumps(value)}" for key, value in event.values.items())
    output.stdout.print(f"{event.timestamp or ''}  {values}", markup=False)
