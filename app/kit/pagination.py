"""Offset pagination as the seeds answer it (conventions.md)."""

from __future__ import annotations

from pydantic import BaseModel


class Pagination(BaseModel):
    page: int
    page_size: int
    total_items: int
    total_pages: int
    has_next: bool
    has_previous: bool

    @classmethod
    def of(cls, *, page: int, page_size: int, total_items: int) -> Pagination:
        total_pages = (total_items + page_size - 1) // page_size
        return cls(
            page=page,
            page_size=page_size,
            total_items=total_items,
            total_pages=total_pages,
            has_next=page < total_pages,
            has_previous=page > 1,
        )
