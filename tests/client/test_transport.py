"""What every client call gets from the transport, against real servers: error
answers as typed exceptions, retries on 429 (the real rate limiter) and 503 (the
engine stopped) honouring `Retry-After`, and an expired access token refreshed
without the caller noticing."""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from quarry_client import (
    NO_RETRY,
    AsyncQuarry,
    AuthenticationError,
    NotFound,
    Quarry,
    QuarryConnectionError,
    QuarryError,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
)

from tests.fixtures.engine import DatabaseServer
from tests.fixtures.mailbox import Inbox
from tests.fixtures.quarry_server import SECRET_KEY, logged_in, serve_quarry


def statuses_seen(client: Quarry) -> list[int]:
    """The status of every answer `client` receives from now on (retries included)."""
    seen: list[int] = []
    client.transport.http.event_hooks["response"].append(lambda r: seen.append(r.status_code))
    return seen


def expired_copy(access: str, *, seconds_left: float) -> str:
    """The same access token re-signed with its expiry moved `seconds_left` from now."""
    claims = jwt.decode(access, options={"verify_signature": False})
    claims["exp"] = int(time.time() + seconds_left)
    return jwt.encode(claims, SECRET_KEY, algorithm="HS256")


@pytest.fixture(scope="module")
def limited_url(database_server: DatabaseServer, smtp_server: Inbox) -> Iterator[str]:
    """A server that lets a user burst 3 requests, then one a second."""
    root = Path(tempfile.mkdtemp(prefix="quarry-client-limited-"))
    with serve_quarry(
        database_url=database_server.url,
        data_dir=root / "data",
        smtp_port=smtp_server.port,
        QUARRY_RATE_LIMIT_PER_MINUTE="60",
        QUARRY_RATE_LIMIT_BURST="3",
    ) as url:
        yield url


def test_an_error_answer_is_a_typed_exception_with_code_and_request_id(quarry: Quarry) -> None:
    with pytest.raises(NotFound) as raised:
        quarry.api_keys.revoke("0" * 24)
    error = raised.value
    assert error.status_code == 404
    assert error.error_code == "API_KEY_NOT_FOUND"
    assert error.request_id and len(error.request_id) >= 16
    assert error.request_id in str(error)


def test_rate_limited_calls_are_retried_after_retry_after(
    limited_url: str, smtp_server: Inbox
) -> None:
    with logged_in(limited_url, smtp_server) as client:
        seen = statuses_seen(client)
        started = time.monotonic()
        for _ in range(6):
            assert client.auth.me().email == client.account_email
        elapsed = time.monotonic() - started
    assert 429 in seen, seen
    assert seen.count(200) == 6
    # Each 429 said "Retry-After: 1" and the client waited it out before retrying.
    assert elapsed >= seen.count(429) * 1.0


def test_without_retries_a_rate_limited_call_raises_with_its_retry_after(
    limited_url: str, smtp_server: Inbox
) -> None:
    with (
        logged_in(limited_url, smtp_server, retry=NO_RETRY) as client,
        pytest.raises(RateLimited) as raised,
    ):
        for _ in range(10):
            client.auth.me()
    assert raised.value.status_code == 429
    assert raised.value.error_code == "RATE_LIMITED"
    assert raised.value.retry_after is not None and raised.value.retry_after >= 1


def test_a_retry_after_beyond_max_wait_is_not_waited_for(
    limited_url: str, smtp_server: Inbox
) -> None:
    policy = RetryPolicy(max_retries=5, max_wait=0.5)
    with logged_in(limited_url, smtp_server, retry=policy) as client:
        seen = statuses_seen(client)
        with pytest.raises(RateLimited):
            for _ in range(10):
                client.auth.me()
    assert seen[-1] == 429 and seen.count(429) == 1


def test_a_call_during_an_engine_outage_is_retried_until_the_engine_is_back(
    make_quarry: Any, database_server: DatabaseServer
) -> None:
    if not database_server.stoppable:
        pytest.skip("the session's database is an external server")
    client: Quarry = make_quarry(retry=RetryPolicy(max_retries=60, max_wait=5))
    seen = statuses_seen(client)
    first_refusal = threading.Event()
    client.transport.http.event_hooks["response"].append(
        lambda r: first_refusal.set() if r.status_code == 503 else None
    )

    def restart_after_the_first_refusal() -> None:
        first_refusal.wait(60)
        database_server.start()

    database_server.stop()
    restarter = threading.Thread(target=restart_after_the_first_refusal)
    restarter.start()
    try:
        me = client.auth.me()
    finally:
        restarter.join()
    assert me.email == client.account_email
    assert seen[0] == 503 and seen[-1] == 200


def test_an_expired_access_token_is_refreshed_and_the_call_goes_through(
    quarry: Quarry,
) -> None:
    stale = expired_copy(quarry.transport.credentials.access or "", seconds_left=-5)
    refresh_before = quarry.transport.credentials.refresh
    quarry.transport.credentials.access = stale
    seen = statuses_seen(quarry)
    # Within the refresh margin the client refreshes before sending; an already
    # expired token is refreshed before sending too. Both end in one 200.
    assert quarry.auth.me().email == quarry.account_email
    assert quarry.transport.credentials.access != stale
    assert quarry.transport.credentials.refresh != refresh_before
    assert seen == [200, 200]  # the refresh, then the call


