"""Time as Quarry stores it: timezone-aware UTC, truncated to milliseconds
(BSON dates hold milliseconds, so a value reads back exactly as it was written)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import PlainSerializer, WithJsonSchema


def utc_now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso_z(moment: datetime) -> str:
    """`2023-10-27T10:00:00Z`, with milliseconds only when they are not zero."""
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond // 1000 else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


#: A datetime field that leaves the server as `iso_z` says (conventions.md).
UtcDatetime = Annotated[
    datetime,
    PlainSerializer(iso_z, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "example": "2023-10-27T10:00:00Z"}),
]
