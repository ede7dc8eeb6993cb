"""Per-user rate limits: the one door every authenticated request goes through.

What it owns: the budgets (`QUARRY_RATE_LIMIT_PER_MINUTE` with burst
`QUARRY_RATE_LIMIT_BURST`, and the operation limits `dataset_create`, `search`,
`items` of seed 003, each R per minute with a burst of R), the slots that record
their use (control collection `rate_limit_slots`), the 429 `RATE_LIMITED`, and
the status behind the `X-RateLimit-*` headers. `app.http.deps.get_caller` and
`get_bearer_caller` call `charge_request` once the caller is known, so every
authenticated endpoint is charged and none can forget it; a route joins an
operation limit by declaring `openapi_extra=rate_limited_operation("search")`.
A request without valid credentials is never charged (it is a 401 first).

Why slots: the embedded engine has no atomic read-modify-write across
connections, so a counter that is read, checked and written back lets parallel
requests all pass the check. What every engine does enforce atomically is a
unique `_id`. A budget of R per minute with burst B cuts time into slots of
T = 60/R seconds; a request must own one slot number k in
[floor(now/T), floor(now/T) + B), and owning it is inserting
`{_id: "<budget>:<user>:<k>"}` (a duplicate key means someone else owns it). That
is a token bucket (GCRA) of capacity B refilled by one token every T: the B
slots ahead are the tokens, and each T one more comes into reach. Since each
slot has one owner, N parallel requests against k free slots let exactly k
through, across workers and restarts (the state is in the database).

Cost: each process keeps a hint per (budget, user) — the next slot to try and
the slots its own requests are inserting — and reserves a slot synchronously
before awaiting its insert, so requests within one process never collide and a
request costs one insert. When the hint is stale (another worker serves the
same user) the insert collides, and one indexed read of that bucket's slots
says which are free. A refusal the hint can decide costs nothing. A request
charged against several budgets takes from all or none: a refusal (or an
error) gives back the slots it took before. Workers' clocks should agree (NTP):
a worker whose clock is off by d sees the window shifted by d/T slots.

The headers describe the budget closest to running out: `X-RateLimit-Limit` is
its burst, `X-RateLimit-Remaining` the free slots ahead after this request (as
this process knows them: exact in one worker, an upper bound while another
worker serves the same user) and `X-RateLimit-Reset` the epoch second at which
the bucket is full again. Slots expire when they fall behind the window
(`expires_at`): a TTL index removes them where the server has TTL indexes, and a
periodic sweep everywhere else.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from bson import ObjectId
from fastapi import Request
from pymongo.errors import OperationFailure, PyMongoError
from starlette.types import Scope

from app.db import Collection, is_duplicate_key
from app.errors import ErrorCode, QuarryError
from app.settings import Settings
from app.wiring import request_state

logger = logging.getLogger("quarry.rate_limit")

#: The control-database collection of slots.
SLOTS = "rate_limit_slots"
#: The `openapi_extra` key by which a route names its operation limit.
OPERATION_KEY = "x-rate-limit-operation"
Operation = Literal["dataset_create", "search", "items"]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)
GENERAL = "general"
#: `scope["state"]` key of the `RateLimitStatus` the middleware turns into headers.
STATE_KEY = "rate_limit"
_CHARGED_KEY = "rate_limit_charged"
#: Expired slots are harmless (they lie behind the window) but are read back by
#: a collision's lookup until swept, so they are swept at least this often.
SWEEP_MAX_SECONDS = 60.0
HEADER_NAMES = (b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset")
_OPERATION_LABELS: dict[str, str] = {
    "dataset_create": "dataset-create",
    "search": "search",
    "items": "item",
}


def rate_limited_operation(operation: Operation) -> dict[str, Any]:
    """The `openapi_extra` of a route whose requests also count against
    `operation`'s limit: `@router.post(..., openapi_extra=rate_limited_operation("search"))`."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown rate-limited operation {operation!r}; one of {OPERATIONS}")
    return {OPERATION_KEY: operation}


