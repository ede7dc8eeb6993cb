"""The only place the auth package talks to MongoDB (the control database).

Collections: `users` (unique normalized email), `refresh_tokens` (jti as `_id`,
family, user, parent, expiry, used/revoked), `api_keys` (SHA-256 of the key,
public prefix, owner, name, expiry, last use) and `login_attempts` (one document
per failed login, counted within the window).

Single use is guaranteed by unique indexes, not by read-then-write: the embedded
engine's updates are not atomic across connections, but its unique indexes are.
A refresh token is consumed by inserting its successor with `parent` = its jti
(unique), so of many concurrent refreshes exactly one wins.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError, OperationFailure

from app.clock import utc_now
from app.db import DatabaseHandle, Document
from app.limits import Slots

logger = logging.getLogger("quarry.auth")

USERS = "users"
REFRESH_TOKENS = "refresh_tokens"
API_KEYS = "api_keys"
LOGIN_ATTEMPTS = "login_attempts"

_INDEXES: dict[str, list[IndexModel]] = {
    USERS: [IndexModel([("email", ASCENDING)], unique=True, name="email_unique")],
    REFRESH_TOKENS: [
        IndexModel([("parent", ASCENDING)], unique=True, name="parent_unique"),
        IndexModel([("family", ASCENDING)], name="family"),
        IndexModel([("user_id", ASCENDING)], name="user"),
        IndexModel([("expires_at", ASCENDING)], name="expires"),
    ],
    API_KEYS: [
        IndexModel([("key_hash", ASCENDING)], unique=True, name="key_hash_unique"),
        IndexModel([("user_id", ASCENDING)], name="user"),
        IndexModel([("expires_at", ASCENDING)], name="expires"),
    ],
    LOGIN_ATTEMPTS: [
        IndexModel([("scope", ASCENDING), ("window", ASCENDING)], name="scope_window"),
        IndexModel([("expires_at", ASCENDING)], name="expires"),
    ],
}
_TTL_COLLECTIONS = (REFRESH_TOKENS, API_KEYS, LOGIN_ATTEMPTS)


async def ensure_indexes(*, db: DatabaseHandle) -> None:
    for collection, indexes in _INDEXES.items():
        await db[collection].create_indexes(indexes)
    for collection in _TTL_COLLECTIONS:
        # Where the server has TTL indexes they expire rows within a minute; the
        # embedded engine has none, and the periodic sweep covers it.
        try:
            await db[collection].create_index(
                [("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_ttl"
            )
        except OperationFailure as exc:
            logger.info("no TTL index on %s (%s); the sweep expires rows", collection, exc.code)


async def sweep_expired(*, db: DatabaseHandle, now: datetime) -> dict[str, int]:
    removed = {}
    for collection in _TTL_COLLECTIONS:
        result = await db[collection].delete_many({"expires_at": {"$lt": now}})
        removed[collection] = result.deleted_count
    return removed


# ------------------------------------------------------------------------ users


async def insert_user(*, db: DatabaseHandle, user: Document) -> bool:
    """Insert; False when the email is taken (unique index, race-free)."""
    try:
        await db[USERS].insert_one(user)
    except DuplicateKeyError:
        return False
    return True


async def find_user_by_email(*, db: DatabaseHandle, email: str) -> Document | None:
    return await db[USERS].find_one({"email": email})


async def find_user(*, db: DatabaseHandle, user_id: ObjectId) -> Document | None:
    return await db[USERS].find_one({"_id": user_id})


async def update_user(
    *, db: DatabaseHandle, user_id: ObjectId, changes: Document
) -> Document | None:
    await db[USERS].update_one({"_id": user_id}, {"$set": {**changes, "updated_at": utc_now()}})
    return await find_user(db=db, user_id=user_id)


async def replace_password_hash(
    *,
    db: DatabaseHandle,
    user_id: ObjectId,
    old_hash: str,
    new_hash: str,
    extra: Document | None = None,
) -> bool:
    """Swap the hash only if it is still `old_hash`; False if it changed meanwhile."""
    result = await db[USERS].update_one(
        {"_id": user_id, "password_hash": old_hash},
        {"$set": {"password_hash": new_hash, "updated_at": utc_now(), **(extra or {})}},
    )
    return result.matched_count == 1


# ---------------------------------------------------------------- refresh tokens


async def insert_refresh_token(*, db: DatabaseHandle, token: Document) -> bool:
    """Insert; False when `parent` was already consumed by another refresh."""
    try:
        await db[REFRESH_TOKENS].insert_one(token)
    except DuplicateKeyError:
        return False
    return True


async def find_refresh_token(*, db: DatabaseHandle, jti: str) -> Document | None:
    return await db[REFRESH_TOKENS].find_one({"_id": jti})


async def mark_refresh_token_used(*, db: DatabaseHandle, jti: str) -> None:
    await db[REFRESH_TOKENS].update_one({"_id": jti}, {"$set": {"used_at": utc_now()}})


async def revoke_family(*, db: DatabaseHandle, family: str) -> int:
    result = await db[REFRESH_TOKENS].update_many(
        {"family": family, "revoked_at": None}, {"$set": {"revoked_at": utc_now()}}
    )
    return result.modified_count


async def revoke_user_tokens(
    *, db: DatabaseHandle, user_id: ObjectId, keep_family: str | None = None
) -> int:
    query: Document = {"user_id": user_id, "revoked_at": None}
    if keep_family is not None:
        query["family"] = {"$ne": keep_family}
    result = await db[REFRESH_TOKENS].update_many(query, {"$set": {"revoked_at": utc_now()}})
    return result.modified_count


# ---------------------------------------------------------------------- API keys


async def count_live_api_keys(*, db: DatabaseHandle, user_id: ObjectId, now: datetime) -> int:
    return await db[API_KEYS].count_documents(
        {"user_id": user_id, "$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]}
    )


async def insert_api_key(*, db: DatabaseHandle, key: Document) -> None:
    await db[API_KEYS].insert_one(key)


async def list_api_keys(*, db: DatabaseHandle, user_id: ObjectId) -> list[Document]:
    cursor = db[API_KEYS].find({"user_id": user_id}, {"key_hash": 0}).sort("created_at", 1)
    return [key async for key in cursor]


async def delete_api_key(*, db: DatabaseHandle, user_id: ObjectId, key_id: ObjectId) -> bool:
    result = await db[API_KEYS].delete_one({"_id": key_id, "user_id": user_id})
    return result.deleted_count == 1


async def find_api_key_by_hash(*, db: DatabaseHandle, key_hash: str) -> Document | None:
    return await db[API_KEYS].find_one({"key_hash": key_hash})


async def touch_api_key(
    *, db: DatabaseHandle, key_id: ObjectId, now: datetime, every: timedelta
) -> None:
    """Record a use, at most once per `every` (the filter makes other workers skip)."""
    await db[API_KEYS].update_one(
        {"_id": key_id, "$or": [{"last_used_at": None}, {"last_used_at": {"$lt": now - every}}]},
        {"$set": {"last_used_at": now}},
    )


# ---------------------------------------------------------------- login attempts


def attempt_slots(*, db: DatabaseHandle) -> Slots:
    """Login and registration budgets (app.limits.slots), kept in `login_attempts`."""
    return Slots(db[LOGIN_ATTEMPTS])


async def set_role(*, db: DatabaseHandle, email: str, role: str) -> bool:
    """Make the account of `email` a platform `admin` or a plain `user`; False if none."""
    result = await db[USERS].update_one(
        {"email": email}, {"$set": {"role": role, "updated_at": utc_now()}}
    )
    return result.matched_count == 1
