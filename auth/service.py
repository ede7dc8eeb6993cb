"""The rules of accounts, tokens and API keys (auth.md); raises domain errors only.

Decisions where auth.md is silent:
- Access tokens are not looked up per request (15 minutes, stateless); logout and
  password changes revoke refresh tokens, so a stolen access token lives at most
  its own lifetime. API keys, in contrast, are looked up on every request, so a
  deleted key stops working at once, across every worker.
- Login attempts are budgeted exactly under concurrency (`app.limits.slots`: a slot is
  taken before the password is checked; a failed attempt keeps it), in three
  budgets per window (`QUARRY_LOGIN_FAILURE_WINDOW_SECONDS`): per email *and*
  client address (`QUARRY_LOGIN_MAX_FAILURES`, 10) — so an attacker's guesses lock
  out the attacker's address, not the account's owner elsewhere —; per address
  across emails (`QUARRY_LOGIN_MAX_FAILURES_PER_ADDRESS`, credential stuffing);
  and per email across addresses (`QUARRY_LOGIN_MAX_FAILURES_PER_EMAIL`, a
  distributed guess; only that can lock an owner out, for one window). A
  successful login clears its email-and-address budget; unknown emails count
  the same, so a 429 reveals nothing.
- Registration is budgeted per client address and per target email
  (`QUARRY_REGISTER_MAX_PER_ADDRESS` / `_PER_EMAIL` per
  `QUARRY_REGISTER_WINDOW_SECONDS`), checked before the Argon2 hash, so neither
  costs the server unbounded hashing; an existing address gets at most one "someone
  tried to register" notice per window.
- A password reset also marks the email verified (the mail proved the inbox).
- Re-sending the verification mail happens at most once a minute per account.
- A wrong current password on password change is 403 `INVALID_CREDENTIALS` (the
  caller is authenticated; a 401 would make clients drop their session).
- Deleting an API key removes it; the 50-key limit counts keys not yet expired.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import string
from datetime import datetime, timedelta
from typing import Any, NoReturn

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import PyMongoError

from app.clock import utc_now
from app.db import DatabaseHandle, Document
from app.errors import DatabaseUnavailable
from app.http import Caller
from app.kit import parse_object_id
from app.limits import Budget, BudgetSpent, Slots
from app.mail import Mail, Mailer, MailQueue
from app.settings import Settings
from auth import repository as repo
from auth.errors import (
    ApiKeyInvalid,
    ApiKeyLimit,
    ApiKeyNotFound,
    EmailNotVerified,
    InvalidCredentials,
    ResetTokenInvalid,
    TokenExpired,
    TokenInvalid,
    TokenRevoked,
    TooManyAttempts,
    VerifyTokenInvalid,
    WrongCurrentPassword,
)
from auth.passwords import Passwords
from auth.tokens import ACCESS, RESET, VERIFY, TokenCodec, TokenError, password_fingerprint

logger = logging.getLogger("quarry.auth")

API_KEY_PREFIX_LENGTH = 8
API_KEY_SECRET_BYTES = 32
_BASE62 = string.ascii_letters + string.digits
LAST_USED_RESOLUTION = timedelta(minutes=1)
RESEND_INTERVAL = timedelta(minutes=1)


def _digest(*parts: str) -> str:
    """A short, stable id for budget scopes (no address or email stored in clear)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """(whole key, public prefix): `qk_<8 base62>_<32 random bytes, base62>`."""
    prefix = "".join(secrets.choice(_BASE62) for _ in range(API_KEY_PREFIX_LENGTH))
    number = int.from_bytes(secrets.token_bytes(API_KEY_SECRET_BYTES), "big")
    digits = []
    while number:
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    body = "".join(reversed(digits)).rjust(43, _BASE62[0])
    return f"qk_{prefix}_{body}", prefix


def user_view(user: Document) -> dict[str, Any]:
    return {
        "id": str(user["_id"]),
        "email": user["email"],
        "firstName": user["first_name"],
        "lastName": user["last_name"],
        "is_verified": user["is_verified"],
        "role": user.get("role", "user"),
        "created_at": user["created_at"],
    }


def api_key_view(key: Document) -> dict[str, Any]:
    return {
        "id": str(key["_id"]),
        "name": key["name"],
        "prefix": key["prefix"],
        "created_at": key["created_at"],
        "expires_at": key.get("expires_at"),
        "last_used_at": key.get("last_used_at"),
    }


