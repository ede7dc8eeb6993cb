"""`AsyncQuarry`: the async client, one attribute per area of the API.

    async with AsyncQuarry("http://localhost:8000", api_key="qk_...") as quarry:
        async for document in quarry.documents.iterate(database_id, "users"):
            ...

`Quarry` (in `quarry_client._sync.client`) is the same class without `async`."""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType

import httpx

from quarry_client._async.auth import AsyncApiKeys, AsyncAuth
from quarry_client._async.databases import AsyncDatabases
from quarry_client._async.datasets import AsyncAudit, AsyncDatasets, AsyncTags
from quarry_client._async.documents import AsyncDocuments
from quarry_client._async.entries import AsyncEntries, AsyncSearch
from quarry_client._async.rows import AsyncColumns, AsyncRows
from quarry_client._async.transport import AsyncTransport
from quarry_client.models import TokenPair
from quarry_client.retry import RetryPolicy
from quarry_client.tokens import Credentials, SharedTokens

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class AsyncQuarry:
    """A Quarry server, reached with an API key or a login (refreshed as needed)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        on_tokens: Callable[[TokenPair], None] | None = None,
        shared_tokens: SharedTokens | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        credentials = Credentials(
            api_key=api_key,
            access=access_token,
            refresh=refresh_token,
            on_tokens=on_tokens,
            shared=shared_tokens,
        )
        self.transport = AsyncTransport(
            base_url,
            credentials=credentials,
            retry=retry or RetryPolicy(),
            timeout=timeout,
            http=http,
        )
        self.auth = AsyncAuth(self.transport)
        self.api_keys = AsyncApiKeys(self.transport)
        self.databases = AsyncDatabases(self.transport)
        self.documents = AsyncDocuments(self.transport)
        self.datasets = AsyncDatasets(self.transport)
        self.tags = AsyncTags(self.transport)
        self.audit = AsyncAudit(self.transport)
        self.entries = AsyncEntries(self.transport)
        self.search = AsyncSearch(self.transport)
        self.rows = AsyncRows(self.transport)
        self.columns = AsyncColumns(self.transport)

    @classmethod
    def from_env(cls, **options: object) -> AsyncQuarry:
        """`QUARRY_URL` and `QUARRY_API_KEY` from the environment (for scripts)."""
        url = os.environ.get("QUARRY_URL")
        if not url:
            raise ValueError("QUARRY_URL is not set")
        return cls(url, api_key=os.environ.get("QUARRY_API_KEY"), **options)  # type: ignore[arg-type]

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> AsyncQuarry:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
