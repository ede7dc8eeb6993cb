# Generated from quarry_client/_async by client/scripts/unasync.py. Do not edit.
"""Datasets, their items, subsets, shares and tags, access checks, and the audit
trail (`datasets.md`)."""

from __future__ import annotations

from quarry_client._sync.transport import Transport


class Datasets:
    def __init__(self, transport: Transport) -> None:
        self._t = transport


class Tags:
    def __init__(self, transport: Transport) -> None:
        self._t = transport


class Audit:
    def __init__(self, transport: Transport) -> None:
        self._t = transport
