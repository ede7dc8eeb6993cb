"""Document CRUD, count, aggregate and bulk (`crud.md`)."""

from __future__ import annotations

from quarry_client import models as m
from quarry_client.endpoints import endpoint

INSERT = endpoint("POST", "/api/crud", body=m.InsertRequest, answer=m.InsertAnswer)
FIND = endpoint(
    "GET",
    "/api/crud",
    answer=m.FindAnswer,
    query=(
        "database_id",
        "collection_name",
        "filters",
        "sort",
        "fields",
        "page",
        "page_size",
        "after",
        "count",
    ),
)
GET = endpoint(
    "GET",
    "/api/crud/{document_id}",
    answer=m.DocumentAnswer,
    query=("database_id", "collection_name", "fields"),
)
#: PATCH and PUT are the same operation on the server (a plain object is `$set`).
UPDATE = endpoint("PATCH", "/api/crud", body=m.UpdateRequest, answer=m.UpdateAnswer)
REPLACE = endpoint(
    "PUT", "/api/crud", body=m.UpdateRequest, answer=m.UpdateAnswer, idempotent=False
)
#: The client sends a JSON body; the server also reads these query parameters instead.
#: Not idempotent: with multi=false each repetition deletes another match.
DELETE = endpoint(
    "DELETE",
    "/api/crud",
    body=m.DeleteRequest,
    answer=m.DeleteAnswer,
    query=("database_id", "collection_name", "filters", "multi", "all"),
    idempotent=False,
)
COUNT = endpoint(
    "POST", "/api/crud/count", body=m.CountRequest, answer=m.CountAnswer, idempotent=True
)
AGGREGATE = endpoint(
    "POST",
    "/api/crud/aggregate",
    body=m.AggregateRequest,
    answer=m.DocumentsAggregateAnswer,
    idempotent=True,
)
BULK = endpoint("POST", "/api/crud/bulk", body=m.BulkRequest, answer=m.BulkAnswer)
