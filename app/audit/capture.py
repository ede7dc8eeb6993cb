"""Capturing requests for the audit log: the middleware, `annotate`, and the
authenticator wrapper that remembers who called.

**Who the actor is.** The audit lifecycle wraps the app's `Authenticator` so that every
caller it resolves during a request lands in `scope["state"]["caller"]` (through a
context variable the middleware binds), whichever dependency or middleware asked;
an API key's public prefix is kept beside it. Handlers add what only they know
with `annotate` (the user of a successful login, the id of a created key).

**Which requests.** Every POST/PUT/PATCH/DELETE under `/api/` and `/core/` that
matches an endpoint gets exactly one record, whatever its status (refusals
included); a GET gets one only when its handler called `annotate` (a state
change behind a link, such as email verification). A request matching no
endpoint changed nothing and is left to the access log. `action` is
`<feature>.<endpoint name>` (`auth.login`, `management.create_database`) or the
route's own name when it has a dot (`datasets.create`).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from bson import ObjectId
from fastapi import FastAPI, Request
from fastapi.routing import iter_route_contexts
from pymongo.errors import PyMongoError
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.audit.chain import AuditLog
from app.audit.context import STATE_AUDIT, STATE_CALLER, STATE_KEY_PREFIX
from app.audit.records import AuditUnavailable
from app.http import Authenticator, Caller
from app.wiring import state_of

logger = logging.getLogger("quarry.audit")

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: `openapi_extra={READ_ONLY_KEY: True}` marks a POST route that changes nothing.
READ_ONLY_KEY = "x-read-only"
AUDITED_PREFIXES = ("/api/", "/core/")
_API_KEY_PREFIX = re.compile(r"^qk_([A-Za-z0-9]{1,32})_")


# ---------------------------------------------------------- request context

#: The `scope["state"]` of the request being served (bound by `AuditMiddleware`),
#: so the authenticator wrapper can leave the caller there.
_request_state: ContextVar[dict[str, Any] | None] = ContextVar(
    "quarry_audit_request_state", default=None
)


def annotate(
    request: Request,
    *,
    resource_type: str | None = None,
    resource_id: ObjectId | str | None = None,
    dataset_id: ObjectId | str | None = None,
    details: Mapping[str, Any] | None = None,
    actor_user_id: ObjectId | str | None = None,
) -> None:
    """Add what only the handler knows to this request's audit record (later calls
    override earlier ones; `details` are merged). Never pass a secret. On a GET,
    calling this is what makes the request recorded."""
    _annotate_state(
        request.scope.setdefault("state", {}),
        resource_type=resource_type,
        resource_id=resource_id,
        dataset_id=dataset_id,
        details=details,
        actor_user_id=actor_user_id,
    )


def annotate_current(
    *,
    resource_type: str | None = None,
    resource_id: ObjectId | str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """`annotate` for code below the router that has no `Request` (e.g. a shared
    helper that opens the database a request names); a no-op outside a request."""
    state = _request_state.get()
    if state is not None:
        _annotate_state(
            state, resource_type=resource_type, resource_id=resource_id, details=details
        )


def _annotate_state(
    state: dict[str, Any],
    *,
    resource_type: str | None = None,
    resource_id: ObjectId | str | None = None,
    dataset_id: ObjectId | str | None = None,
    details: Mapping[str, Any] | None = None,
    actor_user_id: ObjectId | str | None = None,
) -> None:
    notes: dict[str, Any] = state.setdefault(STATE_AUDIT, {})
    given = {
        "resource_type": resource_type,
        "resource_id": resource_id,
        "dataset_id": dataset_id,
        "actor_user_id": actor_user_id,
    }
    notes.update({key: value for key, value in given.items() if value is not None})
    if details:
        notes.setdefault("details", {}).update(details)


def _api_key_prefix(authorization: str | None, x_api_key: str | None) -> str | None:
    key = x_api_key
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        key = credentials.strip() if scheme.lower() == "api-key" else None
    match = _API_KEY_PREFIX.match(key.strip()) if key else None
    return match.group(1) if match else None


class CallerRecordingAuthenticator:
    """Wraps the app's authenticator: every caller it resolves during a request is
    left in that request's `scope["state"]`, for the audit record."""

    def __init__(self, inner: Authenticator) -> None:
        self.inner = inner

    def _remember(self, caller: Caller, authorization: str | None, x_api_key: str | None) -> None:
        state = _request_state.get()
        if state is None:
            return
        state[STATE_CALLER] = caller
        if caller.method == "api_key":
            state[STATE_KEY_PREFIX] = _api_key_prefix(authorization, x_api_key)

    async def authenticate(self, *, authorization: str | None, x_api_key: str | None) -> Caller:
        caller = await self.inner.authenticate(authorization=authorization, x_api_key=x_api_key)
        self._remember(caller, authorization, x_api_key)
        return caller

    async def authenticate_bearer(
        self, *, authorization: str | None, x_api_key: str | None
    ) -> Caller:
        caller = await self.inner.authenticate_bearer(
            authorization=authorization, x_api_key=x_api_key
        )
        self._remember(caller, authorization, x_api_key)
        return caller

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# ------------------------------------------------------------------ middleware


