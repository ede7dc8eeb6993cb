"""Planned reads run: a find or a count that `app.engine.planner` compiled, as one
SQL statement whose answer counts only when the type guards hold in its own
snapshot; and the cursor the adapter hands out for a find that may be served by
SQL or by FerretDB.

A statement reads, before anything else, the guard of every typed field it
uses and of `_id` (`max(g)` from each index: one index descent) into a
materialised CTE; the documents or the count are read only when all hold, and
the statement returns whether they did. So a field that holds a value of another
type is answered by FerretDB, decided in the same snapshot as the answer.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from app.db import Document, FindSpec, RawCursor
from app.engine.planner import (
    ARRAY_FAMILIES,
    ID_UNORDERED,
    MAX_PLANNED_LIMIT,
    MAX_PLANNED_ROWS,
    Expressions,
    Plan,
    Shape,
    Unplannable,
    plan_read,
    project,
    projection_plan,
)
from app.engine.typed_indexes import TableKeys

logger = logging.getLogger("quarry.engine")

#: Top-level operators FerretDB itself pushes down to PostgreSQL (served by the
#: GIN shadow indexes): a find_one with only these stays with FerretDB.
_PUSHED_DOWN = frozenset({"$eq"})


class PlannerStats:
    """How planned reads went, per database: `served`, or why they fell back —
    `no index`, `unplannable`, `guard`, `too many`, `whole collection` (tests and
    benchmarks read them)."""

    def __init__(self) -> None:
        self._counts: dict[str, Counter[str]] = {}

    def add(self, db_name: str, outcome: str) -> None:
        self._counts.setdefault(db_name, Counter())[outcome] += 1

    def of(self, db_name: str) -> Counter[str]:
        return Counter(self._counts.get(db_name, Counter()))


@dataclass(frozen=True)
class Prepared:
    """A planned read ready to run: its statement and parameters."""

    statement: sql.Composed
    params: dict[str, Any]
    #: A find's projection (None: whole documents); `limited`: the find has a limit.
    shape: Shape | None = None
    limited: bool = True


def prepare_find(
    keys: TableKeys, stats: PlannerStats, *, schema: str, table: str, spec: FindSpec
) -> Prepared | None:
    """`spec` planned (no I/O), or None: FerretDB answers. A find without a limit
    is read with a limit of `MAX_PLANNED_ROWS + 1` and given to FerretDB when it
    reaches it (it then costs what reading those rows costs, a fraction of
    FerretDB's own answer)."""
    unsorted = not spec.sort
    if spec.limit < 0 or spec.skip < 0 or (unsorted and (spec.skip or spec.limit)):
        stats.add(schema, "unplannable")
        return None
    if unsorted and not spec.filter:
        stats.add(schema, "whole collection")  # FerretDB streams it as fast
        return None
    if spec.limit > MAX_PLANNED_LIMIT:
        stats.add(schema, "too many")
        return None
    try:
        shape = projection_plan(spec.projection)
    except Unplannable:
        stats.add(schema, "unplannable")
        return None
    plan = _plan(keys, stats, schema, spec.filter, spec.sort)
    if plan is None:
        return None
    limit = spec.limit or MAX_PLANNED_ROWS + 1
    statement, params = find_statement(schema, table, plan, limit, spec.skip, natural=unsorted)
    return Prepared(statement, params, shape=shape, limited=bool(spec.limit))


async def run_find(
    connection: psycopg.AsyncConnection[Any],
    prepared: Prepared,
    stats: PlannerStats,
    *,
    schema: str,
    read: Callable[[dict[str, Any]], Any],
) -> list[Any] | None:
    """The documents of a prepared find, in order (each decoded by `read`,
    projected), or None: the guards did not hold, or too many matched."""
    cursor = await connection.execute(prepared.statement, prepared.params)
    row = await cursor.fetchone()
    if row is None or not row[0]:
        stats.add(schema, "guard")
        return None
    stored = row[1] or []
    if not prepared.limited and len(stored) > MAX_PLANNED_ROWS:
        stats.add(schema, "too many")
        return None
    stats.add(schema, "served")
    rows = [read(document) for document in stored]
    return [project(r, prepared.shape) if isinstance(r, dict) else r for r in rows]


def prepare_count(
    keys: TableKeys,
    stats: PlannerStats,
    *,
    schema: str,
    table: str,
    filter: Mapping[str, Any],
) -> Prepared | None:
    """A count of `filter` planned (no I/O), or None: FerretDB counts."""
    plan = _plan(keys, stats, schema, filter, None)
    if plan is None:
        return None
    return Prepared(count_statement(schema, table, plan), plan.params)


async def run_count(
    connection: psycopg.AsyncConnection[Any],
    prepared: Prepared,
    stats: PlannerStats,
    *,
    schema: str,
) -> int | None:
    """The number of matches of a prepared count, or None: the guards did not hold."""
    cursor = await connection.execute(prepared.statement, prepared.params)
    row = await cursor.fetchone()
    if row is None or not row[0]:
        stats.add(schema, "guard")
        return None
    stats.add(schema, "served")
    return int(row[1])


def find_statement(
    schema: str, table: str, plan: Plan, limit: int, skip: int, *, natural: bool = False
) -> tuple[sql.Composed, dict[str, Any]]:
    """The statement of a planned find and its parameters; `natural`: in the table's
    order, as FerretDB returns a find without sort (its scan of the table). A
    filter of branches (`Plan.branches`) is read branch by branch, each through its
    index in order up to `skip + limit`, and merged."""
    relation = sql.Identifier(schema, table)
    params = {**plan.params, "limit": limit, "skip": skip}
    if plan.branches and not natural:
        return _union_statement(relation, schema, table, plan), params
    order = sql.SQL("ctid") if natural else _order_by(plan.order)
    documents = sql.SQL(
        "ARRAY(SELECT _jsonb FROM {table} "
        "WHERE (SELECT ok FROM g) AND {where} ORDER BY {order} "
        "LIMIT %(limit)s OFFSET %(skip)s)"
    ).format(table=relation, where=_where(plan, plan.where), order=order)
    statement = sql.SQL("{guarded} SELECT (SELECT ok FROM g), {documents}").format(
        guarded=_guards(schema, table, plan), documents=_as_json_array(documents)
    )
    return statement, params


def _as_json_array(documents: sql.Composable) -> sql.Composable:
    """`documents` (an `ARRAY(SELECT _jsonb ...)`, in order) as one json array in the
    same order: one text to send and parse, where a `jsonb[]` has every document
    quoted and escaped by PostgreSQL, unescaped by psycopg and parsed on its own."""
    return sql.SQL(
        "(SELECT coalesce(json_agg(u.d ORDER BY u.n), '[]') "
        "FROM unnest({}) WITH ORDINALITY AS u(d, n))"
    ).format(documents)


def _union_statement(relation: sql.Composable, schema: str, table: str, plan: Plan) -> sql.Composed:
    keys = [sql.Identifier(f"k{n}") for n in range(len(plan.order))]
    selected = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(expression, key)
        for (expression, _), key in zip(plan.order, keys, strict=True)
    )
    branches = sql.SQL(" UNION ALL ").join(
        sql.SQL(
            "(SELECT _jsonb, {selected} FROM {table} WHERE (SELECT ok FROM g) AND {where} "
            "ORDER BY {order} LIMIT %(limit)s::int8 + %(skip)s::int8)"
        ).format(
            selected=selected,
            table=relation,
            where=_where(plan, branch),
            order=_order_by(plan.order),
        )
        for branch in plan.branches or []
    )
    merged = sql.SQL(", ").join(
        sql.SQL("{} {}").format(key, direction)
        for (_, direction), key in zip(plan.order, keys, strict=True)
    )
    documents = sql.SQL(
        "ARRAY(SELECT u._jsonb FROM ({branches}) AS u "
        "ORDER BY {merged} LIMIT %(limit)s OFFSET %(skip)s)"
    ).format(branches=branches, merged=merged)
    return sql.SQL("{guarded} SELECT (SELECT ok FROM g), {documents}").format(
        guarded=_guards(schema, table, plan), documents=_as_json_array(documents)
    )


