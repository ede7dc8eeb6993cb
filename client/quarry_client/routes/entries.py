"""File entries (upload, download, text, batch) and keyword search (`entries.md`)."""

from __future__ import annotations

from quarry_client import models as m
from quarry_client.endpoints import endpoint

#: Multipart (`dataset_id`, `name`, `metadata` fields, then `file` parts), streamed.
UPLOAD = endpoint("POST", "/api/v1/entries", answer=m.UploadAnswer, query=("dataset_id",))
BATCH = endpoint(
    "POST", "/api/v1/entries/batch", body=m.BatchRequest, answer=m.BatchAnswer, idempotent=True
)
BATCH_CONTENT = endpoint(
    "POST",
    "/api/v1/entries/batch/content",
    body=m.BatchContentRequest,
    answer=m.BatchContentAnswer,
    idempotent=True,
)
GET = endpoint("GET", "/api/v1/entries/{entry_id}", answer=m.EntryAnswer)
UPDATE = endpoint(
    "PATCH", "/api/v1/entries/{entry_id}", body=m.UpdateEntryRequest, answer=m.EntryAnswer
)
DELETE = endpoint("DELETE", "/api/v1/entries/{entry_id}")
#: `text/plain; charset=utf-8`; 409 TEXT_NOT_READY while the extraction is pending.
TEXT = endpoint("GET", "/api/v1/entries/{entry_id}/text")
#: The bytes, streamed; `Range` (+ `If-Range` with the ETag) for a resumed download.
DOWNLOAD = endpoint("GET", "/api/v1/entries/{entry_id}/download")
LIST = endpoint(
    "GET",
    "/api/v1/datasets/{dataset_id}/entries",
    answer=m.EntryListAnswer,
    query=("sort", "order", "page", "page_size"),
)

SEARCH = endpoint(
    "POST", "/api/v1/search", body=m.SearchRequest, answer=m.SearchAnswer, idempotent=True
)
SEARCH_DATASET = endpoint(
    "POST",
    "/api/v1/datasets/{dataset_id}/search",
    body=m.ScopedSearchRequest,
    answer=m.SearchAnswer,
    idempotent=True,
)
