"""Request and answer models of the management endpoints (seed 004's shapes,
management.md's additions). Names are checked by the service so that a bad one
is 422 `INVALID_NAME` stating the rule, not a generic validation error."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.clock import UtcDatetime
from app.kit import Pagination
from app.schema import FieldDefinition

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


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollectionDefinition(StrictModel):
    name: NameText
    fields: list[FieldDefinition] = Field(default_factory=list, max_length=500)
    strict: bool = False

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": _USERS_EXAMPLE})


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
    strict: bool | None = None


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


class IndexOut(BaseModel):
    name: str
    field: str
    unique: bool


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
