"""Accounts, tokens and API keys (`auth.md`)."""

from __future__ import annotations

from quarry_client import models as m
from quarry_client.endpoints import endpoint

REGISTER = endpoint(
    "POST", "/core/register", body=m.RegisterRequest, answer=m.AuthMessageAnswer, auth=False
)
VERIFY = endpoint(
    "POST", "/core/verify", body=m.TokenRequest, answer=m.AuthMessageAnswer, auth=False
)
RESEND_VERIFICATION = endpoint(
    "POST",
    "/core/resend-verification",
    body=m.EmailRequest,
    answer=m.AuthMessageAnswer,
    auth=False,
)
LOGIN = endpoint("POST", "/core/login", body=m.LoginRequest, answer=m.TokenPair, auth=False)
REFRESH = endpoint(
    "POST", "/core/token/refresh", body=m.RefreshRequest, answer=m.TokenPair, auth=False
)
LOGOUT = endpoint(
    "POST", "/core/logout", body=m.RefreshRequest, answer=m.AuthMessageAnswer, auth=False
)
LOGOUT_ALL = endpoint("POST", "/core/logout-all", answer=m.AuthMessageAnswer)
FORGOT_PASSWORD = endpoint(
    "POST", "/core/password/forgot", body=m.EmailRequest, answer=m.AuthMessageAnswer, auth=False
)
RESET_PASSWORD = endpoint(
    "POST",
    "/core/password/reset",
    body=m.ResetPasswordRequest,
    answer=m.AuthMessageAnswer,
    auth=False,
)
CHANGE_PASSWORD = endpoint(
    "POST", "/core/password/change", body=m.ChangePasswordRequest, answer=m.AuthMessageAnswer
)
ME = endpoint("GET", "/core/me", answer=m.UserAnswer)
UPDATE_ME = endpoint("PATCH", "/core/me", body=m.UpdateMeRequest, answer=m.UserAnswer)
HEALTH = endpoint("GET", "/health", answer=m.HealthReport, auth=False)

LIST_KEYS = endpoint("GET", "/api/api_keys", answer=m.ApiKeyListAnswer)
CREATE_KEY = endpoint(
    "POST", "/api/api_keys", body=m.CreateApiKeyRequest, answer=m.ApiKeyCreatedAnswer
)
DELETE_KEY = endpoint("DELETE", "/api/api_keys/{key_id}", answer=m.AuthMessageAnswer)
