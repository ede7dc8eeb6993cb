"""Which server a command talks to, and as whom.

In order: an explicit `--profile NAME`; then `QUARRY_URL` + `QUARRY_API_KEY` from
the environment (scripts and CI need no file); then the profile named by
`QUARRY_PROFILE`, or `default`. Tokens the client refreshes on the way are
written back to the profile, so the next command starts with a live pair."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import httpx

from quarry_client import Quarry
from quarry_client._sync.client import DEFAULT_TIMEOUT
from quarry_client.cli.output import CliError, Output
from quarry_client.cli.profiles import (
    DEFAULT_PROFILE,
    Profile,
    ProfileError,
    ProfileLock,
    list_profiles,
    load_profile,
    save_profile,
)
from quarry_client.models import TokenPair

#: Long transfers (import, export, uploads): the server may think for a while
#: after the last byte before it answers.
TRANSFER_TIMEOUT = httpx.Timeout(3600.0, connect=10.0)

LOGIN_HINT = (
    "Log in with `quarry login --url URL --email EMAIL`, or set QUARRY_URL and QUARRY_API_KEY."
)


@dataclass
class Session:
    output: Output
    client: Quarry
    #: The profile in use, or None with an API key from the environment.
    profile: Profile | None


#: `quarry --profile NAME …` (given before the command), set by the root callback.
GLOBAL_PROFILE: ContextVar[str | None] = ContextVar("GLOBAL_PROFILE", default=None)


def global_profile() -> str | None:
    return GLOBAL_PROFILE.get()


def chosen_profile_name(option: str | None) -> str:
    """The profile a command uses when it needs one (login, logout)."""
    return option or global_profile() or os.environ.get("QUARRY_PROFILE") or DEFAULT_PROFILE


class ProfileTokens:
    """The profile's pair, shared by every `quarry` process using the profile: a
    refresh happens under a lock on the profile, after a look whether another
    process refreshed already (a refresh token spent twice revokes the session).
    Only a pair of the same login (URL and email) is taken or overwritten: a
    profile logged in again elsewhere meanwhile is left alone."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._lock = ProfileLock(profile.name)

    def try_lock(self) -> bool:
        return self._lock.try_acquire()

    def unlock(self) -> None:
        self._lock.release()

    def load(self) -> tuple[str, str] | None:
        stored = self._same_login()
        return None if stored is None else (stored.access, stored.refresh)

    def save(self, pair: TokenPair) -> None:
        self.profile.access, self.profile.refresh = pair.access, pair.refresh
        if self._same_login() is not None or load_profile(self.profile.name) is None:
            save_profile(self.profile)

    def _same_login(self) -> Profile | None:
        stored = load_profile(self.profile.name)
        if stored is None or (stored.url, stored.email) != (self.profile.url, self.profile.email):
            return None
        return stored


def _from_profile(name: str, *, explicit: bool, timeout: httpx.Timeout) -> Session | None:
    """The profile's client; None when an implicit profile does not exist."""
    try:
        profile = load_profile(name)
    except ProfileError as exc:
        raise CliError(str(exc), error_code="BAD_PROFILE") from exc
    if profile is None:
        if not explicit:
            return None
        known = ", ".join(p.name for p in list_profiles()) or "none"
        raise CliError(
            f"No profile named {name!r} (profiles: {known}). {LOGIN_HINT}",
            error_code="NOT_LOGGED_IN",
        )
    client = Quarry(
        profile.url,
        access_token=profile.access,
        refresh_token=profile.refresh,
        shared_tokens=ProfileTokens(profile),
        timeout=timeout,
    )
    return Session(output=Output(False), client=client, profile=profile)


def _from_environment(timeout: httpx.Timeout) -> Session | None:
    """A client for `QUARRY_URL` + `QUARRY_API_KEY`; None without a key."""
    url, key = os.environ.get("QUARRY_URL"), os.environ.get("QUARRY_API_KEY")
    if not key:
        return None
    if not url:
        raise CliError("QUARRY_API_KEY is set but QUARRY_URL is not.", error_code="NOT_LOGGED_IN")
    client = Quarry(url, api_key=key, timeout=timeout)
    return Session(output=Output(False), client=client, profile=None)


def open_session(
    *, json_output: bool, profile: str | None, timeout: httpx.Timeout = DEFAULT_TIMEOUT
) -> Session:
    """A client for the command's credentials; `CliError` when there are none."""
    explicit = profile or global_profile()
    session = _from_profile(explicit, explicit=True, timeout=timeout) if explicit else None
    session = session or _from_environment(timeout)
    if session is None:
        name = os.environ.get("QUARRY_PROFILE")
        session = _from_profile(name or DEFAULT_PROFILE, explicit=bool(name), timeout=timeout)
    if session is None:
        raise CliError(f"Not logged in. {LOGIN_HINT}", error_code="NOT_LOGGED_IN")
    session.output = Output(json_output)
    return session


@contextlib.contextmanager
def connect(
    *, json_output: bool, profile: str | None, timeout: httpx.Timeout = DEFAULT_TIMEOUT
) -> Iterator[Session]:
    """`open_session` for the length of a `with` block (the client is closed after)."""
    session = open_session(json_output=json_output, profile=profile, timeout=timeout)
    try:
        yield session
    finally:
        session.client.close()
