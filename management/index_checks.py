"""The background count of documents that hold another type than an index
declares, after a schema change gave a field a new indexed type.

Such documents are legal, but on the embedded engine they hold the field's typed
index off and its reads go the slow way (`app.db.field_guards`); nothing else
would tell anyone. So `update_schema` asks for a count (`ViolationChecks.want`),
and the periodic task `index-violation-checks` (`app.background`) does it soon
after, outside the request: it logs a warning naming the count and the endpoints
that list and convert them, and keeps the result (`last`) for `get_metadata` and
tests. Counted with the same `$type` filter the listing uses, through the engine
adapter; the in-memory queue is this server's: a restart forgets pending counts,
which `get_metadata` shows live anyway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pymongo.errors import PyMongoError

from app.clock import utc_now
from app.db import Database, violation_filter

logger = logging.getLogger("quarry.management")

#: Seconds between rounds of the task (a count waits at most this long to start).
CHECK_INTERVAL_SECONDS = 1.0
TASK_NAME = "index-violation-checks"


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


class ViolationChecks:
    """Counts wanted after schema changes, done by the background task."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._due: dict[CheckKey, str] = {}
        #: The latest count of each field checked.
        self.last: dict[CheckKey, CheckResult] = {}

    def want(self, database_id: str, db_name: str, collection: str, fields: dict[str, str]) -> None:
        """Count, soon, the documents whose `fields` (name → schema type) hold another
        type (a later wish for the same field replaces an earlier one)."""
        for field, schema_type in fields.items():
            if violation_filter(field, schema_type) is not None:
                self._due[CheckKey(database_id, db_name, collection, field)] = schema_type

    async def run_due(self) -> None:
        """One round: every count due (a failed one is tried again next round)."""
        for key in list(self._due):
            schema_type = self._due.pop(key)
            try:
                await self._check(key, schema_type)
            except PyMongoError as exc:
                logger.info("violation count of %s postponed (%s)", key, type(exc).__name__)
                self._due.setdefault(key, schema_type)
                return

    async def _check(self, key: CheckKey, schema_type: str) -> None:
        query = violation_filter(key.field, schema_type)
        assert query is not None
        handle = self.database.db(key.db_name)[key.collection]
        violations = await handle.count_documents(query)
        self.last[key] = CheckResult(schema_type, violations, utc_now())
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
