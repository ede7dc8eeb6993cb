"""Resource ids: 24-hex ObjectId strings in JSON; a malformed one is 422 `INVALID_ID`."""

from __future__ import annotations

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
