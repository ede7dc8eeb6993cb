"""One sorted page of a collection, with its total, the way each engine does it fast.

A `PageQuery` is an AND of clauses, each an OR of simple conditions:
`Eq(path, value)` (equality, on arrays: contains — MongoDB's meaning),
`After(path, moment)` (later than, optionally also missing or null),
`Before(path, moment)`, `Contains(paths, text)` (case-insensitive substring of
one of the string fields) and `IdIn(collection, path, clauses)` (`_id` among the
`path` values of another collection's documents matching `clauses` — a
semi-join), sorted by one field (a date or a number) descending — or ascending —
ties by `_id`, then `offset` / `limit`.

On every engine this is one `find` with that filter (`page_filter`), sort,
skip and limit plus a count of the filter (the semi-join's values are read
first): on MongoDB the driver's (`find_page_mongo`), on the embedded engine's
PostgreSQL the read planner's (`app.engine.planner`: one SQL statement each over
the typed indexes Quarry declares for its own collections) or, where the planner
cannot answer exactly, FerretDB's own. Conditions mean what MongoDB's filter means
(an `Eq` on an array field: the array holds the value).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
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


#: Reads a semi-join's values: (collection, filter, path) → the `path` values of the
#: matching documents.
Resolver = Callable[[str, Document, str], Awaitable[list[Any]]]


async def mongo_filter(
    db: AsyncDatabase[Document], clauses: tuple[tuple[Condition, ...], ...]
) -> Document:
    """The MongoDB filter of `clauses` (semi-joins resolved into `$in` lists)."""

    async def resolve(collection: str, inner: Document, path: str) -> list[Any]:
        rows = await db[collection].find(inner, {path: 1}).to_list(None)
        return [row[path] for row in rows if path in row]

    return await page_filter(clauses, resolve)


async def page_filter(clauses: tuple[tuple[Condition, ...], ...], resolve: Resolver) -> Document:
    """The MongoDB filter of `clauses`, each semi-join's values read by `resolve`
    (the embedded engine reads them through its read planner)."""
    parts = []
    for clause in clauses:
        alternatives = await asyncio.gather(*(_condition(c, resolve) for c in clause))
        parts.append(alternatives[0] if len(alternatives) == 1 else {"$or": list(alternatives)})
    return {"$and": parts} if parts else {}


async def _condition(condition: Condition, resolve: Resolver) -> Document:
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
    inner = await page_filter(condition.clauses, resolve)
    return {"_id": {"$in": await resolve(condition.collection, inner, condition.path)}}


def page_sort(query: PageQuery) -> list[tuple[str, int]]:
    """The page's order: its field, then `_id`, both in the page's direction."""
    direction = 1 if query.ascending else -1
    return [(query.sort_desc, direction), ("_id", direction)]


async def find_page_mongo(
    db: AsyncDatabase[Document], collection: str, query: PageQuery, *, max_time_ms: int
) -> tuple[list[Document], int]:
    """The page's documents and the total, with the driver (any engine)."""
    condition = await mongo_filter(db, query.clauses)
    cursor = (
        db[collection]
        .find(condition)
        .sort(page_sort(query))
        .skip(query.offset)
        .limit(query.limit)
        .max_time_ms(max_time_ms)
    )
    documents, total = await asyncio.gather(
        cursor.to_list(None), db[collection].count_documents(condition, maxTimeMS=max_time_ms)
    )
    return documents, total
