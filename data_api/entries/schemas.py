"""Request and answer models of entries (`spec/entries.md`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.kit import Pagination

ENTRY_EXAMPLE = {
    "id": "665f1c2e9b1e8a3d4c5b6a79",
    "dataset_id": "665f1c2e9b1e8a3d4c5b6a70",
    "name": "Q4 forecast.pdf",
    "filename": "Q4 forecast.pdf",
    "content_type": "application/pdf",
    "file_type": "pdf",
    "size": 48213,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "metadata": {"team": "finance"},
    "text_status": "done",
    "text_chars": 12034,
    "text_error": None,
    "pages": 4,
    "created_at": "2026-11-30T10:00:00Z",
    "updated_at": "2026-11-30T10:00:00Z",
    "created_by": "665f1c2e9b1e8a3d4c5b6a01",
}


class EntryOut(BaseModel):
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
    text_error: str | None = Field(None, description="Why extraction failed, when it did.")
    pages: int | None = None
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None

    model_config = ConfigDict(json_schema_extra={"example": ENTRY_EXAMPLE})


_PAGE = {
    "page": 1,
    "page_size": 50,
    "total_items": 1,
    "total_pages": 1,
    "has_next": False,
    "has_previous": False,
}


class EntryAnswer(BaseModel):
    success: Literal[True] = True
    data: EntryOut

    model_config = ConfigDict(
        json_schema_extra={"example": {"success": True, "data": ENTRY_EXAMPLE}}
    )


class UploadAnswer(BaseModel):
    """One file uploaded: `data`; several: `entries` (and `data` is absent)."""

    success: Literal[True] = True
    data: EntryOut | None = None
    entries: list[EntryOut] | None = None

    model_config = ConfigDict(
        json_schema_extra={"example": {"success": True, "data": ENTRY_EXAMPLE}}
    )


class UpdateEntryRequest(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    metadata: dict[str, Any] | None = Field(
        None, description="Merged into the entry's metadata; a null value removes that key."
    )

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"metadata": {"reviewed": True}}}
    )


class BatchRequest(BaseModel):
    dataset_id: str
    ids: Annotated[list[str], Field(max_length=1000)] | None = Field(
        None, description="These entries of the dataset, in this order (else a page of them)."
    )
    limit: Annotated[int, Field(ge=1, le=1000)] = 50
    offset: Annotated[int, Field(ge=0)] = 0

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"dataset_id": "665f1c2e9b1e8a3d4c5b6a70", "limit": 50}},
    )


class BatchPagination(Pagination):
    limit: int
    offset: int


class BatchAnswer(BaseModel):
    success: Literal[True] = True
    data: list[EntryOut]
    pagination: BatchPagination
    missing_ids: list[str] = Field(default_factory=list)

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "data": [ENTRY_EXAMPLE],
                "pagination": {**_PAGE, "limit": 50, "offset": 0},
                "missing_ids": [],
            }
        }
    )


class BatchContentRequest(BaseModel):
    ids: Annotated[list[str], Field(min_length=1, max_length=1000)]
    max_chars: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"ids": ["665f1c2e9b1e8a3d4c5b6a79"], "max_chars": 2000}},
    )


class EntryText(BaseModel):
    id: str
    text: str
    truncated: bool
    text_status: str


class BatchContentAnswer(BaseModel):
    success: Literal[True] = True
    data: list[EntryText]
    missing_ids: list[str]

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "data": [
                    {
                        "id": ENTRY_EXAMPLE["id"],
                        "text": "Q4 forecast: revenue grows…",
                        "truncated": True,
                        "text_status": "done",
                    }
                ],
                "missing_ids": [],
            }
        }
    )


class EntryListAnswer(BaseModel):
    success: Literal[True] = True
    data: list[EntryOut]
    pagination: Pagination

    model_config = ConfigDict(
        json_schema_extra={
            "example": {"success": True, "data": [ENTRY_EXAMPLE], "pagination": _PAGE}
        }
    )


#: The multipart body of `POST /api/v1/entries`, as Swagger UI needs it to offer
#: a file picker ("Try it out" then uploads a real file).
UPLOAD_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["dataset_id", "file"],
                "properties": {
                    "dataset_id": {
                        "type": "string",
                        "description": "The dataset the entries go into (before the files).",
                    },
                    "file": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "One or more files.",
                    },
                    "name": {"type": "string", "description": "Name of a single file's entry."},
                    "metadata": {
                        "type": "string",
                        "description": "A JSON object, as text, given to every entry.",
                        "example": '{"team": "finance"}',
                    },
                },
            },
            "encoding": {"file": {"contentType": "application/octet-stream"}},
        }
    },
}
