"""The only place datasets talk to MongoDB: the catalogue and the tenant databases.

Catalogue (control database), where every access decision is made:
- `datasets`: `{_id, name, description, metadata, owner_id, is_public,
  acl_override_enabled, tags: [tag ids], source_query, created_at, updated_at,
  expires_at, state: live|deleting, deleting_since?, warned: {...}}`;
- `tags` (unique `name`; a private tag keeps only a salted scrypt hash of its
  secret) and `user_tags` (`_id` = `<user>:<tag>`: holding a tag twice is one row);
- `shares` (unique `key` = `<dataset>:<user>`: one share per user and dataset);
- `entry_homes` (`_id` = entry id → owner, home dataset, the owners whose
  datasets link it, `state: deleting` once its deletion began), so an entry id
  names its tenant database in one lookup;
- `search_queue` (`{_id, tenant, entry_id}`: "this entry changed", drained by
  the search indexer, which reconciles the index with the entry's current state)
  and `extraction_jobs` (`_id` = entry id: text still to extract);
- `leases` (`_id` = a job's name: one worker at a time runs it; `rows:<dataset>`
  is the write lock of a dataset's rows);
- `columns` (declared row columns, unique `key` = `<dataset>:<name>`).

Data (one database per owner, `qt_<owner id>`): `entries` (the entry records
of `data_api/entries/`), their bytes in GridFS (bucket `entries`:
`entries.files`, `entries.chunks`), their extracted text (`entry_texts`, in
chunks with `_id` = `<entry>:<n>`), `items` (`_id` = `<dataset>:<entry>`:
linking twice is one row), and rows: `row_dirs` and `row_buckets`
(`data_api/rows/store.py` describes them). The embedded engine finds documents fast only by
`_id` or equality on an indexed field, so every lookup here is one of those;
lists are gathered from such lookups and sorted in the service.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from app.clock import utc_now
from app.db import Database, DatabaseHandle, Document, Eq, PageQuery
from app.errors import DatabaseUnavailable
from app.users import USERS

DATASETS = "datasets"
TAGS = "tags"
USER_TAGS = "user_tags"
SHARES = "shares"
ENTRY_HOMES = "entry_homes"
LEASES = "leases"
ENTRIES = "entries"
ITEMS = "items"
ENTRY_FILES = "entries.files"
ENTRY_CHUNKS = "entries.chunks"
ENTRY_TEXTS = "entry_texts"
SEARCH_QUEUE = "search_queue"
EXTRACTION_JOBS = "extraction_jobs"
UPLOADS = "uploads"
COLUMNS = "columns"
ROW_DIRS = "row_dirs"
ROW_BUCKETS = "row_buckets"

CATALOGUE_INDEXES: dict[str, list[IndexModel]] = {
    DATASETS: [
        IndexModel([("owner_id", ASCENDING)], name="owner"),
        IndexModel([("is_public", ASCENDING)], name="public"),
        IndexModel([("tags", ASCENDING)], name="tags"),
        IndexModel([("state", ASCENDING)], name="state"),
        IndexModel([("expires_at", ASCENDING)], name="expires"),
    ],
    TAGS: [IndexModel([("name", ASCENDING)], unique=True, name="name_unique")],
    ENTRY_HOMES: [
        IndexModel([("home_dataset_id", ASCENDING)], name="home"),
        IndexModel([("state", ASCENDING)], name="state"),
    ],
    SEARCH_QUEUE: [IndexModel([("tenant", ASCENDING)], name="tenant")],
    USER_TAGS: [IndexModel([("user_id", ASCENDING)], name="user")],
    COLUMNS: [
        IndexModel([("key", ASCENDING)], unique=True, name="key_unique"),
        IndexModel([("dataset_id", ASCENDING)], name="dataset"),
    ],
    SHARES: [
        IndexModel([("key", ASCENDING)], unique=True, name="key_unique"),
        IndexModel([("user_id", ASCENDING)], name="user"),
        IndexModel([("dataset_id", ASCENDING)], name="dataset"),
    ],
}
TENANT_INDEXES: dict[str, list[IndexModel]] = {
    ITEMS: [
        IndexModel([("dataset_id", ASCENDING)], name="dataset"),
        IndexModel([("entry_id", ASCENDING)], name="entry"),
    ],
    ENTRIES: [IndexModel([("dataset_id", ASCENDING)], name="dataset")],
    ENTRY_CHUNKS: [
        IndexModel([("files_id", ASCENDING), ("n", ASCENDING)], unique=True, name="files_id_1_n_1")
    ],
    ENTRY_TEXTS: [IndexModel([("entry_id", ASCENDING)], name="entry")],
    ROW_BUCKETS: [IndexModel([("dataset_id", ASCENDING)], name="dataset")],
}

#: The typed fields of Quarry's own collections (field → schema type; `[id]`: an
#: array of ObjectIds), told to the engine with their indexes: on the embedded
#: engine the read planner serves the dataset list (its filters, search, tags and
#: the shares it semi-joins), the entry lists, lookups and reads by `_id` through
#: their typed indexes (`app.engine.planner`). Every collection listed gets an
#: `_id` index, fields or none.
CATALOGUE_FIELDS: dict[str, dict[str, str]] = {
    DATASETS: {
        "owner_id": "id",
        "is_public": "bool",
        "tags": "[id]",
        "state": "string",
        "expires_at": "date",
        "updated_at": "date",
        "name": "string",
        "description": "string",
    },
    SHARES: {
        "key": "string",
        "user_id": "id",
        "dataset_id": "id",
        "expires_at": "date",
        "created_at": "date",
    },
    USER_TAGS: {"user_id": "id"},
    ENTRY_HOMES: {"home_dataset_id": "id", "state": "string"},
    USERS: {},
}
TENANT_FIELDS: dict[str, dict[str, str]] = {
    ITEMS: {"dataset_id": "id", "home_dataset_id": "id", "entry_id": "id", "added_at": "date"},
    ENTRIES: {"dataset_id": "id", "created_at": "date", "name": "string", "size": "int"},
    # The row directory's buckets are read by `_id` (`Database.by_ids`).
    ROW_BUCKETS: {"dataset_id": "id"},
}


#: Every tenant's physical database is named this and its owner's id.
TENANT_PREFIX = "qt_"


def tenant_db_name(owner_id: ObjectId) -> str:
    return f"{TENANT_PREFIX}{owner_id}"


async def declare_tenant_fields(db: DatabaseHandle) -> None:
    for collection, fields in TENANT_FIELDS.items():
        await db[collection].declare_fields(fields)


class Catalogue:
    """Catalogue and tenant access for one app (`database` is the shared client)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._tenants_indexed: set[ObjectId] = set()
        #: The catalogue's indexes (unique share keys and tag names) exist.
        self.ready = False

    @property
    def control(self) -> DatabaseHandle:
        return self.database.control

    def tenant(self, owner_id: ObjectId) -> DatabaseHandle:
        return self.database.db(tenant_db_name(owner_id))

    async def ensure_catalogue_indexes(self) -> None:
        """The catalogue's indexes, and its typed fields told to the engine (built in
        the background); the tenants that exist already are told theirs too."""
        for collection, indexes in CATALOGUE_INDEXES.items():
            await self.control[collection].create_indexes(indexes)
        for collection, fields in CATALOGUE_FIELDS.items():
            await self.control[collection].declare_fields(fields)
        for db_name in await self.database.list_database_names():
            if db_name.startswith(TENANT_PREFIX):
                await declare_tenant_fields(self.database.db(db_name))

    async def ensure_tenant(self, owner_id: ObjectId) -> DatabaseHandle:
        """The owner's tenant database, created with its indexes on first use."""
        db = self.tenant(owner_id)
        if owner_id not in self._tenants_indexed:
            for collection, indexes in TENANT_INDEXES.items():
                await db[collection].create_indexes(indexes)
            await declare_tenant_fields(db)
            self._tenants_indexed.add(owner_id)
        return db

    # ---------------------------------------------------------------- datasets

    async def insert_dataset(self, *, dataset: Document) -> None:
        await self.control[DATASETS].insert_one(dataset)

    async def find_dataset(self, *, dataset_id: ObjectId) -> Document | None:
        return await self.control[DATASETS].find_one({"_id": dataset_id})

    async def datasets_where(self, *, query: Document) -> list[Document]:
        """Datasets by an indexed equality (`owner_id`, `is_public`, `tags`, `state`)."""
        return await self.control[DATASETS].find(query).to_list(None)

    async def dataset_and_standing(
        self, *, dataset_id: ObjectId | None, user_id: ObjectId
    ) -> tuple[Document | None, Document | None, Document | None, list[ObjectId]]:
        """(the dataset, the user's share to it, the user's account row, the tags they
        hold): four indexed lookups, run concurrently (`Database.lookups`). Without
        `dataset_id`, only the user's standing."""
        wanted: list[tuple[str, str, Any]] = [
            (USERS, "_id", user_id),
            (USER_TAGS, "user_id", user_id),
        ]
        if dataset_id is not None:
            wanted += [(DATASETS, "_id", dataset_id), (SHARES, "key", f"{dataset_id}:{user_id}")]
        found = await self.database.lookups(self.database.control_db_name, wanted)
        user, held = (found[0] or [None])[0], [row["tag_id"] for row in found[1]]
        if dataset_id is None:
            return None, None, user, held
        return (found[2] or [None])[0], (found[3] or [None])[0], user, held

    async def page(self, query: PageQuery) -> tuple[list[Document], int]:
        """One sorted page of datasets and the number matching (`app.db.page_query`)."""
        return await self.database.find_page(self.database.control_db_name, DATASETS, query)

    async def all_datasets(self) -> list[Document]:
        return await self.control[DATASETS].find({}).to_list(None)

    async def update_dataset(
        self, *, dataset_id: ObjectId, update: Document, live_only: bool = True
    ) -> bool:
        query: Document = {"_id": dataset_id}
        if live_only:
            query["state"] = "live"
        result = await self.control[DATASETS].update_one(query, update)
        return result.matched_count == 1

    async def delete_dataset(self, *, dataset_id: ObjectId) -> None:
        await self.control[DATASETS].delete_one({"_id": dataset_id})

    # ---------------------------------------------------------------- tags

    async def insert_tag(self, *, tag: Document) -> bool:
        try:
            await self.control[TAGS].insert_one(tag)
        except DuplicateKeyError:
            return False
        return True

    async def find_tag(self, *, query: Document) -> Document | None:
        return await self.control[TAGS].find_one(query)

    async def all_tags(self) -> list[Document]:
        return await self.control[TAGS].find({}).to_list(None)

    async def hold_tag(self, *, user_id: ObjectId, tag_id: ObjectId, at: datetime) -> None:
        with contextlib.suppress(DuplicateKeyError):  # held already: acquiring is idempotent
            await self.control[USER_TAGS].insert_one(
                {"_id": f"{user_id}:{tag_id}", "user_id": user_id, "tag_id": tag_id, "at": at}
            )

    async def release_tag(self, *, user_id: ObjectId, tag_id: ObjectId) -> bool:
        result = await self.control[USER_TAGS].delete_one({"_id": f"{user_id}:{tag_id}"})
        return result.deleted_count == 1

    async def tags_held(self, *, user_id: ObjectId) -> list[ObjectId]:
        rows = await self.control[USER_TAGS].find({"user_id": user_id}).to_list(None)
        return [row["tag_id"] for row in rows]

    # ---------------------------------------------------------------- shares

    async def insert_share(self, *, share: Document) -> bool:
        try:
            await self.control[SHARES].insert_one(share)
        except DuplicateKeyError:
            return False
        return True

    async def find_share(self, *, query: Document) -> Document | None:
        return await self.control[SHARES].find_one(query)

    async def shares_where(self, *, query: Document) -> list[Document]:
        return await self.control[SHARES].find(query).to_list(None)

    async def shares_of_user_on(
        self, *, user_id: ObjectId, dataset_ids: list[ObjectId]
    ) -> dict[ObjectId, Document]:
        """The user's shares to these datasets (one page query, not one lookup each)."""
        if not dataset_ids:
            return {}
        shares, _ = await self.database.find_page(
            self.database.control_db_name,
            SHARES,
            PageQuery(
                clauses=(
                    (Eq("user_id", user_id),),
                    tuple(Eq("dataset_id", d) for d in dataset_ids),
                ),
                sort_desc="created_at",
                limit=len(dataset_ids),
            ),
        )
        return {share["dataset_id"]: share for share in shares}

    async def update_share(self, *, share_id: ObjectId, update: Document) -> None:
        await self.control[SHARES].update_one({"_id": share_id}, update)

    async def delete_share(self, *, query: Document) -> int:
        return (await self.control[SHARES].delete_one(query)).deleted_count

    async def delete_shares_of(self, *, dataset_id: ObjectId) -> None:
        await self.control[SHARES].delete_many({"dataset_id": dataset_id})

    async def delete_expired_shares(self, *, now: datetime) -> int:
        result = await self.control[SHARES].delete_many({"expires_at": {"$lte": now}})
        return result.deleted_count

    # ---------------------------------------------------------------- entries and items

    async def insert_entry(self, *, owner_id: ObjectId, entry: Document) -> None:
        """The entry's catalogue row first: an entry is never in a tenant unlocatable."""
        await self.control[ENTRY_HOMES].insert_one(
            {"_id": entry["_id"], "owner_id": owner_id, "home_dataset_id": entry["dataset_id"]}
        )
        db = await self.ensure_tenant(owner_id)
        await db[ENTRIES].insert_one(entry)

    async def entry_home(self, *, entry_id: ObjectId) -> Document | None:
        return await self.control[ENTRY_HOMES].find_one({"_id": entry_id})

    async def find_entry(self, *, owner_id: ObjectId, entry_id: ObjectId) -> Document | None:
        return await self.tenant(owner_id)[ENTRIES].find_one({"_id": entry_id})

    async def entries_homed_in(self, *, owner_id: ObjectId, dataset_id: ObjectId) -> list[Any]:
        """The entries whose home is the dataset, by their catalogue rows — which are
        written first and removed last, so a deletion cut short still finds them."""
        rows = (
            await self.control[ENTRY_HOMES]
            .find({"home_dataset_id": dataset_id}, {"_id": 1})
            .to_list(None)
        )
        return [row["_id"] for row in rows]

    async def link_item(self, *, owner_id: ObjectId, item: Document, entry_owner: ObjectId) -> None:
        """Link an entry into a dataset of `owner_id` (idempotent); the entry's home
        row learns which tenants link it, so deleting the entry can unlink it. An
        entry whose deletion has begun is not linked (it would outlive it)."""
        learned = await self.control[ENTRY_HOMES].update_one(
            {"_id": item["entry_id"], "state": {"$ne": "deleting"}},
            {"$addToSet": {"linked_owner_ids": owner_id}},
        )
        if learned.matched_count == 0:
            return
        db = await self.ensure_tenant(owner_id)
        with contextlib.suppress(DuplicateKeyError):  # linked already: idempotent
            await db[ITEMS].insert_one(item)

    async def items_of(self, *, owner_id: ObjectId, dataset_id: ObjectId) -> list[Document]:
        return await self.tenant(owner_id)[ITEMS].find({"dataset_id": dataset_id}).to_list(None)

    async def unlink_items(
        self, *, owner_id: ObjectId, dataset_id: ObjectId, entry_ids: list[ObjectId]
    ) -> int:
        removed = 0
        for entry_id in entry_ids:
            result = await self.tenant(owner_id)[ITEMS].delete_one(
                {"_id": f"{dataset_id}:{entry_id}"}
            )
            removed += result.deleted_count
        return removed

    async def delete_items_of(self, *, owner_id: ObjectId, dataset_id: ObjectId) -> None:
        await self.tenant(owner_id)[ITEMS].delete_many({"dataset_id": dataset_id})

    async def delete_entry(self, *, entry_id: ObjectId) -> None:
        """An entry and everything of it, its catalogue row last (idempotent).

        Its catalogue row is marked `deleting` first: from then on every read
        treats it as gone, and a deletion cut short is finished by maintenance
        (`unfinished_entry_deletions`). Then its links in every tenant that links
        it, its text, its bytes, its record; the search index learns of it from
        the queue."""
        home = await self.control[ENTRY_HOMES].find_one_and_update(
            {"_id": entry_id}, {"$set": {"state": "deleting"}}, return_document=ReturnDocument.AFTER
        )
        if home is None:
            return
        owner = home["owner_id"]
        # The record first: lists that page records no longer show it, and an
        # extraction finishing meanwhile finds no `pending` record to complete (it
        # then drops the text it wrote).
        await self.tenant(owner)[ENTRIES].delete_one({"_id": entry_id})
        for linker in {owner, *home.get("linked_owner_ids", [])}:
            await self.tenant(linker)[ITEMS].delete_many({"entry_id": entry_id})
        await self.control[EXTRACTION_JOBS].delete_one({"_id": entry_id})
        await self.delete_entry_content(owner_id=owner, entry_id=entry_id)
        await self.queue_for_search(owner_id=owner, entry_ids=[entry_id])
        await self.control[ENTRY_HOMES].delete_one({"_id": entry_id})

    async def delete_entry_content(self, *, owner_id: ObjectId, entry_id: ObjectId) -> None:
        """An entry's text and bytes (GridFS chunks, then the files document)."""
        db = self.tenant(owner_id)
        await db[ENTRY_TEXTS].delete_many({"entry_id": entry_id})
        await db[ENTRY_CHUNKS].delete_many({"files_id": entry_id})
        await db[ENTRY_FILES].delete_one({"_id": entry_id})

    async def unfinished_entry_deletions(self) -> list[ObjectId]:
        rows = await self.control[ENTRY_HOMES].find({"state": "deleting"}, {"_id": 1}).to_list(None)
        return [row["_id"] for row in rows]

    async def queue_for_search(self, *, owner_id: ObjectId, entry_ids: list[ObjectId]) -> None:
        """Tell the search indexer these entries changed (it reads their state)."""
        if entry_ids:
            await self.control[SEARCH_QUEUE].insert_many(
                [{"_id": ObjectId(), "tenant": owner_id, "entry_id": e} for e in entry_ids]
            )

    # ---------------------------------------------------------------- rows

    async def columns_of(self, *, dataset_id: ObjectId) -> list[Document]:
        found = await self.control[COLUMNS].find({"dataset_id": dataset_id}).to_list(None)
        return sorted(found, key=lambda c: (c["created_at"], c["_id"]))

    async def insert_column(self, *, column: Document) -> bool:
        """False when the dataset has a column of that name."""
        try:
            await self.control[COLUMNS].insert_one(column)
        except DuplicateKeyError:
            return False
        return True

    async def find_column(self, *, column_id: ObjectId) -> Document | None:
        return await self.control[COLUMNS].find_one({"_id": column_id})

    async def delete_column(self, *, column_id: ObjectId) -> bool:
        return (await self.control[COLUMNS].delete_one({"_id": column_id})).deleted_count == 1

    async def row_summary(self, *, owner_id: ObjectId, dataset_id: ObjectId) -> Document | None:
        """A dataset's row directory without its bucket list (count, first, last)."""
        return await self.tenant(owner_id)[ROW_DIRS].find_one({"_id": dataset_id}, {"b": 0})

    async def delete_rows_of(self, *, owner_id: ObjectId, dataset_id: ObjectId) -> None:
        """Every row and column of a dataset being deleted, under its rows lock (so a
        write running meanwhile finishes first, and one starting after finds the
        dataset gone)."""
        holder = str(ObjectId())
        name = f"rows:{dataset_id}"
        try:
            await self.wait_for_lease(name=name, holder=holder, seconds=60.0, wait_seconds=120.0)
        except TimeoutError:
            raise DatabaseUnavailable(
                "A write to the dataset's rows is still running; the deletion is finished "
                "by maintenance."
            ) from None
        db = self.tenant(owner_id)
        await db[ROW_DIRS].delete_one({"_id": dataset_id})
        await db[ROW_BUCKETS].delete_many({"dataset_id": dataset_id})
        await self.control[COLUMNS].delete_many({"dataset_id": dataset_id})
        await self.drop_lease(name=name, holder=holder)

    # ---------------------------------------------------------------- leases

    async def wait_for_lease(
        self,
        *,
        name: str,
        holder: str,
        seconds: float,
        wait_seconds: float,
        mark_lost_takeover: bool = False,
    ) -> bool:
        """Take the lease `name`, waiting while another holder's is live; True when it
        took over a lapsed one (its holder died holding it). Raises TimeoutError.

        Two waiters may both see the lapsed lease: one removes it, the other inserts
        its own first, and neither knows a holder died. With `mark_lost_takeover` the
        one that removed it leaves `<name>:clean` (already lapsed) for maintenance."""
        leases = self.control[LEASES]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        delay = 0.005
        while True:
            now = utc_now()
            lapsed = await leases.delete_one({"_id": name, "until": {"$lte": now}})
            try:
                await leases.insert_one(
                    {"_id": name, "holder": holder, "until": now + timedelta(seconds=seconds)}
                )
            except DuplicateKeyError:
                if mark_lost_takeover and lapsed.deleted_count == 1:
                    with contextlib.suppress(DuplicateKeyError):
                        await leases.insert_one(
                            {"_id": f"{name}:clean", "holder": "", "until": now}
                        )
                if loop.time() > deadline:
                    raise TimeoutError(name) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            return lapsed.deleted_count == 1

    async def renew_lease(self, *, name: str, holder: str, until: datetime) -> bool:
        result = await self.control[LEASES].update_one(
            {"_id": name, "holder": holder}, {"$set": {"until": until}}
        )
        return result.matched_count == 1

    async def take_lease(self, *, name: str, holder: str, now: datetime, until: datetime) -> bool:
        """Hold the job `name` until `until`; False if another holder's lease is live.

        Taking over a lapsed lease is delete-if-still-lapsed, then insert: the
        `_id`'s uniqueness makes one of several racing workers the holder."""
        leases = self.control[LEASES]
        mine = await leases.update_one({"_id": name, "holder": holder}, {"$set": {"until": until}})
        if mine.matched_count == 1:
            return True
        await leases.delete_one({"_id": name, "until": {"$lte": now}})
        try:
            await leases.insert_one({"_id": name, "holder": holder, "until": until})
        except DuplicateKeyError:
            return False
        return True

    async def drop_lease(self, *, name: str, holder: str) -> None:
        await self.control[LEASES].delete_one({"_id": name, "holder": holder})
