"""Keyword search over the entries a caller can read (`spec/entries.md`).

Access is decided at query time from the catalogue, never baked into the index:
the service works out, per tenant index, which entries the caller may see — the
entries whose home dataset they can read, plus those linked into a readable
dataset with ACL override — and hands that restriction to tantivy with the
query. Hits are then checked against the catalogue once more (an entry deleted
a moment ago, before the indexer caught up, is dropped), and hits seen only
through an ACL override are audited.

Searching several tenants' indexes merges their pages; BM25 scores of different
indexes are close but not strictly comparable (each index has its own term
statistics). A result window deeper than `MAX_RESULT_WINDOW` is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId

from app.clock import utc_now
from app.db import Document
from app.kit import parse_object_id
from data_api.datasets.access import Access, Level
from data_api.datasets.service import DatasetService
from data_api.entries.repository import EntryStore
from data_api.entries.service import entry_view
from data_api.search.errors import IndexRebuilding, InvalidQuery, ResultWindowTooLarge
from data_api.search.index import Hit, IndexMissing, SearchIndexes
from data_api.search.query import QuerySyntaxError, compile_query

MAX_RESULT_WINDOW = 10_000
#: Up to this many hits, their entry records are read with the deletion check.
PREFETCH_ENTRIES = 200
#: How long a search waits for the indexer to rebuild a missing index.
REBUILD_WAIT_SECONDS = 30.0


@dataclass
class _Scope:
    """What the caller may see in one tenant's index."""

    home_dataset_ids: set[str] = field(default_factory=set)
    entry_ids: set[str] = field(default_factory=set)
    #: entry id → the dataset the caller reaches it through (for `dataset_id`).
    via: dict[str, str] = field(default_factory=dict)
    #: entry ids seen only through an ACL override → that dataset.
    override: dict[str, ObjectId] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchPage:
    data: list[dict[str, Any]]
    total: int
    took_ms: float


