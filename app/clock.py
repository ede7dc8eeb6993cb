"""Time as Quarry stores it: timezone-aware UTC, truncated to milliseconds
(BSON dates hold milliseconds, so a value reads back exactly as it was written)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer, WithJsonSchema


def utc_now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso_z(moment: datetime) -> str:
    """`2023-10-27T10:00:00Z`, with milliseconds only when they are not zero."""
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond // 1000 else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime in milliseconds; a time without a zone is read as UTC."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


#: A datetime field that leaves the server as `iso_z` says (conventions.md); one
#: that comes in without a time zone is UTC, so it compares with stored times.
UtcDatetime = Annotated[
    datetime,
    AfterValidator(as_utc),
    PlainSerializer(iso_z, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "example": "2023-10-27T10:00:00Z"}),
]
