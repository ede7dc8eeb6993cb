"""One exception hierarchy for everything the server refuses.

Every error answer from Quarry is the envelope of `conventions.md`
(`error_code`, `message`, `details`, `request_id`); each becomes a `QuarryError`
subclass chosen by status code, carrying those fields, so callers can catch by
kind (`NotFound`) or compare the stable `error_code`. A request that never got an
answer (connection refused, timeout) is a `QuarryConnectionError`."""

from __future__ import annotations

import json
from typing import Any

import httpx


class QuarryError(Exception):
    """The server refused the request (or could not be reached)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        details: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_code = error_code
        self.details = details
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        head = f"{self.error_code}: {self.message}" if self.error_code else self.message
        return f"{head} (request {self.request_id})" if self.request_id else head


class QuarryConnectionError(QuarryError):
    """No answer: the server could not be reached or did not answer in time."""


class BadRequest(QuarryError):
    """400: malformed JSON, a bad filter, a confirmation mismatch, a bad cursor."""


class AuthenticationError(QuarryError):
    """401: missing, invalid, expired or revoked credentials."""


class PermissionDenied(QuarryError):
    """403: authenticated but not allowed."""


class NotFound(QuarryError):
    """404: no such resource (or it belongs to someone else)."""


class Conflict(QuarryError):
    """409: a duplicate name, a unique-field violation, a busy resource."""


class PayloadTooLarge(QuarryError):
    """413: a body, file or result over a limit."""


class UnsupportedMediaType(QuarryError):
    """415: the server does not take that content type here."""


class RangeNotSatisfiable(QuarryError):
    """416: a download range outside the file."""


class ValidationError(QuarryError):
    """422: the request's fields, names or ids do not pass the rules."""


class RateLimited(QuarryError):
    """429: too many requests; `retry_after` says when to come back."""


class ServerError(QuarryError):
    """500 (or any other 5xx not listed here)."""


class ServiceUnavailable(QuarryError):
    """503: the database is unavailable; `retry_after` says when to come back."""


class GatewayTimeout(QuarryError):
    """504: the database did not finish in time."""


class ChecksumMismatch(QuarryError):
    """A downloaded file's SHA-256 is not the entry's (the bad file is removed)."""


BY_STATUS: dict[int, type[QuarryError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    416: RangeNotSatisfiable,
    422: ValidationError,
    429: RateLimited,
    503: ServiceUnavailable,
    504: GatewayTimeout,
}


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), if present."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(response: httpx.Response) -> QuarryError:
    """The exception for an error answer whose body has been read."""
    envelope: dict[str, Any] = {}
    try:
        parsed = json.loads(response.content)
        if isinstance(parsed, dict):
            envelope = parsed
    except ValueError:
        pass
    message = envelope.get("message") or response.text[:300] or response.reason_phrase
    if response.is_redirect:
        message = (
            f"The server answered {response.status_code} {response.reason_phrase}, to "
            f"{response.headers.get('Location')}; redirects are not followed, so that "
            "credentials never go to another address: give the client the final URL."
        )
    kind = BY_STATUS.get(response.status_code)
    if kind is None:
        kind = ServerError if response.status_code >= 500 else QuarryError
    details = envelope.get("details")
    return kind(
        str(message),
        status_code=response.status_code,
        error_code=envelope.get("error_code"),
        details=details if isinstance(details, list) else None,
        request_id=envelope.get("request_id") or response.headers.get("X-Request-ID"),
        retry_after=retry_after_seconds(response),
    )
