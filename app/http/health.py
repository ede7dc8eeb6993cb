"""Health endpoints: `GET /health` and `GET /api/v1/health` (no credentials).

200 when the database answers `ping`, 503 (with `Retry-After`) when it does not;
the body names the engine so that operators see at a glance what they run on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app import __version__
from app.http.deps import DatabaseDep, SettingsDep

router = APIRouter(tags=["health"])


class HealthReport(BaseModel):
    status: Literal["healthy", "unhealthy"]
    time: str
    database: Literal["connected", "unreachable"]
    engine: str
    version: str

    model_config = {
        "json_schema_extra": {
            "example": {
                "status": "healthy",
                "time": "2026-11-24T10:00:00.000Z",
                "database": "connected",
                "engine": "ferretdb-postgresql",
                "version": "0.1.0",
            }
        }
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def health(database: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    """Report whether the API and its database are up."""
    connected = await database.ping()
    if connected:
        engine = await database.engine_name()
    else:
        engine = database.engine_hint or "unknown"
    report = HealthReport(
        status="healthy" if connected else "unhealthy",
        time=_now(),
        database="connected" if connected else "unreachable",
        engine=engine,
        version=__version__,
    )
    headers = {} if connected else {"Retry-After": str(settings.retry_after_seconds)}
    return JSONResponse(report.model_dump(), status_code=200 if connected else 503, headers=headers)


_responses: dict[int | str, dict[str, object]] = {
    200: {"model": HealthReport, "description": "The API and its database are up."},
    503: {"model": HealthReport, "description": "The database is unreachable."},
}
router.add_api_route(
    "/health",
    health,
    methods=["GET"],
    summary="Health check",
    responses=_responses,
    response_model=HealthReport,
)
router.add_api_route(
    "/api/v1/health",
    health,
    methods=["GET"],
    summary="Health check (versioned path)",
    responses=_responses,
    response_model=HealthReport,
)
