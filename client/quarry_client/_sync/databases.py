# Generated from quarry_client/_async by client/scripts/unasync.py. Do not edit.
"""Logical databases, collections, field schemas, import and export (`management.md`)."""

from __future__ import annotations

from quarry_client._sync.transport import Transport


class Databases:
    def __init__(self, transport: Transport) -> None:
        self._t = transport
