"""HTTP endpoints of keyword search (`spec/entries.md`): over every dataset the
caller can read, or scoped to one dataset's items (seed 003). Both count against
the search rate limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.audit import READ_ONLY_KEY
from app.http import CallerDep, SettingsDep, error_responses
from app.kit import Pagination
from app.wiring import request_state
from data_api.datasets.router import get_dataset_service
from data_api.entries.repository import EntryStore
from data_api.entries.schemas import EntryOut
from data_api.search.index import SearchIndexes
from data_api.search.indexer import SearchIndexer
from data_api.search.schemas import (
    ScopedSearchRequest,
    SearchAnswer,
    SearchHit,
    SearchRequest,
)
from data_api.search.service import SearchPage, SearchService

router = APIRouter(prefix="/api/v1")
SEARCH_LIMIT = {"x-rate-limit-operation": "search", READ_ONLY_KEY: True}
RESPONSES = error_responses(400, 401, 404, 422, 429, 503)


def get_search_service(request: Request, settings: SettingsDep) -> SearchService:
    """Raises DatabaseUnavailable until the catalogue's indexes exist."""
    datasets = get_dataset_service(request, settings)
    catalogue = datasets.catalogue
    return SearchService(
        datasets=datasets,
        store=EntryStore(catalogue),
        indexes=request_state(request).get(SearchIndexes),
        request_rebuild=request_state(request).get(SearchIndexer).request_rebuild,
    )


ServiceDep = Annotated[SearchService, Depends(get_search_service)]


def _answer(found: SearchPage, page: int, page_size: int) -> SearchAnswer:
    return SearchAnswer(
        data=[
            SearchHit(
                entry=EntryOut(**hit["entry"]),
                dataset_id=hit["dataset_id"],
                score=hit["score"],
                snippets=hit["snippets"],
            )
            for hit in found.data
        ],
        pagination=Pagination.of(page=page, page_size=page_size, total_items=found.total),
        took_ms=found.took_ms,
    )


@router.post(
    "/search",
    tags=["search"],
    response_model=SearchAnswer,
    responses=RESPONSES,
    openapi_extra=SEARCH_LIMIT,
)
async def search(body: SearchRequest, caller: CallerDep, service: ServiceDep) -> SearchAnswer:
    """Keyword search (BM25, snippets) over every dataset you can read, or the named ones."""
    dataset_ids = body.dataset_ids
    if body.dataset_id is not None:
        dataset_ids = [body.dataset_id, *(dataset_ids or [])]
    found = await service.search(
        user_id=caller.user_id,
        query=body.query,
        dataset_ids=dataset_ids,
        file_types=body.file_types,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
        page=body.page,
        page_size=body.page_size,
    )
    return _answer(found, body.page, body.page_size)


@router.post(
    "/datasets/{dataset_id}/search",
    tags=["search"],
    response_model=SearchAnswer,
    responses=RESPONSES,
    openapi_extra=SEARCH_LIMIT,
)
async def search_dataset(
    dataset_id: str, body: ScopedSearchRequest, caller: CallerDep, service: ServiceDep
) -> SearchAnswer:
    """Keyword search within one dataset's items (`read`; ACL override respected)."""
    found = await service.search(
        user_id=caller.user_id,
        query=body.query,
        dataset_ids=[dataset_id],
        file_types=body.file_types,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
        page=body.page,
        page_size=body.page_size,
    )
    return _answer(found, body.page, body.page_size)
