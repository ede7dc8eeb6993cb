"""The records of the audit log and their hash.

**Records** live in the control collection `audit_log`:
`{_id, seq, at, actor_user_id, api_key_prefix, action, resource_type, resource_id,
dataset_id, status, request_id, ip, user_agent, details, prev_hash, hash}`.
`hash` is the SHA-256 of a canonical serialization (sorted-key JSON, ObjectIds as
`{"$oid"}`, dates as `{"$date"}` in milliseconds) of every field but `_id` and
`hash` — `prev_hash` included — so editing any field, or removing, inserting or
swapping a record, breaks the chain at that point (`verify_chain`, `quarry audit
verify`). A record never holds a secret (no token, password, key or request
body) nor document contents: the middleware records the method, the path (ids
only; never the query string, which can carry tokens) and what handlers add with
`annotate`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel

RECORDS = "audit_log"
HEAD = "audit_head"
ANCHORS = "audit_anchor"
HEAD_ID = "head"
#: The `prev_hash` of the first record ever written.
GENESIS_HASH = "0" * 64
#: The key of this module's indexes in `Database.indexes_ready`.
AUDIT = "audit"

#: Positions tried by one append before it gives up (each failure means another
#: writer took that position, so this is only reached by a runaway).
MAX_APPEND_ATTEMPTS = 10_000
#: Records one sweep round deletes at most (rounds repeat until nothing is left).
SWEEP_BATCH = 1000
#: Beyond this many administered datasets a listing asks one `$in` query (which
#: reads the whole collection on the embedded engine) instead of one per dataset.
#: Lookups by seq an unfiltered listing runs at once.
WALK_BATCH = 100

INDEXES = [
    IndexModel([("seq", ASCENDING)], unique=True, name="seq_unique"),
    IndexModel([("actor_user_id", ASCENDING)], name="actor"),
    IndexModel([("dataset_id", ASCENDING)], name="dataset"),
    IndexModel([("action", ASCENDING)], name="action"),
]

#: The fields audit pages filter and sort on, by schema type: their typed indexes
#: serve the pages on the embedded engine (`app.engine.planner`).
TYPED_FIELDS = {
    "seq": "int",
    "at": "date",
    "action": "string",
    "dataset_id": "id",
    "actor_user_id": "id",
}


class AuditUnavailable(Exception):
    """The record could not be written (no index yet, or a runaway append)."""


# --------------------------------------------------------------------- hashing


def _iso_ms(moment: datetime) -> str:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


def _canonical(value: Any) -> Any:
    """A JSON-able form that is the same before the insert and after a read back."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, datetime):
        return {"$date": _iso_ms(value)}
    if isinstance(value, ObjectId):
        return {"$oid": str(value)}
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return {"$repr": repr(value)}


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 over every field but `_id` and `hash` (so `prev_hash` is covered)."""
    content = {key: value for key, value in record.items() if key not in ("_id", "hash")}
    text = json.dumps(_canonical(content), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def email_fingerprint(email: str) -> str:
    """SHA-256 of a normalized email: failed logins on one address can be found by
    hashing it, while the log keeps no address (nor a password typed as one)."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def storable(value: Any) -> Any:
    """Handler-supplied details as BSON that reads back unchanged: plain JSON types,
    dates and ObjectIds; anything else as its string. Field names lose `.` and a
    leading `$`, which MongoDB does not store."""
    if value is None or isinstance(value, bool | str | int | float | ObjectId):
        return value
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, Mapping):
        return {
            str(key).replace(".", "_").lstrip("$") or "_": storable(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [storable(item) for item in value]
    return str(value)


def object_id_or_none(value: ObjectId | str | None) -> ObjectId | None:
    if value is None or isinstance(value, ObjectId):
        return value
    return ObjectId(value) if ObjectId.is_valid(value) else None


# ------------------------------------------------------------------- the chain


@dataclass(frozen=True)
class Link:
    """A position of the chain: a record's (or the anchor's) seq, hash and time."""

    seq: int
    hash: str
    at: datetime | None


GENESIS = Link(seq=0, hash=GENESIS_HASH, at=None)


def link_of(document: Mapping[str, Any] | None) -> Link | None:
    if document is None:
        return None
    return Link(seq=int(document["seq"]), hash=str(document["hash"]), at=document.get("at"))


def anchor_of(documents: Iterable[Mapping[str, Any]]) -> Link:
    """The effective anchor: the highest of the anchors written by sweeps."""
    best = GENESIS
    for document in documents:
        if isinstance(document.get("_id"), int) and document["_id"] > best.seq:
            best = Link(seq=document["_id"], hash=str(document["hash"]), at=document.get("at"))
    return best
