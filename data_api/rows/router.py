"""HTTP endpoints of rows and columns (`spec/rows.md`): parse, call the service,
shape the answer. Reads and downloads are written as bytes (orjson and the
stored row bytes), not through response models; the models in `schemas.py`
document the same shapes."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from app.audit import annotate
from app.errors import ErrorCode, PayloadTooLarge, QuarryError
from app.http import CallerDep, SettingsDep, error_responses
from app.wiring import request_state
from data_api.datasets.access import Level
from data_api.datasets.router import get_dataset_service
from data_api.entries.router import content_disposition
from data_api.rows.codec import format_timestamp
from data_api.rows.errors import RowValidationError, TooManyRows
from data_api.rows.schemas import (
    BULK_INSERT_BODY,
    ROW_EXAMPLE,
    AggregateAnswer,
    BulkInsertAnswer,
    ColumnAnswer,
    ColumnIn,
    ColumnListAnswer,
    ColumnOut,
    DeleteRowsAnswer,
    DeleteRowsIn,
    RowAnswer,
    RowInsertIn,
    RowsAnswer,
)
from data_api.rows.service import (
    AGGREGATES,
    MAX_AGG_COLUMNS,
    MAX_ROW_BYTES,
    RowRequestError,
    RowService,
    bucket_width,
    timestamp_param,
)
from data_api.rows.store import RowStore
from data_api.rows.stream import FROM_START, RowHub, StreamSlots, new_holder, sse

router = APIRouter(prefix="/api/v1")
#: Bulk inserts limit their own bodies (`feature.py`).
BULK_INSERT_PATH = f"{router.prefix}/rows/bulk_insert"

READ = error_responses(401, 404, 422, 429)
CHANGE = error_responses(401, 403, 404, 422, 429)
DatasetParam = Annotated[str, Query(description="The dataset's id.")]
StartParam = Annotated[str | None, Query(description="Inclusive; ISO-8601 or epoch milliseconds.")]
EndParam = Annotated[str | None, Query(description="Exclusive; ISO-8601 or epoch milliseconds.")]


class MalformedBody(QuarryError):
    status_code = 400
    error_code = ErrorCode.BAD_REQUEST


class MalformedJson(QuarryError):
    status_code = 400
    error_code = ErrorCode.MALFORMED_JSON


def get_row_service(request: Request, settings: SettingsDep) -> RowService:
    """Raises DatabaseUnavailable until the catalogue's indexes exist."""
    datasets = get_dataset_service(request, settings)
    store = request_state(request).get(RowStore)
    return RowService(store=store, datasets=datasets, settings=settings)


ServiceDep = Annotated[RowService, Depends(get_row_service)]


def _column_out(column: dict[str, Any]) -> ColumnOut:
    return ColumnOut(
        id=str(column["_id"]),
        dataset=str(column["dataset_id"]),
        name=column["name"],
        dtype=column["dtype"],
        created_at=column["created_at"],
    )


def _json(body: dict[str, Any] | bytes, status_code: int = 200) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status_code=status_code, media_type="application/json")


# ---------------------------------------------------------------- columns


@router.get("/columns", tags=["rows"], response_model=ColumnListAnswer, responses=READ)
async def list_columns(
    dataset: DatasetParam, caller: CallerDep, service: ServiceDep
) -> ColumnListAnswer:
    """A dataset's declared columns, in the order they were declared."""
    columns = await service.columns(user_id=caller.user_id, dataset=dataset)
    return ColumnListAnswer(data=[_column_out(c) for c in columns])


@router.post(
    "/columns",
    tags=["rows"],
    status_code=201,
    response_model=ColumnAnswer,
    responses=error_responses(401, 403, 404, 409, 422, 429),
)
async def create_column(
    body: ColumnIn, request: Request, caller: CallerDep, service: ServiceDep
) -> ColumnAnswer:
    """Declare a column: its type is enforced on every later write of that key."""
    annotate(request, resource_type="column", dataset_id=body.dataset)
    column = await service.create_column(
        user_id=caller.user_id, dataset=body.dataset, name=body.name, dtype=body.dtype
    )
    annotate(request, resource_id=column["_id"], details={"name": body.name, "dtype": body.dtype})
    return ColumnAnswer(data=_column_out(column))


@router.delete(
    "/columns/{column_id}",
    tags=["rows"],
    status_code=204,
    responses=error_responses(401, 403, 404, 422, 429),
)
async def delete_column(
    column_id: str, request: Request, caller: CallerDep, service: ServiceDep
) -> Response:
    """Remove a column declaration; the values already stored stay."""
    annotate(request, resource_type="column", resource_id=column_id)
    column = await service.delete_column(user_id=caller.user_id, column_id=column_id)
    annotate(request, dataset_id=column["dataset_id"], details={"name": column["name"]})
    return Response(status_code=204)


