"""Timeseries rows and columns (`rows.md`)."""

from __future__ import annotations

from quarry_client import models as m
from quarry_client.endpoints import endpoint

LIST_COLUMNS = endpoint("GET", "/api/v1/columns", answer=m.ColumnListAnswer, query=("dataset",))
CREATE_COLUMN = endpoint("POST", "/api/v1/columns", body=m.ColumnIn, answer=m.ColumnAnswer)
DELETE_COLUMN = endpoint("DELETE", "/api/v1/columns/{column_id}")

INSERT_ROW = endpoint("POST", "/api/v1/rows", body=m.RowInsertIn, answer=m.RowAnswer)
#: JSON (`BulkInsertIn`) or, streamed, `application/x-ndjson` with `dataset` and
#: `on_conflict` as query parameters.
BULK_INSERT = endpoint(
    "POST",
    "/api/v1/rows/bulk_insert",
    body=m.BulkInsertIn,
    answer=m.BulkInsertAnswer,
    query=("dataset", "on_conflict"),
)
READ_ROWS = endpoint(
    "GET",
    "/api/v1/rows",
    answer=m.RowsAnswer,
    query=("dataset", "start", "end", "ordering", "limit", "offset", "after"),
)
DELETE_ROWS = endpoint("DELETE", "/api/v1/rows", body=m.DeleteRowsIn, answer=m.DeleteRowsAnswer)
#: Streamed JSON, CSV or NDJSON (gzip when accepted).
DOWNLOAD_ROWS = endpoint(
    "GET", "/api/v1/rows/bulk_download", query=("dataset", "output", "start", "end")
)
#: NDJSON of the most recent rows, values flattened.
LIVE_ROWS = endpoint("GET", "/api/v1/rows/live", query=("dataset", "limit"))
#: Server-Sent Events; `Last-Event-ID` (a header) resumes after that row.
STREAM_ROWS = endpoint("GET", "/api/v1/rows/stream", query=("dataset", "poll_interval"))
AGGREGATE_ROWS = endpoint(
    "GET",
    "/api/v1/rows/aggregate",
    answer=m.RowsAggregateAnswer,
    query=("dataset", "bucket", "agg", "columns", "start", "end"),
)
