"""`quarry engine build|start|stop|status|migrate`: the embedded engine by hand.

`start` runs a detached engine for the data directory (recorded in
`QUARRY_DATA_DIR/engine.json`) that servers on that directory then use; it and
`status` name the Unix socket it listens on, reachable by this OS user only.
Like `quarry serve`, `start` refuses the SQLite backend and SQLite data that was
not migrated; `migrate` copies a data directory's SQLite data into PostgreSQL
(`app.engine.migrate`).
"""

from __future__ import annotations

import argparse
import sys

from app.cli.support import load_settings
from app.engine import (
    EmbeddedEngine,
    EngineError,
    build_engine,
    migrate_sqlite_to_postgresql,
    read_registered,
    register,
    start_engine,
    unregister,
)


def register_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("engine", help="manage the embedded FerretDB engine")
    parser.add_argument(
        "action",
        choices=["build", "start", "stop", "status", "migrate"],
        help="migrate: copy this data directory's SQLite data into PostgreSQL",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.set_defaults(handler=engine_command)


def engine_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        if args.action == "build":
            binary = build_engine(settings.engine_binary, force=args.force)
            print(f"engine binary: {binary}")
            return 0
        if args.action == "migrate":
            return migrate_sqlite_to_postgresql(settings, report=print)
        running = read_registered(settings)
        if args.action == "status":
            if running is None:
                print(f"engine: not running (data directory {settings.engine_data_dir})")
                return 3
            print(f"engine: running, {_describe(running)}, data {running.data_dir}")
            return 0
        if args.action == "start":
            if running is not None:
                print(f"engine: already running, {_describe(running)}")
                return 0
            engine = start_engine(settings, detached=True)
            register(settings, engine)
            print(f"engine: started, {_describe(engine)}")
            return 0
        # stop
        if running is None:
            print("engine: not running")
            return 0
        postgres_pid = running.postgres_pid
        running.stop()
        unregister(settings)
        stopped = f"pid {running.pid}" + (f", postgres {postgres_pid}" if postgres_pid else "")
        print(f"engine: stopped ({stopped})")
        return 0
    except EngineError as exc:
        print(f"quarry: {exc}", file=sys.stderr)
        return 1


def _describe(engine: EmbeddedEngine) -> str:
    postgres = f", postgres pid {engine.postgres_pid}" if engine.postgres_pid else ""
    return f"{engine.name}, pid {engine.pid}{postgres}, socket {engine.socket}, {engine.url}"
