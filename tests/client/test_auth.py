"""The account methods of the client against a real server: verification mail
again, password forgotten and reset, password change, profile update, refresh
on demand, logout — each checked by what the server then accepts or refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient
from quarry_client import AsyncQuarry, AuthenticationError, Quarry

from tests.fixtures.accounts import PASSWORD, new_email
from tests.fixtures.mailbox import Inbox

NEW_PASSWORD = "a-brand-new-password-42"


def test_resend_verification_mails_a_link_that_verifies(
    quarry_url: str, smtp_server: Inbox, sync_client: MongoClient[dict[str, Any]]
) -> None:
    email = new_email()
    with Quarry(quarry_url) as client:
        client.auth.register(email, PASSWORD, first_name="Grace", last_name="Hopper")
        smtp_server.wait_for(email, timeout=15)
        # The first mail went out an hour ago (the server sends one per interval).
        users = next(
            sync_client[name]["users"]
            for name in sync_client.list_database_names()
            if sync_client[name]["users"].find_one({"email": email})
        )
        users.update_one(
            {"email": email},
            {"$set": {"verification_sent_at": datetime.now(UTC) - timedelta(hours=1)}},
        )
        answer = client.auth.resend_verification(email)
        link = smtp_server.wait_for(email, count=2, timeout=15)
        client.auth.verify(link.token("/core/verify"))
        pair = client.auth.login(email, PASSWORD)
        assert client.auth.me().is_verified
    assert answer.success and pair.access


def test_forgot_and_reset_password_replaces_the_password(
    make_quarry: Any, quarry_url: str, smtp_server: Inbox
) -> None:
    client: Quarry = make_quarry()
    email = client.account_email
    mails_before = len(smtp_server.mails_to(email))
    with Quarry(quarry_url) as anonymous:
        anonymous.auth.forgot_password(email)
        token = smtp_server.wait_for(email, count=mails_before + 1, timeout=15).token(
            "/core/password/reset"
        )
        anonymous.auth.reset_password(token, NEW_PASSWORD)
        with pytest.raises(AuthenticationError) as old:
            anonymous.auth.login(email, PASSWORD)
        assert old.value.error_code == "INVALID_CREDENTIALS"
        assert anonymous.auth.login(email, NEW_PASSWORD).access


def test_change_password_and_update_me(make_quarry: Any, quarry_url: str) -> None:
    client: Quarry = make_quarry()
    updated = client.auth.update_me(first_name="Ada", last_name="Byron")
    assert (updated.firstName, updated.lastName) == ("Ada", "Byron")
    assert client.auth.me().lastName == "Byron"
    client.auth.change_password(PASSWORD, NEW_PASSWORD)
    with Quarry(quarry_url) as again:
        assert again.auth.login(client.account_email, NEW_PASSWORD).access
        with pytest.raises(AuthenticationError):
            again.auth.login(client.account_email, PASSWORD)


def test_refresh_on_demand_rotates_the_pair_and_the_old_refresh_token_dies(
    quarry: Quarry,
) -> None:
    before = quarry.transport.credentials.refresh
    pair = quarry.auth.refresh()
    assert pair is not None and pair.expires_in > 0
    assert pair.refresh != before and pair.refresh == quarry.transport.credentials.refresh
    assert quarry.auth.me().email == quarry.account_email
    with (
        Quarry(quarry.base_url, refresh_token=before, access_token="x.y.z") as stale,
        pytest.raises(AuthenticationError) as raised,
    ):
        stale.auth.refresh()
    assert raised.value.error_code == "TOKEN_REVOKED"


async def test_logout_revokes_the_session_and_forgets_the_pair(aquarry: AsyncQuarry) -> None:
    refresh = aquarry.transport.credentials.refresh
    await aquarry.auth.logout()
    assert aquarry.transport.credentials.access is None
    async with AsyncQuarry(aquarry.base_url, refresh_token=refresh) as after:
        with pytest.raises(AuthenticationError) as raised:
            await after.auth.refresh()
    assert raised.value.error_code == "TOKEN_REVOKED"


def test_health_needs_no_credentials(quarry_url: str) -> None:
    with Quarry(quarry_url) as anonymous:
        report = anonymous.auth.health()
    assert report.status == "healthy" and report.database == "connected"
