"""JWTs (HS256, PyJWT), one audience per purpose, and the signing key.

`quarry:access` (short, carries the session family so password change can keep
the current session), `quarry:refresh` (carries `jti` and `fam`, stored in
MongoDB for rotation and theft detection), `quarry:verify` (user id + email),
`quarry:reset` (user id + a fingerprint of the current password hash, so the
token dies once the password changes). A token of one audience is never
accepted where another is expected.

The key: `QUARRY_SECRET_KEY`, or in development/test one generated on first use
and kept in `QUARRY_DATA_DIR/secret_key` (mode 0600) so tokens survive restarts;
production refuses to start without a 32-byte key (see `app.settings`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt

from app.clock import utc_now
from app.settings import Settings

ALGORITHM = "HS256"
ISSUER = "quarry"
ACCESS = "quarry:access"
REFRESH = "quarry:refresh"
VERIFY = "quarry:verify"
RESET = "quarry:reset"


class TokenError(Exception):
    """A token that cannot be used; `expired` tells the expired case apart."""

    def __init__(self, *, expired: bool) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


def resolve_secret_key(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir.resolve() / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two workers starting at once agree on one key.
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    key = path.read_text().strip()
    if len(key) < 32:
        raise RuntimeError(f"{path} holds a key shorter than 32 bytes; delete it to regenerate")
    return key


def password_fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class RefreshClaims:
    user_id: str
    jti: str
    family: str


class TokenCodec:
    def __init__(self, secret_key: str, settings: Settings) -> None:
        self._key = secret_key
        self.access_ttl = timedelta(minutes=settings.access_token_minutes)
        self.refresh_ttl = timedelta(days=settings.refresh_token_days)
        self.verify_ttl = timedelta(seconds=settings.verify_token_seconds)
        self.reset_ttl = timedelta(seconds=settings.reset_token_seconds)

    def _encode(self, audience: str, subject: str, ttl: timedelta, **claims: Any) -> str:
        now = utc_now()
        payload = {
            "iss": ISSUER,
            "aud": audience,
            "sub": subject,
            "iat": now,
            "exp": now + ttl,
            **claims,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM)

    def decode(self, token: str, audience: str, *, verify_exp: bool = True) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=ISSUER,
                options={"require": ["exp", "sub", "aud", "iss"], "verify_exp": verify_exp},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError(expired=True) from None
        except jwt.PyJWTError:
            raise TokenError(expired=False) from None

    # -- access
    def access_token(self, user_id: str, family: str) -> str:
        return self._encode(ACCESS, user_id, self.access_ttl, fam=family, jti=uuid.uuid4().hex)

    # -- refresh
    def new_refresh(self, user_id: str, family: str | None = None) -> tuple[str, RefreshClaims]:
        claims = RefreshClaims(
            user_id=user_id, jti=uuid.uuid4().hex, family=family or uuid.uuid4().hex
        )
        token = self._encode(REFRESH, user_id, self.refresh_ttl, jti=claims.jti, fam=claims.family)
        return token, claims

    def decode_refresh(self, token: str, *, verify_exp: bool = True) -> RefreshClaims:
        payload = self.decode(token, REFRESH, verify_exp=verify_exp)
        jti, family = payload.get("jti"), payload.get("fam")
        if not isinstance(jti, str) or not isinstance(family, str):
            raise TokenError(expired=False)
        return RefreshClaims(user_id=str(payload["sub"]), jti=jti, family=family)

    # -- verify / reset
    def verify_token(self, user_id: str, email: str) -> str:
        return self._encode(VERIFY, user_id, self.verify_ttl, email=email)

    def reset_token(self, user_id: str, password_hash: str) -> str:
        return self._encode(RESET, user_id, self.reset_ttl, pwd=password_fingerprint(password_hash))
