"""What the management feature contributes to the app: logical databases,
collections and imports."""

from collections.abc import Mapping, Sequence

from starlette.middleware import Middleware

from app.settings import Settings
from app.wiring import Feature
from management.import_quota import IMPORT_PATH, ImportQuotaMiddleware
from management.lifecycle import lifecycle
from management.router import router


def body_limits(settings: Settings) -> Mapping[str, int]:
    return {IMPORT_PATH: settings.max_import_bytes}


def middleware(settings: Settings) -> Sequence[Middleware]:
    return [Middleware(ImportQuotaMiddleware, limit=settings.max_concurrent_imports_per_user)]


MANAGEMENT = Feature(
    name="management",
    routers=(router,),
    tags=({"name": "databases", "description": "Logical databases, collections, import."},),
    lifecycle=lifecycle,
    body_limits=body_limits,
    middleware=middleware,
)
