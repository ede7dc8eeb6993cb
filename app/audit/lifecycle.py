"""Start and stop the audit log with the app: the log, the caller-recording
authenticator (after the auth package installed one), its indexes (retried while
the database is unreachable) and the retention sweep.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from pymongo.errors import PyMongoError

from app.audit.capture import CallerRecordingAuthenticator
from app.audit.chain import AuditLog
from app.background import start_periodic, stop_periodic
from app.settings import Settings

logger = logging.getLogger("quarry.audit")

# ------------------------------------------------------------------- lifecycle


def get_audit_log(request: Request) -> AuditLog:
    audit_log: AuditLog = request.app.state.audit_log
    return audit_log


AuditDep = Annotated[AuditLog, Depends(get_audit_log)]


async def start_audit(app: FastAPI) -> None:
    """`app.state.audit_log`, the caller-recording authenticator (after the auth
    package installed one), the indexes and head (retried while the database is
    unreachable) and the retention sweep."""
    settings: Settings = app.state.settings
    audit_log = AuditLog(database=app.state.database, settings=settings)
    app.state.audit_log = audit_log
    authenticator = getattr(app.state, "authenticator", None)
    if authenticator is not None and not isinstance(authenticator, CallerRecordingAuthenticator):
        app.state.authenticator = CallerRecordingAuthenticator(authenticator)

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
    app.state.audit_indexes = start_periodic(
        "audit-indexes", prepare, settings.maintenance_interval_seconds
    )
    app.state.audit_sweep = start_periodic(
        "audit-retention", sweep, settings.sweep_interval_seconds
    )


async def stop_audit(app: FastAPI) -> None:
    await stop_periodic(getattr(app.state, "audit_indexes", None))
    await stop_periodic(getattr(app.state, "audit_sweep", None))
