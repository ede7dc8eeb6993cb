"""What the entries feature contributes to the app: files in datasets."""

from collections.abc import Mapping

from app.settings import Settings
from app.wiring import Feature
from data_api.entries.lifecycle import lifecycle
from data_api.entries.router import UPLOAD_PATH, router


def body_limits(settings: Settings) -> Mapping[str, int]:
    """An upload's files are limited one by one as they arrive; the request as a
    whole by its own limit, never below one largest file."""
    return {UPLOAD_PATH: max(settings.max_upload_bytes, settings.max_entry_bytes + (1 << 20))}


ENTRIES = Feature(
    name="entries",
    routers=(router,),
    tags=({"name": "entries", "description": "Files in datasets: upload, download, text."},),
    lifecycle=lifecycle,
    body_limits=body_limits,
)
