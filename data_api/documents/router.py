"""HTTP endpoints of document CRUD (crud.md): `/api/crud` and its four verbs, one
document by id, count, aggregate and bulk. Thin: parse, call the service, shape
the answer. API key or Bearer token, scoped to the caller's own databases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.exceptions import RequestValidationError

from app.audit import annotate_current
from app.http import Caller, CallerDep, DatabaseDep, SettingsDep, error_responses
from app.kit import to_plain
from app.schema import parse_filter_json
from app.wiring import request_state
from auth.tokens import resolve_secret_key
from data_api.documents.query import CursorCodec
from data_api.documents.schemas import (
    AggregateAnswer,
    AggregateRequest,
    BulkAnswer,
    BulkRequest,
    CountAnswer,
    CountRequest,
    DeleteAnswer,
    DeleteRequest,
    DocumentAnswer,
    DocumentPagination,
    FindAnswer,
    InsertAnswer,
    InsertRequest,
    UpdateAnswer,
    UpdateRequest,
)
from data_api.documents.service import Collection, DocumentService
from management.service import ManagementService

router = APIRouter(tags=["documents"])


def _cursor_codec(request: Request) -> CursorCodec:
    state = request_state(request)
    codec = state.find(CursorCodec)
    if codec is None:
        codec = state.provide(CursorCodec.from_secret(resolve_secret_key(state.settings)))
    return codec


def get_document_service(
    request: Request, database: DatabaseDep, settings: SettingsDep
) -> DocumentService:
    return DocumentService(
        database=database,
        settings=settings,
        management=ManagementService(database=database, settings=settings),
        cursors=_cursor_codec(request),
    )


ServiceDep = Annotated[DocumentService, Depends(get_document_service)]
DatabaseIdQuery = Annotated[
    str, Query(min_length=1, max_length=64, examples=["60c72b2f9b1d8b1a2d3e4567"])
]
CollectionQuery = Annotated[str, Query(min_length=1, max_length=200, examples=["users"])]
FieldsQuery = Annotated[
    str | None,
    Query(
        max_length=65536,
        description='Projection: JSON `{"email": 1}` / `{"notes": 0}` or a comma list.',
    ),
]
READ_ERRORS = error_responses(400, 401, 404, 422)
WRITE_ERRORS = error_responses(400, 401, 404, 409, 413, 422, 501)


async def _open(
    service: DocumentService, caller: Caller, database_id: str, collection_name: str
) -> Collection:
    annotate_current(
        resource_type="database", resource_id=database_id, details={"collection": collection_name}
    )
    return await service.open(
        caller=caller, database_id=database_id, collection_name=collection_name
    )


@router.post("/api/crud", status_code=201, response_model=InsertAnswer, responses=WRITE_ERRORS)
async def insert_documents(
    body: InsertRequest, caller: CallerDep, service: ServiceDep
) -> InsertAnswer:
    """Insert one document or a batch (all or nothing)."""
    collection = await _open(service, caller, body.database_id, body.collection_name)
    ids = await service.insert(collection=collection, data=body.data)
    return InsertAnswer(inserted_ids=to_plain(ids), inserted_count=len(ids))


@router.get("/api/crud", response_model=FindAnswer, responses=READ_ERRORS)
async def find_documents(
    caller: CallerDep,
    service: ServiceDep,
    database_id: DatabaseIdQuery,
    collection_name: CollectionQuery,
    fields: FieldsQuery = None,
    filters: Annotated[
        str | None, Query(description='JSON filter, e.g. {"email": "alice@example.com"}.')
    ] = None,
    sort: Annotated[
        str | None, Query(max_length=4096, description='JSON, e.g. {"signup_date": -1}.')
    ] = None,
    page: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 20,
    after: Annotated[
        str | None, Query(max_length=65536, description="`next_cursor` of the previous page.")
    ] = None,
    count: Annotated[bool, Query(description="Also count the matches in cursor mode.")] = False,
) -> FindAnswer:
    """Find documents: filter, sort, projection, offset or cursor pagination."""
    collection = await _open(service, caller, database_id, collection_name)
    result = await service.find(
        collection=collection,
        filters=parse_filter_json(filters),
        sort=sort,
        fields=fields,
        page=page,
        page_size=page_size,
        after=after,
        count=count,
    )
    # Built without validation: `to_plain` made the documents JSON values with
    # string keys already, and checking a page of 1,000 again copies every one.
    return FindAnswer.model_construct(
        data=to_plain(result.documents),
        pagination=DocumentPagination(**result.pagination),
    )


@router.get("/api/crud/{document_id}", response_model=DocumentAnswer, responses=READ_ERRORS)
async def get_document(
    document_id: str,
    caller: CallerDep,
    service: ServiceDep,
    database_id: DatabaseIdQuery,
    collection_name: CollectionQuery,
    fields: FieldsQuery = None,
) -> DocumentAnswer:
    """Read one document by its `_id`."""
    collection = await _open(service, caller, database_id, collection_name)
    document = await service.get(collection=collection, document_id=document_id, fields=fields)
    return DocumentAnswer(data=to_plain(document))


@router.put("/api/crud", response_model=UpdateAnswer, responses=WRITE_ERRORS)
@router.patch(
    "/api/crud",
    response_model=UpdateAnswer,
    responses=WRITE_ERRORS,
    operation_id="patch_documents",
)
async def update_documents(
    body: UpdateRequest, caller: CallerDep, service: ServiceDep
) -> UpdateAnswer:
    """Update the documents matching a filter (plain object = `$set`)."""
    collection = await _open(service, caller, body.database_id, body.collection_name)
    result = await service.update(
        collection=collection,
        filters=body.filters,
        update_data=body.update_data,
        upsert=body.upsert,
        multi=body.multi,
        all_documents=body.all,
    )
    return UpdateAnswer(
        matched_count=result.matched_count,
        modified_count=result.modified_count,
        upserted_id=to_plain(result.upserted_id),
    )


@router.delete("/api/crud", response_model=DeleteAnswer, responses=WRITE_ERRORS)
async def delete_documents(
    caller: CallerDep,
    service: ServiceDep,
    body: Annotated[DeleteRequest | None, Body()] = None,
    database_id: Annotated[str | None, Query(max_length=64)] = None,
    collection_name: Annotated[str | None, Query(max_length=200)] = None,
    filters: Annotated[str | None, Query(description="JSON filter (without a body).")] = None,
    multi: Annotated[bool, Query()] = True,
    all_documents: Annotated[
        bool, Query(alias="all", description="Required to delete without a filter.")
    ] = False,
) -> DeleteAnswer:
    """Delete the documents matching a filter (body, or query parameters)."""
    if body is None:
        body = _delete_from_query(database_id, collection_name, filters, multi, all_documents)
    collection = await _open(service, caller, body.database_id, body.collection_name)
    deleted = await service.delete(
        collection=collection, filters=body.filters, multi=body.multi, all_documents=body.all
    )
    return DeleteAnswer(deleted_count=deleted)


def _delete_from_query(
    database_id: str | None,
    collection_name: str | None,
    filters: str | None,
    multi: bool,
    all_documents: bool,
) -> DeleteRequest:
    missing = [
        {"loc": ["query", name], "msg": "Field required", "type": "missing"}
        for name, value in (("database_id", database_id), ("collection_name", collection_name))
        if not value
    ]
    if missing:
        raise RequestValidationError(missing)
    return DeleteRequest(
        database_id=database_id or "",
        collection_name=collection_name or "",
        filters=parse_filter_json(filters),
        multi=multi,
        all=all_documents,
    )


@router.post("/api/crud/count", response_model=CountAnswer, responses=READ_ERRORS)
async def count_documents(
    body: CountRequest, caller: CallerDep, service: ServiceDep
) -> CountAnswer:
    """Count the documents matching a filter."""
    collection = await _open(service, caller, body.database_id, body.collection_name)
    return CountAnswer(count=await service.count(collection=collection, filters=body.filters or {}))


@router.post(
    "/api/crud/aggregate",
    response_model=AggregateAnswer,
    responses=error_responses(400, 401, 404, 422, 501),
)
async def aggregate_documents(
    body: AggregateRequest, caller: CallerDep, service: ServiceDep
) -> AggregateAnswer:
    """Run an aggregation pipeline (stage allow-list, at most 10,000 results)."""
    collection = await _open(service, caller, body.database_id, body.collection_name)
    documents = await service.aggregate(collection=collection, pipeline=body.pipeline)
    return AggregateAnswer(data=to_plain(documents))


@router.post("/api/crud/bulk", response_model=BulkAnswer, responses=WRITE_ERRORS)
async def bulk_write(body: BulkRequest, caller: CallerDep, service: ServiceDep) -> BulkAnswer:
    """Run up to 10,000 inserts, updates and deletes in order, all or nothing."""
    collection = await _open(service, caller, body.database_id, body.collection_name)
    outcome = await service.bulk(collection=collection, operations=body.operations)
    answer: dict[str, Any] = to_plain(outcome.__dict__)
    return BulkAnswer(**answer)
