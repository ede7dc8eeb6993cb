"""Profiles: where `quarry login` keeps a server's URL and the token pair.

One JSON file per profile in `$XDG_CONFIG_HOME/quarry/` (default
`~/.config/quarry/`). The directory is 0700 and each file 0600 from the moment it
exists: a file is written under a temporary name opened with mode 0600, then
renamed over the old one, so a reader never sees half a file and the tokens are
never readable by another user, not even for an instant. Nothing here prints."""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_PROFILE = "default"
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SUFFIX = ".json"


class ProfileError(ValueError):
    """A profile name that cannot be a file name, or a file that is not a profile."""


@dataclass
class Profile:
    name: str
    url: str
    email: str
    access: str
    refresh: str
    saved_at: str = ""

    def public(self) -> dict[str, str]:
        """What may be shown: everything but the tokens."""
        return {"name": self.name, "url": self.url, "email": self.email, "saved_at": self.saved_at}


def config_dir() -> Path:
    """`$XDG_CONFIG_HOME/quarry`, or `~/.config/quarry`."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "quarry"


def check_name(name: str) -> str:
    if not PROFILE_NAME.match(name):
        raise ProfileError(
            f"Invalid profile name {name!r}: use letters, digits, '_', '.' or '-' "
            "(at most 64, starting with a letter or digit)."
        )
    return name


def profile_path(name: str) -> Path:
    return config_dir() / f"{check_name(name)}{SUFFIX}"


def load_profile(name: str) -> Profile | None:
    """The stored profile, or None when there is no such file."""
    path = profile_path(name)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ProfileError(f"Cannot read profile {name!r} ({path}): {exc}") from exc
    try:
        return Profile(
            name=name,
            url=str(raw["url"]),
            email=str(raw.get("email", "")),
            access=str(raw["access"]),
            refresh=str(raw["refresh"]),
            saved_at=str(raw.get("saved_at", "")),
        )
    except (KeyError, TypeError) as exc:
        raise ProfileError(f"Profile {name!r} ({path}) is not a Quarry profile.") from exc


def save_profile(profile: Profile) -> Path:
    """Write the profile atomically, 0600 in a 0700 directory."""
    directory = _private_directory()
    path = profile_path(profile.name)
    profile.saved_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    content = json.dumps({k: v for k, v in asdict(profile).items() if k != "name"}, indent=2)
    temporary = directory / f".{profile.name}.{os.getpid()}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    return path


class ProfileLock:
    """An exclusive lock on a profile across processes: `flock` on a 0600 lock
    file beside it, taken without blocking (the caller polls); no lock where
    `fcntl` does not exist."""

    def __init__(self, name: str) -> None:
        self.name = check_name(name)
        self._descriptor: int | None = None

    def try_acquire(self) -> bool:
        try:
            import fcntl
        except ImportError:  # not POSIX
            return True
        path = _private_directory() / f".{self.name}.lock"
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._descriptor = descriptor
        return True

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def delete_profile(name: str) -> bool:
    """Remove the profile's file; False when there was none."""
    try:
        profile_path(name).unlink()
    except FileNotFoundError:
        return False
    return True


def list_profiles() -> list[Profile]:
    """Every readable profile, by name."""
    directory = config_dir()
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        name = path.name.removesuffix(SUFFIX)
        if not PROFILE_NAME.match(name):
            continue
        with contextlib.suppress(ProfileError):
            profile = load_profile(name)
            if profile is not None:
                found.append(profile)
    return found


def _private_directory() -> Path:
    directory = config_dir()
    directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    return directory
