"""Request and answer models of rows and columns (`spec/rows.md`), for the OpenAPI
document and the small requests. The hot paths (`bulk_insert`, reads, downloads)
read and write JSON with orjson directly; these models describe the same shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)

from app.http import register_schema
from data_api.rows.codec import INT_MAX, INT_MIN

DATASET_ID = "665f1c2e9b1e8a3d4c5b6a70"
ROW_EXAMPLE = {"timestamp": "2025-12-16T10:00:00Z", "values": {"open": 104500, "close": 104600}}
Timestamp = StrictStr | StrictInt
#: A value: what JSON carries exactly (64-bit integers, finite numbers).
Scalar = (
    StrictStr
    | Annotated[StrictInt, Field(ge=INT_MIN, le=INT_MAX)]
    | Annotated[StrictFloat, Field(allow_inf_nan=False)]
    | StrictBool
    | None
)
OnConflictField = Field(
    "error",
    description="What an existing timestamp does: `error` refuses the whole request (409), "
    "`skip` keeps the stored row, `replace` overwrites it.",
)


class ColumnIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"example": {"dataset": DATASET_ID, "name": "close", "dtype": "float"}}
    )
    dataset: str = Field(description="The dataset's id.")
    name: str = Field(description="A value key (field-name rules; not `timestamp`).")
    dtype: Literal["float", "int", "string", "bool"]


class ColumnOut(BaseModel):
    id: str
    dataset: str
    name: str
    dtype: Literal["float", "int", "string", "bool"]
    created_at: datetime


COLUMN_EXAMPLE = {
    "id": "665f1c2e9b1e8a3d4c5b6a80",
    "dataset": DATASET_ID,
    "name": "close",
    "dtype": "float",
    "created_at": "2026-11-30T10:00:00Z",
}


class ColumnAnswer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"example": {"success": True, "data": COLUMN_EXAMPLE}}
    )
    success: bool = True
    data: ColumnOut


class ColumnListAnswer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"example": {"success": True, "data": [COLUMN_EXAMPLE]}}
    )
    success: bool = True
    data: list[ColumnOut]


class RowIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": ROW_EXAMPLE})
    timestamp: Timestamp = Field(
        description="ISO-8601 (an offset is normalised to UTC; none means UTC) or epoch ms."
    )
    values: dict[str, Scalar] = Field(
        default_factory=dict, description="At most 1,000 keys; no nested objects."
    )


class RowInsertIn(RowIn):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"dataset": DATASET_ID, **ROW_EXAMPLE}}
    )
    dataset: str


class RowOut(BaseModel):
    timestamp: str = Field(description="UTC, ISO-8601 with `Z`.")
    values: dict[str, Any]


class RowAnswer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"success": True, "data": {"dataset": DATASET_ID, **ROW_EXAMPLE}}
        }
    )
    success: bool = True
    data: dict[str, Any]


class BulkInsertIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "dataset": DATASET_ID,
                "rows": [
                    {"timestamp": "2025-12-16T10:00:00Z", "values": {"price": 104500}},
                    {"timestamp": "2025-12-16T11:00:00Z", "values": {"price": 104600}},
                ],
                "on_conflict": "error",
            }
        }
    )
    dataset: str
    rows: list[RowIn] = Field(description="Up to QUARRY_MAX_BULK_ROWS (100,000) rows.")
    on_conflict: Literal["error", "skip", "replace"] = OnConflictField


class BulkInsertAnswer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"success": True, "inserted": 2, "skipped": 0, "replaced": 0, "total": 2}
        }
    )
    success: bool = True
    inserted: int
    skipped: int
    replaced: int
    total: int = Field(description="Rows in the request.")


BULK_INSERT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"$ref": register_schema(BulkInsertIn)},
        },
        "application/x-ndjson": {
            "schema": {"$ref": register_schema(RowIn)},
            "example": '{"timestamp": "2025-12-16T10:00:00Z", "values": {"price": 104500}}\n'
            '{"timestamp": "2025-12-16T11:00:00Z", "values": {"price": 104600}}\n',
        },
    },
}


class RowsPagination(BaseModel):
    count: int = Field(description="Rows in [start, end).")
    next: str | None = Field(description="URL of the next page.")
    previous: str | None = Field(description="URL of the previous page (offset paging).")
    next_cursor: str | None = Field(description="Give as `after=` for the next page.")
    limit: int
    offset: int


class RowsAnswer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "data": [ROW_EXAMPLE],
                "pagination": {
                    "count": 1,
                    "next": None,
                    "previous": None,
                    "next_cursor": None,
                    "limit": 250,
                    "offset": 0,
                },
            }
        }
    )
    success: bool = True
    data: list[RowOut]
    pagination: RowsPagination


class DeleteRowsIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "dataset": DATASET_ID,
                "start": "2025-12-01T00:00:00Z",
                "end": "2025-12-16T00:00:00Z",
            }
        },
    )
    dataset: str
    start: Timestamp | None = Field(None, description="Inclusive.")
    end: Timestamp | None = Field(None, description="Exclusive.")
    all: bool = Field(False, description="Required to delete every row (no range).")


class DeleteRowsAnswer(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"success": True, "deleted": 1200}})
    success: bool = True
    deleted: int


class AggregateRow(BaseModel):
    timestamp: str = Field(description="The bucket's start (UTC).")
    count: int = Field(description="Rows in the bucket.")
    values: dict[str, Any]


class AggregateAnswer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "success": True,
                "bucket": "1h",
                "agg": "avg",
                "columns": ["close"],
                "data": [
                    {
                        "timestamp": "2025-12-16T10:00:00Z",
                        "count": 60,
                        "values": {"close": 104550.5},
                    }
                ],
            }
        }
    )
    success: bool = True
    bucket: str
    agg: str
    columns: list[str]
    data: list[AggregateRow]
