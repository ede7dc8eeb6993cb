"""The account directory every feature may read: users are written by `auth/` only.

Features that name people (dataset owners, share targets, audit actors) look
them up here — by id or normalized email, each one indexed lookup — instead of
reaching into the auth package's repository.
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from app.db import DatabaseHandle, Document

USERS = "users"
_PUBLIC_FIELDS = {"email": 1, "role": 1, "is_verified": 1}


async def find_user(*, control: DatabaseHandle, user_id: ObjectId) -> Document | None:
    return await control[USERS].find_one({"_id": user_id}, _PUBLIC_FIELDS)


async def find_user_by_email(*, control: DatabaseHandle, email: str) -> Document | None:
    return await control[USERS].find_one({"email": email.strip().lower()}, _PUBLIC_FIELDS)


async def is_platform_admin(*, control: DatabaseHandle, user_id: ObjectId) -> bool:
    user = await find_user(control=control, user_id=user_id)
    return user is not None and user.get("role") == "admin"


async def emails_of(*, control: DatabaseHandle, user_ids: list[ObjectId]) -> dict[ObjectId, Any]:
    """`{id: email}` for these users, one indexed lookup each."""
    found: dict[ObjectId, Any] = {}
    for user_id in dict.fromkeys(user_ids):
        user = await find_user(control=control, user_id=user_id)
        if user is not None:
            found[user_id] = user["email"]
    return found
