"""Datasets, their metadata, items, subsets, shares and tags, the access check,
and the audit trail (`datasets.md`). A dataset's entries and scoped search are
in `routes/entries.py`."""

from __future__ import annotations

from quarry_client import models as m
from quarry_client.endpoints import endpoint

_PAGING = ("page", "page_size", "limit", "offset")

# ---------------------------------------------------------------- datasets

CREATE = endpoint("POST", "/api/v1/datasets", body=m.CreateDatasetRequest, answer=m.DatasetAnswer)
LIST = endpoint(
    "GET",
    "/api/v1/datasets",
    answer=m.DatasetListAnswer,
    query=("search", "owned_only", "tag", "is_public", *_PAGING),
)
#: Every other query parameter is a free-form `metadata.<key>` filter.
#: Every parameter but the paging ones is a metadata filter.
SEARCH = endpoint(
    "GET", "/api/v1/datasets/search", answer=m.DatasetListAnswer, query=_PAGING, open_query=True
)
EXPIRING = endpoint(
    "GET", "/api/v1/datasets/expiring", answer=m.DatasetListAnswer, query=("within_hours",)
)
GET = endpoint("GET", "/api/v1/datasets/{dataset_id}", answer=m.DatasetAnswer)
UPDATE = endpoint(
    "PATCH", "/api/v1/datasets/{dataset_id}", body=m.UpdateDatasetRequest, answer=m.DatasetAnswer
)
REPLACE = endpoint(
    "PUT", "/api/v1/datasets/{dataset_id}", body=m.ReplaceDatasetRequest, answer=m.DatasetAnswer
)
DELETE = endpoint("DELETE", "/api/v1/datasets/{dataset_id}")
MERGE_METADATA = endpoint("PATCH", "/api/v1/datasets/{dataset_id}/metadata", answer=m.DatasetAnswer)
REPLACE_METADATA = endpoint("PUT", "/api/v1/datasets/{dataset_id}/metadata", answer=m.DatasetAnswer)

# ---------------------------------------------------------------- items and subsets

ADD_ITEMS = endpoint(
    "POST",
    "/api/v1/datasets/{dataset_id}/items",
    body=m.AddItemsRequest,
    answer=m.AddItemsAnswer,
)
LIST_ITEMS = endpoint(
    "GET",
    "/api/v1/datasets/{dataset_id}/items",
    answer=m.ItemListAnswer,
    query=("page", "page_size"),
)
REMOVE_ITEMS = endpoint(
    "DELETE",
    "/api/v1/datasets/{dataset_id}/items",
    body=m.RemoveItemsRequest,
    answer=m.RemoveItemsAnswer,
)
CREATE_SUBSET = endpoint(
    "POST",
    "/api/v1/datasets/{dataset_id}/subset",
    body=m.SubsetRequest,
    answer=m.DatasetAnswer,
)

# ---------------------------------------------------------------- shares

CREATE_SHARE = endpoint(
    "POST",
    "/api/v1/datasets/{dataset_id}/shares",
    body=m.CreateShareRequest,
    answer=m.ShareAnswer,
)
LIST_SHARES = endpoint("GET", "/api/v1/datasets/{dataset_id}/shares", answer=m.ShareListAnswer)
UPDATE_SHARE = endpoint(
    "PATCH",
    "/api/v1/datasets/{dataset_id}/shares/{share_id}",
    body=m.UpdateShareRequest,
    answer=m.ShareAnswer,
)
DELETE_SHARE = endpoint("DELETE", "/api/v1/datasets/{dataset_id}/shares/{share_id}")

# ---------------------------------------------------------------- tags and access

LIST_DATASET_TAGS = endpoint("GET", "/api/v1/datasets/{dataset_id}/tags", answer=m.TagListAnswer)
ADD_DATASET_TAG = endpoint(
    "POST",
    "/api/v1/datasets/{dataset_id}/tags",
    body=m.DatasetTagRequest,
    answer=m.TagListAnswer,
)
REMOVE_DATASET_TAG = endpoint("DELETE", "/api/v1/datasets/{dataset_id}/tags/{tag_id}")

LIST_TAGS = endpoint("GET", "/api/v1/tags", answer=m.TagListAnswer)
CREATE_TAG = endpoint("POST", "/api/v1/tags", body=m.CreateTagRequest, answer=m.TagAnswer)
ACQUIRE_TAG = endpoint("POST", "/api/v1/tags/acquire", body=m.AcquireTagRequest, answer=m.TagAnswer)
MY_TAGS = endpoint("GET", "/api/v1/tags/mine", answer=m.TagListAnswer)
RELEASE_TAG = endpoint("DELETE", "/api/v1/tags/mine/{tag_id}")

CHECK_ACCESS = endpoint(
    "POST",
    "/api/v1/access/check",
    body=m.AccessCheckRequest,
    answer=m.AccessCheckAnswer,
    idempotent=True,
)

# ---------------------------------------------------------------- audit

_AUDIT_FILTERS = ("since", "until", "action", "dataset_id", "actor_user_id")

AUDIT_PAGE = endpoint(
    "GET", "/api/v1/audit", answer=m.AuditPageAnswer, query=(*_AUDIT_FILTERS, "after", "limit")
)
#: NDJSON, one record per line, oldest first.
AUDIT_EXPORT = endpoint("GET", "/api/v1/audit/export", query=_AUDIT_FILTERS)
