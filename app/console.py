"""The `quarry` executable: the server's commands (`serve`, `engine`, `users`,
`audit`, `search`, `backup`, `restore`: `app.cli`) and the client's (`login`,
`keys`, `db`, `import`, `export`, `datasets`, `entries`, `rows`:
`quarry_client.cli`, the `client/` package).

Kept apart from `app.cli` so that a client command imports nothing of the server
(no driver, no engine): it starts as fast as the client alone. Options before a
client command (`quarry --json db list`) go to the client; `quarry`, `--help`
and `--version` alone are the server's argparse help, which lists both kinds."""

from __future__ import annotations

import sys

#: First arguments `app.cli` runs; any other command is the client's.
SERVER_COMMANDS = frozenset({"serve", "engine", "users", "audit", "search", "backup", "restore"})
#: Arguments that, alone or first, ask the top-level command about itself.
ABOUT = frozenset({"-h", "--help", "--version"})


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in SERVER_COMMANDS or arguments[0] in ABOUT:
        from app.cli import main as server_main

        return server_main(arguments)
    try:
        from quarry_client.cli import main as client_main
    except ImportError:
        print(
            "quarry: client commands need the client package: pip install './client[cli]'",
            file=sys.stderr,
        )
        return 2
    return int(client_main(arguments))


if __name__ == "__main__":
    sys.exit(main())
