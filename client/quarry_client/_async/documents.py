"""Document CRUD, count, aggregate, bulk, and cursor iteration over every page (`crud.md`)."""

from __future__ import annotations

from quarry_client._async.transport import AsyncTransport


class AsyncDocuments:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport
