"""What the client needs to know about its credentials, without verifying
anything: the server verifies tokens; the client only reads an access token's
`exp` so it can refresh a little before the server would refuse it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass
class Credentials:
    """An API key, or an access/refresh pair (refreshed as it expires)."""

    api_key: str | None = None
    access: str | None = None
    refresh: str | None = None
    #: Called with each new pair (after login or refresh), e.g. to save a profile.
    on_tokens: Callable[[TokenPair], None] | None = None

    def expiring(self) -> bool:
        """True when the access token is past, or within the margin of, its `exp`."""
        if not self.access or not self.refresh:
            return False
        expiry = token_expiry(self.access)
        return expiry is not None and expiry - time.time() < REFRESH_MARGIN_SECONDS

    def store(self, pair: TokenPair) -> None:
        self.access, self.refresh = pair.access, pair.refresh
        if self.on_tokens is not None:
            self.on_tokens(pair)

    def headers(self) -> dict[str, str]:
        if self.api_key:
            return {"Authorization": f"Api-Key {self.api_key}"}
        if self.access:
            return {"Authorization": f"Bearer {self.access}"}
        return {}