@dataclass(frozen=True)
class AuditedRoute:
    """An endpoint under `/api/` or `/core/` and the action its records carry."""

    path: str
    methods: frozenset[str]
    action: str
    pattern: re.Pattern[str]
    #: A POST that only reads (search, batch reads): recorded like a GET, only
    #: when the handler annotates it (e.g. a read through an ACL override).
    read_only: bool = False


def action_name(name: str, module: str) -> str:
    """`<feature>.<endpoint>`: the feature is the package of the endpoint's router
    module (`data_api.documents.router` → `documents`); a dotted name is kept."""
    if "." in name:
        return name
    parts = module.split(".")
    if len(parts) > 1 and parts[-1] in ("router", "routes"):
        feature = parts[-2]
    else:
        feature = parts[-1].removesuffix("_router")
    return f"{feature}.{name}"


def audited_routes(app: FastAPI) -> list[AuditedRoute]:
    table = []
    for route in iter_route_contexts(app.routes):
        path, methods, endpoint = route.path, route.methods, route.endpoint
        if not path or not methods or endpoint is None or not path.startswith(AUDITED_PREFIXES):
            continue
        pattern, _, _ = compile_path(path)
        action = action_name(str(route.name), endpoint.__module__)
        read_only = (getattr(route, "openapi_extra", None) or {}).get(READ_ONLY_KEY) is True
        table.append(AuditedRoute(path, frozenset(methods), action, pattern, read_only))
    return table


def _resource(route: AuditedRoute, params: dict[str, str], scope: Scope) -> dict[str, Any]:
    """Defaults from the path: the last path parameter is the resource (`key_id` →
    type `key`; `{id}` → the segment before it, singular), a `datasets/{x}`
    segment names the dataset; without path parameters, a `*_id` query parameter."""
    found: dict[str, Any] = {}
    segments = route.path.strip("/").split("/")
    for before, segment in itertools.pairwise(segments):
        if before == "datasets" and segment.startswith("{"):
            found["dataset_id"] = params.get(segment.strip("{}").split(":")[0])
    if not params:
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        params = {k: v for k, v in query if k.endswith("_id") and len(v) <= 64}
    if params:
        name, value = list(params.items())[-1]
        if name == "id":
            segment = next(
                (b for b, s in itertools.pairwise(segments) if s.startswith("{id")),
                "resource",
            )
            found["resource_type"] = segment.removesuffix("s")
        else:
            found["resource_type"] = name.removesuffix("_id")
        found["resource_id"] = value
    return found


class AuditMiddleware:
    """One record per mutating request under `/api/` and `/core/`, written before the
    answer starts; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: list[AuditedRoute] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(AUDITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        token = _request_state.set(state)
        written = False

        async def send_after_record(message: Message) -> None:
            nonlocal written
            if message["type"] == "http.response.start" and not written:
                written = True
                await self._record(scope, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_after_record)
        except Exception:
            if not written:
                written = True
                await self._record(scope, 500)
            raise
        finally:
            _request_state.reset(token)

    def _match(self, scope: Scope) -> tuple[AuditedRoute, dict[str, str]] | None:
        if self._routes is None:
            self._routes = audited_routes(scope["app"])
        for route in self._routes:
            found = route.pattern.match(scope["path"])
            if found is not None and scope["method"] in route.methods:
                return route, found.groupdict()
        return None

    async def _record(self, scope: Scope, status: int) -> None:
        notes: dict[str, Any] = scope["state"].get(STATE_AUDIT, {})
        if scope["method"] not in MUTATING_METHODS and not notes:
            return
        matched = self._match(scope)
        audit_log = state_of(scope["app"]).find(AuditLog)
        if matched is None or audit_log is None:
            return
        if matched[0].read_only and not notes:
            return
        if status == 503:
            # The database has just failed this request (which changed nothing, or is
            # undone by the maintenance task): a record could not be written either,
            # and trying would hold the answer for a server-selection timeout.
            logger.warning(
                "audit record of %s %s (status 503) not written: database unavailable",
                scope["method"],
                scope["path"],
            )
            return
        route, params = matched
        fields = {**_resource(route, params, scope), **notes}
        details = {"method": scope["method"], "path": scope["path"], **fields.get("details", {})}
        try:
            await audit_log.append(
                action=route.action,
                resource_type=fields.get("resource_type"),
                resource_id=fields.get("resource_id"),
                dataset_id=fields.get("dataset_id"),
                actor_user_id=fields.get("actor_user_id"),
                status=status,
                details=details,
                request=Request(scope),  # the scope only: the body is never read here
            )
        except (PyMongoError, AuditUnavailable) as exc:
            logger.warning(
                "audit record of %s %s (status %s) not written: %s",
                scope["method"],
                scope["path"],
                status,
                type(exc).__name__,
            )
        except Exception:
            # A bug here must not cost the client the answer to a mutation that happened.
            logger.exception("audit record of %s %s not written", scope["method"], scope["path"])
