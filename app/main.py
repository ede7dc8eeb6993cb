"""The app factory and its lifespan: wiring only.

`create_app(settings)` makes the app with its typed state (`app.wiring.AppState`),
error handlers, middleware, the routers of `app.routers`, the OpenAPI document
and the docs pages. Its lifespan runs `LIFECYCLES` in order with an
`AsyncExitStack`: each starts what it owns (and its background tasks) and is
stopped in reverse order — also when a later one fails to start.

Run it with `quarry serve` (or `uvicorn app.main:create_app --factory`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from app import __version__, audit, limits
from app.audit import AuditMiddleware
from app.engine import run_database
from app.features import FEATURES
from app.http import install_error_handlers
from app.http.docs import install_docs
from app.http.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from app.http.openapi import DESCRIPTION, build_openapi
from app.logs import configure_logging
from app.routers import body_limits, openapi_tags, routers
from app.settings import Settings
from app.wiring import AppState, Feature, Lifecycle, state_of
from auth.feature import AUTH
from data_api.datasets.feature import DATASETS
from data_api.documents.feature import DOCUMENTS
from data_api.entries.feature import ENTRIES
from data_api.rows.feature import ROWS
from data_api.search.feature import SEARCH
from management.feature import MANAGEMENT

logger = logging.getLogger("quarry.app")


def _lifecycles(*features: Feature) -> tuple[Lifecycle, ...]:
    return tuple(feature.lifecycle for feature in features if feature.lifecycle is not None)


#: In start order; stopped in reverse. Every feature's lifecycle is here once
#: (a test holds this list against `app.features.FEATURES`).
LIFECYCLES: tuple[Lifecycle, ...] = (
    run_database,  # the embedded engine (when this app runs it), the client, the adapter
    *_lifecycles(AUTH),  # the authenticator, which the audit log then wraps to record callers
    audit.lifecycle,
    limits.lifecycle,  # from here on every authenticated request is charged
    # The datasets catalogue comes before the entries, search and rows that stand on it.
    *_lifecycles(MANAGEMENT, DOCUMENTS, DATASETS, ENTRIES, SEARCH, ROWS),
)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = state_of(app)
    async with contextlib.AsyncExitStack() as stack:
        for lifecycle in LIFECYCLES:
            await stack.enter_async_context(lifecycle(state))
        engine = "embedded engine" if state.database.engine_hint else "MongoDB"
        logger.info("Quarry %s ready (%s)", __version__, engine)
        # What startup made (modules, routes, schemas, clients: some 190,000 objects)
        # lives as long as the app. Frozen, the cyclic garbage collector stops
        # walking it at each full collection — which a page of 1,000 documents
        # triggered about every other request, at a third of the server's time.
        # Refcounting still frees those objects; only cycles among them wait for
        # the unfreeze at shutdown.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings)
    app = FastAPI(
        title="Quarry",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by app.http.docs, from local assets
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
        openapi_tags=openapi_tags(),
    )
    app.state.quarry = AppState(settings)
    install_error_handlers(app)
    # Added innermost first: the request context outermost, then the audit record,
    # the features' middleware, and the body-size limit next to the routes.
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        path_limits=body_limits(settings),
    )
    for feature in FEATURES:
        for middleware in feature.middleware(settings) if feature.middleware else ():
            app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)
    app.add_middleware(AuditMiddleware)
    app.add_middleware(RequestContextMiddleware)
    for router in routers():
        app.include_router(router)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    install_docs(app, settings)
    return app
