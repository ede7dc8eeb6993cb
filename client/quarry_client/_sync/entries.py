# Generated from quarry_client/_async by client/scripts/unasync.py. Do not edit.
"""File entries (upload, resumable download, text) and keyword search (`entries.md`)."""

from __future__ import annotations

from quarry_client._sync.transport import Transport


class Entries:
    def __init__(self, transport: Transport) -> None:
        self._t = transport


class Search:
    def __init__(self, transport: Transport) -> None:
        self._t = transport
