"""How the client waits and tries again when the server says "not now".

429 (rate limited) and 503 (database unavailable) answers carry `Retry-After`;
the server did nothing for them (every request completes or leaves no trace), so
the same request is sent again after that long. Without the header the wait grows
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
    #: Statuses retried. Connection failures (nothing was sent) are retried too.
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))

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