class AuthState:
    """Per-app pieces built once: codec, hasher, mailer (see `auth.lifecycle`)."""

    def __init__(
        self, *, codec: TokenCodec, passwords: Passwords, settings: Settings, mailer: Mailer
    ) -> None:
        self.codec = codec
        self.passwords = passwords
        self.settings = settings
        self.mailer = mailer
        self.key_last_touched: dict[ObjectId, datetime] = {}
        #: Whether the unique indexes exist that one account per email and
        #: single-use refresh tokens rest on (`auth.lifecycle` creates them).
        self.indexes_ready = False


class AuthService:
    def __init__(
        self, *, db: DatabaseHandle, state: AuthState, mail: MailQueue | None = None
    ) -> None:
        self.db = db
        self.state = state
        self.settings = state.settings
        self.codec = state.codec
        self.passwords = state.passwords
        self.mail = mail

    def _require_indexes(self) -> None:
        """Raises DatabaseUnavailable (503) while the unique indexes that make a
        write safe do not exist yet (the database was down when the app started)."""
        if not self.state.indexes_ready:
            raise DatabaseUnavailable()

    # ------------------------------------------------------------ links and mail

    def _link(self, path: str, token: str) -> str:
        return f"{self.settings.resolved_public_url}{path}?token={token}"

    def _send(self, mail: Mail) -> None:
        assert self.mail is not None, "this operation sends mail: build the service with a queue"
        self.mail.enqueue(mail)

    def _verification_mail(self, user: Document) -> Mail:
        link = self._link("/core/verify", self.codec.verify_token(str(user["_id"]), user["email"]))
        hours = max(1, self.settings.verify_token_seconds // 3600)
        return Mail(
            to=user["email"],
            subject="Verify your email address for Quarry",
            template="verify",
            context={"first_name": user["first_name"], "link": link, "hours": hours},
        )

    # ---------------------------------------------------------------- register

    async def register(
        self, *, email: str, first_name: str, last_name: str, password: str, address: str
    ) -> None:
        """Create the account and mail a link; an existing address gets a notice instead.

        Answers the same either way (no enumeration); the hash is computed first
        so both paths cost the same. Raises TooManyAttempts (per address or email),
        DatabaseUnavailable (the unique index on email does not exist yet).
        """
        self._require_indexes()
        window = self.settings.register_window_seconds
        await self._spend(
            [
                Budget(f"register-address:{_digest(address)}",
                       self.settings.register_max_per_address, window),
                Budget(f"register-email:{_digest(email)}",
                       self.settings.register_max_per_email, window),
            ],
            what="registrations",
        )  # fmt: skip
        password_hash = await self.passwords.hash(password)
        now = utc_now()
        user = {
            "_id": ObjectId(),
            "email": email,
            "first_name": first_name,
            "last_name": last_name,
            "password_hash": password_hash,
            "is_verified": False,
            "role": "admin" if email in self.settings.admin_email_set else "user",
            "created_at": now,
            "updated_at": now,
            "verification_sent_at": now,
        }
        if await repo.insert_user(db=self.db, user=user):
            logger.info("account created: %s", user["_id"])
            self._send(self._verification_mail(user))
            return
        existing = await repo.find_user_by_email(db=self.db, email=email)
        if existing is None:
            return
        notice = Budget(f"register-notice:{_digest(email)}", 1, window)
        try:
            await self.slots.take([notice], utc_now())
        except BudgetSpent:
            return  # one notice per window: registering must not flood an inbox
        link = None
        if not existing["is_verified"]:
            link = self._link(
                "/core/verify", self.codec.verify_token(str(existing["_id"]), existing["email"])
            )
        self._send(
            Mail(
                to=existing["email"],
                subject="Someone tried to register with your address",
                template="account_exists",
                context={"first_name": existing["first_name"], "link": link},
            )
        )

    # ---------------------------------------------------------------- verify

    async def verify_email(self, *, token: str) -> None:
        """Raises VerifyTokenInvalid."""
        try:
            claims = self.codec.decode(token, VERIFY)
            user_id = ObjectId(claims["sub"])
        except (TokenError, InvalidId, KeyError, TypeError):
            raise VerifyTokenInvalid() from None
        user = await repo.find_user(db=self.db, user_id=user_id)
        if user is None or user["email"] != claims.get("email"):
            raise VerifyTokenInvalid()
        if not user["is_verified"]:
            await repo.update_user(db=self.db, user_id=user_id, changes={"is_verified": True})

    async def resend_verification(self, *, email: str) -> None:
        user = await repo.find_user_by_email(db=self.db, email=email)
        if user is None or user["is_verified"]:
            return
        now = utc_now()
        sent = user.get("verification_sent_at")
        if sent is not None and now - sent < RESEND_INTERVAL:
            return
        await repo.update_user(
            db=self.db, user_id=user["_id"], changes={"verification_sent_at": now}
        )
        self._send(self._verification_mail(user))

    # ---------------------------------------------------------------- login

    @property
    def slots(self) -> Slots:
        return repo.attempt_slots(db=self.db)

    async def _spend(self, budgets: list[Budget], *, what: str) -> list[str]:
        """Take a slot of each budget; raises TooManyAttempts when one is spent."""
        try:
            return await self.slots.take(budgets, utc_now())
        except BudgetSpent as exc:
            raise TooManyAttempts(exc.retry_after, what=what) from None

    def _login_budgets(self, email: str, address: str) -> list[Budget]:
        window = self.settings.login_failure_window_seconds
        return [
            Budget(f"login:{_digest(email, address)}", self.settings.login_max_failures, window),
            Budget(f"login-address:{_digest(address)}",
                   self.settings.login_max_failures_per_address, window),
            Budget(f"login-email:{_digest(email)}",
                   self.settings.login_max_failures_per_email, window),
        ]  # fmt: skip

    async def _issue_pair(self, user_id: ObjectId, family: str | None = None) -> dict[str, Any]:
        refresh, claims = self.codec.new_refresh(str(user_id), family)
        now = utc_now()
        await repo.insert_refresh_token(
            db=self.db,
            token={
                "_id": claims.jti,
                "family": claims.family,
                "parent": f"login:{claims.jti}",
                "user_id": user_id,
                "created_at": now,
                "expires_at": now + self.codec.refresh_ttl,
                "used_at": None,
                "revoked_at": None,
            },
        )
        return self._pair(user_id, refresh, claims.family)

    def _pair(self, user_id: ObjectId, refresh: str, family: str) -> dict[str, Any]:
        return {
            "refresh": refresh,
            "access": self.codec.access_token(str(user_id), family),
            "expires_in": int(self.codec.access_ttl.total_seconds()),
        }

    async def login(self, *, email: str, password: str, address: str) -> dict[str, Any]:
        """Raises TooManyAttempts, InvalidCredentials, EmailNotVerified."""
        budgets = self._login_budgets(email, address)
        # Taken before the password is checked: parallel guesses cannot all pass.
        taken = await self._spend(budgets, what="failed logins")
        try:
            user = await repo.find_user_by_email(db=self.db, email=email)
            matches, new_hash = await self.passwords.verify(
                password, user["password_hash"] if user else None
            )
        except BaseException:
            # Not a failed guess (the database failed): best effort, give them back.
            with contextlib.suppress(PyMongoError):
                await self.slots.give_back(taken)
            raise
        if user is None or not matches:
            raise InvalidCredentials()  # the slots stay taken: a failure
        await self.slots.give_back(taken)
        if self.settings.require_email_verification and not user["is_verified"]:
            raise EmailNotVerified()
        if new_hash is not None:
            await repo.replace_password_hash(
                db=self.db, user_id=user["_id"], old_hash=user["password_hash"], new_hash=new_hash
            )
        await self.slots.clear(budgets[0].scope)
        if email in self.settings.admin_email_set and user.get("role") != "admin":
            # QUARRY_ADMIN_EMAILS names admins: an account made before the setting is one now.
            await repo.set_role(db=self.db, email=email, role="admin")
        return await self._issue_pair(user["_id"])

    # ---------------------------------------------------------------- refresh

    def _decode_refresh(self, token: str, *, verify_exp: bool = True) -> Any:
        try:
            return self.codec.decode_refresh(token, verify_exp=verify_exp)
        except TokenError as exc:
            raise (TokenExpired() if exc.expired else TokenInvalid()) from None

    async def refresh(self, *, refresh_token: str) -> dict[str, Any]:
        """Rotate: consume this refresh token, issue a new pair in the same family.

        A used or revoked token revokes its whole family (theft detection).
        Raises TokenExpired, TokenInvalid, TokenRevoked, DatabaseUnavailable (the
        unique index that makes a refresh token single-use does not exist yet).
        """
        self._require_indexes()
        claims = self._decode_refresh(refresh_token)
        stored = await repo.find_refresh_token(db=self.db, jti=claims.jti)
        if stored is None or stored["family"] != claims.family:
            raise TokenInvalid()
        if stored["used_at"] is not None or stored["revoked_at"] is not None:
            await self._reuse_detected(claims.family)
        user = await repo.find_user(db=self.db, user_id=stored["user_id"])
        if user is None:
            raise TokenInvalid()
        refresh, new_claims = self.codec.new_refresh(str(user["_id"]), claims.family)
        now = utc_now()
        consumed = await repo.insert_refresh_token(
            db=self.db,
            token={
                "_id": new_claims.jti,
                "family": claims.family,
                "parent": claims.jti,
                "user_id": user["_id"],
                "created_at": now,
                "expires_at": now + self.codec.refresh_ttl,
                "used_at": None,
                "revoked_at": None,
            },
        )
        if not consumed:
            await self._reuse_detected(claims.family)
        await repo.mark_refresh_token_used(db=self.db, jti=claims.jti)
        return self._pair(user["_id"], refresh, claims.family)

    async def _reuse_detected(self, family: str) -> NoReturn:
        revoked = await repo.revoke_family(db=self.db, family=family)
        logger.warning("refresh token reuse: family %s revoked (%d tokens)", family[:8], revoked)
        raise TokenRevoked()

    async def logout(self, *, refresh_token: str) -> None:
        """Revoke the family of this refresh token (an expired one is accepted)."""
        claims = self._decode_refresh(refresh_token, verify_exp=False)
        await repo.revoke_family(db=self.db, family=claims.family)

    async def logout_all(self, *, user_id: ObjectId) -> int:
        return await repo.revoke_user_tokens(db=self.db, user_id=user_id)

    # ---------------------------------------------------------------- passwords

    async def forgot_password(self, *, email: str) -> None:
        user = await repo.find_user_by_email(db=self.db, email=email)
        if user is None:
            return
        token = self.codec.reset_token(str(user["_id"]), user["password_hash"])
        link = self._link("/core/password/reset", token)
        self._send(
            Mail(
                to=user["email"],
                subject="Reset your Quarry password",
                template="reset",
                context={
                    "first_name": user["first_name"],
                    "link": link,
                    "token": token,
                    "reset_endpoint": f"{self.settings.resolved_public_url}/core/password/reset",
                    "minutes": max(1, self.settings.reset_token_seconds // 60),
                },
            )
        )

    async def reset_password(self, *, token: str, password: str) -> None:
        """Raises ResetTokenInvalid (bad, expired, used, or the password changed since)."""
        try:
            claims = self.codec.decode(token, RESET)
            user_id = ObjectId(claims["sub"])
        except (TokenError, InvalidId, KeyError, TypeError):
            raise ResetTokenInvalid() from None
        user = await repo.find_user(db=self.db, user_id=user_id)
        if user is None or claims.get("pwd") != password_fingerprint(user["password_hash"]):
            raise ResetTokenInvalid()
        new_hash = await self.passwords.hash(password)
        swapped = await repo.replace_password_hash(
            db=self.db,
            user_id=user_id,
            old_hash=user["password_hash"],
            new_hash=new_hash,
            extra={"is_verified": True},
        )
        if not swapped:
            raise ResetTokenInvalid()
        await repo.revoke_user_tokens(db=self.db, user_id=user_id)
        # The mail proved the inbox: earlier guesses from anywhere stop counting.
        await self.slots.clear(f"login-email:{_digest(user['email'])}")

    async def change_password(
        self, *, caller: Caller, current_password: str, new_password: str
    ) -> None:
        """Raises WrongCurrentPassword; revokes every other session's refresh tokens."""
        user = await self._user(caller.user_id)
        matches, _ = await self.passwords.verify(current_password, user["password_hash"])
        if not matches:
            raise WrongCurrentPassword()
        new_hash = await self.passwords.hash(new_password)
        await repo.replace_password_hash(
            db=self.db, user_id=user["_id"], old_hash=user["password_hash"], new_hash=new_hash
        )
        await repo.revoke_user_tokens(
            db=self.db, user_id=user["_id"], keep_family=caller.session_family
        )

    # ---------------------------------------------------------------- profile

    async def _user(self, user_id: ObjectId) -> Document:
        user = await repo.find_user(db=self.db, user_id=user_id)
        if user is None:
            raise TokenInvalid("The account of this token no longer exists.")
        return user

    async def me(self, *, caller: Caller) -> dict[str, Any]:
        return user_view(await self._user(caller.user_id))

    async def update_me(
        self, *, caller: Caller, first_name: str | None, last_name: str | None
    ) -> dict[str, Any]:
        changes = {
            key: value
            for key, value in (("first_name", first_name), ("last_name", last_name))
            if value is not None
        }
        if changes:
            await repo.update_user(db=self.db, user_id=caller.user_id, changes=changes)
        return await self.me(caller=caller)

    # ---------------------------------------------------------------- API keys

    async def create_api_key(
        self, *, caller: Caller, name: str, expires_in_days: int | None
    ) -> dict[str, Any]:
        """Raises ApiKeyLimit, DatabaseUnavailable. The clear key is returned here and
        stored nowhere."""
        self._require_indexes()
        now = utc_now()
        limit = self.settings.max_api_keys
        live = await repo.count_live_api_keys(db=self.db, user_id=caller.user_id, now=now)
        if live >= limit:
            raise ApiKeyLimit(f"You already have {limit} API keys; delete one first.")
        key, prefix = new_api_key()
        document = {
            "_id": ObjectId(),
            "user_id": caller.user_id,
            "name": name,
            "prefix": prefix,
            "key_hash": hash_api_key(key),
            "created_at": now,
            "expires_at": now + timedelta(days=expires_in_days) if expires_in_days else None,
            "last_used_at": None,
        }
        await repo.insert_api_key(db=self.db, key=document)
        logger.info("API key %s created (prefix %s)", document["_id"], prefix)
        return {**api_key_view(document), "key": key}

    async def list_api_keys(self, *, caller: Caller) -> list[dict[str, Any]]:
        return [
            api_key_view(k) for k in await repo.list_api_keys(db=self.db, user_id=caller.user_id)
        ]

    async def delete_api_key(self, *, caller: Caller, key_id: str) -> None:
        """Raises InvalidId, ApiKeyNotFound (also for another user's key)."""
        oid = parse_object_id(key_id, what="API key id")
        if not await repo.delete_api_key(db=self.db, user_id=caller.user_id, key_id=oid):
            raise ApiKeyNotFound()
        self.state.key_last_touched.pop(oid, None)

    # ---------------------------------------------------------------- callers

    def caller_from_access_token(self, token: str) -> Caller:
        """Raises TokenExpired, TokenInvalid."""
        try:
            claims = self.codec.decode(token, ACCESS)
            user_id = ObjectId(claims["sub"])
        except TokenError as exc:
            raise (TokenExpired() if exc.expired else TokenInvalid()) from None
        except (InvalidId, KeyError, TypeError):
            raise TokenInvalid() from None
        family = claims.get("fam")
        return Caller(
            user_id=user_id,
            method="bearer",
            session_family=family if isinstance(family, str) else None,
        )

    async def caller_from_api_key(self, key: str) -> Caller:
        """Raises ApiKeyInvalid (unknown, expired or deleted)."""
        if not key.startswith("qk_") or len(key) > 128:
            raise ApiKeyInvalid()
        stored = await repo.find_api_key_by_hash(db=self.db, key_hash=hash_api_key(key))
        now = utc_now()
        if stored is None or (stored.get("expires_at") and stored["expires_at"] <= now):
            raise ApiKeyInvalid()
        touched = self.state.key_last_touched.get(stored["_id"])
        if touched is None or now - touched >= LAST_USED_RESOLUTION:
            self.state.key_last_touched[stored["_id"]] = now
            await repo.touch_api_key(
                db=self.db, key_id=stored["_id"], now=now, every=LAST_USED_RESOLUTION
            )
        return Caller(user_id=stored["user_id"], method="api_key", key_id=stored["_id"])