def route_operation(scope: Scope) -> Operation | None:
    """The operation limit the matched route declares, if any."""
    extra = getattr(scope.get("route"), "openapi_extra", None) or {}
    operation = extra.get(OPERATION_KEY)
    if operation is None:
        return None
    if operation not in OPERATIONS:
        raise ValueError(f"route declares unknown rate-limited operation {operation!r}")
    return operation  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Budget:
    """`per_minute` requests per minute and user, with bursts of up to `burst`."""

    name: str
    per_minute: int
    burst: int

    @property
    def slot_seconds(self) -> float:
        return 60.0 / self.per_minute


@dataclass(frozen=True)
class RateLimitStatus:
    """What the `X-RateLimit-*` headers of one answer say."""

    limit: int
    remaining: int
    reset: int

    def header_items(self) -> list[tuple[bytes, bytes]]:
        values = (self.limit, self.remaining, self.reset)
        return [(name, b"%d" % value) for name, value in zip(HEADER_NAMES, values, strict=True)]


class RateLimited(QuarryError):
    """Over a rate limit (429, with `Retry-After`); raised before the handler runs."""

    status_code = 429
    error_code = ErrorCode.RATE_LIMITED
    message = "Too many requests; retry later."

    def __init__(self, message: str, *, status: RateLimitStatus, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.status = status
        self.retry_after = retry_after


@dataclass
class _Hint:
    """This process's view of one bucket: slots below `next_slot` are taken as far
    as it knows, and `in_flight` are being inserted by its own requests."""

    slot_seconds: float
    next_slot: int = 0
    in_flight: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class _Taken:
    bucket: str
    slot: int
    status: RateLimitStatus

    @property
    def slot_id(self) -> str:
        return f"{self.bucket}:{self.slot}"


def _moment(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


class RateLimiter:
    """The budgets of one app, kept in `slots`; `clock` is replaceable (tests freeze it)."""

    def __init__(
        self,
        *,
        slots: Collection,
        general: Budget | None,
        operations: Mapping[str, Budget],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.slots = slots
        self.general = general
        self.operations = dict(operations)
        self.clock = clock
        self.indexes_ready = False
        self._hints: dict[str, _Hint] = {}

    @classmethod
    def from_settings(cls, settings: Settings, slots: Collection) -> RateLimiter:
        """0 disables a budget (for the general one: either of its two settings)."""
        general = None
        if settings.rate_limit_per_minute and settings.rate_limit_burst:
            general = Budget(GENERAL, settings.rate_limit_per_minute, settings.rate_limit_burst)
        per_minute: dict[Operation, int] = {
            "dataset_create": settings.rate_limit_dataset_create,
            "search": settings.rate_limit_search,
            "items": settings.rate_limit_items,
        }
        operations = {name: Budget(name, rate, rate) for name, rate in per_minute.items() if rate}
        return cls(slots=slots, general=general, operations=operations)

    def budgets(self, operation: Operation | None) -> list[Budget]:
        """The operation's budget first: it is the tighter one, so a refusal there
        usually comes before anything was taken from the general one."""
        chosen = [self.operations[operation]] if operation in self.operations else []
        return chosen + ([self.general] if self.general is not None else [])

    async def charge(self, *, user_id: str, operation: Operation | None) -> RateLimitStatus | None:
        """One slot of every budget the request counts against, or none: raises
        `RateLimited` (after giving back what it took) when one is spent. Returns the
        status of the budget closest to running out (None: no budget applies)."""
        taken: list[_Taken] = []
        try:
            for budget in self.budgets(operation):
                taken.append(await self._take(budget, user_id))
        except BaseException:
            await self._give_back(taken)
            raise
        if not taken:
            return None
        return min((t.status for t in taken), key=lambda status: (status.remaining, status.limit))

    async def sweep(self) -> int:
        """Delete the slots behind every window, and forget hints that say nothing."""
        now = self.clock()
        result = await self.slots.delete_many({"expires_at": {"$lt": _moment(now)}})
        for bucket, hint in list(self._hints.items()):
            if not hint.in_flight and hint.next_slot * hint.slot_seconds <= now:
                del self._hints[bucket]
        return result.deleted_count

    async def _take(self, budget: Budget, user_id: str) -> _Taken:
        now = self.clock()
        first = math.floor(now / budget.slot_seconds)
        end = first + budget.burst
        bucket = f"{budget.name}:{user_id}"
        hint = self._hints.get(bucket)
        if hint is None:
            hint = self._hints[bucket] = _Hint(budget.slot_seconds)
        slot = max(hint.next_slot, first)
        while slot in hint.in_flight:
            slot += 1
        if slot < end:
            if await self._insert(budget, bucket, hint, slot):
                return self._taken(budget, bucket, hint, slot, end)
            # Another worker owns it: it serves this user too, and the hint is stale.
            for slot in await self._free_slots(bucket, first, end):
                if slot in hint.in_flight:
                    continue
                if await self._insert(budget, bucket, hint, slot):
                    return self._taken(budget, bucket, hint, slot, end)
        raise self._refusal(budget, now, first, end)

    async def _insert(self, budget: Budget, bucket: str, hint: _Hint, slot: int) -> bool:
        """Own `slot`; False when another worker already does."""
        # Reserved before the first await: no other request of this process tries it.
        hint.in_flight.add(slot)
        hint.next_slot = max(hint.next_slot, slot + 1)
        try:
            await self.slots.insert_one(
                {
                    "_id": f"{bucket}:{slot}",
                    "bucket": bucket,
                    "slot": slot,
                    "expires_at": _moment((slot + 1) * budget.slot_seconds),
                }
            )
        except OperationFailure as exc:
            if is_duplicate_key(exc):
                return False
            hint.next_slot = min(hint.next_slot, slot)
            raise
        except BaseException:
            # The slot may still be free: let the next request try it again.
            hint.next_slot = min(hint.next_slot, slot)
            raise
        finally:
            hint.in_flight.discard(slot)
        return True

    async def _free_slots(self, bucket: str, first: int, end: int) -> Iterator[int]:
        """The slots of [first, end) no one had taken at the time of the read, lowest
        first (lazily: a burst may be large, the slots actually taken are few)."""
        cursor = self.slots.find(
            {"bucket": bucket, "slot": {"$gte": first, "$lt": end}}, {"_id": 0, "slot": 1}
        )
        taken = {document["slot"] async for document in cursor}
        return (slot for slot in range(first, end) if slot not in taken)

    def _taken(self, budget: Budget, bucket: str, hint: _Hint, slot: int, end: int) -> _Taken:
        taken_until = max(hint.next_slot, slot + 1)
        status = RateLimitStatus(
            limit=budget.burst,
            remaining=max(0, end - taken_until),
            reset=math.ceil(taken_until * budget.slot_seconds),
        )
        return _Taken(bucket=bucket, slot=slot, status=status)

    def _refusal(self, budget: Budget, now: float, first: int, end: int) -> RateLimited:
        retry_after = max(1, math.ceil((first + 1) * budget.slot_seconds - now))
        status = RateLimitStatus(
            limit=budget.burst, remaining=0, reset=math.ceil(end * budget.slot_seconds)
        )
        if budget.name == GENERAL:
            what = f"requests: at most {budget.per_minute} per minute, in bursts of {budget.burst},"
        else:
            label = _OPERATION_LABELS.get(budget.name, budget.name)
            what = f"{label} requests: at most {budget.per_minute} per minute"
        return RateLimited(
            f"Too many {what} per user; retry in {retry_after} s.",
            status=status,
            retry_after=retry_after,
        )

    async def _give_back(self, taken: list[_Taken]) -> None:
        if not taken:
            return
        try:
            await self.slots.delete_many({"_id": {"$in": [t.slot_id for t in taken]}})
        except PyMongoError as exc:
            logger.warning(
                "%d rate-limit slots not given back (%s); they expire with their window",
                len(taken),
                type(exc).__name__,
            )
            return
        for t in taken:
            hint = self._hints.get(t.bucket)
            if hint is not None:
                hint.next_slot = min(hint.next_slot, t.slot)


async def charge_request(request: Request, user_id: ObjectId) -> None:
    """Count this request against its caller's budgets (once, however many
    dependencies resolve the caller). The outcome goes to `scope["state"]`, where
    `RequestContextMiddleware` turns it into headers — on the 429 too."""
    limiter = request_state(request).find(RateLimiter)
    state: dict[str, Any] = request.scope.setdefault("state", {})
    if limiter is None or state.get(_CHARGED_KEY):
        return
    state[_CHARGED_KEY] = True
    try:
        operation = route_operation(request.scope)
        status = await limiter.charge(user_id=str(user_id), operation=operation)
    except RateLimited as exc:
        state[STATE_KEY] = exc.status
        raise
    if status is not None:
        state[STATE_KEY] = status
