"""The HTTP layer every feature's router stands on.

- `deps`: the `Annotated` dependencies (`SettingsDep`, `DatabaseDep`,
  `ControlDbDep`, `CallerDep`, `BearerCallerDep`) and `Caller`; resolving a
  caller is also the rate limiter's door (`app.limits`).
- `handlers`: `error_response` and the exception handlers that turn every
  failure into the error envelope.
- `middleware`: request ids, access log, security headers, last-resort 500s,
  body-size limits.
- `openapi`, `docs`: the OpenAPI document (security schemes, the real error
  shape, `error_responses`) and the offline `/docs` and `/redoc` pages.
- `health`: `GET /health`; `protocol`: uvicorn's HTTP protocol answering what it
  cannot parse with the envelope.
"""

from app.http.deps import (
    Authenticator,
    BearerCallerDep,
    Caller,
    CallerDep,
    ControlDbDep,
    DatabaseDep,
    SettingsDep,
    get_bearer_caller,
    get_caller,
)
from app.http.handlers import error_response, install_error_handlers
from app.http.openapi import error_responses, register_schema

__all__ = [
    "Authenticator",
    "BearerCallerDep",
    "Caller",
    "CallerDep",
    "ControlDbDep",
    "DatabaseDep",
    "SettingsDep",
    "error_response",
    "error_responses",
    "get_bearer_caller",
    "get_caller",
    "install_error_handlers",
    "register_schema",
]
