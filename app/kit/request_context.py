"""The request id of the request being served, visible to handlers and log records.

A context variable rather than `request.state` so that log lines written deep in
a service (or by a library) carry the id without it being passed around.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("quarry_request_id", default=None)

# A client-supplied id is echoed only when it is short and harmless in a log line.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str | None:
    return _request_id.get()


def choose_request_id(client_value: str | None) -> str:
    if client_value and _SANE_REQUEST_ID.fullmatch(client_value):
        return client_value
    return str(uuid.uuid4())


def bind_request_id(request_id: str | None) -> object:
    return _request_id.set(request_id)


def reset_request_id(token: object) -> None:
    _request_id.reset(token)  # type: ignore[arg-type]
