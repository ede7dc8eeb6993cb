"""Shared FastAPI dependencies as `Annotated` aliases.

Chained client → repository → service: feature packages build their own service
dependencies on top of these. `CallerDep` resolves `Authorization: Bearer`,
`Authorization: Api-Key` and `X-API-Key` into one `Caller`; `BearerCallerDep`
accepts an access token only (API-key management: a leaked key must not mint
keys). The resolving itself is the auth feature's (it provides the
`Authenticator` in the app's state), so the core does not import a feature; the
security schemes declared here make every endpoint that uses them show its lock
in the OpenAPI document.

Both caller dependencies are also the rate limiter's door (`app.limits`): once
the caller is known, the request is charged against the user's budgets, so every
authenticated endpoint is limited and none can forget it; a request that is not
authenticated (401) is never charged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

from bson import ObjectId
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.db import Database, DatabaseHandle
from app.limits import charge_request
from app.settings import Settings
from app.wiring import request_state


def get_settings(request: Request) -> Settings:
    return request_state(request).settings


def get_database(request: Request) -> Database:
    return request_state(request).database


def get_control_db(database: Annotated[Database, Depends(get_database)]) -> DatabaseHandle:
    return database.control


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
ControlDbDep = Annotated[DatabaseHandle, Depends(get_control_db)]


@dataclass(frozen=True)
class Caller:
    """Who is calling: the user, and whether by access token or by API key."""

    user_id: ObjectId
    method: Literal["bearer", "api_key"]
    key_id: ObjectId | None = None
    #: The refresh-token family of a Bearer caller's session, when known.
    session_family: str | None = None


class Authenticator(Protocol):
    async def authenticate(self, *, authorization: str | None, x_api_key: str | None) -> Caller: ...

    async def authenticate_bearer(
        self, *, authorization: str | None, x_api_key: str | None
    ) -> Caller: ...


_bearer_scheme = HTTPBearer(auto_error=False, scheme_name="BearerAuth")
_api_key_scheme = APIKeyHeader(name="Authorization", auto_error=False, scheme_name="ApiKeyAuth")
_api_key_header_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="ApiKeyHeader"
)


def _authenticator(request: Request) -> Authenticator:
    return request_state(request).get(Authenticator)


async def get_caller(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
    _api_key: Annotated[str | None, Depends(_api_key_scheme)],
    _api_key_header: Annotated[str | None, Depends(_api_key_header_scheme)],
) -> Caller:
    caller = await _authenticator(request).authenticate(
        authorization=request.headers.get("authorization"),
        x_api_key=request.headers.get("x-api-key"),
    )
    await charge_request(request, caller.user_id)
    return caller


async def get_bearer_caller(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
) -> Caller:
    caller = await _authenticator(request).authenticate_bearer(
        authorization=request.headers.get("authorization"),
        x_api_key=request.headers.get("x-api-key"),
    )
    await charge_request(request, caller.user_id)
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]
BearerCallerDep = Annotated[Caller, Depends(get_bearer_caller)]
