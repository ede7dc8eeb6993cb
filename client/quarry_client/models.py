"""Request and answer types of the Quarry API, generated from its OpenAPI document
by `client/scripts/generate_models.py`. Do not edit: regenerate.

Answers accept fields this client does not know (a newer server may add some);
requests refuse unknown fields, as the server does."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AccessCheckAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: AccessCheckOut


class AccessCheckOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    has_access: bool
    is_owner: bool = False
    permission: Literal["read", "write", "admin", "owner"] | None = None
    matching_tags: list[str] | None = None


class AccessCheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    dataset_id: str
    require_write: bool = False


class AcquireTagRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    tag_name: str
    secret: str | None = None


class AddItemsAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    added: int
    skipped_ids: list[str]
    dataset_id: str


class AddItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    entry_ids: list[str]
    notes: str | None = None


class AggregateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    database_id: str
    collection_name: str
    pipeline: list[Any]


class AggregateRow(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    timestamp: str = Field(description="The bucket's start (UTC).")
    count: int = Field(description="Rows in the bucket.")
    values: dict[str, Any]


class ApiKeyCreatedAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: ApiKeyCreatedOut


class ApiKeyCreatedOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    name: str
    prefix: str
    key: str = Field(description="The whole key. Shown here once and never again.")
    created_at: datetime
    expires_at: datetime | None


class ApiKeyListAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: list[ApiKeyOut]


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = None


class AuditPageAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    data: list[AuditRecordOut]
    pagination: CursorPagination


class AuditRecordOut(BaseModel):
    """One audit record; `hash` covers everything but `id` and itself."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    seq: int
    at: datetime
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
    details: dict[str, Any] | None = None
    prev_hash: str
    hash: str


class AuthMessageAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    message: str


class BatchAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: list[EntryOut]
    pagination: BatchPagination
    missing_ids: list[str] | None = None


class BatchContentAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: list[EntryText]
    missing_ids: list[str]


class BatchContentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    ids: list[str]
    max_chars: int = 100000


