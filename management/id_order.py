"""Resuming a walk in `_id` order: the position after the last `_id` read, as a
token a client passes back, and the filter of the documents after it.

Pure: no I/O. `_id`s of one collection may mix types, and `$gt` compares within
one type bracket only, so the filter also takes every later bracket, in MongoDB's
order of types (which the embedded engine follows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS as CANONICAL

from app.db import Document
from management.indexes import bson_type_name


@dataclass(frozen=True)
class Position:
    """The last `_id` a conversion read (a document's `_id` may be null, so the
    position is a box, None being "from the start")."""

    id: Any


def encode_position(position: Position | None) -> str | None:
    """A resume token: the `_id` as canonical Extended JSON (keeps int vs long)."""
    return None if position is None else json_util.dumps(position.id, json_options=CANONICAL)


def decode_position(token: str) -> Any:
    """The `_id` of a resume token. Raises `ValueError` (not one)."""
    try:
        value = json_util.loads(token, json_options=CANONICAL)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a resume token ({exc})") from None
    if bson_type_name(value) not in _BRACKET_OF:
        raise ValueError("not a resume token (not an _id of a known type)")
    return value


#: MongoDB's order of `_id` types (sort and comparison brackets), by `$type` alias;
#: `$gt` compares within a bracket only, so a keyset over mixed `_id` types also
#: takes every later bracket.
_ID_BRACKETS: tuple[tuple[str, ...], ...] = (
    ("null",),
    ("int", "long", "double"),
    ("string",),
    ("object",),
    ("binData",),
    ("objectId",),
    ("bool",),
    ("date",),
    ("timestamp",),
    ("regex",),
)
_BRACKET_OF = {
    "null": 0,
    "int": 1,
    "long": 1,
    "double": 1,
    "string": 2,
    "object": 3,
    "binary": 4,
    "bytes": 4,
    "objectId": 5,
    "bool": 6,
    "date": 7,
    "timestamp": 8,
    "regex": 9,
}


def after_position(query: Document, position: Position | None) -> Document:
    """`query` restricted to `_id`s after `position` in `_id` order."""
    if position is None:
        return query
    bracket = _BRACKET_OF[bson_type_name(position.id)]
    later = [alias for kind in _ID_BRACKETS[bracket + 1 :] for alias in kind]
    after: Document = {"_id": {"$gt": position.id}}
    if later:
        after = {"$or": [after, {"_id": {"$type": later}}]}
    return {"$and": [query, after]}
