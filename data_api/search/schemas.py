"""Request and answer models of keyword search (`spec/entries.md`, seed 003)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.kit import Pagination
from data_api.entries.schemas import ENTRY_EXAMPLE, EntryOut


class SearchRequest(BaseModel):
    query: Annotated[str, Field(min_length=1, max_length=500)] = Field(
        description='Words (all must match), AND, OR, NOT, ( ), "phrases", prefix*.'
    )
    dataset_id: str | None = Field(None, description="Only this dataset's items.")
    dataset_ids: Annotated[list[str], Field(max_length=100)] | None = Field(
        None, description="Only these datasets' items."
    )
    file_types: (
        Annotated[list[Annotated[str, Field(max_length=16)]], Field(max_length=50)] | None
    ) = Field(None, description='Extensions, e.g. ["pdf", "docx"].')
    sort_by: Literal["relevance", "created_at", "name", "size"] = "relevance"
    sort_order: Literal["asc", "desc"] = "desc"
    page: Annotated[int, Field(ge=1)] = 1
    page_size: Annotated[int, Field(ge=1, le=100)] = 20

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "query": 'revenue AND "Q4 forecast" NOT draft',
                "file_types": ["pdf", "docx"],
                "sort_by": "relevance",
                "page_size": 20,
            }
        },
    )


class ScopedSearchRequest(BaseModel):
    """The search body without a dataset: the path names it."""

    query: Annotated[str, Field(min_length=1, max_length=500)]
    file_types: (
        Annotated[list[Annotated[str, Field(max_length=16)]], Field(max_length=50)] | None
    ) = None
    sort_by: Literal["relevance", "created_at", "name", "size"] = "relevance"
    sort_order: Literal["asc", "desc"] = "desc"
    page: Annotated[int, Field(ge=1)] = 1
    page_size: Annotated[int, Field(ge=1, le=100)] = 20

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"query": "revenue forecast Q4", "file_types": ["pdf"]}},
    )


class SearchHit(BaseModel):
    entry: EntryOut
    dataset_id: str
    score: float
    snippets: list[str] = Field(
        description="Fragments of the text; matches in <mark>, everything else HTML-escaped."
    )


class SearchAnswer(BaseModel):
    success: Literal[True] = True
    data: list[SearchHit]
    pagination: Pagination
    took_ms: float

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "data": [
                    {
                        "entry": ENTRY_EXAMPLE,
                        "dataset_id": ENTRY_EXAMPLE["dataset_id"],
                        "score": 7.31,
                        "snippets": [
                            "…the <mark>revenue</mark> <mark>forecast</mark> for Q4 &amp; Q1…"
                        ],
                    }
                ],
                "pagination": {
                    "page": 1,
                    "page_size": 20,
                    "total_items": 1,
                    "total_pages": 1,
                    "has_next": False,
                    "has_previous": False,
                },
                "took_ms": 8.4,
            }
        }
    )