def test_a_token_the_server_calls_expired_is_refreshed_once_and_resent(quarry: Quarry) -> None:
    # A token the client believes fresh (no exp it can read) but the server
    # refuses as expired: the 401 TOKEN_EXPIRED path.
    claims = jwt.decode(
        quarry.transport.credentials.access or "", options={"verify_signature": False}
    )
    claims["exp"] = int(time.time() - 5)
    header_only = jwt.encode(claims, SECRET_KEY, algorithm="HS256")
    quarry.transport.credentials.access = header_only
    quarry.transport.credentials.expiring = lambda: False  # type: ignore[method-assign]
    seen = statuses_seen(quarry)
    assert quarry.auth.me().email == quarry.account_email
    assert seen == [401, 200, 200]  # refused, the refresh, the call again


def test_a_revoked_refresh_token_ends_in_authentication_error(quarry: Quarry) -> None:
    quarry.auth.logout_all()
    quarry.transport.credentials.access = expired_copy(
        quarry.transport.credentials.access or "", seconds_left=-5
    )
    with pytest.raises(AuthenticationError) as raised:
        quarry.auth.me()
    assert raised.value.error_code in {"TOKEN_REVOKED", "TOKEN_INVALID"}


def test_saved_tokens_follow_each_refresh(quarry_url: str, smtp_server: Inbox) -> None:
    saved: list[str] = []
    client: Quarry = logged_in(quarry_url, smtp_server, on_tokens=lambda p: saved.append(p.access))
    with client:
        client.transport.credentials.access = expired_copy(
            client.transport.credentials.access or "", seconds_left=-5
        )
        client.auth.me()
    assert saved == [client.transport.credentials.access]


async def test_concurrent_async_calls_share_one_refresh(make_quarry: Any) -> None:
    import asyncio

    client: AsyncQuarry = make_quarry(async_=True)
    async with client:
        client.transport.credentials.access = expired_copy(
            client.transport.credentials.access or "", seconds_left=-5
        )
        refreshes: list[str] = []

        async def count(request: httpx.Request) -> None:
            if request.url.path == "/core/token/refresh":
                refreshes.append(request.url.path)

        client.transport.http.event_hooks["request"].append(count)
        users = await asyncio.gather(*(client.auth.me() for _ in range(5)))
    assert {user.email for user in users} == {client.account_email}
    assert len(refreshes) == 1


def test_a_write_refused_with_503_is_not_sent_again(
    make_quarry: Any, database_server: DatabaseServer
) -> None:
    """A 503 may come from a write the database applied but could not confirm:
    a POST is not repeated (no second API key), a GET would be."""
    if not database_server.stoppable:
        pytest.skip("the session's database is an external server")
    client: Quarry = make_quarry(retry=RetryPolicy(max_retries=60, max_wait=5))
    seen = statuses_seen(client)
    database_server.stop()
    try:
        with pytest.raises(ServiceUnavailable) as raised:
            client.api_keys.create("during-the-outage")
    finally:
        database_server.start()
    assert seen == [503]
    assert raised.value.error_code == "DATABASE_UNAVAILABLE"
    assert raised.value.retry_after is not None


@contextlib.contextmanager
def raw_http_server(answer: bytes) -> Iterator[str]:
    """A socket server that reads one request and sends `answer` verbatim, then
    closes: a server (or proxy) that misbehaves the way real ones do."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(answer)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.join(timeout=5)
        listener.close()


def test_an_answer_cut_short_is_a_connection_error() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    with raw_http_server(head + b'{"success": true, "da') as url, Quarry(url) as client:
        client.transport.credentials.api_key = "qk_test"
        with pytest.raises(QuarryConnectionError):
            client.api_keys.list()


def test_a_redirect_is_refused_not_followed() -> None:
    answer = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://elsewhere.example/\r\n"
    answer += b"Content-Length: 0\r\n\r\n"
    with raw_http_server(answer) as url, Quarry(url) as client:
        client.transport.credentials.api_key = "qk_test"
        with pytest.raises(QuarryError) as raised:
            client.api_keys.list()
    assert raised.value.status_code == 307
    assert "elsewhere.example" in str(raised.value)


def test_an_answer_of_the_wrong_shape_is_a_quarry_error() -> None:
    body = b'{"hello": "world"}'
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    with (
        raw_http_server(head.encode() + b"\r\n\r\n" + body) as url,
        Quarry(url) as client,
        pytest.raises(QuarryError) as raised,
    ):
        client.auth.login("someone@example.com", "a password")
    assert "TokenPair" in str(raised.value)


def test_a_body_that_is_not_the_request_type_is_refused_before_sending(quarry: Quarry) -> None:
    from quarry_client import ValidationError
    from quarry_client.routes import rows

    seen = statuses_seen(quarry)
    with pytest.raises(ValidationError) as raised:
        quarry.transport.call(rows.INSERT_ROW, body={"dataset": "x", "timestamp": {"nested": 1}})
    assert raised.value.error_code == "VALIDATION_ERROR" and raised.value.details
    assert raised.value.details[0]["loc"][0] == "timestamp"
    assert seen == []


def test_a_query_parameter_the_endpoint_does_not_declare_is_refused(quarry: Quarry) -> None:
    from quarry_client.routes import auth

    with pytest.raises(ValueError, match="declares no query parameter"):
        quarry.transport.call(auth.LIST_KEYS, params={"page": 2})


def test_transfers_wait_longer_for_the_answer_and_keep_the_rest_of_the_timeout() -> None:
    timeout = httpx.Timeout(5.0, connect=2.0, read=30.0, write=7.0, pool=3.0)
    with Quarry("http://127.0.0.1:9", timeout=timeout) as client:
        longer = client.transport.transfer_timeout()
    assert (longer.connect, longer.write, longer.pool) == (2.0, 7.0, 3.0)
    assert longer.read == 3600.0
