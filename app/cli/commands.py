"""The parser of the server's commands: the core's (`serve`, `engine`, `audit`,
`backup`, `restore`)
and those the features contribute (`users`, `search`, ...: `Feature.commands`,
collected by the composition root in `app.features`)."""

from __future__ import annotations

import argparse

from app import __version__
from app.cli import audit, backup, engine, serve


def build_parser() -> argparse.ArgumentParser:
    from app.features import FEATURES  # the composition root: imported when run

    parser = argparse.ArgumentParser(
        prog="quarry",
        description="Quarry: a self-hosted document database platform on MongoDB.",
        epilog="Settings come from QUARRY_* environment variables (see README). The client "
        "commands talk to a Quarry server over HTTP: login, logout, profiles, whoami, keys, "
        "db, import, export, datasets, entries, rows (`quarry login --help`, `quarry db "
        "--help`, ...; `--json` on each for scripts).",
    )
    parser.add_argument("--version", action="version", version=f"quarry {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for register in (
        serve.register_command,
        engine.register_command,
        audit.register_command,
        backup.register_commands,
    ):
        register(commands)
    for feature in FEATURES:
        if feature.commands is not None:
            feature.commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))
