"""A real `quarry serve` process for the client and CLI tests, and accounts on it.

The client and the CLI are what users run against a deployed server, so their
tests talk to one over a socket: a subprocess on the session's database engine,
with its own control database and mail going to the session's test inbox."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from quarry_client import AsyncQuarry, Quarry

from app.engine import free_port
from tests.accounts import PASSWORD, new_email
from tests.mailbox import Inbox

QUARRY = Path(sys.executable).with_name("quarry")
#: The test servers' signing key, so a test can mint an expired access token.
SECRET_KEY = "client-tests-" + "k" * 40


def server_environment(
    *, database_url: str, data_dir: Path, smtp_port: int, port: int, **overrides: str
) -> dict[str, str]:
    """What a test server runs with: cheap hashing, short database timeouts, mail
    to the test inbox, nothing from the developer's own environment."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("QUARRY_")}
    environment.update(
        {
            "QUARRY_ENV": "test",
            "QUARRY_MONGODB_URL": database_url,
            "QUARRY_CONTROL_DB": f"quarry_client_{uuid.uuid4().hex[:10]}",
            "QUARRY_SECRET_KEY": SECRET_KEY,
            "QUARRY_DATA_DIR": str(data_dir),
            "QUARRY_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "QUARRY_SMTP_HOST": "127.0.0.1",
            "QUARRY_SMTP_PORT": str(smtp_port),
            "QUARRY_MONGODB_TIMEOUT_MS": "1000",
            "QUARRY_RETRY_AFTER_SECONDS": "1",
            "QUARRY_ARGON2_TIME_COST": "1",
            "QUARRY_ARGON2_MEMORY_KIB": "1024",
            "QUARRY_ARGON2_PARALLELISM": "1",
            "QUARRY_LOG_LEVEL": "WARNING",
            # Every test registers new accounts, all from 127.0.0.1.
            "QUARRY_REGISTER_MAX_PER_ADDRESS": "100000",
            "QUARRY_LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
        }
    )
    environment.update(overrides)
    return environment


@contextlib.contextmanager
def serve_quarry(
    *, database_url: str, data_dir: Path, smtp_port: int, **overrides: str
) -> Iterator[str]:
    """`quarry serve` on a free port until the block ends; its base URL."""
    port = free_port()
    environment = server_environment(
        database_url=database_url,
        data_dir=data_dir,
        smtp_port=smtp_port,
        port=port,
        **overrides,
    )
    log = (data_dir.parent / f"quarry-serve-{port}.log").open("wb")
    process = subprocess.Popen(
        [str(QUARRY), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_until_serving(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, f"quarry serve exited with {process.returncode}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        assert time.monotonic() < deadline, f"quarry serve did not answer within {seconds} s"
        time.sleep(0.1)


def verified_account(url: str, inbox: Inbox) -> tuple[str, str]:
    """A new account registered and verified through the blocking client."""
    email = new_email()
    with Quarry(url) as quarry:
        quarry.auth.register(email, PASSWORD, first_name="Ada", last_name="Lovelace")
        quarry.auth.verify(inbox.wait_for(email, timeout=15).token("/core/verify"))
    return email, PASSWORD


def logged_in(url: str, inbox: Inbox, *, async_: bool = False, **options: Any) -> Any:
    """A logged-in `Quarry` (or `AsyncQuarry`) for a new account; the account's
    email and password are on it as `account_email` / `account_password`."""
    email, password = verified_account(url, inbox)
    with Quarry(url) as quarry:
        pair = quarry.auth.login(email, password)
    client: Any = (AsyncQuarry if async_ else Quarry)(
        url, access_token=pair.access, refresh_token=pair.refresh, **options
    )
    client.account_email, client.account_password = email, password
    return client
