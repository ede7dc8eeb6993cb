"""HTTP endpoints of entries (`spec/entries.md`): parse, call the service, shape
the answer. Downloads speak HTTP caching and ranges here: `ETag` is the SHA-256,
`If-None-Match` → 304, one `Range` → 206 (several ranges are answered whole,
as RFC 9110 allows), `If-Range` honoured."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from app.audit import READ_ONLY_KEY, annotate
from app.http import CallerDep, SettingsDep, error_responses
from app.kit import MalformedMultipart, Pagination, multipart_boundary, read_multipart
from app.wiring import request_state
from data_api.datasets.router import get_dataset_service
from data_api.entries.errors import RangeNotSatisfiable, UnsupportedMediaType
from data_api.entries.extraction import Extractor
from data_api.entries.repository import EntryStore
from data_api.entries.schemas import (
    UPLOAD_REQUEST_BODY,
    BatchAnswer,
    BatchContentAnswer,
    BatchContentRequest,
    BatchPagination,
    BatchRequest,
    EntryAnswer,
    EntryListAnswer,
    EntryOut,
    EntryText,
    UpdateEntryRequest,
    UploadAnswer,
)
from data_api.entries.service import ENTRY_SORTS, EntryService, Readable

router = APIRouter(prefix="/api/v1")
#: Uploads have their own request-size limit (`feature.py`).
UPLOAD_PATH = f"{router.prefix}/entries"


def get_entry_service(request: Request, settings: SettingsDep) -> EntryService:
    """Raises DatabaseUnavailable until the catalogue's indexes exist."""
    datasets = get_dataset_service(request, settings)
    catalogue = datasets.catalogue
    extractor = request_state(request).find(Extractor)
    return EntryService(
        store=EntryStore(catalogue),
        datasets=datasets,
        settings=settings,
        wake_extractor=extractor.wake if extractor is not None else None,
    )


ServiceDep = Annotated[EntryService, Depends(get_entry_service)]
READ = error_responses(401, 404, 422, 429)
CHANGE = error_responses(401, 403, 404, 422, 429)


@router.post(
    "/entries",
    tags=["entries"],
    status_code=201,
    response_model=UploadAnswer,
    response_model_exclude_none=True,
    responses=error_responses(400, 401, 403, 404, 408, 413, 415, 422, 429),
    openapi_extra={"requestBody": UPLOAD_REQUEST_BODY},
)
async def upload_entries(
    request: Request,
    caller: CallerDep,
    service: ServiceDep,
    dataset_id: Annotated[
        str | None, Query(description="The dataset, if not given as a form field.")
    ] = None,
) -> Any:
    """Upload one or more files (multipart) into a dataset: streamed, typed, hashed."""
    boundary = multipart_boundary(request.headers.get("content-type"))
    if boundary is None:
        raise UnsupportedMediaType()
    annotate(request, resource_type="entry", dataset_id=dataset_id)
    try:
        entries = await service.upload(
            user_id=caller.user_id,
            events=read_multipart(request, boundary),
            dataset_id=dataset_id,
        )
    except ClientDisconnect:
        raise MalformedMultipart("The client went away before the upload finished.") from None
    annotate(
        request,
        resource_id=entries[0]["id"] if len(entries) == 1 else None,
        dataset_id=entries[0]["dataset_id"],
        details={"entry_ids": [e["id"] for e in entries], "bytes": sum(e["size"] for e in entries)},
    )
    if len(entries) == 1:
        return UploadAnswer(data=EntryOut(**entries[0]))
    return UploadAnswer(entries=[EntryOut(**e) for e in entries])


@router.post(
    "/entries/batch",
    tags=["entries"],
    response_model=BatchAnswer,
    responses=READ,
    openapi_extra={READ_ONLY_KEY: True},
)
async def batch_entries(body: BatchRequest, caller: CallerDep, service: ServiceDep) -> BatchAnswer:
    """Many entries of a dataset in one call: by `ids` (in order), or a page."""
    data, total, missing = await service.batch(
        user_id=caller.user_id,
        dataset_id=body.dataset_id,
        ids=body.ids,
        limit=body.limit,
        offset=body.offset,
    )
    page_size = len(body.ids) if body.ids is not None else body.limit
    page = 1 + body.offset // max(1, page_size) if body.ids is None else 1
    base = Pagination.of(page=page, page_size=max(1, page_size), total_items=total)
    if body.ids is None:
        base.has_next = body.offset + len(data) < total
        base.has_previous = body.offset > 0
    return BatchAnswer(
        data=[EntryOut(**e) for e in data],
        pagination=BatchPagination(
            **base.model_dump(), limit=body.limit, offset=body.offset if body.ids is None else 0
        ),
        missing_ids=missing,
    )


@router.post(
    "/entries/batch/content",
    tags=["entries"],
    response_model=BatchContentAnswer,
    responses=error_responses(401, 422, 429),
    openapi_extra={READ_ONLY_KEY: True},
)
async def batch_content(
    body: BatchContentRequest, caller: CallerDep, service: ServiceDep
) -> BatchContentAnswer:
    """The extracted text of many entries, each cut at `max_chars`."""
    data, missing = await service.batch_content(
        user_id=caller.user_id, ids=body.ids, max_chars=body.max_chars
    )
    return BatchContentAnswer(data=[EntryText(**d) for d in data], missing_ids=missing)


