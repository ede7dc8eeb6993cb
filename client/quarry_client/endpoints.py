"""Every operation the client calls, as data: method, path, request and answer
types, and the query parameters it may send.

The table is what `tests/client/test_drift.py` holds against the server's OpenAPI
document: each operation there is either called by the client (listed here) or
named in `UNCOVERED` with the reason, each endpoint here exists there with the
same request/answer schemas, and the query parameters the client sends are ones
the server reads. Route constants live in `quarry_client/routes/`, one module per
area; importing `ENDPOINTS` loads them all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

_REGISTRY: list[Endpoint] = []


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    #: The JSON request body's type (None: no body, or one the client streams).
    body: type[BaseModel] | None = None
    #: The JSON answer's type (None: a stream, a file, or no body).
    answer: type[BaseModel] | None = None
    #: Query parameters the client may send.
    query: tuple[str, ...] = ()
    #: False for the few routes that take no credentials (login, register...).
    auth: bool = True
    #: Whether sending it twice does no more than once (None: by its method); a
    #: 503 answer is retried only for these.
    idempotent: bool | None = None
    #: Whether it reads query parameters beyond `query` (seed 002's metadata
    #: search takes every other parameter as a filter).
    open_query: bool = False

    def url(self, **path_params: Any) -> str:
        """The path with its `{placeholders}` filled in, each value URL-quoted."""
        return self.path.format(
            **{name: quote(str(value), safe="") for name, value in path_params.items()}
        )


def endpoint(
    method: str,
    path: str,
    *,
    body: type[BaseModel] | None = None,
    answer: type[BaseModel] | None = None,
    query: tuple[str, ...] = (),
    auth: bool = True,
    idempotent: bool | None = None,
    open_query: bool = False,
) -> Endpoint:
    """Declare (and register) one operation."""
    declared = Endpoint(method, path, body, answer, query, auth, idempotent, open_query)
    _REGISTRY.append(declared)
    return declared


def all_endpoints() -> list[Endpoint]:
    """Every declared endpoint (importing each routes module first)."""
    from quarry_client import routes  # noqa: F401 - registers the route modules

    return list(_REGISTRY)


#: Operations of the server's OpenAPI document the client does not call, and why.
UNCOVERED: dict[tuple[str, str], str] = {
    ("GET", "/core/verify"): "the link a person clicks in the verification mail; "
    "the client verifies with POST /core/verify",
    ("GET", "/api/v1/health"): "the same report as GET /health, under the versioned prefix",
    ("DELETE", "/api/drop_database"): "the same operation as POST /api/drop_database",
    ("DELETE", "/api/drop_collections"): "the same operation as POST /api/drop_collections",
}
