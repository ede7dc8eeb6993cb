"""`quarry serve`: the API under uvicorn.

With one worker the app's lifespan owns the embedded engine; with several, this
process starts the engine first and records it in `QUARRY_DATA_DIR/engine.json`
for the workers, so they share one engine, and it stops (and is unrecorded) with
them; meanwhile it restarts the engine when it dies, as the lifespan does for
one worker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading

from app import __version__
from app.cli.support import load_settings
from app.engine import (
    GO_MISSING_MESSAGE,
    EmbeddedEngine,
    EngineError,
    engine_is_built,
    refuse_unmigrated,
    register,
    start_for_server,
    unregister,
)
from app.settings import Settings


def register_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve_parser = commands.add_parser("serve", help="run the API server")
    serve_parser.add_argument("--host", help="listen address (QUARRY_HOST, default 127.0.0.1)")
    serve_parser.add_argument("--port", type=int, help="listen port (QUARRY_PORT, default 8000)")
    serve_parser.add_argument("--workers", type=int, help="worker processes (QUARRY_WORKERS)")
    serve_parser.set_defaults(handler=serve)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    # Everything the server creates (the mail outbox, the search index, import
    # spools and journals, the secret key, uploads in transit) is its own: 0700
    # directories, 0600 files — also when QUARRY_MONGODB_URL leaves the data
    # directory to the operator.
    os.umask(0o077)
    overrides = {}
    if args.host:
        overrides["QUARRY_HOST"] = args.host
    if args.port:
        overrides["QUARRY_PORT"] = str(args.port)
    if args.workers:
        overrides["QUARRY_WORKERS"] = str(args.workers)
    os.environ.update(overrides)
    settings = load_settings()

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
            # Registered like a `quarry engine start` engine, so that every worker
            # finds it (and its PostgreSQL) the way it finds a detached one.
            engine = start_for_server(settings)
            if engine.owned:
                register(settings, engine)
                supervise(engine, settings, stopping)
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


def supervise(engine: EmbeddedEngine, settings: Settings, stopping: threading.Event) -> None:
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
