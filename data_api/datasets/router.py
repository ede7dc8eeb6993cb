"""HTTP layer of datasets, tags, shares and items: parse, call the service, shape the answer."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
