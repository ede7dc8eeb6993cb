"""The app factory: `create_app(settings)` wires settings, logging, the database
client, the embedded engine, middleware, error handlers, OpenAPI and routers.

Run it with `quarry serve` (or `uvicorn app.main:create_app --factory`). The
lifespan starts the embedded engine when `QUARRY_MONGODB_URL` is unset, opens the
`AsyncMongoClient`, and on shutdown closes the client and stops the engine. An
engine this app started is watched: if it dies, it is started again on the same
port and the driver reconnects by itself; requests meanwhile answer 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__
from app.audit import AuditMiddleware, start_audit, stop_audit
from app.audit.router import router as audit_router
from app.db import Database, open_client
from app.engine import EmbeddedEngine, EngineError, EngineSql, choose_adapter, start_for_server
from app.http import install_error_handlers
from app.http.docs import install_docs
from app.http.health import router as health_router
from app.http.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from app.http.openapi import DESCRIPTION, build_openapi
from app.limits import start_rate_limiter, stop_rate_limiter
from app.logs import configure_logging
from app.settings import Settings
from auth.lifecycle import start_auth, stop_auth
from auth.router import keys_router as api_keys_router
from auth.router import router as auth_router
from data_api.datasets.lifecycle import start_datasets, stop_datasets
from data_api.datasets.router import router as datasets_router
from data_api.documents.router import router as data_api_router
from data_api.entries.lifecycle import start_entries, stop_entries
from data_api.entries.router import router as entries_router
from data_api.rows.lifecycle import start_rows, stop_rows
from data_api.rows.router import router as rows_router
from data_api.search.router import router as search_router
from management.import_quota import ImportQuotaMiddleware
from management.lifecycle import start_management, stop_management
from management.router import router as management_router

logger = logging.getLogger("quarry.app")

ENGINE_WATCH_INTERVAL_SECONDS = 1.0


async def _watch_engine(engine: EmbeddedEngine) -> None:
    """Restart an engine this app owns when it dies; the data stays where it was."""
    while True:
        await asyncio.sleep(ENGINE_WATCH_INTERVAL_SECONDS)
        if engine.running():
            continue
        logger.error("the embedded engine (pid %d) exited; restarting it", engine.pid)
        try:
            await asyncio.to_thread(engine.restart)
        except EngineError as exc:
            logger.error("restarting the embedded engine failed: %s", exc)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine: EmbeddedEngine | None = None
    url = settings.mongodb_url
    if settings.embedded_engine:
        engine = await asyncio.to_thread(start_for_server, settings)
        url = engine.url
    client = open_client(url, settings)
    app.state.database = Database(
        client=client,
        control_db_name=settings.control_db,
        query_timeout=settings.query_timeout_ms / 1000,
        choose_adapter=choose_adapter,
        engine_hint=engine.name if engine is not None else "",
    )
    conninfo = engine.postgres_conninfo() if engine is not None else None
    if conninfo:
        app.state.database.engine_reads = EngineSql(
            conninfo, statement_timeout_ms=settings.query_timeout_ms
        )
    app.state.engine = engine
    watcher = (
        asyncio.create_task(_watch_engine(engine)) if engine is not None and engine.owned else None
    )
    try:
        await start_auth(app)
        await start_audit(app)  # after auth (it wraps the authenticator), before features
        await start_rate_limiter(app)
        await start_management(app)
        await start_datasets(app)
        await start_entries(app)
        await start_rows(app)
        logger.info("Quarry %s ready (%s)", __version__, "embedded engine" if engine else "MongoDB")
        yield
    finally:
        await stop_rows(app)
        await stop_entries(app)
        await stop_datasets(app)
        await stop_management(app)
        await stop_rate_limiter(app)
        await stop_audit(app)
        await stop_auth(app)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await app.state.database.close()
        if engine is not None and engine.owned:
            await asyncio.to_thread(engine.stop)
            logger.info("embedded engine stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings)
    app = FastAPI(
        title="Quarry",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by app.docs, from local assets
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
        openapi_tags=[
            {"name": "health", "description": "Liveness of the API and its database."},
            {"name": "auth", "description": "Accounts, email verification, tokens."},
            {"name": "API keys", "description": "Long-lived keys for backends (Bearer only)."},
            {"name": "databases", "description": "Logical databases, collections, import."},
            {"name": "documents", "description": "Document CRUD."},
            {"name": "datasets", "description": "Datasets: catalogue, metadata, items, subsets."},
            {"name": "tags", "description": "Tags: catalogue, acquiring, dataset tags, access."},
            {"name": "shares", "description": "Sharing a dataset with other users."},
            {"name": "entries", "description": "Files in datasets: upload, download, text."},
            {"name": "search", "description": "Keyword search over entries' text (BM25)."},
            {"name": "rows", "description": "Timeseries rows and columns of datasets."},
            {"name": "audit", "description": "The tamper-evident audit log."},
        ],
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        # An upload's files are limited one by one as they arrive (entries.md);
        # the request as a whole by its own limit, never below one largest file.
        path_limits={
            "/api/import_data": settings.max_import_bytes,
            "/api/v1/entries": max(settings.max_upload_bytes, settings.max_entry_bytes + (1 << 20)),
            # JSON bodies are limited by QUARRY_MAX_BULK_BODY_BYTES in the handler;
            # NDJSON loads are streamed and not limited.
            "/api/v1/rows/bulk_insert": 1 << 62,
        },
    )
    app.add_middleware(ImportQuotaMiddleware, limit=settings.max_concurrent_imports_per_user)
    # Inside the request context (request id), outside the refusals it records.
    app.add_middleware(AuditMiddleware)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(api_keys_router)
    app.include_router(management_router)
    app.include_router(data_api_router)
    app.include_router(datasets_router)
    app.include_router(entries_router)
    app.include_router(search_router)
    app.include_router(rows_router)
    app.include_router(audit_router)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    install_docs(app, settings)
    return app
