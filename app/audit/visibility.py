"""Who sees which audit records: a platform admin everything; anyone else their
own actions and what happened on the datasets they own or administer (the
datasets feature registers how to tell, `AuditVisibility`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bson import ObjectId
from fastapi import FastAPI

from app.clock import as_utc
from app.db import After, Before, Condition, DatabaseHandle, Eq
from app.wiring import state_of

# ------------------------------------------------------------------ visibility


class AuditVisibility(Protocol):
    """Who sees what (provided as `AuditVisibility` by the datasets feature, which
    the core cannot import)."""

    async def dataset_ids_administered(self, user_id: ObjectId) -> list[ObjectId]: ...

    async def is_platform_admin(self, user_id: ObjectId) -> bool: ...


class RoleVisibility:
    """Until a feature registers one: admins by `users.role`, no dataset grants."""

    def __init__(self, control: DatabaseHandle) -> None:
        self._control = control

    async def dataset_ids_administered(self, user_id: ObjectId) -> list[ObjectId]:
        return []

    async def is_platform_admin(self, user_id: ObjectId) -> bool:
        user = await self._control["users"].find_one({"_id": user_id}, {"role": 1})
        return user is not None and user.get("role") == "admin"


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    dataset_id: ObjectId | None = None
    actor_user_id: ObjectId | None = None

    @property
    def walkable(self) -> bool:
        """No filter at all: the chain itself is the index."""
        return self == AuditFilter()

    def clauses(self) -> list[tuple[Condition, ...]]:
        """The filters as page-query clauses (`at` is kept in milliseconds)."""
        clauses: list[tuple[Condition, ...]] = [
            (Eq(key, getattr(self, key)),)
            for key in ("action", "dataset_id", "actor_user_id")
            if getattr(self, key) is not None
        ]
        if self.since is not None:
            # `at` is kept in whole milliseconds: at >= since <=> at > (since, rounded up) - 1 ms.
            since = as_utc(self.since)
            if since < self.since:
                since += timedelta(milliseconds=1)
            clauses.append((After("at", since - timedelta(milliseconds=1)),))
        if self.until is not None:
            clauses.append((Before("at", self.until),))
        return clauses


@dataclass(frozen=True)
class Visibility:
    """What one caller may see: everything, or their own actions plus datasets."""

    everything: bool
    user_id: ObjectId | None = None
    dataset_ids: tuple[ObjectId, ...] = ()


async def visibility_of(app: FastAPI, user_id: ObjectId) -> Visibility:
    state = state_of(app)
    visibility = state.find(AuditVisibility) or RoleVisibility(state.database.control)
    if await visibility.is_platform_admin(user_id):
        return Visibility(everything=True)
    administered = await visibility.dataset_ids_administered(user_id)
    return Visibility(everything=False, user_id=user_id, dataset_ids=tuple(administered))
