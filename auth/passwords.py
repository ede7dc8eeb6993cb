"""Password hashing: Argon2id through pwdlib, off the event loop.

Parameters default to RFC 9106's second recommended option (t=3, m=64 MiB,
p=4); they are settings so that a deployment can tune them, and a hash made with
other parameters is re-hashed at the next successful login. Hashing takes tens of
milliseconds of CPU, so it runs in a worker thread, never on the event loop.

For an unknown email the service still verifies the password against a dummy hash
made with the same parameters, so both answers take the same time.
"""

from __future__ import annotations

import asyncio
import secrets

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from app.settings import Settings


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=settings.argon2_time_cost,
                    memory_cost=settings.argon2_memory_kib,
                    parallelism=settings.argon2_parallelism,
                ),
            )
        )
        self._dummy = self._hash.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hash.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        """(matches, new hash when the stored one has outdated parameters)."""
        if password_hash is None:
            await asyncio.to_thread(self._hash.verify, password, self._dummy)
            return False, None
        return await asyncio.to_thread(self._hash.verify_and_update, password, password_hash)
