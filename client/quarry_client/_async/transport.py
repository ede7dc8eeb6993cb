"""The one door every request goes through: credentials, automatic refresh of an
expired access token, retries on 429/503 honouring `Retry-After`, and turning
error answers into `QuarryError`s.

Bodies that are streamed (an import file, an NDJSON load) are given as factories
— a callable that returns a fresh iterable — so a retried request sends the body
again from its start."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pydantic
from pydantic import BaseModel

from quarry_client._concurrency import AsyncLock, async_sleep
from quarry_client.endpoints import Endpoint
from quarry_client.errors import QuarryConnectionError, QuarryError, error_from_response
from quarry_client.errors import ValidationError as RequestInvalid
from quarry_client.models import TokenPair
from quarry_client.retry import RetryPolicy
from quarry_client.tokens import Credentials

#: A request body: bytes, or a factory of a fresh iterable of chunks (replayable).
Content = bytes | str | Callable[[], AsyncIterable[bytes]] | None
#: Multipart files, or a factory of them (so a retry can reopen/rewind the files).
Files = Any

USER_AGENT = "quarry-client/0.1"
#: How often a refresh looks again whether another process let go of the pair.
SHARED_LOCK_POLL_SECONDS = 0.05
#: Uploads the server works on after their last byte (an import, an NDJSON load, a
#: batch of files) may wait this long for the answer (`transfer_timeout`).
TRANSFER_READ_SECONDS = 3600.0
#: Methods whose repetition does no more than doing them once (RFC 9110 9.2.2);
#: PATCH is not one (`$inc`), nor a PUT of `/api/crud` (an update with operators),
#: which the documents resource declares as such.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class AsyncTransport:
    def __init__(
        self,
        base_url: str,
        *,
        credentials: Credentials,
        retry: RetryPolicy,
        timeout: float | httpx.Timeout,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.retry = retry
        self.http = http or httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, headers={"User-Agent": USER_AGENT}
        )
        self._owns_http = http is None
        self._refresh_lock = AsyncLock()

    def transfer_timeout(self) -> httpx.Timeout:
        """The client's timeout with a read limit of at least an hour, for uploads
        the server works on after their last byte."""
        base = self.http.timeout
        read = None if base.read is None else max(base.read, TRANSFER_READ_SECONDS)
        return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def call(
        self,
        endpoint: Endpoint,
        *,
        path: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        body: BaseModel | Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one declared operation with a JSON body; its parsed answer (or None).

        The query parameters must be ones the operation declares, and a body given
        as a mapping is checked against the operation's request type before it is
        sent, so a resource cannot drift from the endpoint table (and the table is
        held against the server's OpenAPI document by the tests)."""
        unknown = set(params or ()) - set(endpoint.query)
        if unknown and not endpoint.open_query:
            raise ValueError(
                f"{endpoint.method} {endpoint.path} declares no query parameter {sorted(unknown)}"
            )
        payload: Any = None
        if body is not None and endpoint.body is not None and not isinstance(body, BaseModel):
            body = _checked(endpoint, body)
        if isinstance(body, BaseModel):
            payload = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
        elif body is not None:
            payload = dict(body)
        response = await self.request(
            endpoint.method,
            endpoint.url(**(path or {})),
            params=params,
            json=payload,
            auth=endpoint.auth,
            idempotent=endpoint.idempotent,
        )
        if endpoint.answer is None:
            return None
        try:
            return endpoint.answer.model_validate_json(response.content)
        except pydantic.ValidationError as exc:
            raise QuarryError(
                f"{endpoint.method} {endpoint.path} answered {response.status_code} with a "
                f"body that is not a {endpoint.answer.__name__} (is {self.base_url} a Quarry "
                "server of this version?)",
                status_code=response.status_code,
                request_id=response.headers.get("X-Request-ID"),
            ) from exc

    async def every_page(
        self,
        endpoint: Endpoint,
        *,
        path: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        page_size: int,
    ) -> AsyncIterator[Any]:
        """The `data` of a page-numbered listing (`page`, `page_size`,
        `pagination.has_next`), page after page."""
        page = 1
        while True:
            numbered = {**(params or {}), "page": page, "page_size": page_size}
            answer = await self.call(endpoint, path=path, params=numbered)
            for item in answer.data:
                yield item
            if not answer.pagination.has_next or not answer.data:
                return
            page += 1

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: Content = None,
        files: Files = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        retry: RetryPolicy | None = None,
        http_timeout: httpx.Timeout | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send and read the whole answer; raise `QuarryError` for an error answer."""
        async with self.stream(
            method,
            url,
            params=params,
            json=json,
            content=content,
            files=files,
            data=data,
            headers=headers,
            auth=auth,
            retry=retry,
            http_timeout=http_timeout,
            idempotent=idempotent,
        ) as response:
            await response.aread()
            return response

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: Content = None,
        files: Files = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        retry: RetryPolicy | None = None,
        http_timeout: httpx.Timeout | None = None,
        idempotent: bool | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """A successful (2xx) answer whose body is still to be read; the error
        answers are read, retried or raised before this yields, and so is a
        redirect (never followed: credentials stay with this server).
        `http_timeout` replaces the client's for this request (e.g. a stream quiet
        for longer than a read). A 503 is retried only for an `idempotent` request
        (by default: GET, HEAD, PUT of a whole resource, DELETE), since the server
        may have applied a write it could not confirm; a 429 and a refused
        connection are always retried (nothing was done)."""
        policy = retry or self.retry
        retried = policy.retried_statuses(
            method.upper() in IDEMPOTENT_METHODS if idempotent is None else idempotent
        )
        attempt = 0
        refreshed = False
        while True:
            sent_with = self.credentials.access
            try:
                response = await self._send(
                    method, url, params, json, content, files, data, headers, auth, http_timeout
                )
            except httpx.ConnectError as exc:
                wait = policy.delay(attempt, None)
                if wait is None:
                    raise QuarryConnectionError(f"Cannot reach {self.base_url}: {exc}") from exc
                attempt += 1
                await async_sleep(wait)
                continue
            except httpx.TransportError as exc:
                raise self._connection_error(exc) from exc
            if response.is_success:
                try:
                    yield response
                except httpx.TransportError as exc:
                    raise self._connection_error(exc) from exc
                finally:
                    await response.aclose()
                return
            try:
                await response.aread()
            except httpx.TransportError as exc:
                raise self._connection_error(exc) from exc
            finally:
                await response.aclose()
            error = error_from_response(response)
            if (
                auth
                and not refreshed
                and error.error_code == "TOKEN_EXPIRED"
                and self.credentials.refresh
            ):
                refreshed = True
                await self.refresh(stale=sent_with)
                continue
            wait = (
                policy.delay(attempt, error.retry_after)
                if response.status_code in retried
                else None
            )
            if wait is None:
                raise error
            attempt += 1
            await async_sleep(wait)

    def _connection_error(self, exc: httpx.TransportError) -> QuarryConnectionError:
        """A request or answer cut short: a timeout, a dropped connection."""
        if isinstance(exc, httpx.TimeoutException):
            return QuarryConnectionError(
                f"{self.base_url} did not answer in time ({type(exc).__name__})."
            )
        return QuarryConnectionError(f"Talking to {self.base_url} failed: {exc!r}")

    async def refresh(self, *, stale: str | None = None) -> TokenPair | None:
        """Trade the refresh token for a new pair (once, however many requests
        found the access token expired at the same time, in this process or in
        others sharing the pair); the new pair, or None when another request or
        process had already refreshed (its pair is then in `credentials`)."""
        async with self._refresh_lock:
            if stale is not None and self.credentials.access != stale:
                return None
            while not self.credentials.try_exclusive():
                await async_sleep(SHARED_LOCK_POLL_SECONDS)
            try:
                if self.credentials.adopt_shared():
                    return None
                response = await self.request(
                    "POST",
                    "/core/token/refresh",
                    json={"refresh": self.credentials.refresh},
                    auth=False,
                )
                pair = TokenPair.model_validate_json(response.content)
                self.credentials.store(pair)
                return pair
            finally:
                self.credentials.release()

    async def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json: Any,
        content: Content,
        files: Files,
        data: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        auth: bool,
        http_timeout: httpx.Timeout | None,
    ) -> httpx.Response:
        merged = dict(headers or {})
        if auth:
            if self.credentials.expiring():
                await self.refresh(stale=self.credentials.access)
            merged.update(self.credentials.headers())
        request = self.http.build_request(
            method,
            url,
            params=_query(params),
            json=json,
            content=content() if callable(content) else content,
            files=files() if callable(files) else files,
            data=data,
            headers=merged,
            timeout=http_timeout or self.http.timeout,
        )
        return await self.http.send(request, stream=True)


def _checked(endpoint: Endpoint, body: Mapping[str, Any]) -> BaseModel:
    """`body` as the endpoint's request type; the client's `ValidationError` (as
    the server would answer, with the same `details` shape) when it is not one."""
    assert endpoint.body is not None
    try:
        return endpoint.body.model_validate(dict(body))
    except pydantic.ValidationError as exc:
        raise RequestInvalid(
            f"The request for {endpoint.method} {endpoint.path} is not a valid "
            f"{endpoint.body.__name__} ({exc.error_count()} problem(s)); nothing was sent.",
            error_code="VALIDATION_ERROR",
            details=[
                {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
                for error in exc.errors()
            ],
        ) from exc


def _query(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Query parameters without the unset ones; booleans as the server reads them."""
    if not params:
        return None
    clean: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        clean[name] = ("true" if value else "false") if isinstance(value, bool) else value
    return clean
