"""What a record says about the request behind it (id, address, user agent,
caller), read from the request's `scope["state"]`, where the request context,
the caller-recording authenticator and `annotate` leave it.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope

from app.http import Caller

USER_AGENT_MAX = 512

STATE_AUDIT = "audit"
STATE_CALLER = "caller"
STATE_KEY_PREFIX = "caller_key_prefix"
#: Quarry API keys are `qk_<public prefix>_<secret>`; only the prefix is recorded.


@dataclass
class RequestContext:
    """What a record says about the request behind it."""

    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    caller: Caller | None = None
    api_key_prefix: str | None = None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def request_context(scope: Scope) -> RequestContext:
    state = scope.get("state", {})
    client = scope.get("client")
    agent = _header(scope, b"user-agent")
    caller = state.get(STATE_CALLER)
    return RequestContext(
        request_id=state.get("request_id"),
        ip=client[0] if client else None,
        user_agent=agent[:USER_AGENT_MAX] if agent is not None else None,
        caller=caller if isinstance(caller, Caller) else None,
        api_key_prefix=state.get(STATE_KEY_PREFIX),
    )