# ---------------------------------------------------------------- writing


@router.post(
    "/rows",
    tags=["rows"],
    status_code=201,
    response_model=RowAnswer,
    responses=error_responses(401, 403, 404, 409, 422, 429),
)
async def insert_row(
    body: RowInsertIn, request: Request, caller: CallerDep, service: ServiceDep
) -> Response:
    """Insert one row; a row at that timestamp already → 409 `ROW_EXISTS`."""
    annotate(request, resource_type="rows", dataset_id=body.dataset)
    row = {"timestamp": body.timestamp, "values": body.values}
    dataset_id, _counts, prepared = await service.insert(
        user_id=caller.user_id, dataset=body.dataset, rows=[row], on_conflict="error", single=True
    )
    annotate(request, details={"inserted": 1})
    data = (
        b'{"success":true,"data":{"dataset":"'
        + str(dataset_id).encode()
        + b'","timestamp":"'
        + format_timestamp(prepared.times[0]).encode()
        + b'","values":'
        + prepared.lines[0]
        + b"}}"
    )
    return _json(data, 201)


#: Longest NDJSON line: one row's values at most, every byte of them written as a
#: JSON escape (`\u00e9`), and room for its timestamp.
MAX_LINE_BYTES = 6 * MAX_ROW_BYTES + 64 * 1024


async def _lines(request: Request) -> AsyncIterator[bytes]:
    """The body's lines as they arrive (NDJSON), any line ending; a line longer than
    any row can be is refused before it is held whole."""
    pending: list[bytes] = []
    held = 0
    number = 0

    def too_long() -> RowValidationError:
        where = number + 1
        return RowValidationError(
            f"Line {where} is longer than {MAX_LINE_BYTES} bytes; nothing was written.",
            details=[{"loc": ["line", where], "msg": "line too long", "type": "value_error"}],
        )

    async for chunk in request.stream():
        if b"\n" not in chunk:
            pending.append(chunk)
            held += len(chunk)
            if held > MAX_LINE_BYTES:
                raise too_long()
            continue
        parts = chunk.split(b"\n")
        parts[0] = b"".join([*pending, parts[0]])
        for line in parts[:-1]:
            if len(line) > MAX_LINE_BYTES:
                raise too_long()
            number += 1
            yield line
        tail = parts[-1]
        pending, held = ([tail], len(tail)) if tail else ([], 0)
    if pending:
        yield b"".join(pending)


async def _json_body(request: Request, limit: int) -> Any:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"A JSON bulk_insert body is at most {limit} bytes (QUARRY_MAX_BULK_BODY_BYTES); "
                "send application/x-ndjson to load more."
            )
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"Malformed JSON body at byte {exc.pos}: {exc.msg}.") from None


