"""The read planner: a MongoDB filter, sort, skip and limit compiled into one SQL
statement over FerretDB's table, served by btree indexes Quarry builds from the
collection schema — or None, and FerretDB answers as before.

Why: FerretDB 1.24 pushes only top-level scalar `$eq`/`$ne` down to PostgreSQL;
`$or`/`$and`, ranges, `$in`, sorts and limits with a filter are evaluated in Go
over the whole collection (100,000 documents: a sort + limit 20 takes 11 s, a
range 8-17 s, a filtered count 6-8 s). A btree index on a typed key of the field
answers the same in milliseconds (`python -m bench.planner`: 2-9 ms through the
adapter at 100,000 documents, decoding included; FerretDB itself: 3-5 s).

**What SQL serves.** Filters whose every field is `_id` or a *typed field* (a
top-level field declared `index: true` or `unique`, or a key of a declared index,
with a scalar type — string, int/float/number, bool, date, id — whose typed index,
`app.engine.typed_indexes`, is built): `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte`,
`$in`, `$nin`, `$exists`, implicit equality, `$and`/`$or`/`$nor`, and `$type` with
type names; values of the field's own type (null for the equalities and lists).
Sorts on any number of typed fields and `_id`, either direction, ties always by
`_id` ascending (MongoDB leaves their order open; the documents API always ends with
`_id`); skip and limit; a find without sort when it has neither (in the table's
order, as FerretDB's own scan returns it); counts; top-level inclusion or exclusion
projections. A sorted, limited find whose filter has an `$or` (a cursor page's
keyset filter is one) reads each branch through its own index in key order and
merges them (`Plan.branches`), instead of one bitmap scan of every match.

**Quarry's own collections** (the dataset list, audit pages, entry lists, lookups
and reads by `_id`s: `EmbeddedAdapter.find_page`) add two shapes, each answered
only where it is exactly FerretDB's:

- *Equality on an array of ObjectIds* (schema type `[id]`, family `objectIds`: a
  dataset's `tags`). `{tags: x}` (or `$eq`) with an ObjectId `x` is the array
  holding `x` — `key @> '["<hex>"]'` through a GIN index (`jsonb_path_ops`) on
  the key `Expressions.array_key`: the array when every element is an ObjectId,
  `[]` when the field is missing or null, and `[false]` for anything else (a
  scalar, which MongoDB would compare by equality; another element type; a
  document). The guard is "no key contains `false`", one GIN lookup. Nothing
  else on such a field is planned: null, `$ne`, `$in`, a whole-array value,
  `$size`, sorts.
- *A case-insensitive search of ASCII text*: `{f: {$regex: p, $options: "i"}}`
  on a typed string field where `p` is literal text (`re.escape` of the search:
  no metacharacter unescaped, every escape a non-alphanumeric ASCII character,
  which Go's regexp and PCRE both read as itself) that is all ASCII and has no
  NUL. FerretDB runs it with Go's regexp under `(?i)`: a pattern character
  matches every character of its simple case-fold orbit. For ASCII letters the
  orbits hold the two ASCII cases and, beyond them, only U+212A KELVIN SIGN (k)
  and U+017F LONG S (s); no other code point folds to any ASCII character (Go's
  answer for all 1,114,111 code points, compared with PostgreSQL's in
  tests/app/test_engine_own_reads.py). So the search is
  `strpos(translate(key, FOLD_FROM, FOLD_TO), lower(text)) > 0`: the document
  with ASCII capitals, KELVIN SIGN and LONG S mapped to the ASCII lower-case
  letter, every other character kept as it is — not `lower()`, whose Unicode
  mappings are not Go's folds (under `pg_c_utf8` U+0130 lower-cases to `i`, which
  Go's `(?i)i` does not match, and U+017F stays as it is, which `(?i)s` matches). Text
  with any non-ASCII character, other options, or any other pattern falls back.

**What falls back to FerretDB**, which stays correct: dotted paths (so a dataset
list filtered by `metadata.<key>` is FerretDB's), arrays other than the above,
documents, other regular expressions, `$not`, `$elemMatch`, `$size`, `$all`, `$mod`,
fields that are undeclared, not indexed or whose index is still being built,
values of another type than the field's (MongoDB's type brackets), range
operators with null, non-finite or Decimal128 values, dotted or computed
projections, negative limits, a limit above `MAX_PLANNED_LIMIT`, a find without
a limit of more than `MAX_PLANNED_ROWS` documents, a whole collection read
without sort (FerretDB streams it as fast), and a find without sort but with a
skip or limit (which documents it returns is FerretDB's natural order) — and
any field that holds a value of another type. Why: each of these either has
MongoDB semantics the typed keys do not carry (arrays match by element, paths
step through arrays, other types compare by type bracket, regular expressions
need FerretDB's engine), or gains nothing from SQL.

**The type guard.** Each typed index leads with `g`, 0 when the field is missing,
null or of the declared type's family (an int or a float field takes any of the
three number types, which MongoDB compares as one) and 1 otherwise; the `_id`
index leads with `_id`'s type rank (100 for a type the key does not order).
Every planned statement first reads `max(g)` (and the `_id` rank's maximum) from
its index — one index descent, which PostgreSQL's min/max rewrite always takes —
and answers only when no document holds another type, in the same snapshot as
the answer itself. So a field whose documents were written before a schema type
change, or by a path that does not validate, falls back until they are fixed,
without any constraint that could make FerretDB's writes fail; a `CHECK`
constraint would have refused FerretDB's updates of old documents after a type
change and needs an exclusive lock to add or drop.

**Keys compare as MongoDB compares** (FerretDB's `types.CompareOrder`): numbers
of all three types by exact value — a double as its shortest decimal, or with
a magnitude from 2^53 and within the 64-bit range (`-2^63` included, bounds
compared as doubles) through `::float8::int8`, where the shortest decimal is not
the exact value and would misorder against longs; strings by UTF-8 bytes
(`COLLATE "C"`); ObjectIds by hex; dates by milliseconds; false before true; null and missing
equal and before every value. The `_id` key is (type rank, number, string).
Under a `NOT` (`$nor`, `$ne`, `$nin`) a comparison with a missing key is wrapped
in `coalesce(..., false)`: SQL's NULL is MongoDB's "does not match".
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from bson import Int64, ObjectId
from bson.datetime_ms import DatetimeMS
from psycopg import sql
from psycopg.types.json import Jsonb

#: Schema field types (`app.schema.FIELD_TYPES`) and the key family that orders them.
FAMILY_OF_SCHEMA_TYPE = {
    "string": "string",
    "int": "number",
    "float": "number",
    "number": "number",
    "bool": "bool",
    "date": "date",
    "id": "objectId",
}
#: Schema types of arrays Quarry's own collections declare (never a user schema's):
#: `[id]` is an array of ObjectIds (a dataset's `tags`), keyed by `ARRAY_FAMILIES`.
FAMILY_OF_ARRAY_TYPE = {"[id]": "objectIds"}
#: Array key families and the FerretDB type name every element must have.
ARRAY_FAMILIES = {"objectIds": "objectId"}
#: Characters whose Go `(?i)` simple case fold reaches an ASCII letter besides the
#: letter's own two cases: U+212A KELVIN SIGN (k) and U+017F LATIN SMALL LETTER
#: LONG S (s) — every other code point's orbit holds no ASCII letter (enumerated:
#: tests/app/test_engine_own_reads.py, `test_the_fold_table_is_gos`).
FOLD_FROM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ\u212a\u017f"
FOLD_TO = "abcdefghijklmnopqrstuvwxyzks"
#: FerretDB's type names (`$s.p.<field>.t`) that each family keys.
FAMILY_TYPES: dict[str, tuple[str, ...]] = {
    "string": ("string",),
    "number": ("int", "long", "double"),
    "bool": ("bool",),
    "date": ("date",),
    "objectId": ("objectId",),
}
#: `$type` aliases and numbers, as FerretDB's type names.
TYPE_ALIASES: dict[str | int, tuple[str, ...]] = {
    "double": ("double",), 1: ("double",),
    "string": ("string",), 2: ("string",),
    "object": ("object",), 3: ("object",),
    "array": ("array",), 4: ("array",),
    "binData": ("binData",), 5: ("binData",),
    "objectId": ("objectId",), 7: ("objectId",),
    "bool": ("bool",), 8: ("bool",),
    "date": ("date",), 9: ("date",),
    "null": ("null",), 10: ("null",),
    "regex": ("regex",), 11: ("regex",),
    "int": ("int",), 16: ("int",),
    "timestamp": ("timestamp",), 17: ("timestamp",),
    "long": ("long",), 18: ("long",),
    "number": ("int", "long", "double"),
}  # fmt: skip
#: `_id`'s type ranks (MongoDB's order of types); other types rank `ID_UNORDERED`.
ID_RANKS = {"int": 2, "long": 2, "double": 2, "string": 3, "objectId": 7}
ID_UNORDERED = 100
#: Documents one planned find without a limit returns at most; with more matches
#: it goes to FerretDB (which streams them).
MAX_PLANNED_ROWS = 10_000
#: The largest limit a planned find takes (an update's undo log reads up to
#: 10,001 documents to learn whether it holds them all).
MAX_PLANNED_LIMIT = 20_000
#: An `$or` of at most this many alternatives is read branch by branch
#: (`Plan.branches`: each branch excludes the earlier ones, so the statement grows
#: with the square of the count); a longer one is one condition over the indexes.
MAX_BRANCHES = 16

_SAFE_INTEGER = 2**53
_INT64 = 2**63


class Unplannable(Exception):
    """The query has something the planner does not serve; FerretDB answers."""


# --------------------------------------------------------------- key expressions


class Expressions:
    """The SQL of the typed keys, identical in the index definitions and in the
    queries (PostgreSQL matches an index by the expression's parse tree). Field
    names are literals; in a statement with parameters `%` is doubled."""

    def __init__(self, *, in_statement: bool) -> None:
        self.in_statement = in_statement

    def literal(self, text: str) -> sql.Composable:
        return sql.Literal(text.replace("%", "%%") if self.in_statement else text)

    def value(self, name: str) -> sql.Composable:
        return sql.SQL("(_jsonb -> {})").format(self.literal(name))

    def type_of(self, name: str) -> sql.Composable:
        return sql.SQL("(_jsonb -> '$s' -> 'p' -> {} ->> 't')").format(self.literal(name))

    def number(self, name: str) -> sql.Composable:
        """A number of any of the three types as its exact value (see the module
        docstring); NULL for anything else."""
        n = sql.SQL("({}::numeric)").format(self.value(name))
        return sql.SQL(
            "(CASE WHEN {t} IN ('int', 'long') THEN {n} "
            "WHEN {t} = 'double' THEN (CASE WHEN abs({n}) >= 9007199254740992 "
            "AND {n}::float8 >= '-9223372036854775808'::float8 "
            "AND {n}::float8 < '9223372036854775808'::float8 "
            "THEN {n}::float8::int8::numeric ELSE {n} END) END)"
        ).format(t=self.type_of(name), n=n)

    def key(self, name: str, family: str) -> sql.Composable:
        """The field's value when it has the family's type, else NULL."""
        t = self.type_of(name)
        if family == "number":
            return self.number(name)
        if family in ("string", "objectId"):
            return sql.SQL('((CASE WHEN {t} = {kind} THEN _jsonb ->> {f} END) COLLATE "C")').format(
                t=t, kind=sql.Literal(family), f=self.literal(name)
            )
        if family == "bool":
            return sql.SQL("(CASE WHEN {t} = 'bool' THEN {v}::boolean END)").format(
                t=t, v=self.value(name)
            )
        if family == "date":
            return sql.SQL("(CASE WHEN {t} = 'date' THEN {v}::int8 END)").format(
                t=t, v=self.value(name)
            )
        raise ValueError(f"unknown key family {family!r}")

    def guard(self, name: str, family: str) -> sql.Composable:
        """0 when the field is missing, null or of the family's types, else 1."""
        kinds = sql.SQL(", ").join(sql.Literal(k) for k in ("null", *FAMILY_TYPES[family]))
        return sql.SQL("(CASE WHEN {t} IS NULL OR {t} IN ({kinds}) THEN 0 ELSE 1 END)").format(
            t=self.type_of(name), kinds=kinds
        )

    def array_key(self, name: str, family: str) -> sql.Composable:
        """An array family's key (`ARRAY_FAMILIES`), GIN-indexed: the array when
        every element has the family's type, `[]` when the field is missing or
        null, and `[false]` — the guard's mark, which no such array contains —
        for anything else (a scalar, another element type, a nested array)."""
        t = self.type_of(name)
        element = ARRAY_FAMILIES[family]
        # Lax jsonpath: a missing `i` (an empty array may lack it) selects nothing.
        path = f'$.i[*] ? (!(@.t == "{element}"))'
        schema = sql.SQL("(_jsonb -> '$s' -> 'p' -> {})").format(self.literal(name))
        return sql.SQL(
            "(CASE WHEN {t} IS NULL OR {t} = 'null' THEN '[]'::jsonb "
            "WHEN {t} = 'array' AND NOT jsonb_path_exists({schema}, {path}::jsonpath) "
            "THEN {v} ELSE '[false]'::jsonb END)"
        ).format(t=t, schema=schema, path=self.literal(path), v=self.value(name))

    def case_folded(self, key: sql.Composable) -> sql.Composable:
        """A string key as Go's `(?i)` compares it with ASCII text: ASCII capitals,
        KELVIN SIGN and LONG S as the ASCII lower-case letter they fold to, every
        other character as it is (see the module docstring)."""
        return sql.SQL("translate({}, {}, {})").format(
            key, self.literal(FOLD_FROM), self.literal(FOLD_TO)
        )

    def id_rank(self) -> sql.Composable:
        t = self.type_of("_id")
        whens = sql.SQL(" ").join(
            sql.SQL("WHEN {} THEN {}").format(sql.Literal(kind), sql.Literal(rank))
            for kind, rank in ID_RANKS.items()
        )
        return sql.SQL("(CASE {t} {whens} ELSE {other} END)").format(
            t=t, whens=whens, other=sql.Literal(ID_UNORDERED)
        )

    def id_number(self) -> sql.Composable:
        return sql.SQL("(CASE WHEN {t} IN ('int', 'long', 'double') THEN {n} ELSE 0 END)").format(
            t=self.type_of("_id"), n=self.number("_id")
        )

    def id_string(self) -> sql.Composable:
        return sql.SQL(
            "((CASE WHEN {t} IN ('string', 'objectId') THEN _jsonb ->> '_id' ELSE '' END) "
            'COLLATE "C")'
        ).format(t=self.type_of("_id"))

    def id_columns(self) -> list[sql.Composable]:
        return [self.id_rank(), self.id_number(), self.id_string()]

    def field_index_columns(self, name: str, family: str) -> sql.Composable:
        """The column list of a typed field's index: guard, key, then `_id`'s key
        (btree); for an array family its key alone (GIN, `jsonb_path_ops`)."""
        if family in ARRAY_FAMILIES:
            return sql.SQL("{} jsonb_path_ops").format(self.array_key(name, family))
        return sql.SQL(", ").join(
            [
                self.guard(name, family),
                sql.SQL("{} ASC NULLS FIRST").format(self.key(name, family)),
                *self.id_columns(),
            ]
        )

    def id_index_columns(self) -> sql.Composable:
        return sql.SQL(", ").join(self.id_columns())


# ------------------------------------------------------------------ query values


def number_key(value: Any) -> Decimal:
    """A number filter value as the index keys it (see `Expressions.number`)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unplannable("not a number")
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise Unplannable("integer out of the 64-bit range")
        return Decimal(int(value))
    if math.isnan(value):
        raise Unplannable("NaN")
    if math.isinf(value):
        return Decimal("Infinity") if value > 0 else Decimal("-Infinity")
    if abs(value) >= _SAFE_INTEGER and -_INT64 <= value < _INT64:
        return Decimal(int(value))
    return Decimal(repr(value))


def date_key(value: Any) -> int:
    """A date as BSON keeps it: milliseconds since 1970 (as the driver encodes it)."""
    if isinstance(value, DatetimeMS):
        return int(value)
    if not isinstance(value, datetime):
        raise Unplannable("not a date")
    if value.utcoffset() is not None:
        value = value - value.utcoffset()  # type: ignore[operator]
    return int(calendar.timegm(value.timetuple()) * 1000 + value.microsecond // 1000)


def family_of_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | Int64):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, ObjectId):
        return "objectId"
    if isinstance(value, datetime | DatetimeMS):
        return "date"
    return None


def key_of(family: str, value: Any) -> Any:
    """`value` as the family's key compares it; raises `Unplannable` for a value of
    another type (MongoDB compares only within a type bracket: FerretDB then)."""
    if family_of_value(value) != family:
        raise Unplannable("a value of another type than the field's")
    if family == "number":
        return number_key(value)
    if family == "string":
        if "\x00" in value:
            raise Unplannable("NUL in a string")
        return value
    if family == "objectId":
        return str(value)
    if family == "date":
        return date_key(value)
    return value


_KEY_TYPES = {
    "number": "numeric",
    "string": "text",
    "objectId": "text",
    "bool": "bool",
    "date": "int8",
}


def id_key(value: Any) -> tuple[int, Decimal, str]:
    family = family_of_value(value)
    if family == "number":
        return 2, number_key(value), ""
    if family == "string":
        return 3, Decimal(0), key_of("string", value)
    if family == "objectId":
        return 7, Decimal(0), str(value)
    raise Unplannable("an _id of a type the _id key does not order")


# ------------------------------------------------------------------------- plans


@dataclass
class Plan:
    """One compiled read over `_jsonb` of one table: its WHERE, its ORDER BY (as
    terms: expression, direction), its named parameters, and the typed fields
    whose guards it needs."""

    where: sql.Composable
    order: list[tuple[sql.Composable, sql.Composable]]
    params: dict[str, Any]
    #: The typed fields it reads (name → key family), whose guards it needs.
    families: dict[str, str] = field(default_factory=dict)
    #: When the filter is an `$or` (beside other conditions): one WHERE per branch,
    #: each excluding the branches before it, so that their union is the filter
    #: and no document is in two. A sorted, limited find reads each through its
    #: index in order and merges them (one OR over the whole would be a bitmap
    #: scan of every match, then a sort: a cursor page's `$or` costs that).
    branches: list[sql.Composable] | None = None
    #: The filter matches every document (`{}`).
    unfiltered: bool = False


def plan_read(
    filter: Mapping[str, Any],
    sort: list[tuple[str, int]] | None,
    typed: Mapping[str, str],
) -> Plan:
    """`filter` and `sort` over the typed fields `typed` (field → key family);
    raises `Unplannable`."""
    compiler = _Compiler(typed)
    try:
        where = compiler.query(filter)
        # Branches serve a sorted find only (a count, an unsorted find read it whole).
        branches = compiler.branches(filter) if sort else None
        order = compiler.order(sort or [])
    except Unplannable:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        # A value of a shape the compiler does not expect (an unhashable `$type`, a
        # driver type it has no key for): FerretDB decides what it means.
        raise Unplannable(f"{type(exc).__name__} while planning") from exc
    families = {name: typed[name] for name in compiler.used}
    return Plan(
        where=where,
        order=order,
        params=compiler.params,
        families=families,
        branches=branches,
        unfiltered=not filter,
    )


class _Compiler:
    def __init__(self, typed: Mapping[str, str]) -> None:
        self.typed = typed
        self.params: dict[str, Any] = {}
        self.used: set[str] = set()
        self.x = Expressions(in_statement=True)

    def placeholder(self, value: Any) -> sql.Composable:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return sql.Placeholder(name)

    def param(self, value: Any, cast: str) -> sql.Composable:
        return sql.SQL("{}::{}").format(self.placeholder(value), sql.SQL(cast))

    def branches(self, query: Mapping[str, Any]) -> list[sql.Composable] | None:
        """The filter as disjoint branches (see `Plan.branches`), when it is an
        `$or`, or has one among its top-level conditions or in a top-level `$and`."""
        conditions = [{key: value} for key, value in query.items() if key != "$and"]
        for item in query.get("$and") or []:
            conditions.extend({key: value} for key, value in item.items())
        ors = [c for c in conditions if "$or" in c]
        if not ors or not isinstance(ors[0]["$or"], list) or len(ors[0]["$or"]) > MAX_BRANCHES:
            return None
        common = [self.query(c) for c in conditions if c is not ors[0]]
        alternatives = [self.query(item) for item in ors[0]["$or"]]
        out = []
        for number, alternative in enumerate(alternatives):
            earlier = [_not(_or(alternatives[:number]))] if number else []
            out.append(_and([*common, alternative, *earlier]))
        return out

    # ---------------------------------------------------------------- filters

    def query(self, query: Mapping[str, Any]) -> sql.Composable:
        if not isinstance(query, Mapping):
            raise Unplannable("a filter that is not a document")
        parts = [self.clause(key, value) for key, value in query.items()]
        return _and(parts)

    def clause(self, key: str, value: Any) -> sql.Composable:
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, list) or not value:
                raise Unplannable(f"{key} without a list")
            parts = [self.query(item) for item in value]
            if key == "$and":
                return _and(parts)
            if key == "$or":
                return _or(parts)
            return _not(_or(parts))
        if key.startswith("$") or "." in key or not key:
            raise Unplannable(f"{key!r} at the top level")
        if isinstance(value, Mapping) and value and all(str(k).startswith("$") for k in value):
            if "$regex" in value or "$options" in value:
                others = {op: arg for op, arg in value.items() if op not in ("$regex", "$options")}
                regex = self.regex(key, value.get("$regex"), value.get("$options"))
                return _and([regex, *(self.operator(key, op, arg) for op, arg in others.items())])
            return _and([self.operator(key, op, arg) for op, arg in value.items()])
        return self.operator(key, "$eq", value)

    def array_operator(self, name: str, family: str, op: str, arg: Any) -> sql.Composable:
        """`{field: value}` / `$eq` on an array family: the array holds the value (the
        guard has ruled out a scalar, which would match by equality). Nothing else:
        null, `$ne`, ranges and the rest have array semantics the key does not carry."""
        if op != "$eq":
            raise Unplannable(f"{op} on an array field")
        element = key_of(ARRAY_FAMILIES[family], arg)
        return sql.SQL("({} @> {}::jsonb)").format(
            self.x.array_key(name, family), self.placeholder(Jsonb([element]))
        )

    def regex(self, name: str, pattern: Any, options: Any) -> sql.Composable:
        """`{field: {$regex: <escaped ASCII text>, $options: "i"}}` (the dataset
        list's search): the case-folded field contains the lower-cased text."""
        family = self.typed.get(name)
        if family != "string":
            raise Unplannable("$regex on a field that is not a typed string")
        if options != "i" or not isinstance(pattern, str):
            raise Unplannable("a $regex other than a case-insensitive literal")
        text = literal_of(pattern)
        if not text.isascii() or "\x00" in text:
            raise Unplannable("a $regex with non-ASCII text")
        self.used.add(name)
        folded = self.x.case_folded(self.x.key(name, family))
        return sql.SQL("(strpos({}, {}::text) > 0)").format(folded, self.placeholder(text.lower()))

    def operator(self, name: str, op: str, arg: Any) -> sql.Composable:
        if name == "_id":
            return self.id_operator(op, arg)
        family = self.typed.get(name)
        if family is None:
            raise Unplannable(f"{name!r} is not a typed field")
        self.used.add(name)
        if family in ARRAY_FAMILIES:
            return self.array_operator(name, family, op, arg)
        key = self.x.key(name, family)
        cast = _KEY_TYPES[family]
        if op == "$eq":
            if arg is None:
                return sql.SQL("({} IS NULL)").format(key)
            return sql.SQL("({} = {})").format(key, self.param(key_of(family, arg), cast))
        if op == "$ne":
            if arg is None:
                return sql.SQL("({} IS NOT NULL)").format(key)
            value = self.param(key_of(family, arg), cast)
            return sql.SQL("({k} IS NULL OR {k} <> {v})").format(k=key, v=value)
        if op in _RANGES:
            if arg is None:
                raise Unplannable("a range with null")
            value = self.param(key_of(family, arg), cast)
            return sql.SQL("({} {} {})").format(key, sql.SQL(_RANGES[op]), value)
        if op in ("$in", "$nin"):
            inside = self.membership(key, family, cast, arg)
            return inside if op == "$in" else _not(inside)
        if op == "$exists":
            if not isinstance(arg, bool):
                raise Unplannable("$exists without a boolean")
            present = sql.SQL("(_jsonb ? {})").format(self.x.literal(name))
            return present if arg else sql.SQL("(NOT {})").format(present)
        if op == "$type":
            return self.type_condition(name, arg)
        raise Unplannable(f"{op} is not planned")

    def membership(self, key: sql.Composable, family: str, cast: str, arg: Any) -> sql.Composable:
        if not isinstance(arg, list):
            raise Unplannable("$in without a list")
        values = [key_of(family, item) for item in arg if item is not None]
        parts: list[sql.Composable] = []
        if values:
            parts.append(
                sql.SQL("({} = ANY({}::{}[]))").format(key, self.placeholder(values), sql.SQL(cast))
            )
        if any(item is None for item in arg):
            parts.append(sql.SQL("({} IS NULL)").format(key))
        return _or(parts) if parts else sql.SQL("FALSE")

    def type_condition(self, name: str, arg: Any) -> sql.Composable:
        aliases = arg if isinstance(arg, list) else [arg]
        kinds: set[str] = set()
        for alias in aliases:
            if isinstance(alias, bool) or not isinstance(alias, str | int | float):
                raise Unplannable("an unknown $type")
            if alias not in TYPE_ALIASES:
                raise Unplannable("an unknown $type")
            kinds.update(TYPE_ALIASES[alias])
        if not kinds:
            return sql.SQL("FALSE")
        return sql.SQL("({} = ANY({}::text[]))").format(
            self.x.type_of(name), self.placeholder(sorted(kinds))
        )

    def id_operator(self, op: str, arg: Any) -> sql.Composable:
        columns = sql.SQL("({})").format(sql.SQL(", ").join(self.x.id_columns()))
        if op == "$eq":
            return sql.SQL("({} = {})").format(columns, self.id_param(arg))
        if op == "$ne":
            return sql.SQL("({} <> {})").format(columns, self.id_param(arg))
        if op in _RANGES:
            rank = id_key(arg)[0]
            return sql.SQL("({rank} = {r} AND {c} {op} {v})").format(
                rank=self.x.id_rank(),
                r=sql.Literal(rank),
                c=columns,
                op=sql.SQL(_RANGES[op]),
                v=self.id_param(arg),
            )
        if op in ("$in", "$nin"):
            if not isinstance(arg, list):
                raise Unplannable("$in without a list")
            inside = self.id_membership(arg)
            return inside if op == "$in" else _not(inside)
        if op == "$exists":
            if not isinstance(arg, bool):
                raise Unplannable("$exists without a boolean")
            return sql.SQL("TRUE") if arg else sql.SQL("FALSE")
        if op == "$type":
            return self.type_condition("_id", arg)
        raise Unplannable(f"{op} on _id is not planned")

    def id_membership(self, values: list[Any]) -> sql.Composable:
        """`_id` among `values`: per type rank, one `= ANY(array)` on the key column
        that varies (an ObjectId's or string's text, a number) — a single scan of
        the `_id` index per rank, and a statement whose size does not grow with the
        list (a row `IN` list is planned as one OR branch per value, which costs
        tens of milliseconds of planning for a semi-join's few hundred ids)."""
        numbers: list[Decimal] = []
        texts: dict[int, list[str]] = {}
        for value in values:
            rank, number, text = id_key(value)
            if rank == ID_RANKS["int"]:
                numbers.append(number)
            else:
                texts.setdefault(rank, []).append(text)
        rank_of, number_of, text_of = self.x.id_columns()
        parts: list[sql.Composable] = []
        if numbers:
            parts.append(
                sql.SQL("({r} = {rank} AND {n} = ANY({values}::numeric[]) AND {t} = '')").format(
                    r=rank_of,
                    rank=sql.Literal(ID_RANKS["int"]),
                    n=number_of,
                    values=self.placeholder(numbers),
                    t=text_of,
                )
            )
        for rank, items in sorted(texts.items()):
            parts.append(
                sql.SQL("({r} = {rank} AND {n} = 0 AND {t} = ANY({values}::text[]))").format(
                    r=rank_of,
                    rank=sql.Literal(rank),
                    n=number_of,
                    t=text_of,
                    values=self.placeholder(items),
                )
            )
        return _or(parts) if parts else sql.SQL("FALSE")

    def id_param(self, value: Any) -> sql.Composable:
        rank, number, text = id_key(value)
        return sql.SQL('({}::int4, {}::numeric, {}::text COLLATE "C")').format(
            self.placeholder(rank), self.placeholder(number), self.placeholder(text)
        )

    # ------------------------------------------------------------------ sorts

    def order(self, sort: list[tuple[str, int]]) -> list[tuple[sql.Composable, sql.Composable]]:
        terms: list[tuple[sql.Composable, sql.Composable]] = []
        for name, direction in sort:
            if direction not in (1, -1) or isinstance(direction, bool):
                raise Unplannable("a sort direction other than 1 or -1")
            word = sql.SQL("ASC" if direction == 1 else "DESC")
            if name == "_id":
                terms.extend((column, word) for column in self.x.id_columns())
                return terms  # `_id` is unique: nothing after it changes the order
            family = self.typed.get(name)
            if family is None or family in ARRAY_FAMILIES:
                raise Unplannable(f"sort by {name!r}, which is not a typed scalar field")
            self.used.add(name)
            nulls = "ASC NULLS FIRST" if direction == 1 else "DESC NULLS LAST"
            terms.append((self.x.key(name, family), sql.SQL(nulls)))
        terms.extend((column, sql.SQL("ASC")) for column in self.x.id_columns())
        return terms


_RANGES = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
#: Characters a pattern may hold unescaped: everything but Go's (and PCRE's)
#: metacharacters.
_METACHARACTERS = frozenset("\\.+*?()|[]{}^$")


def literal_of(pattern: str) -> str:
    """The text a regular expression of literal characters matches (what
    `re.escape` makes), or `Unplannable`. A backslash before an ASCII character
    that is neither a letter nor a digit is that character, in Go's regexp (its
    parser: "escaped non-word characters are always themselves") as in PCRE."""
    out: list[str] = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "\\":
            escaped = pattern[position + 1 : position + 2]
            if not escaped or not escaped.isascii() or escaped.isalnum() or escaped == "_":
                raise Unplannable("a $regex escape that is not a literal character")
            out.append(escaped)
            position += 2
            continue
        if char in _METACHARACTERS:
            raise Unplannable("a $regex with metacharacters")
        out.append(char)
        position += 1
    return "".join(out)


def _and(parts: list[sql.Composable]) -> sql.Composable:
    if not parts:
        return sql.SQL("TRUE")
    return parts[0] if len(parts) == 1 else sql.SQL("({})").format(sql.SQL(" AND ").join(parts))


def _or(parts: list[sql.Composable]) -> sql.Composable:
    return parts[0] if len(parts) == 1 else sql.SQL("({})").format(sql.SQL(" OR ").join(parts))


def _not(part: sql.Composable) -> sql.Composable:
    """MongoDB's negation: a comparison with a missing key (SQL NULL) does not
    match, so its negation does."""
    return sql.SQL("(NOT coalesce({}, false))").format(part)


# -------------------------------------------------------------------- projection


#: (inclusion, with `_id`, the named fields) of a top-level projection.
Shape = tuple[bool, bool, frozenset[str]]


def projection_plan(projection: Mapping[str, Any] | None) -> Shape | None:
    """(inclusion, with `_id`, fields) of a top-level projection, None for none;
    raises `Unplannable` for anything else (dotted paths, operators, values)."""
    if not projection:
        return None
    if not isinstance(projection, Mapping):
        raise Unplannable("a projection that is not a document (a list of names)")
    flags: dict[str, bool] = {}
    for name, flag in projection.items():
        if not isinstance(name, str) or not name or "." in name or name.startswith("$"):
            raise Unplannable("a projection of a path")
        if isinstance(flag, bool) or (isinstance(flag, int | float) and flag in (0, 1)):
            flags[name] = bool(flag)
        else:
            raise Unplannable("a projection value other than 0/1")
    with_id = flags.pop("_id", True)
    modes = set(flags.values())
    if len(modes) > 1:
        raise Unplannable("inclusion and exclusion mixed")
    inclusion = modes == {True} or (not flags and projection.get("_id") in (1, True))
    return inclusion, with_id, frozenset(flags)


def project(document: dict[str, Any], shape: Shape | None) -> dict[str, Any]:
    """`document` with FerretDB's top-level projection: `_id` first, then the
    kept fields in the document's order."""
    if shape is None:
        return document
    inclusion, with_id, names = shape
    out: dict[str, Any] = {}
    if with_id and "_id" in document:
        out["_id"] = document["_id"]
    for name, value in document.items():
        if name == "_id":
            continue
        if (name in names) == inclusion:
            out[name] = value
    return out
