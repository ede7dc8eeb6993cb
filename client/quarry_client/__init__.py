"""Quarry's Python client: `Quarry` (blocking) and `AsyncQuarry` (asyncio), with
the same methods, typed requests and answers (`quarry_client.models`), and one
exception hierarchy (`quarry_client.errors`)."""

from quarry_client._async.client import AsyncQuarry
from quarry_client._sync.client import Quarry
from quarry_client.errors import (
    AuthenticationError,
    BadRequest,
    ChecksumMismatch,
    Conflict,
    GatewayTimeout,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuarryConnectionError,
    QuarryError,
    RangeNotSatisfiable,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    UnsupportedMediaType,
    ValidationError,
)
from quarry_client.retry import NO_RETRY, RetryPolicy

__all__ = [
    "NO_RETRY",
    "AsyncQuarry",
    "AuthenticationError",
    "BadRequest",
    "ChecksumMismatch",
    "Conflict",
    "GatewayTimeout",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "Quarry",
    "QuarryConnectionError",
    "QuarryError",
    "RangeNotSatisfiable",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "UnsupportedMediaType",
    "ValidationError",
]
