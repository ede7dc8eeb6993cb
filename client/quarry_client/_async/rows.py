"""Timeseries rows and columns, bulk and NDJSON loads, range iteration, live rows
and the SSE stream (`rows.md`)."""

from __future__ import annotations

from quarry_client._async.transport import AsyncTransport


class AsyncRows:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport


class AsyncColumns:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport
