"""What the client needs to know about its credentials, without verifying
anything: the server verifies tokens; the client only reads an access token's
`exp` so it can refresh a little before the server would refuse it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from quarry_client.models import TokenPair

#: Refresh this many seconds before the access token expires.
REFRESH_MARGIN_SECONDS = 30.0


def token_expiry(token: str) -> float | None:
    """The `exp` claim (epoch seconds) of a JWT, read without verifying it."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        expiry = claims.get("exp")
        return float(expiry) if isinstance(expiry, (int, float)) else None
    except (IndexError, ValueError, AttributeError):
        return None


class SharedTokens(Protocol):
    """A pair kept outside this client too (a command-line profile), which other
    processes use and refresh. A refresh token works once — spending a used one
    makes the server revoke the whole family — so a refresh happens between
    `try_lock` (True once this client holds the lock; never blocks, so the async
    client can wait without stalling its loop) and `unlock`: the client first
    looks whether another process already refreshed (`load`), and saves the pair
    it gets (`save`)."""

    def try_lock(self) -> bool: ...

    def unlock(self) -> None: ...

    def load(self) -> tuple[str, str] | None: ...

    def save(self, pair: TokenPair) -> None: ...


@dataclass
class Credentials:
    """An API key, or an access/refresh pair (refreshed as it expires)."""

    api_key: str | None = None
    access: str | None = None
    refresh: str | None = None
    #: Called with each new pair (after login or refresh).
    on_tokens: Callable[[TokenPair], None] | None = None
    #: Where the pair is shared with other processes, if anywhere.
    shared: SharedTokens | None = None

    def expiring(self) -> bool:
        """True when the access token is past, or within the margin of, its `exp`."""
        if not self.access or not self.refresh:
            return False
        expiry = token_expiry(self.access)
        return expiry is not None and expiry - time.time() < REFRESH_MARGIN_SECONDS

    def store(self, pair: TokenPair) -> None:
        self.access, self.refresh = pair.access, pair.refresh
        if self.shared is not None:
            self.shared.save(pair)
        if self.on_tokens is not None:
            self.on_tokens(pair)

    def try_exclusive(self) -> bool:
        """Take the shared pair's lock if free (always True when nothing is shared)."""
        return self.shared.try_lock() if self.shared is not None else True

    def release(self) -> None:
        if self.shared is not None:
            self.shared.unlock()

    def adopt_shared(self) -> bool:
        """Take the shared pair if another process refreshed it since we read it."""
        stored = self.shared.load() if self.shared is not None else None
        if stored is None or stored[1] == self.refresh:
            return False
        self.access, self.refresh = stored
        return True

    def headers(self) -> dict[str, str]:
        if self.api_key:
            return {"Authorization": f"Api-Key {self.api_key}"}
        if self.access:
            return {"Authorization": f"Bearer {self.access}"}
        return {}
