"""Datasets, their items, subsets, shares and tags, access checks, and the audit
trail (`datasets.md`)."""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from quarry_client import models as m
from quarry_client._async.files import save_chunks
from quarry_client._async.transport import AsyncTransport
from quarry_client.endpoints import Endpoint
from quarry_client.routes import datasets as r

#: A level a share grants (`owner` is never granted).
SharePermission = Literal["read", "write", "admin"]
#: A metadata filter value: compared as written, and as the number or boolean it spells.
MetadataValue = str | int | float | bool
TagList = builtins.list[m.TagOut]
ShareList = builtins.list[m.ShareOut]
DatasetList = builtins.list[m.DatasetOut]


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that are not None (so a request sends only what the caller gave)."""
    return {name: value for name, value in fields.items() if value is not None}


def _instant(moment: datetime | None) -> str | None:
    """An ISO-8601 query value; a time without a zone is taken as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


class AsyncDatasets:
    """Datasets (`quarry.datasets`): CRUD, metadata, tags, shares, items, subsets."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    # ------------------------------------------------------------ datasets

    async def create(
        self,
        name: str,
        *,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        is_public: bool = False,
        acl_override_enabled: bool = False,
        expires_at: datetime | None = None,
        entry_ids: Iterable[str] | None = None,
        source_query: str | None = None,
    ) -> m.DatasetAnswer:
        """Create a dataset; the answer's `data` is it, `skipped_ids` the unusable entry ids."""
        body = m.CreateDatasetRequest(
            name=name,
            description=description,
            is_public=is_public,
            acl_override_enabled=acl_override_enabled,
            **_given(
                metadata=dict(metadata) if metadata is not None else None,
                expires_at=expires_at,
                entry_ids=builtins.list(entry_ids) if entry_ids is not None else None,
                source_query=source_query,
            ),
        )
        answer: m.DatasetAnswer = await self._t.call(r.CREATE, body=body)
        return answer

    async def get(self, dataset_id: str) -> m.DatasetOut:
        """One dataset with its counts and your `user_permission` on it."""
        answer: m.DatasetAnswer = await self._t.call(r.GET, path={"dataset_id": dataset_id})
        return answer.data

    async def list(
        self,
        *,
        search: str | None = None,
        owned_only: bool = False,
        tag: str | None = None,
        is_public: bool | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> m.DatasetListAnswer:
        """One page of the datasets you can read, most recently changed first."""
        params = {
            "search": search,
            "owned_only": owned_only or None,
            "tag": tag,
            "is_public": is_public,
            "page": page,
            "page_size": page_size,
        }
        answer: m.DatasetListAnswer = await self._t.call(r.LIST, params=params)
        return answer

    def iterate(
        self,
        *,
        search: str | None = None,
        owned_only: bool = False,
        tag: str | None = None,
        is_public: bool | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[m.DatasetOut]:
        """Every dataset you can read, page after page."""
        filters = {
            "search": search,
            "owned_only": owned_only or None,
            "tag": tag,
            "is_public": is_public,
        }
        return self._every_page(r.LIST, {}, filters, page_size)

    async def search(
        self, filters: Mapping[str, MetadataValue], *, page: int = 1, page_size: int = 20
    ) -> m.DatasetListAnswer:
        """One page of the datasets whose metadata matches every filter exactly
        (`{"year": 2024}`); the keys `page`, `page_size`, `limit`, `offset` are paging."""
        params = {**dict(filters), "page": page, "page_size": page_size}
        answer: m.DatasetListAnswer = await self._t.call(r.SEARCH, params=params)
        return answer

    def iterate_search(
        self, filters: Mapping[str, MetadataValue], *, page_size: int = 100
    ) -> AsyncIterator[m.DatasetOut]:
        """Every dataset whose metadata matches every filter, page after page."""
        return self._every_page(r.SEARCH, {}, dict(filters), page_size)

    async def _every_page(
        self, route: Endpoint, path: Mapping[str, str], filters: Mapping[str, Any], page_size: int
    ) -> AsyncIterator[Any]:
        """The `data` of a page-numbered listing, page after page."""
        pages = self._t.every_page(route, path=path, params=filters, page_size=page_size)
        async for row in pages:
            yield row

    async def expiring(self, *, within_hours: int = 240) -> DatasetList:
        """Platform admins: datasets expiring within `within_hours`, soonest first."""
        answer: m.DatasetListAnswer = await self._t.call(
            r.EXPIRING, params={"within_hours": within_hours}
        )
        return answer.data

    async def update(
        self,
        dataset_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        is_public: bool | None = None,
        acl_override_enabled: bool | None = None,
        expires_at: datetime | None = None,
    ) -> m.DatasetOut:
        """Change the fields given (PATCH); the others stay as they are."""
        body = m.UpdateDatasetRequest(
            **_given(
                name=name,
                description=description,
                metadata=dict(metadata) if metadata is not None else None,
                is_public=is_public,
                acl_override_enabled=acl_override_enabled,
                expires_at=expires_at,
            )
        )
        answer: m.DatasetAnswer = await self._t.call(
            r.UPDATE, path={"dataset_id": dataset_id}, body=body
        )
        return answer.data

    async def replace(
        self,
        dataset_id: str,
        *,
        name: str,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> m.DatasetOut:
        """Replace name, description and metadata together (PUT)."""
        body = m.ReplaceDatasetRequest(
            name=name, description=description, metadata=dict(metadata or {})
        )
        answer: m.DatasetAnswer = await self._t.call(
            r.REPLACE, path={"dataset_id": dataset_id}, body=body
        )
        return answer.data

    async def delete(self, dataset_id: str) -> None:
        """Owner only: delete the dataset with its items, shares, rows and home entries."""
        await self._t.call(r.DELETE, path={"dataset_id": dataset_id})

    async def merge_metadata(self, dataset_id: str, changes: Mapping[str, Any]) -> m.DatasetOut:
        """Merge keys into the metadata; a None value removes that key."""
        answer: m.DatasetAnswer = await self._t.call(
            r.MERGE_METADATA, path={"dataset_id": dataset_id}, body=changes
        )
        return answer.data

    async def replace_metadata(self, dataset_id: str, metadata: Mapping[str, Any]) -> m.DatasetOut:
        """Replace the metadata whole."""
        answer: m.DatasetAnswer = await self._t.call(
            r.REPLACE_METADATA, path={"dataset_id": dataset_id}, body=metadata
        )
        return answer.data

    # ------------------------------------------------------------ tags on a dataset

    async def list_tags(self, dataset_id: str) -> TagList:
        """The tags the dataset carries."""
        answer: m.TagListAnswer = await self._t.call(
            r.LIST_DATASET_TAGS, path={"dataset_id": dataset_id}
        )
        return answer.data

    async def add_tag(
        self, dataset_id: str, *, tag_name: str | None = None, tag_id: str | None = None
    ) -> TagList:
        """Put a tag (by name or id) on the dataset; the tags it now carries."""
        body = m.DatasetTagRequest(**_given(tag_name=tag_name, tag_id=tag_id))
        answer: m.TagListAnswer = await self._t.call(
            r.ADD_DATASET_TAG, path={"dataset_id": dataset_id}, body=body
        )
        return answer.data

    async def remove_tag(self, dataset_id: str, tag_id: str) -> None:
        """Take a tag off the dataset."""
        await self._t.call(r.REMOVE_DATASET_TAG, path={"dataset_id": dataset_id, "tag_id": tag_id})

    # ------------------------------------------------------------ shares

    async def share(
        self,
        dataset_id: str,
        *,
        email: str | None = None,
        user_id: str | None = None,
        permission: SharePermission = "read",
        expires_at: datetime | None = None,
    ) -> m.ShareOut:
        """Share the dataset with one user (by email or user id) at a level up to yours."""
        body = m.CreateShareRequest(
            permission=permission, **_given(email=email, user_id=user_id, expires_at=expires_at)
        )
        answer: m.ShareAnswer = await self._t.call(
            r.CREATE_SHARE, path={"dataset_id": dataset_id}, body=body
        )
        return answer.data

    async def list_shares(self, dataset_id: str) -> ShareList:
        """The dataset's live shares."""
        answer: m.ShareListAnswer = await self._t.call(
            r.LIST_SHARES, path={"dataset_id": dataset_id}
        )
        return answer.data

    async def update_share(
        self,
        dataset_id: str,
        share_id: str,
        *,
        permission: SharePermission | None = None,
        expires_at: datetime | None = None,
    ) -> m.ShareOut:
        """Change a share's permission and/or expiry."""
        body = m.UpdateShareRequest(**_given(permission=permission, expires_at=expires_at))
        answer: m.ShareAnswer = await self._t.call(
            r.UPDATE_SHARE, path={"dataset_id": dataset_id, "share_id": share_id}, body=body
        )
        return answer.data

    async def delete_share(self, dataset_id: str, share_id: str) -> None:
        """Revoke a share at once."""
        await self._t.call(r.DELETE_SHARE, path={"dataset_id": dataset_id, "share_id": share_id})

    # ------------------------------------------------------------ items and subsets

    async def add_items(
        self, dataset_id: str, entry_ids: Iterable[str], *, notes: str | None = None
    ) -> m.AddItemsAnswer:
        """Link entries you can read into the dataset (idempotent); `added`, `skipped_ids`."""
        body = m.AddItemsRequest(entry_ids=builtins.list(entry_ids), **_given(notes=notes))
        answer: m.AddItemsAnswer = await self._t.call(
            r.ADD_ITEMS, path={"dataset_id": dataset_id}, body=body
        )
        return answer

    async def list_items(
        self, dataset_id: str, *, page: int = 1, page_size: int = 100
    ) -> m.ItemListAnswer:
        """One page of the dataset's items you may see."""
        answer: m.ItemListAnswer = await self._t.call(
            r.LIST_ITEMS,
            path={"dataset_id": dataset_id},
            params={"page": page, "page_size": page_size},
        )
        return answer

    def iterate_items(self, dataset_id: str, *, page_size: int = 100) -> AsyncIterator[m.ItemOut]:
        """Every item of the dataset you may see, page after page."""
        return self._every_page(r.LIST_ITEMS, {"dataset_id": dataset_id}, {}, page_size)

    async def remove_items(self, dataset_id: str, entry_ids: Iterable[str]) -> int:
        """Unlink entries from the dataset (the entries stay); how many were removed."""
        body = m.RemoveItemsRequest(entry_ids=builtins.list(entry_ids))
        answer: m.RemoveItemsAnswer = await self._t.call(
            r.REMOVE_ITEMS, path={"dataset_id": dataset_id}, body=body
        )
        return answer.removed

    async def create_subset(
        self,
        dataset_id: str,
        name: str,
        entry_ids: Iterable[str],
        *,
        description: str = "",
        expires_at: datetime | None = None,
    ) -> m.DatasetOut:
        """A new dataset of yours whose items are some of this dataset's items."""
        body = m.SubsetRequest(
            name=name,
            description=description,
            entry_ids=builtins.list(entry_ids),
            **_given(expires_at=expires_at),
        )
        answer: m.DatasetAnswer = await self._t.call(
            r.CREATE_SUBSET, path={"dataset_id": dataset_id}, body=body
        )
        return answer.data

    # ------------------------------------------------------------ access

    async def check_access(
        self, dataset_id: str, *, require_write: bool = False
    ) -> m.AccessCheckOut:
        """Whether you can read (or write) the dataset, and why."""
        body = m.AccessCheckRequest(dataset_id=dataset_id, require_write=require_write)
        answer: m.AccessCheckAnswer = await self._t.call(r.CHECK_ACCESS, body=body)
        return answer.data


class AsyncTags:
    """The tag catalogue and the tags you hold (`quarry.tags`)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def list(self) -> TagList:
        """Every tag of the catalogue (never a secret)."""
        answer: m.TagListAnswer = await self._t.call(r.LIST_TAGS)
        return answer.data

    async def create(
        self,
        name: str,
        *,
        description: str = "",
        is_public: bool = True,
        metadata: Mapping[str, Any] | None = None,
        secret: str | None = None,
    ) -> m.TagOut:
        """Platform admins: a new tag; a private one (`is_public=False`) needs a secret."""
        body = m.CreateTagRequest(
            name=name,
            description=description,
            is_public=is_public,
            **_given(metadata=dict(metadata) if metadata is not None else None, secret=secret),
        )
        answer: m.TagAnswer = await self._t.call(r.CREATE_TAG, body=body)
        return answer.data

    async def acquire(self, name: str, *, secret: str | None = None) -> m.TagOut:
        """Hold a tag (idempotent): you then read every dataset that carries it."""
        body = m.AcquireTagRequest(tag_name=name, **_given(secret=secret))
        answer: m.TagAnswer = await self._t.call(r.ACQUIRE_TAG, body=body)
        return answer.data

    async def mine(self) -> TagList:
        """The tags you hold."""
        answer: m.TagListAnswer = await self._t.call(r.MY_TAGS)
        return answer.data

    async def release(self, tag_id: str) -> None:
        """Stop holding a tag."""
        await self._t.call(r.RELEASE_TAG, path={"tag_id": tag_id})


class AsyncAudit:
    """The audit trail you may see (`quarry.audit`): your own actions and those on
    datasets you own or administer (everything, for a platform admin)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def page(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        dataset_id: str | None = None,
        actor_user_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> m.AuditPageAnswer:
        """One page of records, newest first; pass `pagination.next_cursor` as `after`."""
        params = {
            **_audit_filters(since, until, action, dataset_id, actor_user_id),
            "after": after,
            "limit": limit,
        }
        answer: m.AuditPageAnswer = await self._t.call(r.AUDIT_PAGE, params=params)
        return answer

    async def iterate(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        dataset_id: str | None = None,
        actor_user_id: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[m.AuditRecordOut]:
        """Every record you may see, newest first, following the cursor page by page."""
        after: str | None = None
        while True:
            answer = await self.page(
                since=since,
                until=until,
                action=action,
                dataset_id=dataset_id,
                actor_user_id=actor_user_id,
                after=after,
                limit=page_size,
            )
            for record in answer.data:
                yield record
            after = answer.pagination.next_cursor
            if after is None:
                return

    async def export_chunks(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        dataset_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AsyncIterator[bytes]:
        """The NDJSON export (one record per line, oldest first) as it streams in."""
        params = _audit_filters(since, until, action, dataset_id, actor_user_id)
        async with self._t.stream("GET", r.AUDIT_EXPORT.path, params=params) as response:
            async for chunk in response.aiter_bytes():
                yield chunk

    async def export_records(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        dataset_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AsyncIterator[m.AuditRecordOut]:
        """The export parsed, one record at a time, oldest first."""
        params = _audit_filters(since, until, action, dataset_id, actor_user_id)
        async with self._t.stream("GET", r.AUDIT_EXPORT.path, params=params) as response:
            async for line in response.aiter_lines():
                if line.strip():
                    yield m.AuditRecordOut.model_validate_json(line)

    async def export_to(
        self,
        path: str | os.PathLike[str],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        dataset_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> int:
        """Stream the NDJSON export into a file; the number of bytes written."""
        chunks = self.export_chunks(
            since=since,
            until=until,
            action=action,
            dataset_id=dataset_id,
            actor_user_id=actor_user_id,
        )
        return await save_chunks(chunks, path)


def _audit_filters(
    since: datetime | None,
    until: datetime | None,
    action: str | None,
    dataset_id: str | None,
    actor_user_id: str | None,
) -> dict[str, Any]:
    return {
        "since": _instant(since),
        "until": _instant(until),
        "action": action,
        "dataset_id": dataset_id,
        "actor_user_id": actor_user_id,
    }
