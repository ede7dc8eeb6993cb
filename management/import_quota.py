"""At most `QUARRY_MAX_CONCURRENT_IMPORTS_PER_USER` imports of one user at a time.

An import file (up to `QUARRY_MAX_IMPORT_BYTES`) is spooled to disk while it
arrives, before any handler runs, so the check cannot wait for the endpoint: this
ASGI middleware authenticates the caller of `POST /api/import_data` from the
headers alone and takes an import lease before a byte of the body is read; one
too many answers 429 `TOO_MANY_IMPORTS` with `Retry-After` at once. Leases live in
the control database (`import_leases`, shared by every worker): `_id`
`<user>:<n>` for n below the limit, so the unique `_id` makes the count exact; a
lease expires after `LEASE_SECONDS` unless renewed, which the request does while
it runs, so a crashed worker's lease frees itself. A caller whose credentials do
not check out is passed on: the endpoint answers it (401) as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pymongo.errors import PyMongoError
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import ErrorCode, QuarryError
from app.http import Authenticator, error_response
from app.wiring import state_of
from management import repository as repo

logger = logging.getLogger("quarry.management")

IMPORT_PATH = "/api/import_data"
LEASE_SECONDS = 120
RETRY_AFTER_SECONDS = 5


class ImportQuotaMiddleware:
    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != IMPORT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        state = state_of(scope["app"])
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            caller = await state.get(Authenticator).authenticate(
                authorization=headers.get("authorization"), x_api_key=headers.get("x-api-key")
            )
            control = state.database.control
            lease = await repo.take_import_lease(
                db=control, user_id=caller.user_id, limit=self.limit, seconds=LEASE_SECONDS
            )
        except (QuarryError, PyMongoError):
            await self.app(scope, receive, send)  # the endpoint answers 401 / 503
            return
        if lease is None:
            response = error_response(
                429,
                ErrorCode.TOO_MANY_IMPORTS,
                f"You already have {self.limit} imports running; retry when one has finished.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
            await response(scope, receive, send)
            return
        renewing = asyncio.create_task(_keep(control, lease))
        try:
            await self.app(scope, receive, send)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            with contextlib.suppress(PyMongoError):
                await repo.release_import_lease(db=control, lease=lease)


async def _keep(control: object, lease: str) -> None:
    while True:
        await asyncio.sleep(LEASE_SECONDS / 3)
        try:
            await repo.renew_import_lease(db=control, lease=lease, seconds=LEASE_SECONDS)  # type: ignore[arg-type]
        except PyMongoError as exc:
            logger.warning("could not renew an import lease: %s", type(exc).__name__)