class BatchPagination(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    page: int
    page_size: int
    total_items: int
    total_pages: int
    has_next: bool
    has_previous: bool
    limit: int
    offset: int


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    dataset_id: str
    ids: list[str] | None = Field(
        default=None,
        description="These entries of the dataset, in this order (else a page of them).",
    )
    limit: int = 50
    offset: int = 0


class BulkAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    inserted_count: int
    matched_count: int
    modified_count: int
    upserted_count: int
    deleted_count: int
    results: list[BulkResult]


class BulkDelete(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    delete: DeleteSpec


class BulkInsert(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    insert: dict[str, Any]


class BulkInsertAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    inserted: int
    skipped: int
    replaced: int
    total: int = Field(description="Rows in the request.")


class BulkInsertIn(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    dataset: str
    rows: list[RowIn] = Field(description="Up to QUARRY_MAX_BULK_ROWS (100,000) rows.")
    on_conflict: Literal["error", "skip", "replace"] = Field(
        default="error",
        description="What an existing timestamp does: `error` refuses the whole request (409), `skip` keeps the stored row, `replace` overwrites it.",
    )


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    database_id: str
    collection_name: str
    operations: list[BulkInsert | BulkUpdate | BulkDelete] = Field(
        description="Up to 10,000 (QUARRY_MAX_BULK_OPERATIONS), run in order."
    )


class BulkResult(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    op: str
    inserted_id: Any | None = None
    matched_count: int | None = None
    modified_count: int | None = None
    upserted_id: Any | None = None
    deleted_count: int | None = None


class BulkUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    update: UpdateSpec


class ChangePasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    current_password: str
    new_password: str


class CollectionAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    collection: CollectionMetadata


class CollectionCount(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str
    num_documents: int


class CollectionDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    fields: list[FieldDefinition] | None = None
    indexes: list[IndexDefinition] | None = Field(
        default=None,
        description="Indexes of their own (at most 32, 1-8 keys each); their fields need not be declared in `fields`.",
    )
    strict: bool = False


class CollectionListAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    collections: list[CollectionCount]


class CollectionMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str
    fields: list[dict[str, Any]]
    strict: bool
    indexes: list[IndexOut]


class CollectionOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str
    fields: list[dict[str, Any]]
    strict: bool


class CollectionsAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    collections: list[CollectionOut]


class ColumnAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    data: ColumnOut


class ColumnIn(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    dataset: str = Field(description="The dataset's id.")
    name: str = Field(description="A value key (field-name rules; not `timestamp`).")
    dtype: Literal["float", "int", "string", "bool"]


class ColumnListAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    data: list[ColumnOut]


class ColumnOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    dataset: str
    name: str
    dtype: Literal["float", "int", "string", "bool"]
    created_at: datetime


class ConversionAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    field: str
    declared_type: str
    converted: int
    unconvertible: int
    changed: int
    conflicts: int = 0
    remaining: int
    cap: int
    next_after: str | None = None


class ConvertViolationsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    database_id: str
    collection_name: str
    field: str
    after: str | None = None


class CountAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    count: int


class CountRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    database_id: str
    collection_name: str
    filters: dict[str, Any] | None = None


class CreateApiKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    expires_in_days: int | None = None


class CreateCollectionsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    database_id: str
    collections: list[CollectionDefinition]


class CreateDatabaseAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    database: DatabaseRef
    collections: list[CollectionOut]


class CreateDatabaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    db_name: str
    collections: list[CollectionDefinition] | None = None


class CreateDatasetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    description: str = ""
    metadata: dict[str, Any] | None = None
    is_public: bool = False
    acl_override_enabled: bool = False
    expires_at: datetime | None = None
    entry_ids: list[str] | None = Field(default=None, description="Entry ids (alias `file_ids`).")
    source_query: str | None = None


class CreateShareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    user_id: str | None = None
    email: str | None = None
    permission: Literal["read", "write", "admin"] = "read"
    expires_at: datetime | None = None


class CreateTagRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    description: str = ""
    is_public: bool = True
    metadata: dict[str, Any] | None = None
    secret: str | None = None


class CursorPagination(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    next_cursor: str | None = Field(
        description="Pass as `after` for the next (older) page; null on the last page."
    )
    has_next: bool


class DatabaseListAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    data: list[DatabaseSummary]
    pagination: Pagination


class DatabaseMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str = Field(alias="_id")
    user_id: str
    displayName: str
    dbName: str
    collections: list[CollectionMetadata]
    created_at: datetime
    updated_at: datetime


class DatabaseRef(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    name: str


class DatabaseSummary(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    name: str
    num_collections: int
    created_at: datetime


class DatasetAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: DatasetOut
    skipped_ids: list[str] | None = None


class DatasetListAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: list[DatasetOut]
    pagination: ListPagination


class DatasetOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    name: str
    description: str
    metadata: dict[str, Any]
    owner_id: str
    owner_email: str | None = None
    is_public: bool
    acl_override_enabled: bool
    tags: list[str]
    item_count: int | None = None
    entry_count: int | None = None
    row_count: int | None = None
    columns: list[dict[str, Any]] | None = None
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    expires_in_hours: float
    source_query: str | None = None
    user_permission: Literal["read", "write", "admin", "owner"]


class DatasetTagRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    tag_name: str | None = None
    tag_id: str | None = None


class DeleteAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    deleted_count: int


class DeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    filters: dict[str, Any] | None = None
    multi: bool = True
    all: bool = Field(default=False, description="Required to delete without a filter.")
    database_id: str
    collection_name: str


class DeleteRowsAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    deleted: int


class DeleteRowsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    dataset: str
    start: str | int | None = Field(default=None, description="Inclusive.")
    end: str | int | None = Field(default=None, description="Exclusive.")
    all: bool = Field(default=False, description="Required to delete every row (no range).")


class DeleteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    filters: dict[str, Any] | None = None
    multi: bool = True
    all: bool = Field(default=False, description="Required to delete without a filter.")


class DocumentAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    data: dict[str, Any]


class DocumentPagination(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    page: int | None = Field(description="Null when paging by cursor.")
    page_size: int
    total_items: int | None = Field(description="Null when paging by cursor without count=true.")
    total_pages: int | None
    has_next: bool
    has_previous: bool
    next_cursor: str | None = Field(description="Pass as `after` for the next page.")


class DocumentsAggregateAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    data: list[Any]


class DropCollectionsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    database_id: str
    collection_names: list[str]


class DropDatabaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    database_id: str
    confirmation: str


class DroppedCollectionsAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    dropped_collections: list[str]


class EmailRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    email: str


class EntryAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: EntryOut


class EntryListAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: list[EntryOut]
    pagination: Pagination


class EntryOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    dataset_id: str = Field(description="The entry's home dataset.")
    name: str
    filename: str
    content_type: str = Field(description="Sniffed from the bytes (and the extension).")
    file_type: str = Field(description="The filename's extension, lower-case.")
    size: int
    sha256: str | None
    metadata: dict[str, Any]
    text_status: Literal["pending", "done", "unsupported", "failed"]
    text_chars: int | None = None
    text_error: str | None = Field(default=None, description="Why extraction failed, when it did.")
    pages: int | None = None
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None


class EntryText(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    text: str
    truncated: bool
    text_status: str


class ErrorCode(StrEnum):
    "Stable codes clients and tests compare; never renamed once released."

    BAD_REQUEST = "BAD_REQUEST"
    MALFORMED_JSON = "MALFORMED_JSON"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    INVALID_ID = "INVALID_ID"
    INVALID_NAME = "INVALID_NAME"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    QUERY_TIMEOUT = "QUERY_TIMEOUT"
    OPERATION_TIMEOUT = "OPERATION_TIMEOUT"
    ENGINE_UNSUPPORTED = "ENGINE_UNSUPPORTED"
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    EMAIL_NOT_VERIFIED = "EMAIL_NOT_VERIFIED"
    VERIFY_TOKEN_INVALID = "VERIFY_TOKEN_INVALID"
    RESET_TOKEN_INVALID = "RESET_TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    API_KEY_INVALID = "API_KEY_INVALID"
    API_KEY_LIMIT = "API_KEY_LIMIT"
    API_KEY_NOT_FOUND = "API_KEY_NOT_FOUND"
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
    TOO_MANY_IMPORTS = "TOO_MANY_IMPORTS"
    FORBIDDEN = "FORBIDDEN"
    DATABASE_NOT_FOUND = "DATABASE_NOT_FOUND"
    DATABASE_EXISTS = "DATABASE_EXISTS"
    COLLECTION_NOT_FOUND = "COLLECTION_NOT_FOUND"
    COLLECTION_EXISTS = "COLLECTION_EXISTS"
    CONFIRMATION_MISMATCH = "CONFIRMATION_MISMATCH"
    INVALID_IMPORT_FILE = "INVALID_IMPORT_FILE"
    DATABASE_BUSY = "DATABASE_BUSY"
    DOCUMENT_NOT_FOUND = "DOCUMENT_NOT_FOUND"
    DUPLICATE_KEY = "DUPLICATE_KEY"
    INVALID_FILTER = "INVALID_FILTER"
    INVALID_PIPELINE = "INVALID_PIPELINE"
    INVALID_CURSOR = "INVALID_CURSOR"
    FILTER_REQUIRED = "FILTER_REQUIRED"
    INVALID_UPDATE = "INVALID_UPDATE"
    INVALID_SORT = "INVALID_SORT"
    INVALID_PROJECTION = "INVALID_PROJECTION"
    RESULT_TOO_LARGE = "RESULT_TOO_LARGE"
    DATASET_NOT_FOUND = "DATASET_NOT_FOUND"
    INSUFFICIENT_PERMISSION = "INSUFFICIENT_PERMISSION"
    NO_VALID_ENTRIES = "NO_VALID_ENTRIES"
    NOT_IN_SOURCE = "NOT_IN_SOURCE"
    TAG_NOT_FOUND = "TAG_NOT_FOUND"
    TAG_EXISTS = "TAG_EXISTS"
    INVALID_TAG_SECRET = "INVALID_TAG_SECRET"
    SHARE_EXISTS = "SHARE_EXISTS"
    SHARE_NOT_FOUND = "SHARE_NOT_FOUND"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    RATE_LIMITED = "RATE_LIMITED"
    INVALID_AUDIT_CURSOR = "INVALID_AUDIT_CURSOR"
    ENTRY_NOT_FOUND = "ENTRY_NOT_FOUND"
    TEXT_NOT_READY = "TEXT_NOT_READY"
    INVALID_QUERY = "INVALID_QUERY"
    RANGE_NOT_SATISFIABLE = "RANGE_NOT_SATISFIABLE"
    UPLOAD_STALLED = "UPLOAD_STALLED"
    ROW_EXISTS = "ROW_EXISTS"
    COLUMN_EXISTS = "COLUMN_EXISTS"
    COLUMN_NOT_FOUND = "COLUMN_NOT_FOUND"
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"


class ErrorEnvelope(BaseModel):
    """The body of every error answer; referenced by every endpoint's OpenAPI responses."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = False
    error_code: ErrorCode
    message: str
    details: list[dict[str, Any]] | None = None
    request_id: str | None = None


class FieldDefinition(BaseModel):
    """One field of a collection schema."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    type: Literal[
        "string", "int", "float", "number", "bool", "date", "id", "object", "array", "any"
    ]
    required: bool = False
    unique: bool = False
    index: bool = False
    default: Any | None = Field(
        default=None, description="Filled in on insert when the field is missing."
    )
    enum: list[Any] | None = None
    items: (
        Literal["string", "int", "float", "number", "bool", "date", "id", "object", "array", "any"]
        | None
    ) = Field(default=None, description="Element type of an `array` field.")


class FindAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    data: list[dict[str, Any]]
    pagination: DocumentPagination


class GuardOut(BaseModel):
    """The type guard of one key field: is an index serving reads of it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    state: Literal["building", "valid", "off"]
    reason: str | None = None
    violations: int | None = None


class HealthReport(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    status: Literal["healthy", "unhealthy"]
    time: str
    database: Literal["connected", "unreachable"]
    engine: str
    version: str


class ImportAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    collection: str
    inserted_count: int
    skipped_count: int = 0
    errors: list[RecordError] | None = None


class IndexDefinition(BaseModel):
    """An index declared without declaring its fields."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = None
    keys: list[IndexKey]
    unique: bool = False


class IndexKey(BaseModel):
    """One key of a declared index: a field, its type and the key's direction."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    field: str
    type: Literal[
        "string", "int", "float", "number", "bool", "date", "id", "object", "array", "any"
    ]
    direction: Literal[1, -1] = 1


class IndexKeyOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    field: str
    type: str
    direction: Literal[1, -1]
    guard: GuardOut


class IndexOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str
    field: str
    unique: bool
    declared: bool = False
    keys: list[IndexKeyOut] = Field(default_factory=lambda: [])
    state: Literal["building", "valid", "off"] = "valid"
    reason: str | None = None
    note: str | None = None


class IndexViolation(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: Any = Field(alias="_id")
    type: str


class IndexViolationsAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    field: str
    declared_type: str
    data: list[IndexViolation]
    pagination: Pagination


class InsertAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    inserted_ids: list[Any]
    inserted_count: int


class InsertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    database_id: str
    collection_name: str
    data: dict[str, Any] | list[Any] = Field(
        description="One document or a list of up to 10,000 (QUARRY_MAX_INSERT_DOCUMENTS)."
    )


class ItemListAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: list[ItemOut]
    pagination: Pagination


class ItemOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    name: str
    size: int
    content_type: str
    home_dataset_id: str
    added_at: datetime
    added_by: str
    notes: str | None


class ListPagination(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    page: int
    page_size: int
    total_items: int
    total_pages: int
    has_next: bool
    has_previous: bool
    limit: int
    offset: int
    next: str | None = None
    previous: str | None = None


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    email: str
    password: str


class ManagementMessageAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    message: str


class MetadataAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    data: DatabaseMetadata


class Pagination(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    page: int
    page_size: int
    total_items: int
    total_pages: int
    has_next: bool
    has_previous: bool


class RecordError(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    index: int
    loc: list[str | int]
    msg: str
    type: str


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    refresh: str


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    email: str
    firstName: str
    lastName: str
    password: str


class RemoveItemsAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    removed: int


class RemoveItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    entry_ids: list[str]


class ReplaceDatasetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    description: str = ""
    metadata: dict[str, Any] | None = None


class ResetPasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    token: str
    password: str


class RowAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    data: dict[str, Any]


class RowIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    timestamp: str | int = Field(
        description="ISO-8601 (an offset is normalised to UTC; none means UTC) or epoch ms."
    )
    values: dict[str, str | int | float | bool | None] | None = Field(
        default=None, description="At most 1,000 keys; no nested objects."
    )


class RowInsertIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    timestamp: str | int = Field(
        description="ISO-8601 (an offset is normalised to UTC; none means UTC) or epoch ms."
    )
    values: dict[str, str | int | float | bool | None] | None = Field(
        default=None, description="At most 1,000 keys; no nested objects."
    )
    dataset: str


class RowOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    timestamp: str = Field(description="UTC, ISO-8601 with `Z`.")
    values: dict[str, Any]


class RowsAggregateAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    bucket: str
    agg: str
    columns: list[str]
    data: list[AggregateRow]


class RowsAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    data: list[RowOut]
    pagination: RowsPagination


class RowsPagination(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    count: int = Field(description="Rows in [start, end).")
    next: str | None = Field(description="URL of the next page.")
    previous: str | None = Field(description="URL of the previous page (offset paging).")
    next_cursor: str | None = Field(description="Give as `after=` for the next page.")
    limit: int
    offset: int


class ScopedSearchRequest(BaseModel):
    """The search body without a dataset: the path names it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    query: str
    file_types: list[str] | None = None
    sort_by: Literal["relevance", "created_at", "name", "size"] = "relevance"
    sort_order: Literal["asc", "desc"] = "desc"
    page: int = 1
    page_size: int = 20


class SearchAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: list[SearchHit]
    pagination: Pagination
    took_ms: float


class SearchHit(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    entry: EntryOut
    dataset_id: str
    score: float
    snippets: list[str] = Field(
        description="Fragments of the text; matches in <mark>, everything else HTML-escaped."
    )


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    query: str = Field(description='Words (all must match), AND, OR, NOT, ( ), "phrases", prefix*.')
    dataset_id: str | None = Field(default=None, description="Only this dataset's items.")
    dataset_ids: list[str] | None = Field(default=None, description="Only these datasets' items.")
    file_types: list[str] | None = Field(
        default=None, description='Extensions, e.g. ["pdf", "docx"].'
    )
    sort_by: Literal["relevance", "created_at", "name", "size"] = "relevance"
    sort_order: Literal["asc", "desc"] = "desc"
    page: int = 1
    page_size: int = 20


class ShareAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: ShareOut


class ShareListAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: list[ShareOut]


class ShareOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    dataset_id: str
    user_id: str
    email: str | None
    permission: Literal["read", "write", "admin"]
    expires_at: datetime | None
    created_at: datetime
    created_by: str


class SubsetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    description: str = ""
    entry_ids: list[str]
    expires_at: datetime | None = None


class TagAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: TagOut


class TagListAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: list[TagOut]


class TagOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    name: str
    description: str
    is_public: bool
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class TokenPair(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    refresh: str
    access: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Lifetime of the access token in seconds.")


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    token: str


class UpdateAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: bool = True
    matched_count: int
    modified_count: int
    upserted_id: Any | None = None


class UpdateDatasetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None
    is_public: bool | None = None
    acl_override_enabled: bool | None = None
    expires_at: datetime | None = None


class UpdateEntryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = None
    metadata: dict[str, Any] | None = Field(
        default=None, description="Merged into the entry's metadata; a null value removes that key."
    )


class UpdateMeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    firstName: str | None = None
    lastName: str | None = None


class UpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    filters: dict[str, Any] | None = None
    update_data: dict[str, Any]
    upsert: bool = False
    multi: bool = True
    all: bool = Field(default=False, description="Required to update without a filter.")
    database_id: str
    collection_name: str


class UpdateSchemaRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    database_id: str
    collection_name: str
    fields: list[FieldDefinition]
    indexes: list[IndexDefinition] | None = None
    strict: bool | None = None


class UpdateShareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    permission: Literal["read", "write", "admin"] | None = None
    expires_at: datetime | None = None


class UpdateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    filters: dict[str, Any] | None = None
    update_data: dict[str, Any]
    upsert: bool = False
    multi: bool = True
    all: bool = Field(default=False, description="Required to update without a filter.")


class UploadAnswer(BaseModel):
    """One file uploaded: `data`; several: `entries` (and `data` is absent)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: EntryOut | None = None
    entries: list[EntryOut] | None = None


class UserAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    success: Literal[True] = True
    data: UserOut


class UserOut(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    email: str
    firstName: str
    lastName: str
    is_verified: bool
    role: Literal["user", "admin"] = "user"
    created_at: datetime
