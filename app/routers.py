"""The routers the app serves and their OpenAPI tags: the core's health check
first and audit log last, the features' in between (`app.features`)."""

from fastapi import APIRouter

from app.audit.router import router as audit_router
from app.features import FEATURES
from app.http.health import router as health_router
from app.settings import Settings

HEALTH_TAG = {"name": "health", "description": "Liveness of the API and its database."}
AUDIT_TAG = {"name": "audit", "description": "The tamper-evident audit log."}


def routers() -> list[APIRouter]:
    return [health_router, *(r for feature in FEATURES for r in feature.routers), audit_router]


def openapi_tags() -> list[dict[str, str]]:
    tags = [dict(tag) for feature in FEATURES for tag in feature.tags]
    return [HEALTH_TAG, *tags, AUDIT_TAG]


def body_limits(settings: Settings) -> dict[str, int]:
    """Paths whose request bodies have a limit of their own."""
    limits: dict[str, int] = {}
    for feature in FEATURES:
        if feature.body_limits is not None:
            limits.update(feature.body_limits(settings))
    return limits
