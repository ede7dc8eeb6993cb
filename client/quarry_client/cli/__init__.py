"""The `quarry` command line: the client's commands (login, keys, db, import,
export, datasets, entries, rows), built on the blocking `Quarry` client with
Typer and Rich (the `cli` extra: `pip install 'quarry-client[cli]'`).

The server's own commands (`serve`, `engine`, `users`, `audit`, `search`,
`backup`, `restore`) live in
the server package (`app.cli`); `main` hands them over when it is installed, so
the one `quarry` executable runs both, whichever package installed it."""

from __future__ import annotations

import sys

#: First arguments that belong to the server's command line (`app.cli`).
SERVER_COMMANDS = frozenset({"serve", "engine", "users", "audit", "search", "backup", "restore"})

CLI_EXTRA_MISSING = (
    "quarry: the command line needs Typer and Rich; install them with "
    "pip install 'quarry-client[cli]'"
)


def main(argv: list[str] | None = None) -> int:
    """Run `quarry` with `argv` (default: the process's arguments); the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SERVER_COMMANDS:
        return _run_server_command(args)
    try:
        import rich  # noqa: F401
        import typer  # noqa: F401
    except ImportError:
        print(CLI_EXTRA_MISSING, file=sys.stderr)
        return 2
    from quarry_client.cli.app import run

    return run(args)


def _run_server_command(args: list[str]) -> int:
    try:
        from app.cli import main as server_main
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name in {"app", "app.cli"}:
            reason = "it needs the Quarry server package installed in this environment"
        else:
            reason = f"the server package is installed but cannot be imported ({exc})"
        print(f"quarry: `quarry {args[0]}` is a server command; {reason}.", file=sys.stderr)
        return 2
    return int(server_main(args) or 0)
