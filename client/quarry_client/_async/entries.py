"""File entries (upload, resumable download, text) and keyword search (`entries.md`)."""

from __future__ import annotations

from quarry_client._async.transport import AsyncTransport


class AsyncEntries:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport


class AsyncSearch:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport
