"""Request and answer models of `/api/crud` (seed 004's shapes, crud.md's additions).

Documents, filters and updates are free-form JSON objects here: the service
checks them against the collection schema and the operator allow-lists, so that
their errors name the document, field or operator instead of being generic.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

IdText = Annotated[str, StringConstraints(min_length=1, max_length=64)]
NameText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
JsonObject = dict[str, Any]

_TARGET_EXAMPLE = {"database_id": "60c72b2f9b1d8b1a2d3e4567", "collection_name": "users"}


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetRequest(StrictModel):
    database_id: IdText
    collection_name: NameText


class InsertRequest(TargetRequest):
    data: JsonObject | list[Any] = Field(
        description="One document or a list of up to 10,000 (QUARRY_MAX_INSERT_DOCUMENTS)."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                **_TARGET_EXAMPLE,
                "data": [
                    {"email": "alice@example.com", "signup_date": "2023-10-27T10:00:00Z"},
                    {"email": "bob@example.com", "signup_date": "2023-10-27T11:00:00Z"},
                ],
            }
        },
    )


class InsertAnswer(BaseModel):
    success: bool = True
    inserted_ids: list[Any]
    inserted_count: int


class DocumentPagination(BaseModel):
    page: int | None = Field(description="Null when paging by cursor.")
    page_size: int
    total_items: int | None = Field(description="Null when paging by cursor without count=true.")
    total_pages: int | None
    has_next: bool
    has_previous: bool
    next_cursor: str | None = Field(description="Pass as `after` for the next page.")


class FindAnswer(BaseModel):
    success: bool = True
    data: list[JsonObject]
    pagination: DocumentPagination


class DocumentAnswer(BaseModel):
    success: bool = True
    data: JsonObject


class UpdateSpec(StrictModel):
    filters: JsonObject | None = None
    update_data: JsonObject
    upsert: bool = False
    multi: bool = True
    all: bool = Field(default=False, description="Required to update without a filter.")


class UpdateRequest(TargetRequest, UpdateSpec):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                **_TARGET_EXAMPLE,
                "filters": {"email": "alice@example.com"},
                "update_data": {"newsletter_subscribed": True},
            }
        },
    )


class UpdateAnswer(BaseModel):
    success: bool = True
    matched_count: int
    modified_count: int
    upserted_id: Any = None


class DeleteSpec(StrictModel):
    filters: JsonObject | None = None
    multi: bool = True
    all: bool = Field(default=False, description="Required to delete without a filter.")


class DeleteRequest(TargetRequest, DeleteSpec):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {**_TARGET_EXAMPLE, "filters": {"email": "alice@example.com"}}
        },
    )


class DeleteAnswer(BaseModel):
    success: bool = True
    deleted_count: int


class CountRequest(TargetRequest):
    filters: JsonObject | None = None


class CountAnswer(BaseModel):
    success: bool = True
    count: int


class AggregateRequest(TargetRequest):
    pipeline: list[Any] = Field(min_length=1, max_length=100)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                **_TARGET_EXAMPLE,
                "pipeline": [
                    {"$match": {"signup_date": {"$gte": "2023-10-01T00:00:00Z"}}},
                    {"$group": {"_id": "$plan", "users": {"$sum": 1}}},
                ],
            }
        },
    )


class AggregateAnswer(BaseModel):
    success: bool = True
    data: list[Any]


class BulkInsert(StrictModel):
    insert: JsonObject


class BulkUpdate(StrictModel):
    update: UpdateSpec


class BulkDelete(StrictModel):
    delete: DeleteSpec


BulkOperation = BulkInsert | BulkUpdate | BulkDelete


class BulkRequest(TargetRequest):
    operations: list[BulkOperation] = Field(
        min_length=1, description="Up to 10,000 (QUARRY_MAX_BULK_OPERATIONS), run in order."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                **_TARGET_EXAMPLE,
                "operations": [
                    {"insert": {"email": "carol@example.com"}},
                    {
                        "update": {
                            "filters": {"email": "alice@example.com"},
                            "update_data": {"$inc": {"logins": 1}},
                        }
                    },
                    {"delete": {"filters": {"email": "bob@example.com"}}},
                ],
            }
        },
    )


class BulkResult(BaseModel):
    op: str
    inserted_id: Any = None
    matched_count: int | None = None
    modified_count: int | None = None
    upserted_id: Any = None
    deleted_count: int | None = None


class BulkAnswer(BaseModel):
    success: bool = True
    inserted_count: int
    matched_count: int
    modified_count: int
    upserted_count: int
    deleted_count: int
    results: list[BulkResult]
