"""HTTP endpoints of datasets, tags, shares and items (`spec/datasets.md`): parse,
call the service, shape the answer. Routes that count against an operation rate
limit say so in `openapi_extra` (read by `app/limits/rate_limit.py`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from app.audit import READ_ONLY_KEY, AuditLog, annotate
from app.errors import DatabaseUnavailable
from app.http import CallerDep, SettingsDep, error_responses
from app.kit import Pagination
from app.wiring import request_state
from data_api.datasets.repository import Catalogue
from data_api.datasets.schemas import (
    AccessCheckAnswer,
    AccessCheckOut,
    AccessCheckRequest,
    AcquireTagRequest,
    AddItemsAnswer,
    AddItemsRequest,
    CreateDatasetRequest,
    CreateShareRequest,
    CreateTagRequest,
    DatasetAnswer,
    DatasetListAnswer,
    DatasetOut,
    DatasetTagRequest,
    ItemListAnswer,
    ItemOut,
    ListPagination,
    RemoveItemsAnswer,
    RemoveItemsRequest,
    ReplaceDatasetRequest,
    ShareAnswer,
    ShareListAnswer,
    ShareOut,
    SubsetRequest,
    TagAnswer,
    TagListAnswer,
    TagOut,
    UpdateDatasetRequest,
    UpdateShareRequest,
)
from data_api.datasets.service import DatasetService, Page

router = APIRouter(prefix="/api/v1")


def _limit(operation: str) -> dict[str, Any]:
    return {"x-rate-limit-operation": operation}


def get_dataset_service(request: Request, settings: SettingsDep) -> DatasetService:
    """Raises DatabaseUnavailable until the catalogue's unique indexes exist."""
    state = request_state(request)
    catalogue = state.get(Catalogue)
    if not catalogue.ready:
        raise DatabaseUnavailable(
            "The dataset catalogue is being set up; retry shortly.",
            headers={"Retry-After": str(settings.retry_after_seconds)},
        )
    return DatasetService(catalogue=catalogue, settings=settings, audit=state.find(AuditLog))


ServiceDep = Annotated[DatasetService, Depends(get_dataset_service)]
READ = error_responses(401, 404, 422, 429)
CHANGE = error_responses(401, 403, 404, 422, 429)


def _tag_out(tag: dict[str, Any]) -> TagOut:
    return TagOut(
        id=str(tag["_id"]),
        name=tag["name"],
        description=tag.get("description", ""),
        is_public=tag.get("is_public", True),
        metadata=tag.get("metadata", {}),
        created_at=tag["created_at"],
        updated_at=tag["updated_at"],
    )


