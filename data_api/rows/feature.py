"""What the rows feature contributes to the app: timeseries rows and columns."""

from collections.abc import Mapping

from app.settings import Settings
from app.wiring import Feature
from data_api.rows.lifecycle import lifecycle
from data_api.rows.router import BULK_INSERT_PATH, router


def body_limits(settings: Settings) -> Mapping[str, int]:
    """JSON bodies are limited by `QUARRY_MAX_BULK_BODY_BYTES` in the handler, and
    NDJSON loads are streamed: the middleware's limit is out of their way."""
    return {BULK_INSERT_PATH: 1 << 62}


ROWS = Feature(
    name="rows",
    routers=(router,),
    tags=({"name": "rows", "description": "Timeseries rows and columns of datasets."},),
    lifecycle=lifecycle,
    body_limits=body_limits,
)
