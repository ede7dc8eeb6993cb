"""Budgets that hold under concurrency on every engine, and the per-user rate
limits built on them.

- `slots`: N uses per window as N possible documents with unique `_id`s (a
  duplicate key decides who got the last one); auth's login and registration
  throttles use it.
- `rate_limit`: the per-user request budgets (general, and the operation limits
  `dataset_create`, `search`, `items`) as a token bucket of slots; every
  authenticated request is charged once by `charge_request`, which the HTTP
  layer's caller dependencies call, so no endpoint can forget it. A route joins
  an operation limit with `openapi_extra=rate_limited_operation("search")`.
- `lifecycle`: started with the app (indexes, sweep).
"""

from app.limits.lifecycle import lifecycle
from app.limits.rate_limit import (
    HEADER_NAMES,
    OPERATION_KEY,
    OPERATIONS,
    SLOTS,
    STATE_KEY,
    Operation,
    RateLimited,
    RateLimiter,
    RateLimitStatus,
    charge_request,
    rate_limited_operation,
)
from app.limits.slots import Budget, BudgetSpent, Slots

__all__ = [
    "HEADER_NAMES",
    "OPERATIONS",
    "OPERATION_KEY",
    "SLOTS",
    "STATE_KEY",
    "Budget",
    "BudgetSpent",
    "Operation",
    "RateLimitStatus",
    "RateLimited",
    "RateLimiter",
    "Slots",
    "charge_request",
    "lifecycle",
    "rate_limited_operation",
]
