"""The background count of documents that hold another type than an index
declares, after a schema change gave a field a new indexed type.

Such documents are legal, but on the embedded engine they hold the field's typed
index off and its reads go the slow way (`app.db.field_guards`); nothing else
would tell anyone. So `update_schema` asks for a count (`ViolationChecks.want`),
and the periodic task `index-violation-checks` (`app.background`) does it soon
after, outside the request: it logs a warning naming the count and the endpoints
that list and convert them, and keeps the result (`last`) for `get_metadata` and
tests (the latest `MAX_RESULTS`). Counted with the same `$type` filter the listing
uses, through the engine adapter, within the read time limit; a failed count backs
off (2 s, doubling, up to 5 minutes) and is given up after `MAX_ATTEMPTS`; the
in-memory queue is this server's: a restart forgets pending counts,
which `get_metadata` shows live anyway.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from pymongo.errors import PyMongoError

from app.clock import utc_now
from app.db import Database, violation_filter
from app.errors import QueryTimeout

logger = logging.getLogger("quarry.management")

#: Seconds between rounds of the task (a count waits at most this long to start).
CHECK_INTERVAL_SECONDS = 1.0
TASK_NAME = "index-violation-checks"
#: A failed count is tried again after this many seconds, doubled each time up to
#: `MAX_BACKOFF_SECONDS`, and given up after `MAX_ATTEMPTS` (get_metadata still
#: shows the live state).
FIRST_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 300.0
MAX_ATTEMPTS = 8
#: Results kept in `last` at most (the oldest go first).
MAX_RESULTS = 1_000


@dataclass(frozen=True)
class CheckKey:
    database_id: str
    db_name: str
    collection: str
    field: str


@dataclass(frozen=True)
class CheckResult:
    schema_type: str
    violations: int
    checked_at: datetime


@dataclass
class _Pending:
    schema_type: str
    failures: int = 0
    #: `time.monotonic()` before which it is not tried (a failure backs off).
    not_before: float = 0.0


class ViolationChecks:
    """Counts wanted after schema changes, done by the background task."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._due: dict[CheckKey, _Pending] = {}
        #: The latest count of each field checked (at most `MAX_RESULTS`, newest last).
        self.last: dict[CheckKey, CheckResult] = {}

    def want(self, database_id: str, db_name: str, collection: str, fields: dict[str, str]) -> None:
        """Count, soon, the documents whose `fields` (name → schema type) hold another
        type (a later wish for the same field replaces an earlier one)."""
        for field, schema_type in fields.items():
            if violation_filter(field, schema_type) is not None:
                self._due[CheckKey(database_id, db_name, collection, field)] = _Pending(schema_type)

    async def run_due(self) -> None:
        """One round: every count due whose back-off is over. A failed count (the
        engine away, or past the read time limit) is tried again later, at growing
        intervals, and given up after `MAX_ATTEMPTS`."""
        now = time.monotonic()
        for key, pending in list(self._due.items()):
            if pending.not_before > now or self._due.get(key) is not pending:
                continue
            del self._due[key]
            try:
                await self._check(key, pending.schema_type)
            except (PyMongoError, QueryTimeout) as exc:
                self._postpone(key, pending, type(exc).__name__)

    def _postpone(self, key: CheckKey, pending: _Pending, why: str) -> None:
        if key in self._due:  # wanted again meanwhile: the new wish stands
            return
        pending.failures += 1
        if pending.failures >= MAX_ATTEMPTS:
            logger.warning(
                "violation count of %s given up after %d attempts (%s)", key, pending.failures, why
            )
            return
        delay = min(FIRST_BACKOFF_SECONDS * 2 ** (pending.failures - 1), MAX_BACKOFF_SECONDS)
        pending.not_before = time.monotonic() + delay
        logger.info("violation count of %s postponed by %.0f s (%s)", key, delay, why)
        self._due[key] = pending

    async def _check(self, key: CheckKey, schema_type: str) -> None:
        query = violation_filter(key.field, schema_type)
        assert query is not None
        violations = await self.database.count_limited(key.db_name, key.collection, query)
        self.last.pop(key, None)
        self.last[key] = CheckResult(schema_type, violations, utc_now())
        while len(self.last) > MAX_RESULTS:
            del self.last[next(iter(self.last))]
        if violations:
            logger.warning(
                "%d documents of collection %s (database %s) hold another type than %s in %s: "
                "its index may not serve them; GET /api/index_violations lists them, "
                "POST /api/convert_index_violations converts what converts",
                violations,
                key.collection,
                key.database_id,
                schema_type,
                key.field,
            )
