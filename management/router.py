"""HTTP endpoints of logical databases, collections, import and export
(management.md); thin: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import StreamingResponse

from app.audit import annotate_current
from app.http import CallerDep, DatabaseDep, SettingsDep, error_responses
from app.kit import Pagination, to_plain
from app.schema import parse_filter_json
from app.wiring import request_state
from management.index_checks import ViolationChecks
from management.index_service import MAX_VIOLATION_PAGES, IndexService
from management.schemas import (
    CollectionAnswer,
    CollectionCount,
    CollectionListAnswer,
    CollectionMetadata,
    CollectionOut,
    CollectionsAnswer,
    ConversionAnswer,
    ConvertViolationsRequest,
    CreateCollectionsRequest,
    CreateDatabaseAnswer,
    CreateDatabaseRequest,
    DatabaseListAnswer,
    DatabaseMetadata,
    DatabaseRef,
    DatabaseSummary,
    DropCollectionsRequest,
    DropDatabaseRequest,
    DroppedCollectionsAnswer,
    ExportFormat,
    ImportAnswer,
    IndexOut,
    IndexViolation,
    IndexViolationsAnswer,
    MessageAnswer,
    MetadataAnswer,
    OnError,
    RecordError,
    UpdateSchemaRequest,
)
from management.service import ManagementService, ready_collections

router = APIRouter(tags=["databases"])


def get_management_service(
    request: Request, database: DatabaseDep, settings: SettingsDep
) -> ManagementService:
    checks = request_state(request).find(ViolationChecks)
    return ManagementService(database=database, settings=settings, checks=checks)


ServiceDep = Annotated[ManagementService, Depends(get_management_service)]


def get_index_service(service: ServiceDep) -> IndexService:
    return IndexService(management=service)


IndexServiceDep = Annotated[IndexService, Depends(get_index_service)]
DatabaseId = Annotated[
    str, Query(min_length=1, max_length=64, examples=["60c72b2f9b1d8b1a2d3e4567"])
]


def _audit_database(database_id: str, **details: Any) -> None:
    """Name the database in this request's audit record (its id is in the body)."""
    annotate_current(resource_type="database", resource_id=database_id, details=details)


def _collection_out(entry: dict[str, Any]) -> CollectionOut:
    return CollectionOut(
        name=entry["name"], fields=to_plain(entry["fields"]), strict=entry["strict"]
    )


async def _collection_metadata(
    indexes: IndexService, db_name: str, entry: dict[str, Any]
) -> CollectionMetadata:
    states = await indexes.index_states(db_name, entry)
    return CollectionMetadata(
        name=entry["name"],
        fields=to_plain(entry["fields"]),
        strict=entry["strict"],
        indexes=[IndexOut.model_validate(state) for state in states],
    )


@router.post(
    "/api/create_database",
    status_code=201,
    response_model=CreateDatabaseAnswer,
    responses=error_responses(401, 409, 413, 422),
)
async def create_database(
    body: CreateDatabaseRequest, caller: CallerDep, service: ServiceDep
) -> CreateDatabaseAnswer:
    """Create a logical database with its initial collections and schemas."""
    record = await service.create_database(
        caller=caller, name=body.db_name, collections=body.collections
    )
    _audit_database(str(record["_id"]), name=body.db_name)
    return CreateDatabaseAnswer(
        database=DatabaseRef(id=str(record["_id"]), name=record["displayName"]),
        collections=[_collection_out(entry) for entry in record["collections"]],
    )


