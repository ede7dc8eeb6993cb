"""Logical databases, collections, field schemas, import and export (`management.md`)."""

from __future__ import annotations

from quarry_client._async.transport import AsyncTransport


class AsyncDatabases:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport
