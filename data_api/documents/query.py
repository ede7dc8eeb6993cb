"""Sort, projection and cursors of document reads (crud.md, conventions.md).

- `parse_sort`: a JSON object `{"field": 1 | -1, ...}` (or `field,-other`), at most
  `MAX_SORT_KEYS` named fields; `_id` is appended as the last key so that every
  order is total and pages are stable.
- `parse_projection`: a JSON object of `0/1` (or a comma list of fields to
  include), inclusion or exclusion but not both, except for `_id`.
- Cursors (`after` / `next_cursor`): keyset pagination. A cursor carries the sort
  values of the last document of a page and a fingerprint of the query (database,
  collection, filter, sort); it is signed with a key derived from the server's
  secret, so a client cannot forge the values that go into the next filter, and a
  cursor of another query is refused with 400 `INVALID_CURSOR`. The next page is
  "sort key after the last one", expressed per key with MongoDB's cross-type
  order (null/missing < numbers < strings < objects < arrays < binary <
  ObjectIds < booleans < dates < timestamps < regexes), so keys of mixed types
  and missing keys are paged without gaps. A field the schema types is taken to
  hold that type or null (and `_id` a string, number or ObjectId), so the next-page
  filter names only those type groups — each extra one costs the embedded engine
  another evaluation pass; documents written before a schema type change that
  still hold another type can be skipped by cursor paging on that key. A sort key
  that holds an array has no single position; paging such a key by cursor is
  refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from bson import ObjectId, Regex, Timestamp, json_util
from bson.binary import Binary
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey

from app.kit import field_name_problem
from data_api.documents.errors import InvalidCursor, InvalidProjection, InvalidSort

MAX_SORT_KEYS = 8
MAX_PROJECTION_FIELDS = 200
MAX_PARAMETER_CHARS = 64 * 1024
CURSOR_VERSION = 1

Sort = list[tuple[str, int]]


def _path_problem(path: str) -> str | None:
    if not path:
        return "empty field path"
    for part in path.split("."):
        problem = field_name_problem(part) if part else "empty path segment"
        if problem is not None:
            return problem
    return None


def _parse_object(text: str, what: str, error: type[InvalidSort | InvalidProjection]) -> Any:
    if len(text) > MAX_PARAMETER_CHARS:
        raise error(f"The {what} parameter is longer than {MAX_PARAMETER_CHARS} characters.")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"The {what} parameter is not valid JSON at position {exc.pos}: {exc.msg}."
        ) from None


def parse_sort(text: str | None) -> Sort:
    """The requested order, `_id` last; raises `InvalidSort`."""
    keys: Sort = []
    if text is not None and text.strip():
        stripped = text.strip()
        if stripped.startswith("{"):
            value = _parse_object(stripped, "sort", InvalidSort)
            if not isinstance(value, dict):
                raise InvalidSort("The sort parameter must be a JSON object of field: 1 | -1.")
            items = list(value.items())
        else:
            items = [
                (part.strip().lstrip("-+"), -1 if part.strip().startswith("-") else 1)
                for part in stripped.split(",")
            ]
        for field, direction in items:
            problem = _path_problem(field)
            if problem is not None:
                raise InvalidSort(f"Cannot sort by '{field}': {problem}.")
            if type(direction) is not int or direction not in (1, -1):
                raise InvalidSort(f"Sort direction of '{field}' must be 1 or -1.")
            keys.append((field, direction))
    if len(keys) > MAX_SORT_KEYS:
        raise InvalidSort(f"At most {MAX_SORT_KEYS} sort keys are allowed; got {len(keys)}.")
    if not any(field == "_id" for field, _ in keys):
        keys.append(("_id", 1))
    return keys


def parse_projection(text: str | None) -> dict[str, int] | None:
    """The projection, or None for whole documents; raises `InvalidProjection`."""
    if text is None or not text.strip():
        return None
    stripped = text.strip()
    if stripped.startswith("{"):
        value = _parse_object(stripped, "fields", InvalidProjection)
        if not isinstance(value, dict):
            raise InvalidProjection("The fields parameter must be a JSON object or a comma list.")
        items = list(value.items())
    else:
        items = [(part.strip(), 1) for part in stripped.split(",")]
    if not items:
        return None
    if len(items) > MAX_PROJECTION_FIELDS:
        raise InvalidProjection(f"At most {MAX_PROJECTION_FIELDS} fields can be selected.")
    projection: dict[str, int] = {}
    for field, flag in items:
        problem = _path_problem(field)
        if problem is not None:
            raise InvalidProjection(f"Cannot select '{field}': {problem}.")
        if flag not in (0, 1) or type(flag) not in (int, bool):
            raise InvalidProjection(
                f"'{field}' must be 1/true (include) or 0/false (exclude); "
                "projection expressions are not supported."
            )
        projection[field] = int(flag)
    modes = {flag for field, flag in projection.items() if field != "_id"}
    if len(modes) > 1:
        raise InvalidProjection(
            "A projection either includes or excludes fields, not both (except _id)."
        )
    return projection


# -------------------------------------------------------------------- cursors

# MongoDB's order of types when a sort key holds values of different types (the
# aliases both engines know; MinKey, MaxKey and symbols cannot arrive through JSON).
_TYPE_GROUPS: list[tuple[str, ...]] = [
    (),
    ("null",),
    ("number",),
    ("string",),
    ("object",),
    ("array",),
    ("binData",),
    ("objectId",),
    ("bool",),
    ("date",),
    ("timestamp",),
    ("regex",),
    (),
]
_NULL_RANK = 1


def _type_rank(value: Any) -> int:
    checks: list[tuple[int, Callable[[Any], bool]]] = [
        (0, lambda v: isinstance(v, MinKey)),
        (1, lambda v: v is None),
        (8, lambda v: isinstance(v, bool)),
        (2, lambda v: isinstance(v, int | float | Int64) or type(v).__name__ == "Decimal128"),
        (3, lambda v: isinstance(v, str)),
        (4, lambda v: isinstance(v, dict)),
        (5, lambda v: isinstance(v, list)),
        (6, lambda v: isinstance(v, bytes | Binary)),
        (7, lambda v: isinstance(v, ObjectId)),
        (9, lambda v: isinstance(v, datetime)),
        (10, lambda v: isinstance(v, Timestamp)),
        (11, lambda v: isinstance(v, Regex | re.Pattern)),
        (12, lambda v: isinstance(v, MaxKey)),
    ]
    for rank, check in checks:
        if check(value):
            return rank
    return 4


def _types(ranks: Iterable[int]) -> list[str]:
    return [alias for rank in ranks for alias in _TYPE_GROUPS[rank] if rank != _NULL_RANK]


#: The type groups a sort key can hold: every group, unless the schema says better.
ALL_RANKS = frozenset(range(len(_TYPE_GROUPS)))
#: `_id`s are strings, numbers or ObjectIds (`app.schema.convert_document_id`).
ID_RANKS = frozenset({2, 3, 7})
_FIELD_TYPE_RANKS = {
    "string": 3, "int": 2, "float": 2, "bool": 8, "date": 9, "id": 7, "object": 4, "array": 5,
}  # fmt: skip


def possible_ranks(field_type: str | None) -> frozenset[int]:
    """The type groups a field of this schema type can hold (null/missing included)."""
    rank = _FIELD_TYPE_RANKS.get(field_type or "")
    return ALL_RANKS if rank is None else frozenset({_NULL_RANK, rank})


def _after(
    field: str, direction: int, value: Any, possible: frozenset[int] = ALL_RANKS
) -> dict[str, Any] | None:
    """Documents whose `field` comes after `value` in this direction. Only the type
    groups the field can hold are named: each extra `$type` branch costs the embedded
    engine another pass of filter evaluation over the collection."""
    rank = _type_rank(value)
    parts: list[dict[str, Any]] = []
    if direction == 1:
        if value is not None:
            parts.append({field: {"$gt": value}})
        later = _types(r for r in range(rank + 1, len(_TYPE_GROUPS)) if r in possible)
        if later:
            parts.append({field: {"$type": later}})
    else:
        if value is not None:
            parts.append({field: {"$lt": value}})
        earlier = _types(r for r in range(0, rank) if r in possible)
        if earlier:
            parts.append({field: {"$type": earlier}})
        if rank > _NULL_RANK and _NULL_RANK in possible:
            parts.append({field: {"$eq": None}})
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$or": parts}


def keyset_filter(
    sort: Sort, values: list[Any], possible: dict[str, frozenset[int]] | None = None
) -> dict[str, Any] | None:
    """The filter of everything after the position `values` in `sort` (None: nothing);
    `possible` narrows the type groups of fields the schema types."""
    branches: list[dict[str, Any]] = []
    for position, (field, direction) in enumerate(sort):
        ranks = (possible or {}).get(field, ID_RANKS if field == "_id" else ALL_RANKS)
        after = _after(field, direction, values[position], ranks)
        if after is None:
            continue
        equal = [{name: {"$eq": values[n]}} for n, (name, _) in enumerate(sort[:position])]
        branches.append({"$and": [*equal, after]} if equal else after)
    if not branches:
        return None
    return branches[0] if len(branches) == 1 else {"$or": branches}


_MISSING = object()


def value_at(document: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (None when missing); raises `InvalidSort` on arrays."""
    current: Any = document
    for part in path.split("."):
        if isinstance(current, list):
            raise InvalidSort(
                f"Cannot page by cursor on '{path}': it holds an array. Sort by another field."
            )
        if not isinstance(current, dict):
            return None
        current = current.get(part, _MISSING)
        if current is _MISSING:
            return None
    if isinstance(current, list):
        raise InvalidSort(
            f"Cannot page by cursor on '{path}': it holds an array. Sort by another field."
        )
    return current


@dataclass(frozen=True)
class CursorCodec:
    """Signs and reads cursors; `fingerprint` ties a cursor to one query."""

    key: bytes

    @classmethod
    def from_secret(cls, secret: str) -> CursorCodec:
        return _codec(secret)

    @staticmethod
    def fingerprint(*parts: Any) -> str:
        text = json_util.dumps(parts, json_options=json_util.CANONICAL_JSON_OPTIONS)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def encode(self, *, fingerprint: str, values: list[Any]) -> str:
        payload = json_util.dumps(
            {"v": CURSOR_VERSION, "q": fingerprint, "k": values},
            json_options=json_util.CANONICAL_JSON_OPTIONS,
        ).encode()
        body = base64.urlsafe_b64encode(payload).rstrip(b"=")
        signature = base64.urlsafe_b64encode(self._sign(body)).rstrip(b"=")
        return (body + b"." + signature).decode()

    def decode(self, cursor: str, *, fingerprint: str, keys: int) -> list[Any]:
        """The sort values of the cursor; raises `InvalidCursor`."""
        try:
            body, signature = cursor.encode("ascii").split(b".")
            expected = base64.urlsafe_b64encode(self._sign(body)).rstrip(b"=")
            if not hmac.compare_digest(signature, expected):
                raise InvalidCursor()
            payload = json_util.loads(
                base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)),
                json_options=json_util.CANONICAL_JSON_OPTIONS,
            )
        except (ValueError, UnicodeEncodeError, TypeError):
            raise InvalidCursor() from None
        values = payload.get("k") if isinstance(payload, dict) else None
        if payload.get("v") != CURSOR_VERSION or payload.get("q") != fingerprint:
            raise InvalidCursor()
        if not isinstance(values, list) or len(values) != keys:
            raise InvalidCursor()
        return values

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self.key, body, hashlib.sha256).digest()[:18]


@lru_cache(maxsize=8)
def _codec(secret: str) -> CursorCodec:
    return CursorCodec(hashlib.sha256(b"quarry:cursor:" + secret.encode()).digest())
