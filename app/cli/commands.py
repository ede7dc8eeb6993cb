"""The `quarry` command: `serve`, and `engine build|start|stop|status|migrate`.

`quarry serve` runs the API with uvicorn. With one worker the app's lifespan owns
the embedded engine; with several, this process starts the engine first and
records it in `QUARRY_DATA_DIR/engine.json` for the workers, so they share one
engine, and it stops (and is unrecorded) with them.
`quarry engine start` runs a detached engine for the data directory (recorded in
`QUARRY_DATA_DIR/engine.json`) that servers on that directory then use.
`quarry engine migrate` copies a data directory's SQLite data into PostgreSQL
(see app/engine_migrate.py). `quarry users promote|demote EMAIL` grants or takes
back the platform admin role (`QUARRY_ADMIN_EMAILS` grants it at login too).
`quarry audit verify` checks the audit log's hash chain (app/audit.py): exit 0
with the number of records checked, 1 naming the first broken record.

The `quarry` executable is `app.console`: it runs these commands here and hands
every other one (`login`, `keys`, `db`, `import`, `export`, `datasets`,
`entries`, `rows`) to `quarry_client.cli` (the `client/` package), which talks
to a server over HTTP. The client's own `quarry` entry point hands the commands
above back here, so either script installed last in a virtualenv runs both kinds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError
from pymongo import MongoClient
from pymongo.database import Database

from app import __version__
from app.engine import (
    GO_MISSING_MESSAGE,
    EmbeddedEngine,
    EngineError,
    build_engine,
    engine_is_built,
    read_registered,
    refuse_unmigrated,
    register,
    start_engine,
    start_for_server,
    unregister,
)
from app.settings import Settings


def _load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise SystemExit(f"quarry: invalid configuration: {problems}") from None


def _serve(args: argparse.Namespace) -> int:
    import shutil

    import uvicorn

    overrides = {}
    if args.host:
        overrides["QUARRY_HOST"] = args.host
    if args.port:
        overrides["QUARRY_PORT"] = str(args.port)
    if args.workers:
        overrides["QUARRY_WORKERS"] = str(args.workers)
    os.environ.update(overrides)
    settings = _load_settings()

    if (
        settings.embedded_engine
        and not engine_is_built(settings.engine_binary)
        and shutil.which("go") is None
    ):
        print(f"quarry: {GO_MISSING_MESSAGE}", file=sys.stderr)
        return 1

    engine: EmbeddedEngine | None = None
    stopping = threading.Event()
    try:
        if settings.embedded_engine:
            refuse_unmigrated(settings.data_dir, settings.embedded_backend)
        if settings.embedded_engine and settings.workers > 1:
            from app.engine import start_for_server

            # Registered like a `quarry engine start` engine, so that every worker
            # finds it (and its PostgreSQL) the way it finds a detached one.
            engine = start_for_server(settings)
            if engine.owned:
                register(settings, engine)
                _supervise(engine, settings, stopping)
        print(
            f"Quarry {__version__}: http://{settings.host}:{settings.port} "
            f"(docs at http://{settings.host}:{settings.port}/docs)",
            file=sys.stderr,
        )
        from app.http.protocol import PROTOCOL

        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            access_log=False,
            log_config=None,
            proxy_headers=True,
            server_header=False,
            http=PROTOCOL,
            # Open row streams (SSE) never end by themselves: shutting down waits
            # this long for requests, then closes the rest.
            timeout_graceful_shutdown=10,
        )
    except EngineError as exc:
        print(f"quarry: {exc}", file=sys.stderr)
        return 1
    finally:
        stopping.set()
        if engine is not None and engine.owned:
            engine.stop()
            unregister(settings)
    return 0


def _supervise(engine: EmbeddedEngine, settings: Settings, stopping: threading.Event) -> None:
    """With several workers, none owns the engine: this process restarts it when it
    dies (as the app's lifespan does for one worker) and records it again."""

    def watch() -> None:
        while not stopping.wait(1.0):
            if engine.running():
                continue
            print(
                f"quarry: the embedded engine (pid {engine.pid}) exited; restarting it",
                file=sys.stderr,
            )
            try:
                engine.restart()
                register(settings, engine)
            except EngineError as exc:
                print(f"quarry: restarting the embedded engine failed: {exc}", file=sys.stderr)

    threading.Thread(target=watch, name="engine-supervisor", daemon=True).start()


def _engine(args: argparse.Namespace) -> int:
    settings = _load_settings()
    try:
        if args.action == "build":
            binary = build_engine(settings.engine_binary, force=args.force)
            print(f"engine binary: {binary}")
            return 0
        if args.action == "migrate":
            from app.engine import migrate_sqlite_to_postgresql

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
    return f"{engine.name}, pid {engine.pid}{postgres}, {engine.url}"


@contextlib.contextmanager
def control_database(settings: Settings) -> Iterator[Database[dict[str, Any]]]:
    """The control database of `settings`, for commands that read or change it: on
    `QUARRY_MONGODB_URL`, or on this data directory's embedded engine (the running
    one, else one started for the command and stopped after it)."""
    engine = None if settings.mongodb_url else start_for_server(settings)
    client: MongoClient[dict[str, Any]] = MongoClient(
        engine.url if engine is not None else settings.mongodb_url,
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
    )
    try:
        yield client[settings.control_db]
    finally:
        client.close()
        if engine is not None and engine.owned:
            engine.stop()


def _users(args: argparse.Namespace) -> int:
    """`quarry users promote|demote EMAIL`: grant or take back the platform admin role."""
    settings = _load_settings()
    email = args.email.strip().lower()
    role = "admin" if args.action == "promote" else "user"
    with control_database(settings) as control:
        result = control["users"].update_one({"email": email}, {"$set": {"role": role}})
    if result.matched_count != 1:
        print(f"quarry: no account with the email {email}", file=sys.stderr)
        return 1
    print(f"{email} is now {'a platform admin' if role == 'admin' else 'a regular user'}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    """`quarry audit verify`: walk the audit chain from its anchor."""
    from app.audit import verify_chain_sync

    settings = _load_settings()
    with control_database(settings) as control:
        report = verify_chain_sync(control)
    if not report.ok:
        print(f"quarry: audit chain broken ({report.problem}): {report.message}", file=sys.stderr)
        return 1
    print(report.message)
    return 0


def _search(args: argparse.Namespace) -> int:
    """`quarry search reindex [--tenant ID]`: rebuild keyword-search indexes from
    the text stored in MongoDB (all tenants, or one). Safe beside a running server:
    each index is built aside and swapped in whole."""
    from bson import ObjectId
    from bson.errors import InvalidId

    from data_api.search.index import SearchIndexes
    from data_api.search.indexer import rebuild_sync

    settings = _load_settings()
    indexes = SearchIndexes(settings.search_dir)
    with control_database(settings) as control:
        client = control.client
        if args.tenant:
            try:
                tenants = [ObjectId(args.tenant)]
            except InvalidId:
                print(f"quarry: not a tenant (user) id: {args.tenant}", file=sys.stderr)
                return 2
        else:
            tenants = [
                ObjectId(name[3:])
                for name in client.list_database_names()
                if name.startswith("qt_") and ObjectId.is_valid(name[3:])
            ]
        for tenant in tenants:
            count = rebuild_sync(control, client, indexes, tenant)
            print(f"tenant {tenant}: {count} entries indexed")
    return 0


def build_parser() -> argparse.ArgumentParser:
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

    serve = commands.add_parser("serve", help="run the API server")
    serve.add_argument("--host", help="listen address (QUARRY_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (QUARRY_PORT, default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (QUARRY_WORKERS)")
    serve.set_defaults(handler=_serve)

    engine = commands.add_parser("engine", help="manage the embedded FerretDB engine")
    engine.add_argument(
        "action",
        choices=["build", "start", "stop", "status", "migrate"],
        help="migrate: copy this data directory's SQLite data into PostgreSQL",
    )
    engine.add_argument("--force", action="store_true", help="rebuild even if up to date")
    engine.set_defaults(handler=_engine)

    users = commands.add_parser("users", help="manage platform administrators")
    users.add_argument("action", choices=["promote", "demote"], help="make admin / take it back")
    users.add_argument("email", help="the account's email")
    users.set_defaults(handler=_users)

    audit = commands.add_parser("audit", help="check the tamper-evident audit log")
    audit.add_argument("action", choices=["verify"], help="verify: check the hash chain")
    audit.set_defaults(handler=_audit)

    search = commands.add_parser("search", help="maintain the keyword-search indexes")
    search.add_argument("action", choices=["reindex"], help="reindex: rebuild from MongoDB")
    search.add_argument("--tenant", help="only this tenant (its owner's user id)")
    search.set_defaults(handler=_search)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))
