"""Request and answer models of the management endpoints (seed 004's shapes,
management.md's additions). Names are checked by the service so that a bad one
is 422 `INVALID_NAME` stating the rule, not a generic validation error."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.clock import UtcDatetime
from app.db import GuardState
from app.kit import Pagination
from app.schema import FieldDefinition
from management.id_order import decode_position
from management.indexes import MAX_DECLARED_INDEXES, IndexDefinition

NameText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
IdText = Annotated[str, StringConstraints(min_length=1, max_length=64)]

_USERS_EXAMPLE = {
    "name": "users",
    "fields": [
        {"name": "email", "type": "string", "required": True, "unique": True},
        {"name": "signup_date", "type": "date"},
    ],
    "strict": False,
}
_ORDERS_EXAMPLE = {
    "name": "orders",
    "fields": [{"name": "sku", "type": "string", "required": True}],
    "indexes": [
        {
            "name": "by_price",
            "keys": [
                {"field": "price", "type": "float", "direction": -1},
                {"field": "sku", "type": "string", "direction": 1},
            ],
            "unique": True,
        }
    ],
    "strict": False,
}


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: Indexes declared without declaring their fields (`management.indexes`).
DeclaredIndexes = Annotated[
    list[IndexDefinition],
    Field(
        max_length=MAX_DECLARED_INDEXES,
        description=f"Indexes of their own (at most {MAX_DECLARED_INDEXES}, 1-8 keys each); "
        "their fields need not be declared in `fields`.",
    ),
]


class CollectionDefinition(StrictModel):
    name: NameText
    fields: list[FieldDefinition] = Field(default_factory=list, max_length=500)
    indexes: DeclaredIndexes = Field(default_factory=list)
    strict: bool = False

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [_USERS_EXAMPLE, _ORDERS_EXAMPLE]}
    )


class CreateDatabaseRequest(StrictModel):
    db_name: NameText
    collections: list[CollectionDefinition] = Field(default_factory=list, max_length=100)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"db_name": "my_customer_project", "collections": [_USERS_EXAMPLE]}
        },
    )


class CreateCollectionsRequest(StrictModel):
    database_id: IdText
    collections: list[CollectionDefinition] = Field(min_length=1, max_length=100)


class UpdateSchemaRequest(StrictModel):
    database_id: IdText
    collection_name: NameText
    fields: list[FieldDefinition] = Field(max_length=500)
    #: Omitted: the declared indexes stay as they are; `[]`: none.
    indexes: DeclaredIndexes | None = None
    strict: bool | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "database_id": "60c72b2f9b1d8b1a2d3e4567",
                "collection_name": "orders",
                "fields": [{"name": "sku", "type": "string", "required": True}],
                "indexes": _ORDERS_EXAMPLE["indexes"],
            }
        },
    )


class ConvertViolationsRequest(StrictModel):
    database_id: IdText
    collection_name: NameText
    field: str = Field(min_length=1, max_length=1024)
    #: The previous answer's `next_after`: resume after the last `_id` it read.
    after: str | None = Field(default=None, min_length=1, max_length=4096)

    @field_validator("after")
    @classmethod
    def _resume_token(cls, value: str | None) -> str | None:
        if value is not None:
            decode_position(value)  # raises ValueError: a 422 naming `after`
        return value

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "database_id": "60c72b2f9b1d8b1a2d3e4567",
                "collection_name": "orders",
                "field": "price",
            }
        },
    )


class DropDatabaseRequest(StrictModel):
    database_id: IdText
    confirmation: str = Field(max_length=200)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "database_id": "60c72b2f9b1d8b1a2d3e4567",
                "confirmation": "my_customer_project",
            }
        },
    )


class DropCollectionsRequest(StrictModel):
    database_id: IdText
    collection_names: list[NameText] = Field(min_length=1, max_length=100)


# ---------------------------------------------------------------------- answers


class DatabaseRef(BaseModel):
    id: str
    name: str


class CollectionOut(BaseModel):
    name: str
    fields: list[dict[str, Any]]
    strict: bool


class GuardOut(BaseModel):
    """The type guard of one key field: is an index serving reads of it."""

    state: GuardState
    reason: str | None = None
    #: Documents holding a type that holds the guard off (null: not counted).
    violations: int | None = None


class IndexKeyOut(BaseModel):
    field: str
    type: str
    direction: Literal[1, -1]
    guard: GuardOut


class IndexOut(BaseModel):
    name: str
    #: The first key's field (a field flag's index has only that one).
    field: str
    unique: bool
    #: Declared in `indexes` (else made by a field's `unique`/`index` flag).
    declared: bool = False
    #: Defaults for the clients reading a server older than index states (whose
    #: indexes were the engine's, serving as they are).
    keys: list[IndexKeyOut] = []
    #: `building` until every key's typed index serves; `off` when a key's guard is.
    state: GuardState = "valid"
    reason: str | None = None
    #: What the engine does differently from MongoDB with this index (null: nothing).
    note: str | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "by_price",
                "field": "price",
                "unique": False,
                "declared": True,
                "keys": [
                    {
                        "field": "price",
                        "type": "float",
                        "direction": -1,
                        "guard": {
                            "state": "off",
                            "reason": "3 documents hold another type in price; "
                            "GET /api/index_violations lists them",
                            "violations": 3,
                        },
                    }
                ],
                "state": "off",
                "reason": "3 documents hold another type in price; "
                "GET /api/index_violations lists them",
            }
        }
    )


class CollectionMetadata(CollectionOut):
    indexes: list[IndexOut]


class CreateDatabaseAnswer(BaseModel):
    success: bool = True
    database: DatabaseRef
    collections: list[CollectionOut]


class DatabaseSummary(BaseModel):
    id: str
    name: str
    num_collections: int
    created_at: UtcDatetime


class DatabaseListAnswer(BaseModel):
    success: bool = True
    data: list[DatabaseSummary]
    pagination: Pagination


class DatabaseMetadata(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id", serialization_alias="_id")
    user_id: str
    displayName: str
    dbName: str
    collections: list[CollectionMetadata]
    created_at: UtcDatetime
    updated_at: UtcDatetime


class MetadataAnswer(BaseModel):
    success: bool = True
    data: DatabaseMetadata


class CollectionCount(BaseModel):
    name: str
    num_documents: int


class CollectionListAnswer(BaseModel):
    success: bool = True
    collections: list[CollectionCount]


class CollectionsAnswer(BaseModel):
    success: bool = True
    collections: list[CollectionOut]


class CollectionAnswer(BaseModel):
    success: bool = True
    collection: CollectionMetadata


class MessageAnswer(BaseModel):
    success: bool = True
    message: str


class DroppedCollectionsAnswer(BaseModel):
    success: bool = True
    dropped_collections: list[str]


class IndexViolation(BaseModel):
    #: The document's `_id` as API JSON (an ObjectId as its hex string).
    id: Any = Field(alias="_id", serialization_alias="_id")
    #: The `$type` name of what the field holds (`string`, `double`, `array`, ...).
    type: str

    model_config = ConfigDict(populate_by_name=True)


class IndexViolationsAnswer(BaseModel):
    success: bool = True
    field: str
    #: The type the field's indexes declare.
    declared_type: str
    data: list[IndexViolation]
    pagination: Pagination

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "field": "price",
                "declared_type": "float",
                "data": [{"_id": "60c72b2f9b1d8b1a2d3e4567", "type": "string"}],
                "pagination": {
                    "page": 1,
                    "page_size": 50,
                    "total_items": 1,
                    "total_pages": 1,
                    "has_next": False,
                    "has_previous": False,
                },
            }
        }
    )


class ConversionAnswer(BaseModel):
    success: bool = True
    field: str
    declared_type: str
    #: Documents whose value was converted in this call.
    converted: int
    #: Documents this call read whose value does not convert without loss.
    unconvertible: int
    #: Documents changed by another write between this call's read and its update
    #: (left as that write made them).
    changed: int
    #: Documents left as they were because a unique index holds their converted
    #: value in another document already.
    conflicts: int = 0
    #: Violating documents this call did not convert and a further call may
    #: (the cap was reached, or they changed meanwhile): call again while above 0.
    remaining: int
    #: Documents one call converts at most.
    cap: int
    #: Pass as `after` to the next call (the last `_id` read, as canonical Extended
    #: JSON); null when nothing is left after it.
    next_after: str | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "field": "price",
                "declared_type": "float",
                "converted": 1000,
                "unconvertible": 2,
                "changed": 0,
                "conflicts": 0,
                "remaining": 340,
                "cap": 1000,
                "next_after": '{"$oid": "60c72b2f9b1d8b1a2d3e4567"}',
            }
        }
    )


class RecordError(BaseModel):
    index: int
    loc: list[str | int]
    msg: str
    type: str


class ImportAnswer(BaseModel):
    success: bool = True
    collection: str
    inserted_count: int
    skipped_count: int = 0
    errors: list[RecordError] = Field(default_factory=list)

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "collection": "events",
                "inserted_count": 5210,
                "skipped_count": 0,
                "errors": [],
            }
        }
    )


OnError = Literal["abort", "skip"]
ExportFormat = Literal["json", "ndjson", "csv"]