@router.post(
    "/rows/bulk_insert",
    tags=["rows"],
    response_model=BulkInsertAnswer,
    responses=error_responses(400, 401, 403, 404, 409, 413, 415, 422, 429),
    openapi_extra={"requestBody": BULK_INSERT_BODY},
)
async def bulk_insert(
    request: Request,
    caller: CallerDep,
    service: ServiceDep,
    settings: SettingsDep,
    dataset: Annotated[str | None, Query(description="The dataset (NDJSON bodies).")] = None,
    on_conflict: Annotated[
        Literal["error", "skip", "replace"], Query(description="NDJSON bodies: see the JSON form.")
    ] = "error",
) -> Response:
    """Insert many rows, all or nothing: JSON (up to 100,000 rows) or streamed NDJSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type in ("application/x-ndjson", "application/ndjson", "application/jsonl"):
            if dataset is None:
                raise RowRequestError(["query", "dataset"], "dataset is required (query)")
            annotate(request, resource_type="rows", dataset_id=dataset)
            dataset_id, counts = await service.insert_stream(
                user_id=caller.user_id,
                dataset=dataset,
                lines=_lines(request),
                on_conflict=on_conflict,
            )
        elif content_type in ("application/json", ""):
            body = await _json_body(request, settings.max_bulk_body_bytes)
            if not isinstance(body, dict):
                raise RowRequestError(
                    ["body"], "the body is an object {dataset, rows, on_conflict}"
                )
            extra = set(body) - {"dataset", "rows", "on_conflict"}
            if extra:
                raise RowRequestError(["body", sorted(extra)[0]], "unknown field")
            if not isinstance(body.get("dataset"), str):
                raise RowRequestError(["body", "dataset"], "dataset is a dataset id (string)")
            rows = body.get("rows")
            if not isinstance(rows, list):
                raise RowRequestError(["body", "rows"], "rows is a list of {timestamp, values}")
            if len(rows) > settings.max_bulk_rows:
                raise TooManyRows(settings.max_bulk_rows)
            mode = body.get("on_conflict", "error")
            if mode not in ("error", "skip", "replace"):
                raise RowRequestError(
                    ["body", "on_conflict"], "on_conflict is error, skip or replace"
                )
            annotate(request, resource_type="rows", dataset_id=body["dataset"])
            dataset_id, counts, _prepared = await service.insert(
                user_id=caller.user_id, dataset=body["dataset"], rows=rows, on_conflict=mode
            )
        else:
            raise UnsupportedRowsMedia()
    except ClientDisconnect:
        raise MalformedBody("The client went away before the body was complete.") from None
    annotate(request, dataset_id=dataset_id, details=counts)
    return _json({"success": True, **counts})


class UnsupportedRowsMedia(QuarryError):
    status_code = 415
    error_code = ErrorCode.UNSUPPORTED_MEDIA_TYPE
    message = "Send rows as application/json or application/x-ndjson."


@router.delete("/rows", tags=["rows"], response_model=DeleteRowsAnswer, responses=CHANGE)
async def delete_rows(
    body: DeleteRowsIn, request: Request, caller: CallerDep, service: ServiceDep
) -> DeleteRowsAnswer:
    """Delete the rows in `[start, end)`; every row needs `"all": true`."""
    start = timestamp_param(None if body.start is None else str(body.start), "start")
    end = timestamp_param(None if body.end is None else str(body.end), "end")
    if start is None and end is None and not body.all:
        raise RowRequestError(["body", "all"], 'give start and/or end, or "all": true')
    if body.all and (start is not None or end is not None):
        raise RowRequestError(["body", "all"], '"all": true takes no start or end')
    annotate(request, resource_type="rows", dataset_id=body.dataset)
    dataset_id, deleted = await service.delete(
        user_id=caller.user_id, dataset=body.dataset, start=start, end=end
    )
    annotate(request, dataset_id=dataset_id, details={"deleted": deleted})
    return DeleteRowsAnswer(deleted=deleted)


# ---------------------------------------------------------------- reading


@router.get(
    "/rows",
    tags=["rows"],
    response_model=RowsAnswer,
    responses=error_responses(400, 401, 404, 422, 429),
)
async def read_rows(
    request: Request,
    dataset: DatasetParam,
    caller: CallerDep,
    service: ServiceDep,
    start: StartParam = None,
    end: EndParam = None,
    ordering: Literal["timestamp", "-timestamp"] = "timestamp",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 250,
    offset: Annotated[int, Query(ge=0)] = 0,
    after: Annotated[str | None, Query(description="`pagination.next_cursor`.")] = None,
) -> Response:
    """Rows in `[start, end)`, by offset (`count/next/previous`) or by cursor."""
    lo, hi = timestamp_param(start, "start"), timestamp_param(end, "end")
    if after is not None and offset:
        raise RowRequestError(["query", "after"], "give offset or after, not both")
    access = await service.access(caller.user_id, dataset, Level.read)
    page = await service.page(
        access=access,
        start=lo,
        end=hi,
        descending=ordering == "-timestamp",
        limit=limit,
        offset=offset,
        after=after,
    )
    url = request.url.remove_query_params(["offset", "after"])
    if after is None:
        next_url = (
            str(url.include_query_params(offset=offset + limit))
            if offset + limit < page.count and page.has_more
            else None
        )
        previous = str(url.include_query_params(offset=max(0, offset - limit))) if offset else None
    else:
        next_url = (
            str(url.include_query_params(after=page.next_cursor)) if page.next_cursor else None
        )
        previous = None
    pagination = {
        "count": page.count,
        "next": next_url,
        "previous": previous,
        "next_cursor": page.next_cursor,
        "limit": limit,
        "offset": offset,
    }
    body = (
        b'{"success":true,"data":['
        + b",".join(page.rows)
        + b'],"pagination":'
        + orjson.dumps(pagination)
        + b"}"
    )
    return _json(body)


def _gzip(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async def compressed() -> AsyncIterator[bytes]:
        packer = zlib.compressobj(1, zlib.DEFLATED, 31)
        async for chunk in chunks:
            out = packer.compress(chunk)
            if out:
                yield out
        yield packer.flush()

    return compressed()


def _accepts_gzip(accept_encoding: str | None) -> bool:
    for part in (accept_encoding or "").lower().split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() in ("gzip", "x-gzip", "*") and params.replace(" ", "") != "q=0":
            return True
    return False


MEDIA = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
}


@router.get(
    "/rows/bulk_download",
    tags=["rows"],
    response_class=StreamingResponse,
    responses={
        **READ,
        200: {
            "description": "The rows, streamed (gzip when accepted).",
            "content": {
                "application/json": {"example": [ROW_EXAMPLE]},
                "text/csv": {
                    "example": "timestamp,open,close\n2025-12-16T10:00:00Z,104500,104600\n"
                },
                "application/x-ndjson": {"example": orjson.dumps(ROW_EXAMPLE).decode() + "\n"},
            },
        },
    },
)
async def bulk_download(
    dataset: DatasetParam,
    caller: CallerDep,
    service: ServiceDep,
    output: Literal["json", "csv", "ndjson"] = "json",
    start: StartParam = None,
    end: EndParam = None,
    accept_encoding: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Every row in `[start, end)` as JSON, CSV or NDJSON, streamed."""
    lo, hi = timestamp_param(start, "start"), timestamp_param(end, "end")
    access = await service.access(caller.user_id, dataset, Level.read)
    plan = await service.download_plan(access, output)
    body = service.download(access, output=output, start=lo, end=hi, plan=plan)
    headers = {
        "Content-Disposition": content_disposition(f"{access.dataset['name']}.{output}"),
        "Cache-Control": "no-store",
        "Vary": "Accept-Encoding",
    }
    if _accepts_gzip(accept_encoding):
        body = _gzip(body)
        headers["Content-Encoding"] = "gzip"
    return StreamingResponse(body, media_type=MEDIA[output], headers=headers)


