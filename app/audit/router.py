"""HTTP endpoints of the audit log (datasets.md, "Audit"): a cursor-paged listing
and an NDJSON export, both limited to what the caller may see — their own actions
and everything on datasets they own or administer, or all of it for a platform
admin (`app.audit.visibility_of`).

The listing is newest first; `pagination.next_cursor` is an opaque token for the
next (older) page, and a malformed one is a 400 `INVALID_AUDIT_CURSOR`. The export
is oldest first and streamed page by page, never held whole.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from app.audit.lifecycle import AuditDep
from app.audit.visibility import AuditFilter, visibility_of
from app.clock import UtcDatetime
from app.db import Document
from app.errors import ErrorCode, QuarryError
from app.http import CallerDep, error_responses
from app.kit import parse_object_id, to_plain

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class InvalidAuditCursor(QuarryError):
    status_code = 400
    error_code = ErrorCode.INVALID_AUDIT_CURSOR
    message = "The audit cursor is malformed; use `pagination.next_cursor` as given."


DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
EXPORT_PAGE = 500

_EXAMPLE_RECORD: dict[str, Any] = {
    "id": "665f1c2e9b1d8b1a2d3e4567",
    "seq": 1042,
    "at": "2026-05-04T09:30:12.345Z",
    "actor_user_id": "60c72b2f9b1d8b1a2d3e4567",
    "api_key_prefix": None,
    "action": "auth.create_api_key",
    "resource_type": "api_key",
    "resource_id": "665f1c2e9b1d8b1a2d3e4000",
    "dataset_id": None,
    "status": 201,
    "request_id": "b3f1c0de-5a8e-4f52-9d7c-0f6e1e2a9b11",
    "ip": "203.0.113.7",
    "user_agent": "curl/8.5.0",
    "details": {"method": "POST", "path": "/api/api_keys", "key_prefix": "Ab12Cd34"},
    "prev_hash": "9f2c...e1",
    "hash": "4b7a...0c",
}


class AuditRecordOut(BaseModel):
    """One audit record; `hash` covers everything but `id` and itself."""

    id: str
    seq: int
    at: UtcDatetime
    actor_user_id: str | None
    api_key_prefix: str | None = None
    action: str
    resource_type: str | None
    resource_id: str | None
    dataset_id: str | None = None
    status: int | None
    request_id: str | None
    ip: str | None
    user_agent: str | None
    details: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str

    model_config = {"json_schema_extra": {"example": _EXAMPLE_RECORD}}


class CursorPagination(BaseModel):
    next_cursor: str | None = Field(
        description="Pass as `after` for the next (older) page; null on the last page."
    )
    has_next: bool


class AuditPageAnswer(BaseModel):
    success: bool = True
    data: list[AuditRecordOut]
    pagination: CursorPagination

    model_config = {
        "json_schema_extra": {
            "example": {
                "success": True,
                "data": [_EXAMPLE_RECORD],
                "pagination": {"next_cursor": "eyJzZXEiOjEwNDJ9", "has_next": True},
            }
        }
    }


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"seq": seq}).encode()).decode().rstrip("=")


def decode_cursor(token: str) -> int:
    """Raises InvalidAuditCursor."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        seq = json.loads(raw)["seq"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise InvalidAuditCursor() from None
    # Positions are 64-bit: anything larger is no cursor this server made.
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq < 2**63:
        raise InvalidAuditCursor()
    return seq


def record_out(record: Document) -> AuditRecordOut:
    plain = to_plain({key: value for key, value in record.items() if key != "_id"})
    return AuditRecordOut(id=str(record["_id"]), **{**plain, "at": record["at"]})


def _aware(moment: datetime | None) -> datetime | None:
    """A time given without a zone is UTC (it is compared with stored UTC times)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def get_filters(
    since: Annotated[
        datetime | None, Query(description="Records at or after this time (ISO-8601).")
    ] = None,
    until: Annotated[datetime | None, Query(description="Records before this time.")] = None,
    action: Annotated[
        str | None, Query(max_length=200, examples=["auth.login"], description="Exact action.")
    ] = None,
    dataset_id: Annotated[str | None, Query(max_length=64)] = None,
    actor_user_id: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditFilter:
    return AuditFilter(
        since=_aware(since),
        until=_aware(until),
        action=action,
        dataset_id=parse_object_id(dataset_id, what="dataset id") if dataset_id else None,
        actor_user_id=(parse_object_id(actor_user_id, what="user id") if actor_user_id else None),
    )


FiltersDep = Annotated[AuditFilter, Depends(get_filters)]


@router.get(
    "",
    response_model=AuditPageAnswer,
    responses=error_responses(400, 401, 422),
)
async def list_audit_records(
    request: Request,
    caller: CallerDep,
    audit_log: AuditDep,
    filters: FiltersDep,
    after: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> AuditPageAnswer:
    """Audit records the caller may see, newest first, cursor-paged."""
    position = decode_cursor(after) if after is not None else None
    visible = await visibility_of(request.app, caller.user_id)
    records, more = await audit_log.page(
        filters=filters, visible=visible, after=position, limit=limit
    )
    next_cursor = encode_cursor(records[-1]["seq"]) if more and records else None
    return AuditPageAnswer(
        data=[record_out(record) for record in records],
        pagination=CursorPagination(next_cursor=next_cursor, has_next=next_cursor is not None),
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One audit record (as in the listing) per line, oldest first.",
            "content": {"application/x-ndjson": {"example": json.dumps(_EXAMPLE_RECORD)}},
        },
        **error_responses(401, 422),
    },
)
async def export_audit_records(
    request: Request, caller: CallerDep, audit_log: AuditDep, filters: FiltersDep
) -> StreamingResponse:
    """Stream every audit record the caller may see as NDJSON, oldest first."""
    visible = await visibility_of(request.app, caller.user_id)

    async def lines() -> AsyncIterator[bytes]:
        async for record in audit_log.iterate(
            filters=filters, visible=visible, page_size=EXPORT_PAGE
        ):
            yield record_out(record).model_dump_json().encode() + b"\n"

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="audit.ndjson"'},
    )
