"""Budgets that stay exact under concurrency, on every engine: N attempts per window.

The embedded engine has no atomic read-modify-write across connections, so a
counter read, checked and then incremented lets parallel requests all pass the
check. Here a budget of `limit` per window *is* `limit` possible documents with
the unique `_id`s `<scope>:<window>:<n>` (n < limit); using the budget is
inserting one of them, and the `_id`'s uniqueness — which every engine enforces
atomically — decides who gets the last one. A caller counts the slots taken so
far (equality on indexed `scope` and `window`, served by an index) and tries the
next free numbers; a duplicate key means someone else took it, so it tries the
one after. Slots expire with their window (`expires_at`, swept like the other
expiring rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo.errors import DuplicateKeyError

from app.db import Collection


@dataclass(frozen=True)
class Budget:
    """`limit` uses of `scope` per `window_seconds` (fixed windows since the epoch)."""

    scope: str
    limit: int
    window_seconds: int


class BudgetSpent(Exception):
    """Every slot of a budget in this window is taken; `retry_after` seconds to the next."""

    def __init__(self, budget: Budget, retry_after: int) -> None:
        super().__init__(budget.scope)
        self.budget = budget
        self.retry_after = retry_after


class Slots:
    """Budgets kept in one collection (indexed on `scope`, `window`, `expires_at`)."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection

    async def take(self, budgets: list[Budget], now: datetime) -> list[str]:
        """One slot of every budget, or none: raises `BudgetSpent` (after giving back
        the slots this call took) when one is spent. Returns the slots' ids."""
        taken: list[str] = []
        try:
            for budget in budgets:
                taken.append(await self._take_one(budget, now))
        except BaseException:
            await self.give_back(taken)
            raise
        return taken

    async def give_back(self, slot_ids: list[str]) -> None:
        """Return slots (an attempt that turned out not to count)."""
        if slot_ids:
            await self.collection.delete_many({"_id": {"$in": slot_ids}})

    async def clear(self, scope: str) -> None:
        """Forget every use of `scope` (e.g. failures before a successful login)."""
        await self.collection.delete_many({"scope": scope})

    async def _take_one(self, budget: Budget, now: datetime) -> str:
        stamp = now.timestamp()
        window = math.floor(stamp / budget.window_seconds)
        ends = (window + 1) * budget.window_seconds
        used = await self.collection.count_documents({"scope": budget.scope, "window": window})
        for number in range(used, budget.limit):
            slot_id = f"{budget.scope}:{window}:{number}"
            try:
                await self.collection.insert_one(
                    {
                        "_id": slot_id,
                        "scope": budget.scope,
                        "window": window,
                        "expires_at": now + timedelta(seconds=ends - stamp),
                    }
                )
            except DuplicateKeyError:
                continue
            return slot_id
        raise BudgetSpent(budget, max(1, math.ceil(ends - stamp)))
