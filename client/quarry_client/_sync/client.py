# Generated from quarry_client/_async by client/scripts/unasync.py. Do not edit.
"""`Quarry`: the async client, one attribute per area of the API.

    with Quarry("http://localhost:8000", api_key="qk_...") as quarry:
        for document in quarry.documents.iterate(database_id, "users"):
            ...

`Quarry` (in `quarry_client._sync.client`) is the same class without `async`."""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType

import httpx

from quarry_client._sync.auth import ApiKeys, Auth
from quarry_client._sync.databases import Databases
from quarry_client._sync.datasets import Audit, Datasets, Tags
from quarry_client._sync.documents import Documents
from quarry_client._sync.entries import Entries, Search
from quarry_client._sync.rows import Columns, Rows
from quarry_client._sync.transport import Transport
from quarry_client.models import TokenPair
from quarry_client.retry import RetryPolicy
from quarry_client.tokens import Credentials, SharedTokens

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class Quarry:
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
        http: httpx.Client | None = None,
    ) -> None:
        credentials = Credentials(
            api_key=api_key,
            access=access_token,
            refresh=refresh_token,
            on_tokens=on_tokens,
            shared=shared_tokens,
        )
        self.transport = Transport(
            base_url,
            credentials=credentials,
            retry=retry or RetryPolicy(),
            timeout=timeout,
            http=http,
        )
        self.auth = Auth(self.transport)
        self.api_keys = ApiKeys(self.transport)
        self.databases = Databases(self.transport)
        self.documents = Documents(self.transport)
        self.datasets = Datasets(self.transport)
        self.tags = Tags(self.transport)
        self.audit = Audit(self.transport)
        self.entries = Entries(self.transport)
        self.search = Search(self.transport)
        self.rows = Rows(self.transport)
        self.columns = Columns(self.transport)

    @classmethod
    def from_env(cls, **options: object) -> Quarry:
        """`QUARRY_URL` and `QUARRY_API_KEY` from the environment (for scripts)."""
        url = os.environ.get("QUARRY_URL")
        if not url:
            raise ValueError("QUARRY_URL is not set")
        return cls(url, api_key=os.environ.get("QUARRY_API_KEY"), **options)  # type: ignore[arg-type]

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Quarry:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
