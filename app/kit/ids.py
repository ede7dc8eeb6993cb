"""Resource ids: 24-hex ObjectId strings in JSON; a malformed one is 422 `INVALID_ID`."""

from __future__ import annotations

import os
import struct
import time
from typing import Any

import bson
from bson import ObjectId
from bson.errors import InvalidId as BsonInvalidId

from app.errors import InvalidId


def parse_object_id(value: str, *, what: str = "id") -> ObjectId:
    try:
        if len(value) != 24:
            raise BsonInvalidId(value)
        return ObjectId(value)
    except (BsonInvalidId, TypeError):
        raise InvalidId(f"Invalid {what}: expected a 24-character hex ObjectId.") from None


class RangedIds:
    """ObjectIds for documents without `_id`, in ranges unique to one request.

    4 bytes of time and 5 random bytes are shared by up to 2**24 ids that differ in
    their 3-byte counter, so what one import or insert wrote can be deleted again by
    `_id` ranges — one range query instead of one lookup per document."""

    def __init__(self) -> None:
        self._prefixes: list[bytes] = []
        self._counter = 1 << 24

    def next(self) -> ObjectId:
        if self._counter == 1 << 24:
            self._prefixes.append(struct.pack(">I", int(time.time())) + os.urandom(5))
            self._counter = 0
        oid = ObjectId(self._prefixes[-1] + self._counter.to_bytes(3, "big"))
        self._counter += 1
        return oid

    @property
    def ranges(self) -> list[tuple[ObjectId, ObjectId]]:
        """The (first, last) id of every range handed out so far."""
        spans = []
        for number, prefix in enumerate(self._prefixes):
            last = self._counter - 1 if number == len(self._prefixes) - 1 else (1 << 24) - 1
            if last >= 0:
                spans.append(
                    (ObjectId(prefix + b"\0\0\0"), ObjectId(prefix + last.to_bytes(3, "big")))
                )
        return spans


def split_range(low: ObjectId, high: ObjectId, size: int) -> list[tuple[ObjectId, ObjectId]]:
    """`[low, high]` (one prefix, counters in the last 3 bytes) in pieces of `size` ids."""
    prefix = low.binary[:9]
    first = int.from_bytes(low.binary[9:], "big")
    last = int.from_bytes(high.binary[9:], "big")
    pieces = []
    for start in range(first, last + 1, size):
        end = min(start + size - 1, last)
        pieces.append(
            (ObjectId(prefix + start.to_bytes(3, "big")), ObjectId(prefix + end.to_bytes(3, "big")))
        )
    return pieces


def id_key(value: Any) -> bytes:
    """A hashable key of any `_id` value (dicts included), equal when the BSON is."""
    return bson.encode({"v": value})