@router.get(
    "/api/list_databases", response_model=DatabaseListAnswer, responses=error_responses(401, 422)
)
async def list_databases(
    caller: CallerDep,
    service: ServiceDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 10,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> DatabaseListAnswer:
    """List your databases by name, with an optional case-insensitive name search."""
    records, total = await service.list_databases(
        caller=caller, page=page, page_size=page_size, search=search
    )
    data = [
        DatabaseSummary(
            id=str(record["_id"]),
            name=record["displayName"],
            num_collections=len(ready_collections(record)),
            created_at=record["created_at"],
        )
        for record in records
    ]
    return DatabaseListAnswer(
        data=data, pagination=Pagination.of(page=page, page_size=page_size, total_items=total)
    )


@router.get(
    "/api/get_metadata", response_model=MetadataAnswer, responses=error_responses(401, 404, 422)
)
async def get_metadata(
    database_id: DatabaseId, caller: CallerDep, service: ServiceDep, indexes: IndexServiceDep
) -> MetadataAnswer:
    """The whole metadata document of one database, schemas and indexes (with their
    state) included."""
    record = await service.owned_database(caller=caller, database_id=database_id)
    collections = [
        await _collection_metadata(indexes, record["dbName"], entry)
        for entry in ready_collections(record)
    ]
    return MetadataAnswer(
        data=DatabaseMetadata(
            _id=str(record["_id"]),
            user_id=str(record["user_id"]),
            displayName=record["displayName"],
            dbName=record["dbName"],
            collections=collections,
            created_at=record["created_at"],
            updated_at=record["updated_at"],
        )
    )


@router.get(
    "/api/list_collections",
    response_model=CollectionListAnswer,
    responses=error_responses(401, 404, 422),
)
async def list_collections(
    database_id: DatabaseId, caller: CallerDep, service: ServiceDep
) -> CollectionListAnswer:
    """The collections of a database with their live document counts."""
    counts = await service.list_collections(caller=caller, database_id=database_id)
    return CollectionListAnswer(
        collections=[CollectionCount(name=name, num_documents=count) for name, count in counts]
    )


@router.post(
    "/api/create_collections",
    status_code=201,
    response_model=CollectionsAnswer,
    responses=error_responses(401, 404, 409, 413, 422),
)
async def create_collections(
    body: CreateCollectionsRequest, caller: CallerDep, service: ServiceDep
) -> CollectionsAnswer:
    """Add collections (with their schemas and indexes) to a database."""
    _audit_database(body.database_id)
    entries = await service.create_collections(
        caller=caller, database_id=body.database_id, collections=body.collections
    )
    return CollectionsAnswer(collections=[_collection_out(entry) for entry in entries])


@router.post(
    "/api/update_schema",
    response_model=CollectionAnswer,
    responses=error_responses(401, 404, 409, 413, 422),
)
async def update_schema(
    body: UpdateSchemaRequest, caller: CallerDep, service: ServiceDep, indexes: IndexServiceDep
) -> CollectionAnswer:
    """Replace a collection's field schema (and declared indexes, when given); indexes
    follow, documents are not rewritten."""
    _audit_database(body.database_id, collection=body.collection_name)
    db_name, entry = await service.update_schema(
        caller=caller,
        database_id=body.database_id,
        collection_name=body.collection_name,
        fields=body.fields,
        strict=body.strict,
        indexes=body.indexes,
    )
    return CollectionAnswer(collection=await _collection_metadata(indexes, db_name, entry))


@router.get(
    "/api/index_violations",
    response_model=IndexViolationsAnswer,
    responses=error_responses(401, 404, 422),
)
async def index_violations(
    database_id: DatabaseId,
    collection_name: Annotated[str, Query(min_length=1, max_length=200)],
    field: Annotated[str, Query(min_length=1, max_length=1024)],
    caller: CallerDep,
    indexes: IndexServiceDep,
    page: Annotated[int, Query(ge=1, le=MAX_VIOLATION_PAGES)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 50,
) -> IndexViolationsAnswer:
    """The documents whose indexed field holds another type than declared."""
    declared_type, listed, total = await indexes.list_violations(
        caller=caller,
        database_id=database_id,
        collection_name=collection_name,
        field=field,
        page=page,
        page_size=page_size,
    )
    return IndexViolationsAnswer(
        field=field,
        declared_type=declared_type,
        data=[IndexViolation.model_validate(item) for item in listed],
        pagination=Pagination.of(page=page, page_size=page_size, total_items=total),
    )


@router.post(
    "/api/convert_index_violations",
    response_model=ConversionAnswer,
    responses=error_responses(401, 404, 409, 422),
)
async def convert_index_violations(
    body: ConvertViolationsRequest, caller: CallerDep, indexes: IndexServiceDep
) -> ConversionAnswer:
    """Convert the violations of an indexed field that convert losslessly (capped per call)."""
    _audit_database(body.database_id, collection=body.collection_name, field=body.field)
    result = await indexes.convert_violations(
        caller=caller,
        database_id=body.database_id,
        collection_name=body.collection_name,
        field=body.field,
        after=body.after,
    )
    return ConversionAnswer(field=body.field, **result)


@router.post(
    "/api/drop_database",
    response_model=MessageAnswer,
    responses=error_responses(400, 401, 404, 422),
)
@router.delete(
    "/api/drop_database",
    response_model=MessageAnswer,
    responses=error_responses(400, 401, 404, 422),
)
async def drop_database(
    body: DropDatabaseRequest, caller: CallerDep, service: ServiceDep
) -> MessageAnswer:
    """Drop a database and everything in it; `confirmation` must equal its name."""
    _audit_database(body.database_id)
    name = await service.drop_database(
        caller=caller, database_id=body.database_id, confirmation=body.confirmation
    )
    return MessageAnswer(message=f"Database '{name}' was successfully dropped.")


@router.post(
    "/api/drop_collections",
    response_model=DroppedCollectionsAnswer,
    responses=error_responses(401, 404, 409, 422),
)
@router.delete(
    "/api/drop_collections",
    response_model=DroppedCollectionsAnswer,
    responses=error_responses(401, 404, 409, 422),
)
async def drop_collections(
    body: DropCollectionsRequest, caller: CallerDep, service: ServiceDep
) -> DroppedCollectionsAnswer:
    """Drop collections; if any name is unknown, nothing is dropped."""
    _audit_database(body.database_id, collections=body.collection_names)
    dropped = await service.drop_collections(
        caller=caller, database_id=body.database_id, names=body.collection_names
    )
    return DroppedCollectionsAnswer(dropped_collections=dropped)


@router.post(
    "/api/import_data",
    response_model=ImportAnswer,
    responses=error_responses(400, 401, 404, 409, 413, 422, 429),
)
async def import_data(
    caller: CallerDep,
    service: ServiceDep,
    database_id: Annotated[str, Form(min_length=1, max_length=64)],
    json_file: Annotated[UploadFile, File(description="JSON array, object or JSON Lines")],
    collection_name: Annotated[str | None, Form(max_length=200)] = None,
    on_error: Annotated[OnError, Form()] = "abort",
) -> ImportAnswer:
    """Bulk-import a JSON, JSON Lines or Extended JSON file into a collection."""
    _audit_database(database_id, collection=collection_name, file=json_file.filename)
    result = await service.import_documents(
        caller=caller,
        database_id=database_id,
        collection_name=collection_name or None,
        filename=json_file.filename,
        source=json_file.file,
        on_error=on_error,
    )
    return ImportAnswer(
        collection=result.collection,
        inserted_count=result.inserted_count,
        skipped_count=result.skipped_count,
        errors=[RecordError.model_validate(error) for error in result.errors],
    )


@router.get(
    "/api/export_data",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The documents as a file download (relaxed Extended JSON or CSV).",
            "content": {
                "application/json": {},
                "application/x-ndjson": {},
                "text/csv": {},
            },
        },
        **error_responses(400, 401, 404, 422),
    },
)
async def export_data(
    database_id: DatabaseId,
    collection_name: Annotated[str, Query(min_length=1, max_length=200)],
    caller: CallerDep,
    service: ServiceDep,
    format: Annotated[ExportFormat, Query()] = "json",
    filters: Annotated[str | None, Query(max_length=1024 * 1024)] = None,
) -> StreamingResponse:
    """Download a collection (optionally filtered) as JSON, JSON Lines or CSV."""
    export = await service.export_documents(
        caller=caller,
        database_id=database_id,
        collection_name=collection_name,
        export_format=format,
        filters=parse_filter_json(filters),
    )
    return StreamingResponse(
        export.body,
        media_type=export.media_type,
        headers={"Content-Disposition": f'attachment; filename="{export.filename}"'},
    )