def _list_pagination(
    request: Request, *, offset: int, limit: int, total: int, page_style: bool
) -> ListPagination:
    page = offset // limit + 1
    base = Pagination.of(page=page, page_size=limit, total_items=total)

    def link(new_offset: int) -> str:
        params = dict(request.query_params)
        if page_style:
            params.update(page=str(new_offset // limit + 1), page_size=str(limit))
        else:
            params.update(offset=str(new_offset), limit=str(limit))
        return str(request.url.replace_query_params(**params))

    # From offset and limit, so they agree with the links whatever the offset.
    base.has_next = offset + limit < total
    base.has_previous = offset > 0
    return ListPagination(
        **base.model_dump(),
        limit=limit,
        offset=offset,
        next=link(offset + limit) if offset + limit < total else None,
        previous=link(max(0, offset - limit)) if offset > 0 else None,
    )


def _paging(
    page: int | None, page_size: int | None, limit: int | None, offset: int | None
) -> tuple[Page, bool]:
    """`page`/`page_size` (default 20) or seed 002's `limit`/`offset` (default 250)."""
    if limit is not None or offset is not None:
        return Page(offset=offset or 0, limit=limit or 250), False
    size = page_size or 20
    return Page(offset=((page or 1) - 1) * size, limit=size), True


MergeBody = Annotated[
    dict[str, Any], Body(examples=[{"site": None, "revision": 2}], description="null removes")
]
ReplaceBody = Annotated[dict[str, Any], Body(examples=[{"year": 2024, "site": "north"}])]
PageQ = Annotated[int | None, Query(ge=1, le=1_000_000)]
PageSizeQ = Annotated[int | None, Query(ge=1, le=100)]
LimitQ = Annotated[int | None, Query(ge=1, le=1000, description="seed 002 style; default 250")]
OffsetQ = Annotated[int | None, Query(ge=0, le=100_000_000)]

# ---------------------------------------------------------------- datasets


@router.post(
    "/datasets",
    tags=["datasets"],
    status_code=201,
    response_model=DatasetAnswer,
    response_model_exclude_none=False,
    responses=error_responses(400, 401, 422, 429),
    openapi_extra=_limit("dataset_create"),
)
async def create_dataset(
    request: Request, body: CreateDatasetRequest, caller: CallerDep, service: ServiceDep
) -> DatasetAnswer:
    """Create a dataset; `entry_ids` link existing entries you can read as its items."""
    data, skipped = await service.create(
        user_id=caller.user_id, body=body, fields_set=body.model_fields_set
    )
    annotate(request, resource_type="dataset", resource_id=data["id"], dataset_id=data["id"])
    return DatasetAnswer(data=DatasetOut(**data), skipped_ids=skipped)


@router.get(
    "/datasets",
    tags=["datasets"],
    response_model=DatasetListAnswer,
    responses=error_responses(401, 422, 429),
)
async def list_datasets(
    request: Request,
    caller: CallerDep,
    service: ServiceDep,
    search: Annotated[str | None, Query(max_length=200)] = None,
    owned_only: bool = False,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    is_public: bool | None = None,
    page: PageQ = None,
    page_size: PageSizeQ = None,
    limit: LimitQ = None,
    offset: OffsetQ = None,
) -> DatasetListAnswer:
    """The datasets you can read, most recently changed first."""
    window, page_style = _paging(page, page_size, limit, offset)
    data, total = await service.list(
        user_id=caller.user_id,
        page=window,
        search=search,
        owned_only=owned_only,
        tag=tag,
        is_public=is_public,
    )
    return DatasetListAnswer(
        data=[DatasetOut(**d) for d in data],
        pagination=_list_pagination(
            request, offset=window.offset, limit=window.limit, total=total, page_style=page_style
        ),
    )


_PAGING_PARAMS = {"page", "page_size", "limit", "offset"}


@router.get(
    "/datasets/search",
    tags=["datasets"],
    response_model=DatasetListAnswer,
    responses=error_responses(400, 401, 422, 429),
    openapi_extra=_limit("search"),
)
async def search_datasets(
    request: Request,
    caller: CallerDep,
    service: ServiceDep,
    page: PageQ = None,
    page_size: PageSizeQ = None,
    limit: LimitQ = None,
    offset: OffsetQ = None,
) -> DatasetListAnswer:
    """Datasets whose metadata matches every query parameter exactly (`?year=2024`)."""
    window, page_style = _paging(page, page_size, limit, offset)
    filters = {k: v for k, v in request.query_params.items() if k not in _PAGING_PARAMS}
    data, total = await service.search_metadata(
        user_id=caller.user_id, filters=filters, page=window
    )
    return DatasetListAnswer(
        data=[DatasetOut(**d) for d in data],
        pagination=_list_pagination(
            request, offset=window.offset, limit=window.limit, total=total, page_style=page_style
        ),
    )


@router.get(
    "/datasets/expiring",
    tags=["datasets"],
    response_model=DatasetListAnswer,
    responses=error_responses(401, 403, 422, 429),
)
async def expiring_datasets(
    request: Request,
    caller: CallerDep,
    service: ServiceDep,
    within_hours: Annotated[int, Query(ge=1, le=24 * 3650)] = 240,
) -> DatasetListAnswer:
    """Platform admins: datasets expiring within `within_hours`, soonest first."""
    data = await service.expiring(user_id=caller.user_id, within_hours=within_hours)
    total = len(data)
    return DatasetListAnswer(
        data=[DatasetOut(**d) for d in data],
        pagination=_list_pagination(
            request, offset=0, limit=max(total, 1), total=total, page_style=True
        ),
    )


@router.get(
    "/datasets/{dataset_id}", tags=["datasets"], response_model=DatasetAnswer, responses=READ
)
async def get_dataset(dataset_id: str, caller: CallerDep, service: ServiceDep) -> DatasetAnswer:
    """One dataset with its counts and your permission on it."""
    data = await service.get(user_id=caller.user_id, dataset_id=dataset_id)
    return DatasetAnswer(data=DatasetOut(**data))


@router.patch(
    "/datasets/{dataset_id}", tags=["datasets"], response_model=DatasetAnswer, responses=CHANGE
)
async def update_dataset(
    dataset_id: str, body: UpdateDatasetRequest, caller: CallerDep, service: ServiceDep
) -> DatasetAnswer:
    """Change any of name, description, metadata, is_public, acl_override_enabled, expires_at."""
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    data = await service.update(user_id=caller.user_id, dataset_id=dataset_id, changes=changes)
    return DatasetAnswer(data=DatasetOut(**data))


@router.put(
    "/datasets/{dataset_id}", tags=["datasets"], response_model=DatasetAnswer, responses=CHANGE
)
async def replace_dataset(
    dataset_id: str, body: ReplaceDatasetRequest, caller: CallerDep, service: ServiceDep
) -> DatasetAnswer:
    """Replace name, description and metadata (seed 002)."""
    changes = {"name": body.name, "description": body.description, "metadata": body.metadata}
    data = await service.update(user_id=caller.user_id, dataset_id=dataset_id, changes=changes)
    return DatasetAnswer(data=DatasetOut(**data))


@router.patch(
    "/datasets/{dataset_id}/metadata",
    tags=["datasets"],
    response_model=DatasetAnswer,
    responses=CHANGE,
)
async def merge_metadata(
    dataset_id: str, body: MergeBody, caller: CallerDep, service: ServiceDep
) -> DatasetAnswer:
    """Merge keys into the metadata; a `null` value removes that key."""
    data = await service.change_metadata(
        user_id=caller.user_id, dataset_id=dataset_id, metadata=body, merge=True
    )
    return DatasetAnswer(data=DatasetOut(**data))


@router.put(
    "/datasets/{dataset_id}/metadata",
    tags=["datasets"],
    response_model=DatasetAnswer,
    responses=CHANGE,
)
async def replace_metadata(
    dataset_id: str, body: ReplaceBody, caller: CallerDep, service: ServiceDep
) -> DatasetAnswer:
    """Replace the metadata whole."""
    data = await service.change_metadata(
        user_id=caller.user_id, dataset_id=dataset_id, metadata=body, merge=False
    )
    return DatasetAnswer(data=DatasetOut(**data))


@router.delete("/datasets/{dataset_id}", tags=["datasets"], status_code=204, responses=CHANGE)
async def delete_dataset(dataset_id: str, caller: CallerDep, service: ServiceDep) -> Response:
    """Owner only: delete the dataset, its items, shares, tags and the entries homed in it."""
    await service.delete(user_id=caller.user_id, dataset_id=dataset_id)
    return Response(status_code=204)


# ---------------------------------------------------------------- tags


@router.get("/tags", tags=["tags"], response_model=TagListAnswer, responses=READ)
async def list_tags(caller: CallerDep, service: ServiceDep) -> TagListAnswer:
    """The tag catalogue (never a secret)."""
    return TagListAnswer(data=[_tag_out(t) for t in await service.list_tags()])


@router.post(
    "/tags",
    tags=["tags"],
    status_code=201,
    response_model=TagAnswer,
    responses=error_responses(401, 403, 409, 422, 429),
)
async def create_tag(
    request: Request, body: CreateTagRequest, caller: CallerDep, service: ServiceDep
) -> TagAnswer:
    """Platform admins: create a tag; a private one (`is_public: false`) has a secret."""
    tag = await service.create_tag(user_id=caller.user_id, body=body)
    annotate(request, resource_type="tag", resource_id=tag["_id"], details={"name": tag["name"]})
    return TagAnswer(data=_tag_out(tag))


@router.post(
    "/tags/acquire",
    tags=["tags"],
    response_model=TagAnswer,
    responses=error_responses(401, 403, 422, 429),
)
async def acquire_tag(
    request: Request, body: AcquireTagRequest, caller: CallerDep, service: ServiceDep
) -> TagAnswer:
    """Hold a tag (idempotent): you then read every dataset that carries it."""
    annotate(request, resource_type="tag", details={"tag_name": body.tag_name})
    tag = await service.acquire_tag(user_id=caller.user_id, name=body.tag_name, secret=body.secret)
    annotate(request, resource_id=tag["_id"])
    return TagAnswer(data=_tag_out(tag))


@router.get("/tags/mine", tags=["tags"], response_model=TagListAnswer, responses=READ)
async def my_tags(caller: CallerDep, service: ServiceDep) -> TagListAnswer:
    """The tags you hold."""
    return TagListAnswer(data=[_tag_out(t) for t in await service.my_tags(user_id=caller.user_id)])


@router.delete("/tags/mine/{tag_id}", tags=["tags"], status_code=204, responses=READ)
async def release_tag(tag_id: str, caller: CallerDep, service: ServiceDep) -> Response:
    """Stop holding a tag."""
    await service.release_tag(user_id=caller.user_id, tag_id=tag_id)
    return Response(status_code=204)


@router.get(
    "/datasets/{dataset_id}/tags", tags=["tags"], response_model=TagListAnswer, responses=READ
)
async def dataset_tags(dataset_id: str, caller: CallerDep, service: ServiceDep) -> TagListAnswer:
    """The tags a dataset carries."""
    tags = await service.dataset_tags(user_id=caller.user_id, dataset_id=dataset_id)
    return TagListAnswer(data=[_tag_out(t) for t in tags])


@router.post(
    "/datasets/{dataset_id}/tags", tags=["tags"], response_model=TagListAnswer, responses=CHANGE
)
async def tag_dataset(
    request: Request,
    dataset_id: str,
    body: DatasetTagRequest,
    caller: CallerDep,
    service: ServiceDep,
) -> TagListAnswer:
    """Put a tag on the dataset (by `tag_name` or `tag_id`): its holders can read it."""
    annotate(request, details={"tag_name": body.tag_name, "tag_id": body.tag_id})
    tags = await service.tag_dataset(
        user_id=caller.user_id, dataset_id=dataset_id, tag_name=body.tag_name, tag_id=body.tag_id
    )
    return TagListAnswer(data=[_tag_out(t) for t in tags])


@router.delete(
    "/datasets/{dataset_id}/tags/{tag_id}", tags=["tags"], status_code=204, responses=CHANGE
)
async def untag_dataset(
    dataset_id: str, tag_id: str, caller: CallerDep, service: ServiceDep
) -> Response:
    """Take a tag off the dataset."""
    await service.untag_dataset(user_id=caller.user_id, dataset_id=dataset_id, tag_id=tag_id)
    return Response(status_code=204)


@router.post(
    "/access/check",
    tags=["tags"],
    response_model=AccessCheckAnswer,
    responses=error_responses(401, 422, 429),
    openapi_extra={READ_ONLY_KEY: True},
)
async def check_access(
    body: AccessCheckRequest, caller: CallerDep, service: ServiceDep
) -> AccessCheckAnswer:
    """Whether you can read (or write) a dataset, and why; nothing about one you cannot see."""
    data = await service.check_access(
        user_id=caller.user_id, dataset_id=body.dataset_id, require_write=body.require_write
    )
    return AccessCheckAnswer(data=AccessCheckOut(**data))


# ---------------------------------------------------------------- shares


@router.post(
    "/datasets/{dataset_id}/shares",
    tags=["shares"],
    status_code=201,
    response_model=ShareAnswer,
    responses=error_responses(401, 403, 404, 409, 422, 429),
)
async def create_share(
    request: Request,
    dataset_id: str,
    body: CreateShareRequest,
    caller: CallerDep,
    service: ServiceDep,
) -> ShareAnswer:
    """Share the dataset with a user (by `user_id` or `email`) at a level up to your own."""
    annotate(request, details={"permission": body.permission})
    share = await service.create_share(user_id=caller.user_id, dataset_id=dataset_id, body=body)
    annotate(
        request,
        resource_type="share",
        resource_id=share["id"],
        details={"user_id": share["user_id"], "expires_at": share["expires_at"]},
    )
    return ShareAnswer(data=ShareOut(**share))


@router.get(
    "/datasets/{dataset_id}/shares",
    tags=["shares"],
    response_model=ShareListAnswer,
    responses=CHANGE,
)
async def list_shares(dataset_id: str, caller: CallerDep, service: ServiceDep) -> ShareListAnswer:
    """The dataset's live shares."""
    shares = await service.list_shares(user_id=caller.user_id, dataset_id=dataset_id)
    return ShareListAnswer(data=[ShareOut(**s) for s in shares])


@router.patch(
    "/datasets/{dataset_id}/shares/{share_id}",
    tags=["shares"],
    response_model=ShareAnswer,
    responses=CHANGE,
)
async def update_share(
    request: Request,
    dataset_id: str,
    share_id: str,
    body: UpdateShareRequest,
    caller: CallerDep,
    service: ServiceDep,
) -> ShareAnswer:
    """Change a share's permission or expiry."""
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    annotate(request, details=changes)
    share = await service.update_share(
        user_id=caller.user_id, dataset_id=dataset_id, share_id=share_id, changes=changes
    )
    return ShareAnswer(data=ShareOut(**share))


@router.delete(
    "/datasets/{dataset_id}/shares/{share_id}",
    tags=["shares"],
    status_code=204,
    responses=CHANGE,
)
async def delete_share(
    dataset_id: str, share_id: str, caller: CallerDep, service: ServiceDep
) -> Response:
    """Revoke a share at once."""
    await service.delete_share(user_id=caller.user_id, dataset_id=dataset_id, share_id=share_id)
    return Response(status_code=204)


# ---------------------------------------------------------------- items and subsets


@router.post(
    "/datasets/{dataset_id}/items",
    tags=["datasets"],
    response_model=AddItemsAnswer,
    responses=CHANGE,
    openapi_extra=_limit("items"),
)
async def add_items(
    request: Request, dataset_id: str, body: AddItemsRequest, caller: CallerDep, service: ServiceDep
) -> AddItemsAnswer:
    """Link entries you can read into the dataset (idempotent); others are `skipped_ids`."""
    result = await service.add_items(
        user_id=caller.user_id, dataset_id=dataset_id, entry_ids=body.entry_ids, notes=body.notes
    )
    annotate(request, details={"added": result["added"], "skipped": len(result["skipped_ids"])})
    return AddItemsAnswer(**result)


@router.get(
    "/datasets/{dataset_id}/items",
    tags=["datasets"],
    response_model=ItemListAnswer,
    responses=READ,
    openapi_extra=_limit("items"),
)
async def list_items(
    dataset_id: str,
    caller: CallerDep,
    service: ServiceDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ItemListAnswer:
    """The dataset's items you may see (all of them when the ACL override is on)."""
    rows, total = await service.list_items(
        user_id=caller.user_id, dataset_id=dataset_id, page=page, page_size=page_size
    )
    return ItemListAnswer(
        data=[ItemOut(**r) for r in rows],
        pagination=Pagination.of(page=page, page_size=page_size, total_items=total),
    )


@router.delete(
    "/datasets/{dataset_id}/items",
    tags=["datasets"],
    response_model=RemoveItemsAnswer,
    responses=CHANGE,
    openapi_extra=_limit("items"),
)
async def remove_items(
    dataset_id: str, body: RemoveItemsRequest, caller: CallerDep, service: ServiceDep
) -> RemoveItemsAnswer:
    """Unlink entries from the dataset (the entries themselves stay)."""
    removed = await service.remove_items(
        user_id=caller.user_id, dataset_id=dataset_id, entry_ids=body.entry_ids
    )
    return RemoveItemsAnswer(removed=removed)


@router.post(
    "/datasets/{dataset_id}/subset",
    tags=["datasets"],
    status_code=201,
    response_model=DatasetAnswer,
    responses=error_responses(400, 401, 404, 422, 429),
    openapi_extra=_limit("dataset_create"),
)
async def create_subset(
    request: Request, dataset_id: str, body: SubsetRequest, caller: CallerDep, service: ServiceDep
) -> DatasetAnswer:
    """A new dataset of yours whose items are some of this dataset's items."""
    data = await service.subset(
        user_id=caller.user_id, dataset_id=dataset_id, body=body, fields_set=body.model_fields_set
    )
    annotate(
        request, resource_type="dataset", resource_id=data["id"], details={"source": dataset_id}
    )
    return DatasetAnswer(data=DatasetOut(**data))
