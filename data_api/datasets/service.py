"""The rules of datasets, tags, shares and items (`spec/datasets.md`).

Every method takes the caller's user id, resolves their level on the dataset in
the catalogue first (`access.AccessResolver`) and only then reads or writes the
owner's tenant database. Raises the domain exceptions of `errors.py`.

Decisions where the spec is silent:
- Lists (datasets, metadata search) are gathered from indexed lookups, merged
  and sorted in the service; `owner_email` and the counts are in single-dataset
  answers only (a list would cost one lookup per row).
- `expires_at` always has a value (the default when not given); `null` in a
  PATCH is refused like any past date: a dataset never lives forever.
- Tags are created public unless `is_public: false` with a `secret`; the secret
  is kept as a salted scrypt hash and compared in constant time; an unknown tag
  costs the same hash so it answers like a wrong secret, in the same time.
- A share to a user whose earlier share expired replaces it (an expired share
  grants nothing, so it cannot conflict).
- Items: a reader sees the items whose home dataset they can read; with
  `acl_override_enabled` every item, and one audit record per listing names the
  entries read through the override.
- Deleting a dataset marks it `deleting` first (404 to everyone from then on),
  then removes its entries (and their links everywhere), its items, its shares
  and finally its catalogue row; a crash part-way is finished by the expiry
  sweeper (`expiry.py`), which resumes every `deleting` dataset. Rows and
  columns go in the same place, under the dataset's rows lock.
- `row_count`, `first_timestamp`, `last_timestamp` come from the rows directory
  (kept by every write), `columns` from the catalogue: no row is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from bson import ObjectId
from bson.errors import InvalidId as BsonInvalidId
from pymongo.errors import PyMongoError

from app.audit import AuditUnavailable
from app.clock import utc_now
from app.db import After, Condition, Contains, Document, Eq, IdIn, PageQuery
from app.errors import DatabaseUnavailable
from app.kit import field_name_problem, parse_object_id
from app.settings import Settings
from app.users import emails_of, find_user, find_user_by_email, is_platform_admin
from data_api.datasets.access import (
    Access,
    AccessResolver,
    Level,
    Standing,
    dataset_is_live,
    share_is_live,
)
from data_api.datasets.errors import (
    DatasetNotFound,
    DatasetValidationError,
    FilterRequired,
    InvalidTagSecret,
    NotInSource,
    NoValidEntries,
    PlatformAdminOnly,
    ShareExists,
    ShareNotFound,
    TagExists,
    TagNotFound,
    UserNotFound,
)
from data_api.datasets.repository import SHARES, Catalogue

#: Tags every installation has from its first start.
BUILTIN_TAGS = ("public", "test")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_DUMMY_SALT = b"\x00" * 16


class AuditSink(Protocol):
    async def append(self, **record: Any) -> None: ...


def hash_tag_secret(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)  # type: ignore[arg-type]


def _oid(value: str) -> ObjectId | None:
    try:
        return ObjectId(value) if len(value) == 24 else None
    except (BsonInvalidId, TypeError):
        return None


def _check_metadata(metadata: Any, loc: list[str | int]) -> None:
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            problem = field_name_problem(key)
            if problem:
                raise DatasetValidationError([*loc, key], f"metadata keys: {problem}")
            _check_metadata(value, [*loc, key])
    elif isinstance(metadata, list):
        for number, value in enumerate(metadata):
            _check_metadata(value, [*loc, number])


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int


class DatasetService:
    def __init__(
        self,
        *,
        catalogue: Catalogue,
        settings: Settings,
        audit: AuditSink | None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.catalogue = catalogue
        self.access = AccessResolver(catalogue)
        self.settings = settings
        self.audit = audit
        self.clock = clock

    # ---------------------------------------------------------------- helpers

    def _expiry(self, expires_at: datetime | None, now: datetime, *, given: bool) -> datetime:
        if not given:
            return now + timedelta(days=self.settings.dataset_default_expiration_days)
        latest = now + timedelta(days=self.settings.dataset_max_expiration_days)
        if expires_at is None or expires_at <= now:
            raise DatasetValidationError(["body", "expires_at"], "expires_at must be in the future")
        if expires_at > latest:
            raise DatasetValidationError(
                ["body", "expires_at"],
                f"expires_at is at most {self.settings.dataset_max_expiration_days} days ahead",
            )
        return expires_at

    async def _tag_names(self) -> dict[ObjectId, str]:
        return {tag["_id"]: tag["name"] for tag in await self.catalogue.all_tags()}

    def view(
        self, access: Access, now: datetime, tag_names: dict[ObjectId, str], **extra: Any
    ) -> dict[str, Any]:
        d = access.dataset
        return {
            "id": str(d["_id"]),
            "name": d["name"],
            "description": d.get("description", ""),
            "metadata": d.get("metadata", {}),
            "owner_id": str(d["owner_id"]),
            "is_public": d.get("is_public", False),
            "acl_override_enabled": d.get("acl_override_enabled", False),
            "tags": [tag_names[t] for t in d.get("tags") or [] if t in tag_names],
            "created_at": d["created_at"],
            "updated_at": d["updated_at"],
            "expires_at": d["expires_at"],
            "expires_in_hours": round((d["expires_at"] - now).total_seconds() / 3600, 2),
            "source_query": d.get("source_query"),
            "user_permission": access.level.name,
            **extra,
        }

    async def full_view(self, access: Access, now: datetime, user_id: ObjectId) -> dict[str, Any]:
        """One dataset with its counts; `item_count` counts the items the caller may
        see (items under another dataset's ACL are neither listed nor counted)."""
        d = access.dataset
        items, _ = await self.visible_items(access, user_id, now)
        entries, owner, rows, columns = await asyncio.gather(
            self.catalogue.entries_homed_in(owner_id=d["owner_id"], dataset_id=d["_id"]),
            find_user(control=self.catalogue.control, user_id=d["owner_id"]),
            self.catalogue.row_summary(owner_id=d["owner_id"], dataset_id=d["_id"]),
            self.catalogue.columns_of(dataset_id=d["_id"]),
        )
        return self.view(
            access,
            now,
            await self._tag_names(),
            owner_email=owner["email"] if owner else None,
            item_count=len(items),
            entry_count=len(entries),
            row_count=rows["count"] if rows else 0,
            columns=[
                {
                    "id": str(c["_id"]),
                    "dataset": str(c["dataset_id"]),
                    "name": c["name"],
                    "dtype": c["dtype"],
                    "created_at": c["created_at"],
                }
                for c in columns
            ],
            first_timestamp=rows.get("first") if rows else None,
            last_timestamp=rows.get("last") if rows else None,
        )

    async def audit_event(self, **record: Any) -> None:
        if self.audit is not None:
            await self.audit.append(**record)

    async def audit_or_refuse(self, **record: Any) -> None:
        """A read that must be audited is refused (503) when its record cannot be written."""
        try:
            await self.audit_event(**record)
        except (PyMongoError, AuditUnavailable):
            raise DatabaseUnavailable("This read could not be audited; retry shortly.") from None

    # ---------------------------------------------------------------- datasets

    async def create(
        self, *, user_id: ObjectId, body: Any, fields_set: set[str]
    ) -> tuple[dict[str, Any], list[str] | None]:
        """Raises DatasetValidationError, NoValidEntries."""
        now = self.clock()
        _check_metadata(body.metadata, ["body", "metadata"])
        expires_at = self._expiry(body.expires_at, now, given="expires_at" in fields_set)
        readable: list[tuple[ObjectId, Document]] = []
        skipped: list[str] | None = None
        if body.entry_ids is not None:
            readable, skipped = await self._readable_entries(user_id, body.entry_ids, now)
            if body.entry_ids and not readable:
                raise NoValidEntries()
        dataset = {
            "_id": ObjectId(),
            "name": body.name,
            "description": body.description,
            "metadata": body.metadata,
            "owner_id": user_id,
            "is_public": body.is_public,
            "acl_override_enabled": body.acl_override_enabled,
            "linked_homes": [],
            "tags": [],
            "source_query": body.source_query,
            "created_at": now,
            "updated_at": now,
            "expires_at": expires_at,
            "state": "live",
        }
        await self.catalogue.ensure_tenant(user_id)
        await self.catalogue.insert_dataset(dataset=dataset)
        await self._link(dataset, readable, user_id, None, now)
        access = Access(dataset, Level.owner)
        return await self.full_view(access, now, user_id), skipped

    async def _readable_entries(
        self, user_id: ObjectId, ids: list[str], now: datetime
    ) -> tuple[list[tuple[ObjectId, Document]], list[str]]:
        """(entry id, its home row) for each id whose home dataset the caller can read;
        the other ids, as given."""
        readable: list[tuple[ObjectId, Document]] = []
        skipped: list[str] = []
        levels: dict[ObjectId, Level] = {}
        for raw in dict.fromkeys(ids):
            entry_id = _oid(raw)
            home = await self.catalogue.entry_home(entry_id=entry_id) if entry_id else None
            if entry_id is None or home is None or home.get("state") == "deleting":
                skipped.append(raw)
                continue
            home_id = home["home_dataset_id"]
            if home_id not in levels:
                levels[home_id] = await self._level(home_id, user_id, now)
            if levels[home_id] >= Level.read:
                readable.append((entry_id, home))
            else:
                skipped.append(raw)
        return readable, skipped

    async def home_level(
        self, dataset_id: ObjectId, user_id: ObjectId, now: datetime
    ) -> Level | None:
        """The caller's level on an entry's home dataset; None when that dataset is
        gone (missing, expired, being deleted) — its entries are gone with it, even
        where an ACL override would show them."""
        dataset = await self.catalogue.find_dataset(dataset_id=dataset_id)
        if dataset is None or not dataset_is_live(dataset, now):
            return None
        return (await self.access.level_on(dataset, user_id, now)).level

    async def _level(self, dataset_id: ObjectId, user_id: ObjectId, now: datetime) -> Level:
        dataset = await self.catalogue.find_dataset(dataset_id=dataset_id)
        if dataset is None:
            return Level.none
        return (await self.access.level_on(dataset, user_id, now)).level

    async def _link(
        self,
        dataset: Document,
        entries: list[tuple[ObjectId, Document]],
        user_id: ObjectId,
        notes: str | None,
        now: datetime,
    ) -> None:
        foreign_homes = {h["home_dataset_id"] for _, h in entries} - {dataset["_id"]}
        if foreign_homes:
            # Which other datasets' entries it holds: a page of its items can then
            # be read by a query instead of by reading every item (`entries` batch).
            await self.catalogue.update_dataset(
                dataset_id=dataset["_id"],
                update={"$addToSet": {"linked_homes": {"$each": sorted(foreign_homes)}}},
            )
        for entry_id, home in entries:
            await self.catalogue.link_item(
                owner_id=dataset["owner_id"],
                entry_owner=home["owner_id"],
                item={
                    "_id": f"{dataset['_id']}:{entry_id}",
                    "dataset_id": dataset["_id"],
                    "entry_id": entry_id,
                    "home_dataset_id": home["home_dataset_id"],
                    "entry_owner_id": home["owner_id"],
                    "added_at": now,
                    "added_by": user_id,
                    "notes": notes,
                },
            )

    async def get(self, *, user_id: ObjectId, dataset_id: str) -> dict[str, Any]:
        now = self.clock()
        access = await self.access.resolve(parse_object_id(dataset_id), user_id, now)
        return await self.full_view(access, now, user_id)

    async def list(
        self,
        *,
        user_id: ObjectId,
        page: Page,
        search: str | None = None,
        owned_only: bool = False,
        tag: str | None = None,
        is_public: bool | None = None,
        metadata: dict[str, str] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """The datasets the caller can read, newest change first, filtered and paged.

        One page query (`app.db.page_query`): live and unexpired, and readable — owned,
        public, shared by a live share, or carrying a tag the caller holds (a
        platform admin reads all) — plus the filters; the levels of the page's
        datasets are then resolved as for a single read."""
        now = self.clock()
        (clauses, admin, held), tag_names = await asyncio.gather(
            self._readable_clauses(user_id, now), self._tag_names()
        )
        if owned_only:
            clauses.append((Eq("owner_id", user_id),))
        if is_public is not None:
            clauses.append((Eq("is_public", is_public),))
        if tag is not None:
            tag_id = next((i for i, n in tag_names.items() if n == tag), None)
            if tag_id is None:
                return [], 0
            clauses.append((Eq("tags", tag_id),))
        if search:
            clauses.append((Contains(("name", "description"), search),))
        for key, written in (metadata or {}).items():
            clauses.append(tuple(Eq(f"metadata.{key}", v) for v in _interpretations(written)))
        accesses, total = await self._readable_page(
            user_id, clauses, admin, held, now, page.offset, page.limit
        )
        return [self.view(access, now, tag_names) for access in accesses], total

    async def _readable_clauses(
        self, user_id: ObjectId, now: datetime
    ) -> tuple[list[tuple[Condition, ...]], bool, list[ObjectId]]:
        """The conditions of "a live dataset the caller can read": owned, public,
        shared by a live share, or carrying a tag the caller holds (a platform admin
        reads all). (clauses, is admin, held tags)."""
        _, _, user, held = await self.catalogue.dataset_and_standing(
            dataset_id=None, user_id=user_id
        )
        admin = user is not None and user.get("role") == "admin"
        clauses: list[tuple[Condition, ...]] = [
            (Eq("state", "live"),),
            (After("expires_at", now),),
        ]
        if not admin:
            live_share = IdIn(
                SHARES,
                "dataset_id",
                ((Eq("user_id", user_id),), (After("expires_at", now, or_missing=True),)),
            )
            clauses.append(
                (
                    Eq("owner_id", user_id),
                    Eq("is_public", True),
                    live_share,
                    *(Eq("tags", held_tag) for held_tag in held),
                )
            )
        return clauses, admin, held

    async def _readable_page(
        self,
        user_id: ObjectId,
        clauses: list[tuple[Condition, ...]],
        admin: bool,
        held: list[ObjectId],
        now: datetime,
        offset: int,
        limit: int,
    ) -> tuple[list[Access], int]:
        datasets, total = await self.catalogue.page(
            PageQuery(clauses=tuple(clauses), sort_desc="updated_at", offset=offset, limit=limit)
        )
        shares = await self.catalogue.shares_of_user_on(
            user_id=user_id, dataset_ids=[d["_id"] for d in datasets if d["owner_id"] != user_id]
        )
        held_set = set(held)
        accesses = []
        for dataset in datasets:
            standing = Standing(share=shares.get(dataset["_id"]), admin=admin, held=held_set)
            access = await self.access.level_on(dataset, user_id, now, standing)
            if access.level is not Level.none:
                accesses.append(access)
        return accesses, total

    async def readable_datasets(self, *, user_id: ObjectId) -> list[Access]:
        """Every live dataset the caller can read, with their level on it."""
        now = self.clock()
        clauses, admin, held = await self._readable_clauses(user_id, now)
        accesses, _ = await self._readable_page(user_id, clauses, admin, held, now, 0, 1_000_000)
        return accesses

    async def search_metadata(
        self, *, user_id: ObjectId, filters: dict[str, str], page: Page
    ) -> tuple[list[dict[str, Any]], int]:
        """Raises FilterRequired."""
        if not filters:
            raise FilterRequired()
        for key in filters:
            problem = field_name_problem(key)
            if problem:
                raise DatasetValidationError(["query", key], f"metadata keys: {problem}")
        return await self.list(user_id=user_id, page=page, metadata=filters)

    async def expiring(self, *, user_id: ObjectId, within_hours: int) -> list[dict[str, Any]]:
        """Raises PlatformAdminOnly."""
        if not await is_platform_admin(control=self.catalogue.control, user_id=user_id):
            raise PlatformAdminOnly()
        now = self.clock()
        horizon = now + timedelta(hours=within_hours)
        soon = [
            Access(d, Level.owner if d["owner_id"] == user_id else Level.admin)
            for d in await self.catalogue.datasets_where(
                query={"state": "live", "expires_at": {"$lte": horizon}}
            )
            if dataset_is_live(d, now)
        ]
        soon.sort(key=lambda a: a.dataset["expires_at"])
        tag_names = await self._tag_names()
        return [self.view(a, now, tag_names) for a in soon]

    async def update(
        self, *, user_id: ObjectId, dataset_id: str, changes: dict[str, Any], replace: bool = False
    ) -> dict[str, Any]:
        """PATCH (any field) or PUT (`replace`: name, description, metadata).
        Raises DatasetNotFound, InsufficientPermission, DatasetValidationError."""
        now = self.clock()
        if not changes:
            raise DatasetValidationError(["body"], "give at least one field to change")
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.admin, now)
        if "metadata" in changes:
            _check_metadata(changes["metadata"], ["body", "metadata"])
            if changes["metadata"] is None:
                raise DatasetValidationError(["body", "metadata"], "metadata must be an object")
        if "expires_at" in changes:
            changes["expires_at"] = self._expiry(changes["expires_at"], now, given=True)
        for key in ("name", "is_public", "acl_override_enabled", "description"):
            if key in changes and changes[key] is None:
                raise DatasetValidationError(["body", key], f"{key} must not be null")
        update: Document = {"$set": {**changes, "updated_at": now}}
        if "expires_at" in changes:
            update["$unset"] = {"warned": ""}  # a new expiry gets its own warnings
        await self._write(access, update)
        return await self._fresh(access.dataset["_id"], user_id)

    async def change_metadata(
        self, *, user_id: ObjectId, dataset_id: str, metadata: dict[str, Any], merge: bool
    ) -> dict[str, Any]:
        """Merge (`null` removes a key) or replace the metadata."""
        now = self.clock()
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.admin, now)
        _check_metadata(metadata, ["body"])
        if merge:
            merged = {**(access.dataset.get("metadata") or {}), **metadata}
            metadata = {k: v for k, v in merged.items() if v is not None}
        await self._write(access, {"$set": {"metadata": metadata, "updated_at": now}})
        return await self._fresh(access.dataset["_id"], user_id)

    async def _write(self, access: Access, update: Document) -> None:
        if not await self.catalogue.update_dataset(dataset_id=access.dataset["_id"], update=update):
            raise DatasetNotFound()  # deleted meanwhile

    async def _fresh(self, dataset_id: ObjectId, user_id: ObjectId) -> dict[str, Any]:
        now = self.clock()
        access = await self.access.resolve(dataset_id, user_id, now)
        return await self.full_view(access, now, user_id)

    async def delete(self, *, user_id: ObjectId, dataset_id: str) -> None:
        """Raises DatasetNotFound, InsufficientPermission (not the owner)."""
        now = self.clock()
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.owner, now)
        if not await self.catalogue.update_dataset(
            dataset_id=access.dataset["_id"],
            update={"$set": {"state": "deleting", "deleting_since": now}},
        ):
            raise DatasetNotFound()
        await self.finish_deletion(access.dataset)

    async def finish_deletion(self, dataset: Document) -> None:
        """Everything of a `deleting` dataset, the catalogue row last (idempotent)."""
        owner_id, dataset_id = dataset["owner_id"], dataset["_id"]
        for entry_id in await self.catalogue.entries_homed_in(
            owner_id=owner_id, dataset_id=dataset_id
        ):
            await self.catalogue.delete_entry(entry_id=entry_id)
        await self.catalogue.delete_items_of(owner_id=owner_id, dataset_id=dataset_id)
        await self.catalogue.delete_rows_of(owner_id=owner_id, dataset_id=dataset_id)
        await self.catalogue.delete_shares_of(dataset_id=dataset_id)
        await self.catalogue.delete_dataset(dataset_id=dataset_id)

    # ---------------------------------------------------------------- tags

    async def list_tags(self) -> list[Document]:
        tags = await self.catalogue.all_tags()
        return sorted(tags, key=lambda t: t["name"])

    async def ensure_builtin_tags(self) -> None:
        now = self.clock()
        for name in BUILTIN_TAGS:
            if await self.catalogue.find_tag(query={"name": name}) is None:
                await self.catalogue.insert_tag(
                    tag={
                        "_id": ObjectId(),
                        "name": name,
                        "description": f"The built-in {name} tag",
                        "is_public": True,
                        "metadata": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                )

    async def create_tag(self, *, user_id: ObjectId, body: Any) -> Document:
        """Raises PlatformAdminOnly, TagExists."""
        if not await is_platform_admin(control=self.catalogue.control, user_id=user_id):
            raise PlatformAdminOnly()
        _check_metadata(body.metadata, ["body", "metadata"])
        now = self.clock()
        tag: Document = {
            "_id": ObjectId(),
            "name": body.name,
            "description": body.description,
            "is_public": body.is_public,
            "metadata": body.metadata,
            "created_at": now,
            "updated_at": now,
        }
        if body.secret:
            salt = os.urandom(16)
            tag["secret_salt"] = salt
            tag["secret_hash"] = hash_tag_secret(body.secret, salt)
        if not await self.catalogue.insert_tag(tag=tag):
            raise TagExists()
        return tag

    async def acquire_tag(self, *, user_id: ObjectId, name: str, secret: str | None) -> Document:
        """Raises InvalidTagSecret (private tag, missing or wrong secret — or no such tag)."""
        tag = await self.catalogue.find_tag(query={"name": name})
        if tag is None or not tag.get("is_public", True):
            salt = tag["secret_salt"] if tag else _DUMMY_SALT
            computed = hash_tag_secret(secret or "", salt)
            expected = tag["secret_hash"] if tag else b"\x01" * 32
            if secret is None or tag is None or not hmac.compare_digest(computed, expected):
                raise InvalidTagSecret()
        await self.catalogue.hold_tag(user_id=user_id, tag_id=tag["_id"], at=self.clock())
        return tag

    async def my_tags(self, *, user_id: ObjectId) -> list[Document]:
        held = set(await self.catalogue.tags_held(user_id=user_id))
        return [t for t in await self.list_tags() if t["_id"] in held]

    async def release_tag(self, *, user_id: ObjectId, tag_id: str) -> None:
        if not await self.catalogue.release_tag(user_id=user_id, tag_id=parse_object_id(tag_id)):
            raise TagNotFound()

    async def dataset_tags(self, *, user_id: ObjectId, dataset_id: str) -> list[Document]:
        now = self.clock()
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.read, now)
        carried = set(access.dataset.get("tags") or [])
        return [t for t in await self.list_tags() if t["_id"] in carried]

    async def _tag(self, tag_name: str | None, tag_id: str | None) -> Document:
        if tag_id is not None:
            tag = await self.catalogue.find_tag(query={"_id": parse_object_id(tag_id)})
        else:
            tag = await self.catalogue.find_tag(query={"name": tag_name})
        if tag is None:
            raise TagNotFound()
        return tag

    async def tag_dataset(
        self, *, user_id: ObjectId, dataset_id: str, tag_name: str | None, tag_id: str | None
    ) -> list[Document]:
        now = self.clock()
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.admin, now)
        tag = await self._tag(tag_name, tag_id)
        await self._write(access, {"$addToSet": {"tags": tag["_id"]}, "$set": {"updated_at": now}})
        return await self.dataset_tags(user_id=user_id, dataset_id=dataset_id)

    async def untag_dataset(self, *, user_id: ObjectId, dataset_id: str, tag_id: str) -> None:
        now = self.clock()
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.admin, now)
        tag = parse_object_id(tag_id)
        if tag not in (access.dataset.get("tags") or []):
            raise TagNotFound()
        await self._write(access, {"$pull": {"tags": tag}, "$set": {"updated_at": now}})

    async def check_access(
        self, *, user_id: ObjectId, dataset_id: str, require_write: bool
    ) -> dict[str, Any]:
        now = self.clock()
        target = parse_object_id(dataset_id, what="dataset_id")
        dataset = await self.catalogue.find_dataset(dataset_id=target)
        access = await self.access.level_on(dataset, user_id, now) if dataset else None
        if access is None or access.level is Level.none:
            return {"has_access": False}
        needed = Level.write if require_write else Level.read
        names = await self._tag_names()
        return {
            "has_access": access.level >= needed,
            "is_owner": access.is_owner,
            "permission": access.level.name,
            "matching_tags": [names[t] for t in access.matching_tags if t in names],
        }

    # ---------------------------------------------------------------- shares

    async def share_view(self, share: Document) -> dict[str, Any]:
        email = share.get("email")
        if email is None:
            user = await find_user(control=self.catalogue.control, user_id=share["user_id"])
            email = user["email"] if user else None
        return {
            "id": str(share["_id"]),
            "dataset_id": str(share["dataset_id"]),
            "user_id": str(share["user_id"]),
            "email": email,
            "permission": share["permission"],
            "expires_at": share.get("expires_at"),
            "created_at": share["created_at"],
            "created_by": str(share["created_by"]),
        }

    def _share_expiry(self, expires_at: datetime | None, now: datetime) -> datetime | None:
        if expires_at is not None and expires_at <= now:
            raise DatasetValidationError(["body", "expires_at"], "expires_at must be in the future")
        return expires_at

    async def create_share(
        self, *, user_id: ObjectId, dataset_id: str, body: Any
    ) -> dict[str, Any]:
        """Raises DatasetNotFound, InsufficientPermission, UserNotFound, ShareExists,
        DatasetValidationError."""
        now = self.clock()
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.admin, now)
        access.require(Level[body.permission])
        expires_at = self._share_expiry(body.expires_at, now)
        control = self.catalogue.control
        if body.user_id is not None:
            target_id = parse_object_id(body.user_id, what="user_id")
            target = await find_user(control=control, user_id=target_id)
        else:
            target = await find_user_by_email(control=control, email=body.email)
        if target is None:
            raise UserNotFound()
        dataset = access.dataset
        if target["_id"] == dataset["owner_id"]:
            raise ShareExists()
        key = f"{dataset['_id']}:{target['_id']}"
        # An expired share grants nothing: a new share replaces it.
        await self.catalogue.delete_share(query={"key": key, "expires_at": {"$lte": now}})
        share = {
            "_id": ObjectId(),
            "key": key,
            "dataset_id": dataset["_id"],
            "target": {"type": "user", "id": target["_id"]},
            "user_id": target["_id"],
            "permission": body.permission,
            "expires_at": expires_at,
            "created_at": now,
            "created_by": user_id,
        }
        if not await self.catalogue.insert_share(share=share):
            raise ShareExists()
        return {**await self.share_view(share), "email": target["email"]}

    async def list_shares(self, *, user_id: ObjectId, dataset_id: str) -> list[dict[str, Any]]:
        now = self.clock()
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.admin, now)
        shares = await self.catalogue.shares_where(query={"dataset_id": access.dataset["_id"]})
        live = sorted((s for s in shares if share_is_live(s, now)), key=lambda s: s["created_at"])
        targets = [s["user_id"] for s in live]
        emails = await emails_of(control=self.catalogue.control, user_ids=targets)
        return [await self.share_view({**s, "email": emails.get(s["user_id"])}) for s in live]

    async def _live_share(self, access: Access, share_id: str, now: datetime) -> Document:
        share = await self.catalogue.find_share(
            query={"_id": parse_object_id(share_id, what="share id")}
        )
        if share is None or share["dataset_id"] != access.dataset["_id"]:
            raise ShareNotFound()
        if not share_is_live(share, now):
            raise ShareNotFound()
        return share

    async def update_share(
        self, *, user_id: ObjectId, dataset_id: str, share_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        now = self.clock()
        if not changes:
            raise DatasetValidationError(["body"], "give permission or expires_at")
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.admin, now)
        share = await self._live_share(access, share_id, now)
        if changes.get("permission") is not None:
            access.require(Level[changes["permission"]])
        elif "permission" in changes:
            raise DatasetValidationError(["body", "permission"], "permission must not be null")
        if "expires_at" in changes:
            self._share_expiry(changes["expires_at"], now)
        await self.catalogue.update_share(share_id=share["_id"], update={"$set": changes})
        return await self.share_view({**share, **changes})

    async def delete_share(self, *, user_id: ObjectId, dataset_id: str, share_id: str) -> None:
        now = self.clock()
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.admin, now)
        share = await self._live_share(access, share_id, now)
        await self.catalogue.delete_share(query={"_id": share["_id"]})

    # ---------------------------------------------------------------- items and subsets

    async def create_entry_record(
        self,
        *,
        owner_id: ObjectId,
        dataset_id: ObjectId,
        name: str,
        size: int,
        content_type: str,
    ) -> ObjectId:
        """The minimal entry record (id, home dataset, name, size, type) that items link;
        the entries feature fills it in. Its home dataset gets it as an item."""
        now = self.clock()
        dataset = await self.catalogue.find_dataset(dataset_id=dataset_id)
        if dataset is None or dataset["owner_id"] != owner_id or not dataset_is_live(dataset, now):
            raise DatasetNotFound()
        entry = {
            "_id": ObjectId(),
            "dataset_id": dataset_id,
            "name": name,
            "size": size,
            "content_type": content_type,
            "created_at": now,
        }
        await self.catalogue.insert_entry(owner_id=owner_id, entry=entry)
        home = {"owner_id": owner_id, "home_dataset_id": dataset_id}
        await self._link(dataset, [(entry["_id"], home)], owner_id, None, now)
        return entry["_id"]

    async def add_items(
        self, *, user_id: ObjectId, dataset_id: str, entry_ids: list[str], notes: str | None
    ) -> dict[str, Any]:
        now = self.clock()
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.write, now)
        readable, skipped = await self._readable_entries(user_id, entry_ids, now)
        await self._link(access.dataset, readable, user_id, notes, now)
        return {"added": len(readable), "skipped_ids": skipped, "dataset_id": dataset_id}

    async def remove_items(
        self, *, user_id: ObjectId, dataset_id: str, entry_ids: list[str]
    ) -> int:
        now = self.clock()
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.write, now)
        ids = [oid for oid in (_oid(raw) for raw in dict.fromkeys(entry_ids)) if oid is not None]
        removed = await self.catalogue.unlink_items(
            owner_id=access.dataset["owner_id"], dataset_id=access.dataset["_id"], entry_ids=ids
        )
        if removed and not access.dataset.get("items_removed"):
            # Its items may no longer be exactly the entries homed in it (search).
            await self.catalogue.update_dataset(
                dataset_id=access.dataset["_id"], update={"$set": {"items_removed": True}}
            )
        return removed

    async def visible_items(
        self, access: Access, user_id: ObjectId, now: datetime
    ) -> tuple[list[Document], list[Document]]:
        """(items the caller sees, those of them seen only through the ACL override)."""
        d = access.dataset
        items = await self.catalogue.items_of(owner_id=d["owner_id"], dataset_id=d["_id"])
        levels: dict[ObjectId, Level | None] = {}
        visible, through_override = [], []
        for item in items:
            home = item["home_dataset_id"]
            if home not in levels:
                levels[home] = (
                    access.level if home == d["_id"] else await self.home_level(home, user_id, now)
                )
            level = levels[home]
            if level is None:
                continue  # its home expired or is being deleted: gone for everyone
            if level >= Level.read:
                visible.append(item)
            elif d.get("acl_override_enabled"):
                visible.append(item)
                through_override.append(item)
        visible.sort(key=lambda i: (i["added_at"], str(i["entry_id"])))
        return visible, through_override

    async def list_items(
        self, *, user_id: ObjectId, dataset_id: str, page: int, page_size: int
    ) -> tuple[list[dict[str, Any]], int]:
        now = self.clock()
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.read, now)
        visible, through_override = await self.visible_items(access, user_id, now)
        window = visible[(page - 1) * page_size : page * page_size]
        override_ids = {i["_id"] for i in through_override}
        read_through_override = [str(i["entry_id"]) for i in window if i["_id"] in override_ids]
        if read_through_override:
            await self.audit_or_refuse(
                action="datasets.items.read_through_acl_override",
                resource_type="dataset",
                resource_id=dataset_id,
                dataset_id=access.dataset["_id"],
                actor_user_id=user_id,
                status=200,
                details={"entry_ids": read_through_override},
            )
        rows = []
        for item in window:
            entry = await self.catalogue.find_entry(
                owner_id=item["entry_owner_id"], entry_id=item["entry_id"]
            )
            if entry is None:
                continue  # removed meanwhile
            rows.append(
                {
                    "id": str(item["entry_id"]),
                    "name": entry["name"],
                    "size": entry["size"],
                    "content_type": entry["content_type"],
                    "home_dataset_id": str(item["home_dataset_id"]),
                    "added_at": item["added_at"],
                    "added_by": str(item["added_by"]),
                    "notes": item.get("notes"),
                }
            )
        return rows, len(visible)

    async def subset(
        self, *, user_id: ObjectId, dataset_id: str, body: Any, fields_set: set[str]
    ) -> dict[str, Any]:
        """Raises DatasetNotFound, NotInSource, DatasetValidationError."""
        now = self.clock()
        access = await self.access.require(parse_object_id(dataset_id), user_id, Level.read, now)
        visible, through_override = await self.visible_items(access, user_id, now)
        # Items seen only through the source's ACL override stay there: linking them
        # into a dataset of the caller's would publish them without that dataset's audit.
        override_only = {i["_id"] for i in through_override}
        by_id = {str(i["entry_id"]): i for i in visible if i["_id"] not in override_only}
        wanted = list(dict.fromkeys(body.entry_ids))
        missing = [raw for raw in wanted if raw not in by_id]
        if missing:
            raise NotInSource(missing)
        expires_at = self._expiry(body.expires_at, now, given="expires_at" in fields_set)
        dataset = {
            "_id": ObjectId(),
            "name": body.name,
            "description": body.description,
            "metadata": {},
            "owner_id": user_id,
            "is_public": False,
            "acl_override_enabled": False,
            "linked_homes": [],
            "tags": [],
            "source_query": None,
            "subset_of": access.dataset["_id"],
            "created_at": now,
            "updated_at": now,
            "expires_at": expires_at,
            "state": "live",
        }
        await self.catalogue.ensure_tenant(user_id)
        await self.catalogue.insert_dataset(dataset=dataset)
        entries = [
            (
                by_id[raw]["entry_id"],
                {
                    "owner_id": by_id[raw]["entry_owner_id"],
                    "home_dataset_id": by_id[raw]["home_dataset_id"],
                },
            )
            for raw in wanted
        ]
        await self._link(dataset, entries, user_id, None, now)
        return await self.full_view(Access(dataset, Level.owner), now, user_id)


def _interpretations(written: str) -> list[Any]:
    """Seed 002's metadata search: a written value matches as the string it is, and
    as the number or boolean it spells (`2024` matches 2024 and "2024")."""
    values: list[Any] = [written]
    lowered = written.strip().lower()
    if lowered in ("true", "false"):
        values.append(lowered == "true")
        return values
    try:
        number = float(written)
    except ValueError:
        return values
    if math.isfinite(number):
        integral = number.is_integer() and abs(number) < 2**63
        values.append(int(number) if integral else number)
    return values
