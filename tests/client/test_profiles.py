"""Command-line profiles share one token pair between processes: a refresh is
taken under the profile's lock and adopts a pair another process already got,
so the same refresh token is never spent twice (the server would revoke the
session); a profile logged in again elsewhere meanwhile is neither adopted nor
overwritten. Checked in-process, deterministically, against the real server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from quarry_client._sync.client import DEFAULT_TIMEOUT
from quarry_client.cli.profiles import Profile, ProfileLock, load_profile, save_profile
from quarry_client.cli.session import _from_profile

from tests.fixtures.quarry_server import SECRET_KEY


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    return tmp_path / "quarry"


def expired(access: str) -> str:
    claims = jwt.decode(access, options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 5
    return jwt.encode(claims, SECRET_KEY, algorithm="HS256")


def saved_profile(client: Any, name: str) -> Profile:
    credentials = client.transport.credentials
    profile = Profile(
        name=name,
        url=client.base_url,
        email=client.account_email,
        access=expired(credentials.access),
        refresh=credentials.refresh,
    )
    save_profile(profile)
    return profile


def session(name: str) -> Any:
    opened = _from_profile(name, explicit=True, timeout=DEFAULT_TIMEOUT)
    assert opened is not None
    return opened.client


def test_a_second_process_adopts_the_pair_the_first_one_refreshed(
    config: Path, make_quarry: Any
) -> None:
    saved_profile(make_quarry(), "shared")
    first, second = session("shared"), session("shared")  # both read the same pair
    with first, second:
        assert first.auth.me().email == second.auth.me().email
        assert first.transport.credentials.refresh == second.transport.credentials.refresh
    stored = load_profile("shared")
    assert stored is not None and stored.refresh == first.transport.credentials.refresh
    with session("shared") as third:
        assert third.auth.me().email == stored.email  # the session was not revoked


def test_a_profile_logged_in_elsewhere_meanwhile_is_left_alone(
    config: Path, make_quarry: Any
) -> None:
    saved_profile(make_quarry(), "moved")
    running = session("moved")
    other = make_quarry()
    relogged = saved_profile(other, "moved")  # `quarry login` as someone else
    with running:
        assert running.auth.me().email != other.account_email  # its own refresh
    stored = load_profile("moved")
    assert stored is not None
    assert (stored.email, stored.refresh) == (other.account_email, relogged.refresh)


def test_the_profile_lock_is_exclusive_and_never_blocks(config: Path) -> None:
    first, second = ProfileLock("locked"), ProfileLock("locked")
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()