def _order_by(terms: list[tuple[sql.Composable, sql.Composable]]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{} {}").format(e, d) for e, d in terms)


def count_statement(schema: str, table: str, plan: Plan) -> sql.Composed:
    """The statement of a planned count (its parameters are the plan's). An
    unfiltered one reads the table's row counter (`rows_counted`)."""
    if plan.unfiltered:  # no field is read, so no guard is needed
        return sql.SQL("SELECT true, {}").format(rows_counted(schema, table))
    return sql.SQL(
        "{guarded} SELECT (SELECT ok FROM g), "
        "(SELECT count(*) FROM {table} WHERE (SELECT ok FROM g) AND {where})"
    ).format(
        guarded=_guards(schema, table, plan),
        table=sql.Identifier(schema, table),
        where=_where(plan, plan.where),
    )


def rows_counted(schema: str, table: str) -> sql.Composed:
    """The number of rows of `schema.table`, in the statement's snapshot: from its
    row counter (`quarry_count_of`, shadow_indexes.sql: a sum of a few counter
    rows), or, while it has none, `count(*)` — which PostgreSQL then runs only
    (an init plan is evaluated when first needed, and `coalesce` stops at the
    first value that is not null)."""
    return sql.SQL(
        "coalesce(public.quarry_count_of({s}, {t}), (SELECT count(*) FROM {rel}))"
    ).format(s=sql.Literal(schema), t=sql.Literal(table), rel=sql.Identifier(schema, table))


def _plan(
    keys: TableKeys,
    stats: PlannerStats,
    schema: str,
    filter: Mapping[str, Any],
    sort: list[tuple[str, int]] | None,
) -> Plan | None:
    if not keys.id_order:
        stats.add(schema, "no index")
        return None
    try:
        return plan_read(filter, sort, keys.fields)
    except Unplannable:
        stats.add(schema, "unplannable")
        return None


def _guards(schema: str, table: str, plan: Plan) -> sql.Composable:
    """`WITH g AS (SELECT <every guard holds> AS ok)`."""
    x = Expressions(in_statement=True)
    relation = sql.Identifier(schema, table)
    checks = [
        sql.SQL("coalesce((SELECT max({}) FROM {}), 0) < {}").format(
            x.id_rank(), relation, sql.Literal(ID_UNORDERED)
        )
    ]
    for name, family in sorted(plan.families.items()):
        if family in ARRAY_FAMILIES:
            # The GIN index finds any `[false]` key: a document off the family's type.
            checks.append(
                sql.SQL("NOT EXISTS (SELECT FROM {} WHERE {} @> '[false]'::jsonb)").format(
                    relation, x.array_key(name, family)
                )
            )
            continue
        checks.append(
            sql.SQL("coalesce((SELECT max({}) FROM {}), 0) = 0").format(
                x.guard(name, family), relation
            )
        )
    return sql.SQL("WITH g AS MATERIALIZED (SELECT {} AS ok)").format(sql.SQL(" AND ").join(checks))


def _where(plan: Plan, condition: sql.Composable) -> sql.Composable:
    """The plan's condition, with `g = 0` for every typed field it uses: true of
    every row once the guards hold, and what lets PostgreSQL read each typed index
    (which leads with `g`) in key order."""
    x = Expressions(in_statement=True)
    zeros = [
        sql.SQL("{} = 0").format(x.guard(n, f))
        for n, f in sorted(plan.families.items())
        if f not in ARRAY_FAMILIES
    ]
    return sql.SQL(" AND ").join([*zeros, sql.SQL("({})").format(condition)])


def wants_planner_for_one(filter: Mapping[str, Any]) -> bool:
    """Whether a find_one is worth planning: FerretDB answers top-level equalities
    itself through the GIN shadow indexes (and keeps its natural order)."""
    for key, value in filter.items():
        if key.startswith("$"):
            return True
        operators = isinstance(value, Mapping) and any(str(k).startswith("$") for k in value)
        if operators and set(value) - _PUSHED_DOWN:
            return True
    return False


class PlannedCursor:
    """A find's cursor: the planned documents when SQL answers, else FerretDB's
    cursor, opened only then."""

    def __init__(
        self,
        planned: Callable[[], Awaitable[list[Document] | None]],
        fallback: Callable[[], RawCursor],
    ) -> None:
        self._planned = planned
        self._fallback = fallback
        self._cursor: RawCursor | None = None
        self._documents: list[Document] | None = None
        self._position = 0
        self._opened = False

    async def _open(self) -> None:
        if self._opened:
            return
        self._opened = True
        self._documents = await self._planned()
        if self._documents is None:
            self._cursor = self._fallback()

    def __aiter__(self) -> AsyncIterator[Document]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Document]:
        await self._open()
        if self._cursor is not None:
            async for document in self._cursor:
                yield document
            return
        documents = self._documents or []
        while self._position < len(documents):
            self._position += 1  # handed out: consumed, as by the driver's cursor
            yield documents[self._position - 1]

    async def to_list(self, length: int | None = None) -> list[Document]:
        await self._open()
        if self._cursor is not None:
            return await self._cursor.to_list(length)
        # As the driver's cursor: what is returned is consumed.
        documents = self._documents or []
        end = len(documents) if length is None else min(len(documents), self._position + length)
        taken = documents[self._position : end]
        self._position = end
        return taken

    async def close(self) -> None:
        if self._cursor is not None:
            await self._cursor.close()
