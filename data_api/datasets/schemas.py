"""Request and answer models of datasets, tags, shares and items (`spec/datasets.md`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from app.clock import UtcDatetime
from app.kit import Pagination

OID = "60c72b2f9b1d8b1a2d3e4567"
Permission = Literal["read", "write", "admin"]
UserPermission = Literal["read", "write", "admin", "owner"]
EntryIds = Field(
    default=None,
    validation_alias=AliasChoices("entry_ids", "file_ids"),
    max_length=1000,
    description="Entry ids (alias `file_ids`).",
    examples=[[OID]],
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- datasets


class CreateDatasetRequest(Strict):
    name: str = Field(min_length=1, max_length=255, examples=["Sensor exports 2024"])
    description: str = Field(default="", max_length=10_000)
    metadata: dict[str, Any] = Field(default_factory=dict, examples=[{"year": 2024}])
    is_public: bool = False
    acl_override_enabled: bool = False
    expires_at: UtcDatetime | None = None
    entry_ids: list[str] | None = EntryIds
    source_query: str | None = Field(default=None, max_length=10_000)

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "example": {
                "name": "Sensor exports 2024",
                "description": "Raw exports of the north field sensors",
                "metadata": {"year": 2024, "site": "north"},
                "is_public": False,
            }
        },
    )


class UpdateDatasetRequest(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=10_000)
    metadata: dict[str, Any] | None = None
    is_public: bool | None = None
    acl_override_enabled: bool | None = None
    expires_at: UtcDatetime | None = None

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"description": "Cleaned exports"}}
    )


class ReplaceDatasetRequest(Strict):
    name: str = Field(min_length=1, max_length=255)
    description: str = Field(default="", max_length=10_000)
    metadata: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"name": "Sensor exports", "description": "", "metadata": {"year": 2024}}
        },
    )


class DatasetOut(BaseModel):
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
    first_timestamp: UtcDatetime | None = None
    last_timestamp: UtcDatetime | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    expires_at: UtcDatetime
    expires_in_hours: float
    source_query: str | None = None
    user_permission: UserPermission


_DATASET_EXAMPLE = {
    "id": OID,
    "name": "Sensor exports 2024",
    "description": "Raw exports of the north field sensors",
    "metadata": {"year": 2024, "site": "north"},
    "owner_id": "60c72b2f9b1d8b1a2d3e0001",
    "owner_email": "owner@example.com",
    "is_public": False,
    "acl_override_enabled": False,
    "tags": ["public"],
    "item_count": 0,
    "entry_count": 0,
    "row_count": 2,
    "columns": [
        {
            "id": "60c72b2f9b1d8b1a2d3e0101",
            "dataset": OID,
            "name": "price",
            "dtype": "float",
            "created_at": "2026-11-30T10:00:00Z",
        }
    ],
    "first_timestamp": "2025-12-16T10:00:00Z",
    "last_timestamp": "2025-12-16T11:00:00Z",
    "created_at": "2026-11-30T10:00:00Z",
    "updated_at": "2026-11-30T10:00:00Z",
    "expires_at": "2027-02-28T10:00:00Z",
    "expires_in_hours": 2160.0,
    "source_query": None,
    "user_permission": "owner",
}


class DatasetAnswer(BaseModel):
    success: Literal[True] = True
    data: DatasetOut
    skipped_ids: list[str] | None = None

    model_config = ConfigDict(
        json_schema_extra={"example": {"success": True, "data": _DATASET_EXAMPLE}}
    )


class ListPagination(Pagination):
    limit: int
    offset: int
    next: str | None = None
    previous: str | None = None


class DatasetListAnswer(BaseModel):
    success: Literal[True] = True
    data: list[DatasetOut]
    pagination: ListPagination

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "data": [_DATASET_EXAMPLE],
                "pagination": {
                    "page": 1,
                    "page_size": 20,
                    "total_items": 1,
                    "total_pages": 1,
                    "has_next": False,
                    "has_previous": False,
                    "limit": 20,
                    "offset": 0,
                    "next": None,
                    "previous": None,
                },
            }
        }
    )


# ---------------------------------------------------------------- tags


class CreateTagRequest(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", examples=["partners"])
    description: str = Field(default="", max_length=1000)
    is_public: bool = True
    metadata: dict[str, Any] = Field(default_factory=dict)
    secret: str | None = Field(default=None, min_length=8, max_length=1024)

    @model_validator(mode="after")
    def _private_tags_have_a_secret(self) -> CreateTagRequest:
        if not self.is_public and not self.secret:
            raise ValueError("a private tag (is_public: false) needs a secret of 8+ characters")
        if self.is_public and self.secret:
            raise ValueError("a public tag has no secret")
        return self

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"name": "partners", "is_public": False, "secret": "s3cret-partners"}
        },
    )


class TagOut(BaseModel):
    id: str
    name: str
    description: str
    is_public: bool
    metadata: dict[str, Any]
    created_at: UtcDatetime
    updated_at: UtcDatetime


_TAG_EXAMPLE = {
    "id": OID,
    "name": "public",
    "description": "Visible to everyone who acquires it",
    "is_public": True,
    "metadata": {},
    "created_at": "2026-11-30T10:00:00Z",
    "updated_at": "2026-11-30T10:00:00Z",
}


class TagAnswer(BaseModel):
    success: Literal[True] = True
    data: TagOut

    model_config = ConfigDict(
        json_schema_extra={"example": {"success": True, "data": _TAG_EXAMPLE}}
    )


class TagListAnswer(BaseModel):
    success: Literal[True] = True
    data: list[TagOut]

    model_config = ConfigDict(
        json_schema_extra={"example": {"success": True, "data": [_TAG_EXAMPLE]}}
    )


class AcquireTagRequest(Strict):
    tag_name: str = Field(min_length=1, max_length=64, examples=["partners"])
    secret: str | None = Field(default=None, max_length=1024)


class DatasetTagRequest(Strict):
    tag_name: str | None = Field(default=None, min_length=1, max_length=64)
    tag_id: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> DatasetTagRequest:
        if (self.tag_name is None) == (self.tag_id is None):
            raise ValueError("give exactly one of tag_name and tag_id")
        return self

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"tag_name": "public"}})


class AccessCheckRequest(Strict):
    dataset_id: str = Field(examples=[OID])
    require_write: bool = False


class AccessCheckOut(BaseModel):
    has_access: bool
    is_owner: bool = False
    permission: UserPermission | None = None
    matching_tags: list[str] = Field(default_factory=list)


class AccessCheckAnswer(BaseModel):
    success: Literal[True] = True
    data: AccessCheckOut

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "data": {
                    "has_access": True,
                    "is_owner": False,
                    "permission": "read",
                    "matching_tags": ["partners"],
                },
            }
        }
    )


# ---------------------------------------------------------------- shares


class CreateShareRequest(Strict):
    user_id: str | None = None
    email: str | None = Field(default=None, max_length=320)
    permission: Permission = "read"
    expires_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _one_target(self) -> CreateShareRequest:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("give exactly one of user_id and email")
        return self

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"email": "colleague@example.com", "permission": "write"}},
    )


class UpdateShareRequest(Strict):
    permission: Permission | None = None
    expires_at: UtcDatetime | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"permission": "read"}})


class ShareOut(BaseModel):
    id: str
    dataset_id: str
    user_id: str
    email: str | None
    permission: Permission
    expires_at: UtcDatetime | None
    created_at: UtcDatetime
    created_by: str


_SHARE_EXAMPLE = {
    "id": OID,
    "dataset_id": "60c72b2f9b1d8b1a2d3e0002",
    "user_id": "60c72b2f9b1d8b1a2d3e0003",
    "email": "colleague@example.com",
    "permission": "write",
    "expires_at": None,
    "created_at": "2026-11-30T10:00:00Z",
    "created_by": "60c72b2f9b1d8b1a2d3e0001",
}


class ShareAnswer(BaseModel):
    success: Literal[True] = True
    data: ShareOut

    model_config = ConfigDict(
        json_schema_extra={"example": {"success": True, "data": _SHARE_EXAMPLE}}
    )


class ShareListAnswer(BaseModel):
    success: Literal[True] = True
    data: list[ShareOut]

    model_config = ConfigDict(
        json_schema_extra={"example": {"success": True, "data": [_SHARE_EXAMPLE]}}
    )


# ---------------------------------------------------------------- items and subsets


class AddItemsRequest(Strict):
    entry_ids: list[str] = Field(
        validation_alias=AliasChoices("entry_ids", "file_ids"), min_length=1, max_length=1000
    )
    notes: str | None = Field(default=None, max_length=10_000)

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, json_schema_extra={"example": {"entry_ids": [OID]}}
    )


class RemoveItemsRequest(Strict):
    entry_ids: list[str] = Field(
        validation_alias=AliasChoices("entry_ids", "file_ids"), min_length=1, max_length=1000
    )

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, json_schema_extra={"example": {"entry_ids": [OID]}}
    )


class AddItemsAnswer(BaseModel):
    success: Literal[True] = True
    added: int
    skipped_ids: list[str]
    dataset_id: str

    model_config = ConfigDict(
        json_schema_extra={
            "example": {"success": True, "added": 1, "skipped_ids": [], "dataset_id": OID}
        }
    )


class RemoveItemsAnswer(BaseModel):
    success: Literal[True] = True
    removed: int

    model_config = ConfigDict(json_schema_extra={"example": {"success": True, "removed": 1}})


class ItemOut(BaseModel):
    id: str
    name: str
    size: int
    content_type: str
    home_dataset_id: str
    added_at: UtcDatetime
    added_by: str
    notes: str | None


class ItemListAnswer(BaseModel):
    success: Literal[True] = True
    data: list[ItemOut]
    pagination: Pagination

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "data": [
                    {
                        "id": OID,
                        "name": "report.pdf",
                        "size": 52133,
                        "content_type": "application/pdf",
                        "home_dataset_id": "60c72b2f9b1d8b1a2d3e0002",
                        "added_at": "2026-11-30T10:00:00Z",
                        "added_by": "60c72b2f9b1d8b1a2d3e0001",
                        "notes": None,
                    }
                ],
                "pagination": {
                    "page": 1,
                    "page_size": 100,
                    "total_items": 1,
                    "total_pages": 1,
                    "has_next": False,
                    "has_previous": False,
                },
            }
        }
    )


class SubsetRequest(Strict):
    name: str = Field(min_length=1, max_length=255)
    description: str = Field(default="", max_length=10_000)
    entry_ids: list[str] = Field(
        validation_alias=AliasChoices("entry_ids", "file_ids"), min_length=1, max_length=1000
    )
    expires_at: UtcDatetime | None = None

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={"example": {"name": "Q1 reports", "entry_ids": [OID]}},
    )
