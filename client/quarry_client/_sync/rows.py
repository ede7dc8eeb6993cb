# Generated from quarry_client/_async by client/scripts/unasync.py. Do not edit.
"""Timeseries rows and columns, bulk and NDJSON loads, range iteration, live rows
and the SSE stream (`rows.md`)."""

from __future__ import annotations

from quarry_client._sync.transport import Transport


class Rows:
    def __init__(self, transport: Transport) -> None:
        self._t = transport


class Columns:
    def __init__(self, transport: Transport) -> None:
        self._t = transport
