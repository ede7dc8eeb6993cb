"""Who may do what on a dataset: the permission levels and how a caller's level is found.

A caller's level is the highest of: `owner` (created it), each live share to
them, `read` when the dataset is public, `read` when they hold a tag it carries,
`admin` for platform administrators. It is resolved from the catalogue before
any tenant data is read; the lookups that do not depend on each other (the
share, the caller's role, the tags they hold) run concurrently, so the check
costs about one round trip: it runs beside reading the dataset. Nothing is cached
across requests: a revoked share or released tag counts from the next request.
An expired or deleting dataset has no level for anyone (404 from the second it
expires, before any sweep).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from bson import ObjectId

from app.clock import utc_now
from app.db import Document
from app.users import is_platform_admin
from data_api.datasets.errors import DatasetNotFound, InsufficientPermission
from data_api.datasets.repository import Catalogue


class Level(IntEnum):
    none = 0
    read = 1
    write = 2
    admin = 3
    owner = 4


#: What a share may grant (never `owner`).
SHAREABLE = ("read", "write", "admin")


def share_is_live(share: Document, now: datetime) -> bool:
    expires = share.get("expires_at")
    return expires is None or expires > now


def dataset_is_live(dataset: Document, now: datetime) -> bool:
    return dataset.get("state") == "live" and dataset["expires_at"] > now


@dataclass
class Access:
    """A caller's standing on one dataset."""

    dataset: Document
    level: Level
    matching_tags: list[ObjectId] = field(default_factory=list)

    @property
    def is_owner(self) -> bool:
        return self.level is Level.owner

    def require(self, needed: Level) -> None:
        if self.level < needed:
            raise InsufficientPermission(needed.name)


@dataclass
class Standing:
    """A caller's share to one dataset, platform role and held tags."""

    share: Document | None
    admin: bool
    held: set[ObjectId]

    def on(self, dataset: Document, now: datetime) -> Access:
        level = Level.none
        if self.share is not None and share_is_live(self.share, now):
            level = Level[self.share["permission"]]
        if self.admin:
            level = max(level, Level.admin)
        matching = [tag for tag in dataset.get("tags") or [] if tag in self.held]
        if dataset.get("is_public") or matching:
            level = max(level, Level.read)
        return Access(dataset, level, matching)


class AccessResolver:
    """Levels of callers on datasets, from the catalogue."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    async def level_on(
        self, dataset: Document, user_id: ObjectId, now: datetime, standing: Standing | None = None
    ) -> Access:
        if not dataset_is_live(dataset, now):
            return Access(dataset, Level.none)
        if dataset["owner_id"] == user_id:
            return Access(dataset, Level.owner)
        if standing is None:
            standing = await self.standing(dataset["_id"], user_id)
        return standing.on(dataset, now)

    async def standing(self, dataset_id: ObjectId, user_id: ObjectId) -> Standing:
        """What the caller holds that may reach this dataset: their share to it, their
        role, their tags."""
        _, share, user, held = await self.catalogue.dataset_and_standing(
            dataset_id=dataset_id, user_id=user_id
        )
        return Standing(share=share, admin=_is_admin(user), held=set(held))

    async def resolve(self, dataset_id: ObjectId, user_id: ObjectId, now: datetime) -> Access:
        """The caller's access to a dataset they can see; raises DatasetNotFound otherwise.

        The dataset and the caller's standing are read together (concurrent
        lookups; planned finds on the embedded engine's PostgreSQL)."""
        dataset, share, user, held = await self.catalogue.dataset_and_standing(
            dataset_id=dataset_id, user_id=user_id
        )
        if dataset is None:
            raise DatasetNotFound()
        standing = Standing(share=share, admin=_is_admin(user), held=set(held))
        access = await self.level_on(dataset, user_id, now, standing)
        if access.level is Level.none:
            raise DatasetNotFound()
        return access

    async def require(
        self, dataset_id: ObjectId, user_id: ObjectId, needed: Level, now: datetime
    ) -> Access:
        """Raises DatasetNotFound (no level), InsufficientPermission (too low)."""
        access = await self.resolve(dataset_id, user_id, now)
        access.require(needed)
        return access


def _is_admin(user: Document | None) -> bool:
    return user is not None and user.get("role") == "admin"


class DatasetAuditVisibility:
    """What the audit log shows a user beyond their own actions: the records of the
    datasets they own or administer (`app.audit.AuditVisibility`)."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    async def dataset_ids_administered(self, user_id: ObjectId) -> list[ObjectId]:
        owned, shares = await asyncio.gather(
            self.catalogue.datasets_where(query={"owner_id": user_id}),
            self.catalogue.shares_where(query={"user_id": user_id}),
        )
        now = utc_now()
        administered = [
            s["dataset_id"] for s in shares if s["permission"] == "admin" and share_is_live(s, now)
        ]
        return [d["_id"] for d in owned] + administered

    async def is_platform_admin(self, user_id: ObjectId) -> bool:
        return await is_platform_admin(control=self.catalogue.control, user_id=user_id)
