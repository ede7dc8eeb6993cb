"""ASGI middleware: request ids, access log, last-resort 500s, and the body-size limit.

Both are plain ASGI middleware (no `BaseHTTPMiddleware`): they sit on the path of
every request, so they must not buffer bodies or add a task per request.

`RequestContextMiddleware` is the outermost layer the app adds. It picks the
request id (the client's `X-Request-ID` when sane, else a UUID4), binds it for
log records and error bodies, adds the header to every answer, writes one access
line per request (path without its query string: verification links carry
tokens there), adds the security headers every answer carries (`SECURITY_HEADERS`,
and HSTS when the request came over HTTPS — behind a proxy, uvicorn's
`proxy_headers` sets the scheme), and turns any exception that escaped every
handler into the 500 envelope — no traceback or driver message ever reaches the
client. It also adds the `X-RateLimit-*` headers of an authenticated request from
the status the rate limiter left in `scope["state"]` (`app.limits`): added
here, at the start of the answer, they are on error answers (the 429 included)
as well as on successes.

`BodySizeLimitMiddleware` refuses a body above the limit with 413: at once when
`Content-Length` says so, and otherwise by counting the bytes actually received,
so a chunked or lying upload cannot get past it. Paths may have their own limit
(the import endpoint takes files up to `QUARRY_MAX_IMPORT_BYTES`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ErrorCode, PayloadTooLarge
from app.http.handlers import error_response
from app.kit import bind_request_id, choose_request_id, reset_request_id
from app.limits import HEADER_NAMES as RATE_LIMIT_HEADERS
from app.limits import STATE_KEY as RATE_LIMIT_STATE

#: On every answer: no MIME sniffing, no framing (clickjacking), no referrer leak.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")

access_logger = logging.getLogger("quarry.access")
error_logger = logging.getLogger("quarry.errors")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = choose_request_id(_header(scope, b"x-request-id"))
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        token = bind_request_id(request_id)
        started = time.perf_counter()
        status: dict[str, Any] = {"code": None}

        secure = scope.get("scheme") == "https"

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                headers.extend(SECURITY_HEADERS)
                if secure:
                    headers.append(HSTS)
                rate_limit = state.get(RATE_LIMIT_STATE)
                if rate_limit is not None:
                    headers = [(k, v) for k, v in headers if k not in RATE_LIMIT_HEADERS]
                    headers.extend(rate_limit.header_items())
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if status["code"] is None:
                response = error_response(
                    500, ErrorCode.INTERNAL_ERROR, "An unexpected error occurred."
                )
                await response(scope, receive, send_with_id)
        finally:
            access_logger.info(
                "%s %s %s %.1fms",
                scope["method"],
                scope["path"],
                status["code"],
                (time.perf_counter() - started) * 1000,
                extra={
                    "http_method": scope["method"],
                    "http_path": scope["path"],
                    "http_status": status["code"],
                },
            )
            reset_request_id(token)


class BodySizeLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_bytes: int, path_limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.max_bytes)
        too_large = PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")

        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, too_large)
            return

        state = {"received": 0, "exceeded": False, "replaced": False, "started": False}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["exceeded"] = True
                    raise too_large
            return message

        async def guarded_send(message: Message) -> None:
            # Whatever the app made of the exception (FastAPI turns body errors
            # into a 400), the client gets the 413.
            if state["replaced"]:
                return
            if state["exceeded"] and message["type"] == "http.response.start":
                state["replaced"] = True
                await self._refuse(scope, receive, send, too_large)
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not state["exceeded"]:
                raise
            if not state["replaced"] and not state["started"]:
                await self._refuse(scope, receive, send, too_large)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, exc: PayloadTooLarge) -> None:
        response = error_response(exc.status_code, exc.error_code, exc.message)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
