# Generated from quarry_client/_async by client/scripts/unasync.py. Do not edit.
"""Document CRUD, count, aggregate, bulk, and cursor iteration over every page (`crud.md`)."""

from __future__ import annotations

from quarry_client._sync.transport import Transport


class Documents:
    def __init__(self, transport: Transport) -> None:
        self._t = transport
