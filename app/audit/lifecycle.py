"""Start and stop the audit log with the app: the log, the caller-recording
authenticator (after the auth package installed one), its indexes (retried while
the database is unreachable) and the retention sweep.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from pymongo.errors import PyMongoError

from app.audit.capture import CallerRecordingAuthenticator
from app.audit.chain import AuditLog
from app.http import Authenticator
from app.wiring import AppState, request_state

logger = logging.getLogger("quarry.audit")


def get_audit_log(request: Request) -> AuditLog:
    return request_state(request).get(AuditLog)


AuditDep = Annotated[AuditLog, Depends(get_audit_log)]


@contextlib.asynccontextmanager
async def lifecycle(state: AppState) -> AsyncIterator[None]:
    """Provides the `AuditLog` and wraps the `Authenticator` the auth feature provided
    (so it starts after that one), then keeps the indexes and the retention sweep."""
    settings = state.settings
    audit_log = state.provide(AuditLog(database=state.database, settings=settings))
    authenticator = state.find(Authenticator)
    if authenticator is not None and not isinstance(authenticator, CallerRecordingAuthenticator):
        state.provide(CallerRecordingAuthenticator(authenticator), as_=Authenticator)

    async def prepare() -> None:
        if audit_log.indexes_ready:
            return
        try:
            await audit_log.ensure_indexes()
        except PyMongoError as exc:
            logger.warning("audit indexes not created yet (%s); retrying", type(exc).__name__)

    async def sweep() -> None:
        try:
            removed = await audit_log.sweep_expired()
        except PyMongoError as exc:
            logger.warning("audit retention sweep postponed: %s", type(exc).__name__)
            return
        if removed:
            days = settings.audit_retention_days
            logger.info("audit retention: %d records older than %d days removed", removed, days)

    await prepare()
    every = state.background.every
    async with (
        every("audit-indexes", prepare, settings.maintenance_interval_seconds),
        every("audit-retention", sweep, settings.sweep_interval_seconds),
    ):
        yield