@router.get(
    "/rows/live",
    tags=["rows"],
    response_class=StreamingResponse,
    responses={
        **READ,
        200: {"description": "NDJSON, oldest first.", "content": {"application/x-ndjson": {}}},
    },
)
async def live_rows(
    dataset: DatasetParam,
    caller: CallerDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> StreamingResponse:
    """The most recent rows as NDJSON, oldest first, values flattened (seed 002)."""
    access = await service.access(caller.user_id, dataset, Level.read)
    start = await service.live_start(access, limit)
    return StreamingResponse(
        service.live(access, start, limit),
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-store"},
    )


@router.get(
    "/rows/stream",
    tags=["rows"],
    response_class=StreamingResponse,
    responses={
        **error_responses(401, 404, 422, 429),
        200: {"description": "Server-Sent Events.", "content": {"text/event-stream": {}}},
    },
)
async def stream_rows(
    request: Request,
    dataset: DatasetParam,
    caller: CallerDep,
    service: ServiceDep,
    settings: SettingsDep,
    poll_interval: Annotated[int, Query(ge=1, le=60)] = 2,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """New rows as Server-Sent Events: connected, data, heartbeat, error."""
    from_start = last_event_id == FROM_START
    position = (
        timestamp_param(last_event_id, "Last-Event-ID")
        if last_event_id and not from_start
        else None
    )
    access = await service.access(caller.user_id, dataset, Level.read)
    if position is None and not from_start:
        position = (await service.summary(access)).last
    hub = request_state(request).get(RowHub)
    slots = StreamSlots(service.catalogue, settings.max_streams_per_user, float(poll_interval))
    holder = new_holder()
    slot = await slots.take(caller.user_id, holder)
    return StreamingResponse(
        sse(
            service=service,
            hub=hub,
            slots=slots,
            slot=slot,
            holder=holder,
            access=access,
            user_id=caller.user_id,
            position=position,
            poll_interval=float(poll_interval),
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/rows/aggregate",
    tags=["rows"],
    response_model=AggregateAnswer,
    responses=READ,
)
async def aggregate_rows(
    dataset: DatasetParam,
    caller: CallerDep,
    service: ServiceDep,
    bucket: Annotated[str, Query(description="30s, 1m, 5m, 1h, 1d, … (UTC-aligned)")] = "1h",
    agg: Annotated[str, Query(description=", ".join(AGGREGATES))] = "avg",
    columns: Annotated[
        str | None, Query(description="Comma-separated keys (default: every key).")
    ] = None,
    start: StartParam = None,
    end: EndParam = None,
) -> StreamingResponse:
    """One row per time bucket: `count` and `agg` of each column (time_bucket)."""
    lo, hi = timestamp_param(start, "start"), timestamp_param(end, "end")
    width = bucket_width(bucket)
    if agg not in AGGREGATES:
        raise RowRequestError(["query", "agg"], f"agg is one of {', '.join(AGGREGATES)}")
    access = await service.access(caller.user_id, dataset, Level.read)
    if columns:
        names = list(dict.fromkeys(c.strip() for c in columns.split(",") if c.strip()))
    else:
        names = (await service.summary(access)).keys
    if len(names) > MAX_AGG_COLUMNS:
        raise RowRequestError(["query", "columns"], f"at most {MAX_AGG_COLUMNS} columns")
    head = orjson.dumps({"success": True, "bucket": bucket, "agg": agg, "columns": names})

    async def body() -> AsyncIterator[bytes]:
        yield head[:-1] + b',"data":['
        async for chunk in service.aggregate(
            access, start=lo, end=hi, width=width, agg=agg, columns=names
        ):
            yield chunk
        yield b"]}"

    return StreamingResponse(body(), media_type="application/json")
