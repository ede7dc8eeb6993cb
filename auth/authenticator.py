"""Turns request headers into a `Caller` (provided in the app's state as `Authenticator`).

`Authorization: Bearer <access JWT>`, `Authorization: Api-Key <key>` or
`X-API-Key: <key>`. A header with another scheme, an empty credential, or an
expired/revoked one is a 401 with `WWW-Authenticate` and the specific code.
"""

from __future__ import annotations

from app.db import Database
from app.http import Caller
from auth.errors import ApiKeyInvalid, BearerRequired, NotAuthenticated, TokenInvalid
from auth.service import AuthService, AuthState


def _split(authorization: str) -> tuple[str, str]:
    scheme, _, credentials = authorization.strip().partition(" ")
    return scheme.lower(), credentials.strip()


class HeaderAuthenticator:
    def __init__(self, *, database: Database, state: AuthState) -> None:
        self._database = database
        self._state = state

    def _service(self) -> AuthService:
        return AuthService(db=self._database.control, state=self._state)

    def _bearer(self, credentials: str) -> Caller:
        if not credentials:
            raise TokenInvalid("The Bearer token is missing.")
        return self._service().caller_from_access_token(credentials)

    async def authenticate(self, *, authorization: str | None, x_api_key: str | None) -> Caller:
        if authorization:
            scheme, credentials = _split(authorization)
            if scheme == "bearer":
                return self._bearer(credentials)
            if scheme == "api-key":
                if not credentials:
                    raise ApiKeyInvalid("The API key is missing.")
                return await self._service().caller_from_api_key(credentials)
            raise NotAuthenticated(
                "Unsupported authorization scheme: use 'Bearer <token>' or 'Api-Key <key>'."
            )
        if x_api_key is not None:
            if not x_api_key.strip():
                raise ApiKeyInvalid("The API key is missing.")
            return await self._service().caller_from_api_key(x_api_key.strip())
        raise NotAuthenticated()

    async def authenticate_bearer(
        self, *, authorization: str | None, x_api_key: str | None
    ) -> Caller:
        if authorization:
            scheme, credentials = _split(authorization)
            if scheme == "bearer":
                return self._bearer(credentials)
            if scheme == "api-key":
                raise BearerRequired()
            raise NotAuthenticated("Unsupported authorization scheme: use 'Bearer <token>'.")
        if x_api_key is not None:
            raise BearerRequired()
        raise NotAuthenticated("A Bearer access token is required.")
