"""Logical databases, collections, field schemas, import and export (`management.md`)."""

from __future__ import annotations

from quarry_client import models as m
from quarry_client.endpoints import endpoint

CREATE_DATABASE = endpoint(
    "POST",
    "/api/create_database",
    body=m.CreateDatabaseRequest,
    answer=m.CreateDatabaseAnswer,
)
LIST_DATABASES = endpoint(
    "GET",
    "/api/list_databases",
    answer=m.DatabaseListAnswer,
    query=("page", "page_size", "search"),
)
GET_METADATA = endpoint("GET", "/api/get_metadata", answer=m.MetadataAnswer, query=("database_id",))
LIST_COLLECTIONS = endpoint(
    "GET", "/api/list_collections", answer=m.CollectionListAnswer, query=("database_id",)
)
CREATE_COLLECTIONS = endpoint(
    "POST",
    "/api/create_collections",
    body=m.CreateCollectionsRequest,
    answer=m.CollectionsAnswer,
)
UPDATE_SCHEMA = endpoint(
    "POST", "/api/update_schema", body=m.UpdateSchemaRequest, answer=m.CollectionAnswer
)
DROP_DATABASE = endpoint(
    "POST",
    "/api/drop_database",
    body=m.DropDatabaseRequest,
    answer=m.ManagementMessageAnswer,
)
DROP_COLLECTIONS = endpoint(
    "POST",
    "/api/drop_collections",
    body=m.DropCollectionsRequest,
    answer=m.DroppedCollectionsAnswer,
)
INDEX_VIOLATIONS = endpoint(
    "GET",
    "/api/index_violations",
    answer=m.IndexViolationsAnswer,
    query=("database_id", "collection_name", "field", "page", "page_size"),
)
CONVERT_INDEX_VIOLATIONS = endpoint(
    "POST",
    "/api/convert_index_violations",
    body=m.ConvertViolationsRequest,
    answer=m.ConversionAnswer,
)
#: Multipart (`database_id`, `collection_name`, `on_error`, `json_file`), streamed.
IMPORT_DATA = endpoint("POST", "/api/import_data", answer=m.ImportAnswer)
#: A streamed download: JSON array, JSON Lines or CSV.
EXPORT_DATA = endpoint(
    "GET",
    "/api/export_data",
    query=("database_id", "collection_name", "format", "filters"),
)
