"""The HTTP protocol `quarry serve` runs: uvicorn's, with the envelope for the
requests it refuses before the app sees them.

uvicorn answers a request it cannot parse (a request line or header block over
its parser's limits — about 64 KiB —, bytes that are not HTTP) with a plain-text
400 "Invalid HTTP request received." Quarry promises the error envelope on every
error, so the same 400 is written as the envelope, with a request id in the body
and in `X-Request-ID` like every other answer. Found by the OpenAPI fuzz test
(a generated 70 KB `fields` query parameter).
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.h11_impl import H11Protocol

from app.errors import ErrorCode
from app.kit import choose_request_id

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


def unparsable_request_answer(reason: str) -> bytes:
    """The full HTTP/1.1 answer (head and body) for a request that could not be parsed."""
    request_id = choose_request_id(None)
    body = json.dumps(
        {
            "success": False,
            "error_code": ErrorCode.BAD_REQUEST.value,
            "message": f"{reason.rstrip('.')}: the request line or headers could not be parsed "
            "(malformed, or longer than the server accepts; send large filters in a body).",
            "details": None,
            "request_id": request_id,
        }
    ).encode()
    head = (
        "HTTP/1.1 400 Bad Request\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"x-request-id: {request_id}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class EnvelopeH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        self.transport.write(unparsable_request_answer(msg))
        self.transport.close()


if HttpToolsProtocol is not None:

    class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
        def send_400_response(self, msg: str) -> None:
            self.transport.write(unparsable_request_answer(msg))
            self.transport.close()

    PROTOCOL: type = EnvelopeHttpToolsProtocol
else:  # pragma: no cover
    PROTOCOL = EnvelopeH11Protocol
