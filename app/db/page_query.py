"""One sorted page of a collection, with its total, the way each engine does it fast.

A `PageQuery` is an AND of clauses, each an OR of simple conditions:
`Eq(path, value)` (equality, on arrays: contains — MongoDB's meaning),
`After(path, moment)` (later than, optionally also missing or null),
`Before(path, moment)`, `Contains(paths, text)` (case-insensitive substring of
one of the string fields) and `IdIn(collection, path, clauses)` (`_id` among the
`path` values of another collection's documents matching `clauses` — a
semi-join), sorted by one field (a date or a number) descending — or ascending —
ties by `_id`, then `offset` / `limit`.

On MongoDB this is one `find` with that filter, sort, skip and limit plus a
`count_documents` (the semi-join's ids are read first): indexes serve them. The
embedded engine (FerretDB 1.24) pushes none of `$or`, ranges, sorts or limits
down to its storage and decodes every document it returns (about 0.15 ms each),
so a page out of thousands of candidates would cost hundreds of milliseconds; on
its PostgreSQL backend `app.engine.sql` runs the same query as one SQL statement
over FerretDB's tables instead and returns just the page's `_id`s and the total,
and the documents are then read by `_id`. Values compare as FerretDB stores
them (ObjectIds as their hex strings, dates as milliseconds), so `Eq` is meant
for fields whose type the writer fixes.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


@dataclass(frozen=True)
class Eq:
    path: str
    value: Any


@dataclass(frozen=True)
class After:
    """Later than `moment` (a date, or a number for a numeric field)."""

    path: str
    moment: datetime | int | float
    or_missing: bool = False


@dataclass(frozen=True)
class Before:
    """Earlier than `moment` (a date, or a number for a numeric field)."""

    path: str
    moment: datetime | int | float


@dataclass(frozen=True)
class Contains:
    paths: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class IdIn:
    collection: str
    path: str
    clauses: tuple[tuple[Condition, ...], ...]


Condition = Eq | After | Before | Contains | IdIn


@dataclass(frozen=True)
class PageQuery:
    clauses: tuple[tuple[Condition, ...], ...]
    sort_desc: str
    offset: int = 0
    limit: int = 20
    #: Sort `sort_desc` (and `_id`) ascending instead: missing values first.
    ascending: bool = False

    def subquery_collections(self) -> set[str]:
        return {c.collection for clause in self.clauses for c in clause if isinstance(c, IdIn)}


async def mongo_filter(
    db: AsyncDatabase[Document], clauses: tuple[tuple[Condition, ...], ...]
) -> Document:
    """The MongoDB filter of `clauses` (semi-joins resolved into `$in` lists)."""
    parts = []
    for clause in clauses:
        alternatives = await asyncio.gather(*(_mongo_condition(db, c) for c in clause))
        parts.append(alternatives[0] if len(alternatives) == 1 else {"$or": list(alternatives)})
    return {"$and": parts} if parts else {}


async def _mongo_condition(db: AsyncDatabase[Document], condition: Condition) -> Document:
    if isinstance(condition, Eq):
        return {condition.path: condition.value}
    if isinstance(condition, After):
        later = {condition.path: {"$gt": condition.moment}}
        return {"$or": [later, {condition.path: None}]} if condition.or_missing else later
    if isinstance(condition, Before):
        return {condition.path: {"$lt": condition.moment}}
    if isinstance(condition, Contains):
        pattern = re.escape(condition.text)
        return {"$or": [{p: {"$regex": pattern, "$options": "i"}} for p in condition.paths]}
    inner = await mongo_filter(db, condition.clauses)
    rows = await db[condition.collection].find(inner, {condition.path: 1}).to_list(None)
    return {"_id": {"$in": [row[condition.path] for row in rows if condition.path in row]}}


async def find_page_mongo(
    db: AsyncDatabase[Document], collection: str, query: PageQuery, *, max_time_ms: int
) -> tuple[list[Document], int]:
    """The page's documents and the total, with the driver (any engine)."""
    condition = await mongo_filter(db, query.clauses)
    direction = 1 if query.ascending else -1
    cursor = (
        db[collection]
        .find(condition)
        .sort([(query.sort_desc, direction), ("_id", direction)])
        .skip(query.offset)
        .limit(query.limit)
        .max_time_ms(max_time_ms)
    )
    documents, total = await asyncio.gather(
        cursor.to_list(None), db[collection].count_documents(condition, maxTimeMS=max_time_ms)
    )
    return documents, total
