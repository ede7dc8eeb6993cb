# Generated from quarry_client/_async by client/scripts/unasync.py. Do not edit.
"""Accounts and tokens (`client.auth`) and API keys (`client.api_keys`)."""

from __future__ import annotations

from quarry_client import models as m
from quarry_client._sync.transport import Transport
from quarry_client.retry import NO_RETRY
from quarry_client.routes import auth as r


class Auth:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def register(
        self, email: str, password: str, *, first_name: str, last_name: str
    ) -> m.AuthMessageAnswer:
        """Create an account; the server mails a verification link."""
        body = m.RegisterRequest(
            email=email, password=password, firstName=first_name, lastName=last_name
        )
        answer: m.AuthMessageAnswer = self._t.call(r.REGISTER, body=body)
        return answer

    def verify(self, token: str) -> m.AuthMessageAnswer:
        """Verify an email address with the token from the mailed link."""
        answer: m.AuthMessageAnswer = self._t.call(r.VERIFY, body=m.TokenRequest(token=token))
        return answer

    def resend_verification(self, email: str) -> m.AuthMessageAnswer:
        answer: m.AuthMessageAnswer = self._t.call(
            r.RESEND_VERIFICATION, body=m.EmailRequest(email=email)
        )
        return answer

    def login(self, email: str, password: str) -> m.TokenPair:
        """Log in; the client then uses (and refreshes) the pair it got."""
        pair: m.TokenPair = self._t.call(
            r.LOGIN, body=m.LoginRequest(email=email, password=password)
        )
        self._t.credentials.api_key = None
        self._t.credentials.store(pair)
        return pair

    def refresh(self) -> m.TokenPair | None:
        """Trade the refresh token for a new pair now (the client also does this
        by itself when the access token expires); None when another process
        sharing the pair had just refreshed it (the client took that pair)."""
        return self._t.refresh()

    def logout(self) -> m.AuthMessageAnswer:
        """Revoke this session's refresh token family and forget the pair."""
        refresh = self._t.credentials.refresh or ""
        answer: m.AuthMessageAnswer = self._t.call(r.LOGOUT, body=m.RefreshRequest(refresh=refresh))
        self._t.credentials.access = self._t.credentials.refresh = None
        return answer

    def logout_all(self) -> m.AuthMessageAnswer:
        """Revoke every refresh token of the user."""
        answer: m.AuthMessageAnswer = self._t.call(r.LOGOUT_ALL)
        return answer

    def forgot_password(self, email: str) -> m.AuthMessageAnswer:
        answer: m.AuthMessageAnswer = self._t.call(
            r.FORGOT_PASSWORD, body=m.EmailRequest(email=email)
        )
        return answer

    def reset_password(self, token: str, password: str) -> m.AuthMessageAnswer:
        answer: m.AuthMessageAnswer = self._t.call(
            r.RESET_PASSWORD, body=m.ResetPasswordRequest(token=token, password=password)
        )
        return answer

    def change_password(self, current: str, new: str) -> m.AuthMessageAnswer:
        body = m.ChangePasswordRequest(current_password=current, new_password=new)
        answer: m.AuthMessageAnswer = self._t.call(r.CHANGE_PASSWORD, body=body)
        return answer

    def me(self) -> m.UserOut:
        answer: m.UserAnswer = self._t.call(r.ME)
        return answer.data

    def update_me(
        self, *, first_name: str | None = None, last_name: str | None = None
    ) -> m.UserOut:
        changes = {"firstName": first_name, "lastName": last_name}
        body = m.UpdateMeRequest(**{k: v for k, v in changes.items() if v is not None})
        answer: m.UserAnswer = self._t.call(r.UPDATE_ME, body=body)
        return answer.data

    def health(self) -> m.HealthReport:
        """The server's health report (no credentials; not retried)."""
        response = self._t.request("GET", r.HEALTH.path, auth=False, retry=NO_RETRY)
        return m.HealthReport.model_validate_json(response.content)


class ApiKeys:
    """Long-lived keys for backends and scripts (managed with a login, not a key)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, name: str, *, expires_in_days: int | None = None) -> m.ApiKeyCreatedOut:
        """A new key; its `key` is shown here once and never again."""
        body = m.CreateApiKeyRequest(name=name)
        if expires_in_days is not None:
            body.expires_in_days = expires_in_days
        answer: m.ApiKeyCreatedAnswer = self._t.call(r.CREATE_KEY, body=body)
        return answer.data

    def list(self) -> list[m.ApiKeyOut]:
        answer: m.ApiKeyListAnswer = self._t.call(r.LIST_KEYS)
        return answer.data

    def revoke(self, key_id: str) -> None:
        """The key stops working at once."""
        self._t.call(r.DELETE_KEY, path={"key_id": key_id})