class SearchService:
    def __init__(
        self,
        *,
        datasets: DatasetService,
        store: EntryStore,
        indexes: SearchIndexes,
        request_rebuild: Callable[[ObjectId], Any],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.datasets = datasets
        self.store = store
        self.indexes = indexes
        self.request_rebuild = request_rebuild
        self.clock = clock

    async def search(
        self,
        *,
        user_id: ObjectId,
        query: str,
        dataset_ids: list[str] | None,
        file_types: list[str] | None,
        sort_by: str,
        sort_order: str,
        page: int,
        page_size: int,
    ) -> SearchPage:
        """Raises InvalidQuery, DatasetNotFound (a named dataset the caller cannot
        read), ResultWindowTooLarge, IndexRebuilding."""
        started = time.perf_counter()
        if page * page_size > MAX_RESULT_WINDOW:
            raise ResultWindowTooLarge(MAX_RESULT_WINDOW)
        try:
            compiled = compile_query(query)
        except QuerySyntaxError as exc:
            raise InvalidQuery(exc.message, exc.position) from None
        if dataset_ids is None:
            scopes = await self._everything_readable(user_id)
        else:
            scopes = await self._datasets_items(user_id, dataset_ids)
        types = {t.lower().lstrip(".") for t in file_types} if file_types else None
        window = page * page_size
        fetch = window
        while True:
            pages = await asyncio.gather(
                *(
                    self._tenant_page(tenant, scope, compiled, types, sort_by, sort_order, fetch)
                    for tenant, scope in scopes.items()
                )
            )
            tagged = [
                (tenant, hit)
                for tenant, (_, hits) in zip(scopes, pages, strict=True)
                for hit in hits
            ]
            alive, entries = await self._alive(tagged)
            dead = len(tagged) - len(alive)
            more = any(count > fetch for count, _ in pages)
            if len(alive) >= window or not more or dead == 0 or fetch >= 2 * MAX_RESULT_WINDOW:
                break
            # Entries deleted since they were indexed took places in the window: ask
            # for that many more, so the page is as it will be once the index knows.
            fetch = min(fetch + 2 * dead, 2 * MAX_RESULT_WINDOW)
        total = sum(count for count, _ in pages) - dead
        merged = await self._merged(alive, len(scopes), sort_by, sort_order)
        shown = merged[(page - 1) * page_size : window]
        data = await self._hydrated(user_id, scopes, shown, entries)
        return SearchPage(data, total, round((time.perf_counter() - started) * 1000, 2))

    async def _alive(
        self, tagged: list[tuple[ObjectId, Hit]]
    ) -> tuple[list[tuple[ObjectId, Hit]], dict[str, Document]]:
        """The hits whose entry still exists: one deleted a moment ago, before the
        indexer caught up, is neither shown nor counted, nor does it shift a page.
        A short window's entry records are read at the same time (the page needs
        them)."""
        if not tagged:
            return [], {}
        ids = [ObjectId(h.entry_id) for _, h in tagged]
        entries: dict[str, Document] = {}
        if len(tagged) <= PREFETCH_ENTRIES:
            homes, entries = await asyncio.gather(
                self.store.entry_homes(entry_ids=ids), self._entries(tagged)
            )
        else:
            homes = await self.store.entry_homes(entry_ids=ids)
        alive = [
            (tenant, hit)
            for tenant, hit in tagged
            if (home := homes.get(ObjectId(hit.entry_id))) is not None
            and home.get("state") != "deleting"
        ]
        return alive, entries

    async def _everything_readable(self, user_id: ObjectId) -> dict[ObjectId, _Scope]:
        accesses = await self.datasets.readable_datasets(user_id=user_id)
        scopes: dict[ObjectId, _Scope] = {}
        readable = {a.dataset["_id"] for a in accesses}
        for access in accesses:
            d = access.dataset
            scopes.setdefault(d["owner_id"], _Scope()).home_dataset_ids.add(str(d["_id"]))
        gone: dict[ObjectId, bool] = {}
        now = self.clock()
        for access in accesses:
            d = access.dataset
            if not d.get("acl_override_enabled") or not d.get("linked_homes"):
                continue
            for item in await self.datasets.catalogue.items_of(
                owner_id=d["owner_id"], dataset_id=d["_id"]
            ):
                home = item["home_dataset_id"]
                if home in readable:
                    continue
                if home not in gone:  # expired or being deleted: gone, override or not
                    gone[home] = await self.datasets.home_level(home, user_id, now) is None
                if gone[home]:
                    continue
                scope = scopes.setdefault(item["entry_owner_id"], _Scope())
                entry = str(item["entry_id"])
                scope.entry_ids.add(entry)
                scope.via[entry] = str(d["_id"])
                scope.override[entry] = d["_id"]
        return scopes

    async def _datasets_items(
        self, user_id: ObjectId, dataset_ids: list[str]
    ) -> dict[ObjectId, _Scope]:
        """The items of the named datasets that the caller sees (as the item list
        shows them)."""
        now = self.clock()
        scopes: dict[ObjectId, _Scope] = {}
        for raw in dict.fromkeys(dataset_ids):
            access = await self.datasets.access.require(
                parse_object_id(raw, what="dataset_id"), user_id, Level.read, now
            )
            await self._add_items(scopes, access, user_id, now)
        return scopes

    async def _add_items(
        self, scopes: dict[ObjectId, _Scope], access: Access, user_id: ObjectId, now: datetime
    ) -> None:
        d = access.dataset
        homed_here_only = (
            "linked_homes" in d and not d["linked_homes"] and not d.get("items_removed")
        )
        if homed_here_only:
            # Every item is homed in the dataset itself: its entries are exactly
            # those whose home it is — a filter the index answers by itself.
            scopes.setdefault(d["owner_id"], _Scope()).home_dataset_ids.add(str(d["_id"]))
            return
        visible, through = await self.datasets.visible_items(access, user_id, now)
        override_ids = {i["_id"] for i in through}
        for item in visible:
            scope = scopes.setdefault(item["entry_owner_id"], _Scope())
            entry = str(item["entry_id"])
            scope.entry_ids.add(entry)
            scope.via.setdefault(entry, str(d["_id"]))
            if item["_id"] in override_ids:
                scope.override[entry] = d["_id"]

    # ---------------------------------------------------------------- index

    async def _tenant_page(
        self,
        tenant: ObjectId,
        scope: _Scope,
        compiled: str,
        types: set[str] | None,
        sort_by: str,
        sort_order: str,
        window: int,
    ) -> tuple[int, list[Hit]]:
        def run() -> tuple[int, list[Hit]]:
            return self.indexes.search(
                str(tenant),
                compiled,
                home_dataset_ids=scope.home_dataset_ids,
                entry_ids=scope.entry_ids,
                file_types=types,
                sort_by=sort_by,
                sort_order=sort_order,
                offset=0,
                limit=window,
            )

        deadline = time.monotonic() + REBUILD_WAIT_SECONDS
        requested = False
        while True:
            try:
                return await asyncio.to_thread(run)
            except IndexMissing:
                if time.monotonic() > deadline:
                    raise IndexRebuilding() from None
                if not requested:
                    await self.request_rebuild(tenant)
                    requested = True
                await asyncio.sleep(0.2)
            except QuerySyntaxError as exc:
                raise InvalidQuery(exc.message, exc.position) from None

    async def _merged(
        self,
        tagged: list[tuple[ObjectId, Hit]],
        tenants: int,
        sort_by: str,
        sort_order: str,
    ) -> list[tuple[ObjectId, Hit]]:
        """One tenant's hits come sorted; several tenants' are merged here."""
        if tenants <= 1:
            return tagged
        reverse = sort_order == "desc"
        if sort_by == "relevance":
            return sorted(tagged, key=lambda th: th[1].score, reverse=reverse)
        keys = await self._sort_keys(tagged, sort_by)
        # An entry that vanished meanwhile goes last, never compared with a value.
        known = [th for th in tagged if th[1].entry_id in keys]
        known.sort(key=lambda th: keys[th[1].entry_id], reverse=reverse)
        return known + [th for th in tagged if th[1].entry_id not in keys]

    async def _sort_keys(self, tagged: list[tuple[ObjectId, Hit]], sort_by: str) -> dict[str, Any]:
        entries = await self._entries(tagged)
        keys: dict[str, Any] = {}
        for entry_id, entry in entries.items():
            value = entry.get(sort_by)
            if value is not None:
                keys[entry_id] = value.lower() if isinstance(value, str) else value
        return keys

    async def _entries(self, tagged: list[tuple[ObjectId, Hit]]) -> dict[str, dict[str, Any]]:
        by_tenant: dict[ObjectId, list[ObjectId]] = {}
        for tenant, hit in tagged:
            by_tenant.setdefault(tenant, []).append(ObjectId(hit.entry_id))
        found = await asyncio.gather(
            *(self.store.entries_by_id(owner_id=t, entry_ids=ids) for t, ids in by_tenant.items())
        )
        return {str(k): v for rows in found for k, v in rows.items()}

    async def _hydrated(
        self,
        user_id: ObjectId,
        scopes: dict[ObjectId, _Scope],
        shown: list[tuple[ObjectId, Hit]],
        entries: dict[str, Document],
    ) -> list[dict[str, Any]]:
        """The page's hits with their entry records (an entry removed meanwhile is
        left out); reads through an ACL override are audited."""
        if not shown:
            return []
        missing = [(t, h) for t, h in shown if h.entry_id not in entries]
        if missing:
            entries = {**entries, **await self._entries(missing)}
        data = []
        audited: dict[ObjectId, list[ObjectId]] = {}
        for tenant, hit in shown:
            entry = entries.get(hit.entry_id)
            if entry is None:
                continue
            scope = scopes[tenant]
            through = scope.override.get(hit.entry_id)
            if through is not None:
                audited.setdefault(through, []).append(entry["_id"])
            data.append(
                {
                    "entry": entry_view(entry),
                    "dataset_id": scope.via.get(hit.entry_id, str(entry["dataset_id"])),
                    "score": hit.score,
                    "snippets": hit.snippets,
                }
            )
        for dataset_id, entry_ids in audited.items():
            await self.datasets.audit_or_refuse(
                action="search.read_through_acl_override",
                resource_type="dataset",
                resource_id=str(dataset_id),
                dataset_id=dataset_id,
                actor_user_id=user_id,
                status=200,
                details={"entry_ids": [str(e) for e in entry_ids]},
            )
        return data
