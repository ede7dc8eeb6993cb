"""Who may do what on a dataset: the permission levels and how a caller's level is found.

A caller's level is the highest of: `owner` (created it), each live share to
them, `read` when the dataset is public, `read` when they hold a tag it carries,
`admin` for platform administrators. It is resolved from the catalogue before
any tenant data is read; the lookups that do not depend on each other (the
share, the caller's role, the tags they hold) run concurrently, so the check
costs about one round trip on top of reading the dataset. Nothing is cached
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

from app.database import Document
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


class AccessResolver:
    """Levels of callers on datasets, from the catalogue."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    async def level_on(self, dataset: Document, user_id: ObjectId, now: datetime) -> Access:
        if not dataset_is_live(dataset, now):
            return Access(dataset, Level.none)
        if dataset["owner_id"] == user_id:
            return Access(dataset, Level.owner)
        tags = dataset.get("tags") or []
        share, admin, held = await asyncio.gather(
            self.catalogue.find_share(query={"key": f"{dataset['_id']}:{user_id}"}),
            is_platform_admin(control=self.catalogue.control, user_id=user_id),
            self.catalogue.tags_held(user_id=user_id) if tags else _no_tags(),
        )
        level = Level.none
        if share is not None and share_is_live(share, now):
            level = Level[share["permission"]]
        if admin:
            level = max(level, Level.admin)
        matching = [tag for tag in tags if tag in set(held)]
        if dataset.get("is_public") or matching:
            level = max(level, Level.read)
        return Access(dataset, level, matching)

    async def resolve(self, dataset_id: ObjectId, user_id: ObjectId, now: datetime) -> Access:
        """The caller's access to a dataset they can see; raises DatasetNotFound otherwise."""
        dataset = await self.catalogue.find_dataset(dataset_id=dataset_id)
        if dataset is None:
            raise DatasetNotFound()
        access = await self.level_on(dataset, user_id, now)
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

    async def readable(self, user_id: ObjectId, now: datetime) -> list[Access]:
        """Every live dataset the caller can read, with their level on each.

        Gathered from indexed lookups: owned (`owner_id`), shared (the caller's
        shares, then each dataset by `_id`), public (`is_public`), tagged (one
        `tags` equality per held tag); a platform admin reads the whole catalogue."""
        catalogue = self.catalogue
        if await is_platform_admin(control=catalogue.control, user_id=user_id):
            datasets = await catalogue.all_datasets()
            held = set(await catalogue.tags_held(user_id=user_id))
            return [
                Access(
                    d,
                    Level.owner if d["owner_id"] == user_id else Level.admin,
                    [t for t in d.get("tags") or [] if t in held],
                )
                for d in datasets
                if dataset_is_live(d, now)
            ]
        owned, public, shares, held = await asyncio.gather(
            catalogue.datasets_where(query={"owner_id": user_id}),
            catalogue.datasets_where(query={"is_public": True}),
            catalogue.shares_where(query={"user_id": user_id}),
            catalogue.tags_held(user_id=user_id),
        )
        tagged = await asyncio.gather(
            *(catalogue.datasets_where(query={"tags": tag}) for tag in held)
        )
        live_shares = [s for s in shares if share_is_live(s, now)]
        shared = await asyncio.gather(
            *(catalogue.find_dataset(dataset_id=s["dataset_id"]) for s in live_shares)
        )
        found: dict[ObjectId, Access] = {}

        def grant(dataset: Document | None, level: Level, tags: list[ObjectId] = []) -> None:  # noqa: B006
            if dataset is None or not dataset_is_live(dataset, now):
                return
            current = found.get(dataset["_id"])
            if current is None:
                found[dataset["_id"]] = Access(dataset, level, list(tags))
                return
            current.level = max(current.level, level)
            current.matching_tags.extend(t for t in tags if t not in current.matching_tags)

        for dataset in owned:
            grant(dataset, Level.owner)
        for share, dataset in zip(live_shares, shared, strict=True):
            grant(dataset, Level[share["permission"]])
        for dataset in public:
            grant(dataset, Level.read)
        for tag, datasets in zip(held, tagged, strict=True):
            for dataset in datasets:
                grant(dataset, Level.read, [tag])
        return list(found.values())


async def _no_tags() -> list[ObjectId]:
    return []
