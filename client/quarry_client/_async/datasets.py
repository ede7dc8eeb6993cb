"""Datasets, their items, subsets, shares and tags, access checks, and the audit
trail (`datasets.md`)."""

from __future__ import annotations

from quarry_client._async.transport import AsyncTransport


class AsyncDatasets:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport


class AsyncTags:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport


class AsyncAudit:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport
