"""What the command line prints, and where.

Results go to stdout: a Rich table or a sentence for a person, or exactly one
JSON document (or NDJSON for streams) with `--json`, so a script can pipe stdout
into `jq`. Everything else — notes, warnings, progress bars, errors — goes to
stderr. Errors are one sentence (plus the server's field details) for a person,
or a JSON object `{error_code, message, request_id, details}` with `--json`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from quarry_client.errors import AuthenticationError, QuarryConnectionError, QuarryError

#: How many of the server's field details a person sees (the JSON has them all).
SHOWN_DETAILS = 20


class CliError(Exception):
    """A refusal made by the command line itself (bad input, no credentials)."""

    def __init__(self, message: str, *, error_code: str = "BAD_INPUT", exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.exit_code = exit_code


def plain(value: Any) -> Any:
    """A JSON-ready copy of a model, a list of models, or plain data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        # Piped: do not cut ids and names to 80 columns.
        console.width = 200
    return console


#: `quarry --json COMMAND …` (before the command), set by the root callback.
GLOBAL_JSON: ContextVar[bool] = ContextVar("GLOBAL_JSON", default=False)


class Output:
    """The two streams of one command, in human or `--json` mode."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode or GLOBAL_JSON.get()
        self.stdout = _console(stderr=False)
        self.stderr = _console(stderr=True)

    def result(self, data: Any, human: Any = None) -> None:
        """The command's result: `data` as JSON, or `human` (a table, a sentence)."""
        if self.json_mode:
            self.json_line(data, indent=2)
        elif isinstance(human, str):
            self.stdout.print(human, markup=False)
        elif human is not None:
            self.stdout.print(human)

    def json_line(self, data: Any, *, indent: int | None = None) -> None:
        """One JSON document on stdout (a line of NDJSON when `indent` is None)."""
        sys.stdout.write(json.dumps(plain(data), indent=indent, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def note(self, message: str) -> None:
        """A remark for a person, on stderr (also in `--json` mode); plain text."""
        self.stderr.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.stderr.print(f"[yellow]Warning:[/yellow] {escape(message)}")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A Rich table; `None` cells print as an empty cell."""
    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*("" if cell is None else escape(str(cell)) for cell in row))
    return grid


def count(number: int, noun: str) -> str:
    """`1 file`, `2,000 files`."""
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def when(value: Any) -> str:
    """A datetime (or ISO string) as `YYYY-MM-DD HH:MM:SS`, or empty."""
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text.replace("T", " ")[:19]


def error_document(error: BaseException) -> dict[str, Any]:
    """The JSON object printed for an error with `--json`."""
    if isinstance(error, QuarryError):
        code = error.error_code or (
            "CONNECTION_FAILED" if isinstance(error, QuarryConnectionError) else "HTTP_ERROR"
        )
        return {
            "error_code": code,
            "message": error.message,
            "request_id": error.request_id,
            "details": error.details,
            "status_code": error.status_code,
        }
    if isinstance(error, CliError):
        code, message = error.error_code, error.message
    else:
        code, message = "USAGE_ERROR", str(error)
    return {"error_code": code, "message": message, "request_id": None, "details": None}


def detail_line(detail: dict[str, Any]) -> str:
    """One field problem from the server: `record 17, email: expected string`."""
    where = []
    index = detail.get("index")
    if index is not None:
        where.append(f"record {index}")
    location = [part for part in detail.get("loc") or [] if part != index and part != "body"]
    if len(location) >= 2 and location[0] == "line" and isinstance(location[1], int):
        where.append(f"line {location[1]}")
        location = location[2:]
    if location:
        where.append(".".join(str(part) for part in location))
    message = str(detail.get("msg") or detail.get("message") or detail)
    return f"{', '.join(where)}: {message}" if where else message


def print_error(error: BaseException, *, json_mode: bool) -> None:
    """Report a failed command on stderr."""
    if json_mode:
        sys.stderr.write(json.dumps(error_document(error), ensure_ascii=False) + "\n")
        sys.stderr.flush()
        return
    console = _console(stderr=True)
    document = error_document(error)
    suffix = []
    if isinstance(error, QuarryError) and error.status_code is not None:
        suffix.append(f"HTTP {error.status_code}")
    if document["request_id"]:
        suffix.append(f"request {document['request_id']}")
    head = f"{document['message']} [{document['error_code']}]"
    if suffix:
        head += f" ({', '.join(suffix)})"
    console.print(f"[red]Error:[/red] {escape(head)}")
    details = document["details"] or []
    for detail in details[:SHOWN_DETAILS]:
        console.print(
            f"  {escape(detail_line(detail) if isinstance(detail, dict) else str(detail))}"
        )
    if len(details) > SHOWN_DETAILS:
        console.print(f"  … and {len(details) - SHOWN_DETAILS} more (use --json to see them all)")
    if isinstance(error, AuthenticationError):
        console.print(
            "  Log in again with `quarry login --url URL --email EMAIL`, "
            "or check QUARRY_URL and QUARRY_API_KEY.",
            markup=False,
        )


def confirm_deletion(output: Output, what: str, name: str) -> None:
    """Have the person type `name` before the `what` called so is deleted; a
    `CliError` when they type something else, or cannot be asked (no terminal)."""
    if not sys.stdin.isatty():
        raise CliError(
            f"Deleting {what} {name!r} cannot be undone; pass --yes to confirm without a terminal.",
            error_code="CONFIRMATION_REQUIRED",
        )
    output.stderr.print(f"This deletes {what} [bold]{escape(name)}[/bold] and all it holds.")
    typed = typer.prompt(f"Type the {what}'s name to confirm", err=True)
    if typed != name:
        raise CliError("The name typed does not match; nothing was deleted.", error_code="ABORTED")
