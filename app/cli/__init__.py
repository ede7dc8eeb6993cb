"""The server's command line: `quarry serve|engine|audit|backup|restore` and the
commands the features contribute (`users`, `search`).

- `serve`, `engine`, `audit`, `backup` (`backup` and `restore`): the core's
  commands, one module each.
- `commands`: the parser (the features' commands come through their
  `Feature.commands` hook) and `main`.
- `support`: what a command needs — `load_settings`, and `run_on_database` to
  run a coroutine on the database of the settings through the app's own
  database layer (the embedded engine started for the command when none runs).
  Features import these from here for their own commands; importing them loads
  neither the commands nor the engine (both are imported when run).

`app.console` is the `quarry` executable: it runs these commands and hands the
client's (`login`, `db`, `import`, ...) to the `client/` package without
importing anything of the server, which is why it stays outside this package.
"""

from __future__ import annotations

import argparse

from app.cli.support import load_settings, run_on_database


def main(argv: list[str] | None = None) -> int:
    """Run `quarry ARGS…` (the server's commands; `app.console` hands them here)."""
    from app.cli.commands import main as run  # the commands import the whole app

    return run(argv)


def build_parser() -> argparse.ArgumentParser:
    from app.cli.commands import build_parser as build

    return build()


__all__ = ["build_parser", "load_settings", "main", "run_on_database"]