@router.get("/entries/{entry_id}", tags=["entries"], response_model=EntryAnswer, responses=READ)
async def get_entry(entry_id: str, caller: CallerDep, service: ServiceDep) -> EntryAnswer:
    """An entry's record (not its text)."""
    return EntryAnswer(
        data=EntryOut(**await service.get(user_id=caller.user_id, entry_id=entry_id))
    )


@router.patch("/entries/{entry_id}", tags=["entries"], response_model=EntryAnswer, responses=CHANGE)
async def update_entry(
    request: Request,
    entry_id: str,
    body: UpdateEntryRequest,
    caller: CallerDep,
    service: ServiceDep,
) -> EntryAnswer:
    """Rename an entry or merge into its metadata (`write` on its home dataset)."""
    annotate(request, resource_type="entry", resource_id=entry_id)
    data = await service.update(
        user_id=caller.user_id, entry_id=entry_id, name=body.name, metadata=body.metadata
    )
    annotate(request, dataset_id=data["dataset_id"])
    return EntryAnswer(data=EntryOut(**data))


@router.delete(
    "/entries/{entry_id}",
    tags=["entries"],
    status_code=204,
    response_class=Response,
    responses=CHANGE,
)
async def delete_entry(
    request: Request, entry_id: str, caller: CallerDep, service: ServiceDep
) -> Response:
    """Delete an entry: bytes, text, search postings and every link to it."""
    annotate(request, resource_type="entry", resource_id=entry_id)
    await service.delete(user_id=caller.user_id, entry_id=entry_id)
    return Response(status_code=204)


@router.get(
    "/entries/{entry_id}/text",
    tags=["entries"],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **error_responses(401, 404, 409, 422, 429),
    },
)
async def entry_text(entry_id: str, caller: CallerDep, service: ServiceDep) -> Response:
    """The extracted text (409 while pending; empty when unsupported or failed)."""
    text, status = await service.text(user_id=caller.user_id, entry_id=entry_id)
    return Response(
        content=text.encode("utf-8"),
        media_type="text/plain; charset=utf-8",
        headers={"X-Text-Status": status},
    )


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single range asked for, clipped to the file, as (first, last); None for the
    whole file (no header, several ranges, or a unit we do not serve). Raises
    RangeNotSatisfiable."""
    if not header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - length), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignored (RFC 9110 14.1.1)
    if start >= size:
        raise RangeNotSatisfiable(size)
    end = int(last) if last else size - 1
    return start, min(end, size - 1)


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def content_disposition(filename: str) -> str:
    """RFC 6266: an ASCII fallback `filename` and the exact name in `filename*`."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _download_headers(found: Readable, etag: str) -> dict[str, str]:
    entry = found.entry
    return {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(entry.get("filename", entry["name"])),
        "Cache-Control": "private, no-cache",
        # A served file never runs as a page of this origin.
        "Content-Security-Policy": "sandbox",
    }


@router.get(
    "/entries/{entry_id}/download",
    tags=["entries"],
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        },
        206: {"description": "The requested range (`Content-Range`)."},
        304: {"description": "`If-None-Match` matched the entry's ETag."},
        **error_responses(401, 404, 416, 422, 429),
    },
)
async def download_entry(
    request: Request, entry_id: str, caller: CallerDep, service: ServiceDep
) -> Response:
    """The file's bytes, streamed; `Range` and `If-None-Match` honoured."""
    found = await service.for_download(user_id=caller.user_id, entry_id=entry_id)
    entry = found.entry
    size = entry["size"]
    etag = f'"{entry["sha256"]}"'
    headers = _download_headers(found, etag)
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    span = byte_range(request.headers.get("range"), size)
    if_range = request.headers.get("if-range")
    if span is not None and if_range and if_range.strip() != etag:
        span = None  # the client's copy is stale: send the whole file
    status = 200
    start, end = 0, size - 1
    if span is not None:
        start, end = span
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1 if size else 0)
    # Set as stored: Starlette would add "charset=utf-8" to a text/* media type,
    # a claim about the bytes nobody checked.
    headers["Content-Type"] = entry["content_type"]
    return StreamingResponse(
        service.read_bytes(found, start, end), status_code=status, headers=headers
    )


@router.get(
    "/datasets/{dataset_id}/entries",
    tags=["entries"],
    response_model=EntryListAnswer,
    responses=READ,
)
async def dataset_entries(
    dataset_id: str,
    caller: CallerDep,
    service: ServiceDep,
    sort: Annotated[Literal["created_at", "name", "size"], Query()] = "created_at",
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> EntryListAnswer:
    """The entries whose home is this dataset, sorted and paged."""
    assert sort in ENTRY_SORTS
    data, total = await service.list_homed(
        user_id=caller.user_id,
        dataset_id=dataset_id,
        sort=sort,
        descending=order == "desc",
        offset=(page - 1) * page_size,
        limit=page_size,
    )
    return EntryListAnswer(
        data=[EntryOut(**e) for e in data],
        pagination=Pagination.of(page=page, page_size=page_size, total_items=total),
    )
