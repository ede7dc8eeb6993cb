"""How the client waits and tries again when the server says "not now".

429 (rate limited) and 503 (database unavailable) answers carry `Retry-After`.
A 429 is refused before the server does anything, so any request is sent again
after that long; a 503 may come from a write the database applied but could not
confirm, so only an idempotent request (GET, PUT, DELETE, or one declared so) is
sent again, and anything else raises `ServiceUnavailable` for the caller to
decide. Without the header the wait grows
exponentially with jitter. Both the number of tries and the longest wait are
bounded: a `Retry-After` beyond `max_wait` is not waited for, the error is raised
at once so a script does not hang for an hour."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    #: Tries after the first; 0 turns retrying off.
    max_retries: int = 5
    #: The first wait when the answer has no `Retry-After`, doubled each time.
    backoff: float = 0.5
    #: The longest exponential wait.
    max_backoff: float = 30.0
    #: The longest `Retry-After` honoured; a longer one raises at once.
    max_wait: float = 120.0
    #: Statuses retried for an idempotent request. Connection failures (nothing
    #: was sent) are retried too.
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))
    #: Of those, the ones retried for any request: the server did nothing.
    always: frozenset[int] = field(default_factory=lambda: frozenset({429}))

    def retried_statuses(self, idempotent: bool) -> frozenset[int]:
        return self.statuses if idempotent else self.statuses & self.always

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before try `attempt` + 1 (`attempt` counts from 0), or
        None when no try is left or the server asks for more than `max_wait`."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_wait else None
        ceiling = min(self.max_backoff, self.backoff * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


NO_RETRY = RetryPolicy(max_retries=0)
