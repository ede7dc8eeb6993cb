"""Domain exceptions of the auth package; `app.errors` renders them as the envelope.

Every 401 carries a `WWW-Authenticate` challenge, as RFC 9110 asks.
"""

from __future__ import annotations

from app.errors import ErrorCode, QuarryError

BEARER_CHALLENGE = 'Bearer realm="quarry"'
API_KEY_CHALLENGE = 'Api-Key realm="quarry"'


class Unauthorized(QuarryError):
    status_code = 401
    challenge = f"{BEARER_CHALLENGE}, {API_KEY_CHALLENGE}"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": self.challenge})


class NotAuthenticated(Unauthorized):
    error_code = ErrorCode.NOT_AUTHENTICATED
    message = "Credentials are required: send a Bearer token or an API key."


class InvalidCredentials(Unauthorized):
    error_code = ErrorCode.INVALID_CREDENTIALS
    message = "Invalid email or password."
    challenge = BEARER_CHALLENGE


class TokenExpired(Unauthorized):
    error_code = ErrorCode.TOKEN_EXPIRED
    message = "The token has expired."
    challenge = f'{BEARER_CHALLENGE}, error="invalid_token"'


class TokenInvalid(Unauthorized):
    error_code = ErrorCode.TOKEN_INVALID
    message = "The token is invalid."
    challenge = f'{BEARER_CHALLENGE}, error="invalid_token"'


class TokenRevoked(Unauthorized):
    error_code = ErrorCode.TOKEN_REVOKED
    message = "The token has been revoked; log in again."
    challenge = f'{BEARER_CHALLENGE}, error="invalid_token"'


class ApiKeyInvalid(Unauthorized):
    error_code = ErrorCode.API_KEY_INVALID
    message = "The API key is invalid, expired or revoked."
    challenge = API_KEY_CHALLENGE


class EmailNotVerified(QuarryError):
    status_code = 403
    error_code = ErrorCode.EMAIL_NOT_VERIFIED
    message = "Verify your email address first: follow the link in the mail we sent."


class BearerRequired(QuarryError):
    status_code = 403
    error_code = ErrorCode.FORBIDDEN
    message = "This endpoint needs a Bearer access token; an API key cannot be used here."


class WrongCurrentPassword(QuarryError):
    status_code = 403
    error_code = ErrorCode.INVALID_CREDENTIALS
    message = "The current password is wrong."


class VerifyTokenInvalid(QuarryError):
    status_code = 400
    error_code = ErrorCode.VERIFY_TOKEN_INVALID
    message = "The verification link is invalid or has expired; ask for a new one."


class ResetTokenInvalid(QuarryError):
    status_code = 400
    error_code = ErrorCode.RESET_TOKEN_INVALID
    message = "The password-reset link is invalid, used or expired; ask for a new one."


class TooManyAttempts(QuarryError):
    status_code = 429
    error_code = ErrorCode.TOO_MANY_ATTEMPTS

    def __init__(self, retry_after: int, *, what: str = "failed logins") -> None:
        super().__init__(
            f"Too many {what}; try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )


class ApiKeyLimit(QuarryError):
    status_code = 409
    error_code = ErrorCode.API_KEY_LIMIT


class ApiKeyNotFound(QuarryError):
    status_code = 404
    error_code = ErrorCode.API_KEY_NOT_FOUND
    message = "API key not found."
