"""Registration, verification mail, resend, and non-enumeration on register."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.errors import ErrorCode
from app.wiring import state_of
from tests.fixtures.accounts import PASSWORD, body, new_email
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.mailbox import Inbox

REGISTERED = "User registered successfully. Please check your email to verify your account."


@pytest.mark.smoke
async def test_register_creates_unverified_account_and_mails_a_link(
    client: httpx.AsyncClient, inbox: Inbox, app
) -> None:
    email = new_email()
    response = await client.post("/core/register", json=body(f"  {email.upper()} "))
    assert response.status_code == 201
    assert response.json() == {"success": True, "message": REGISTERED}

    stored = await state_of(app).database.control["users"].find_one({"email": email})
    assert stored is not None and stored["is_verified"] is False
    assert stored["first_name"] == "Alex"
    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in str(stored)

    mail = inbox.wait_for(email)
    assert mail.link("/core/verify").startswith("http://testserver/core/verify?token=")
    assert "/core/verify?token=" in mail.part("html")


@pytest.mark.smoke
async def test_verify_link_marks_the_account_verified(
    client: httpx.AsyncClient, inbox: Inbox, app
) -> None:
    email = new_email()
    await client.post("/core/register", json=body(email))
    token = inbox.wait_for(email).token("/core/verify")
    response = await client.get("/core/verify", params={"token": token})
    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Email verified."}
    assert (await state_of(app).database.control["users"].find_one({"email": email}))["is_verified"]
    # Already verified: still 200, by GET or POST.
    assert (await client.post("/core/verify", json={"token": token})).status_code == 200


async def test_tampered_verify_token_is_refused(
    client: httpx.AsyncClient, inbox: Inbox, app
) -> None:
    email = new_email()
    await client.post("/core/register", json=body(email))
    token = inbox.wait_for(email).token("/core/verify")
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = await client.get("/core/verify", params={"token": tampered})
    assert_envelope(response, 400, ErrorCode.VERIFY_TOKEN_INVALID)
    assert not (await state_of(app).database.control["users"].find_one({"email": email}))[
        "is_verified"
    ]


async def test_register_existing_email_answers_the_same_and_mails_a_notice(
    client: httpx.AsyncClient, inbox: Inbox, register, app
) -> None:
    account = await register()
    inbox.clear()
    response = await client.post("/core/register", json=body(account.email, "another-password"))
    assert response.status_code == 201
    assert response.json() == {"success": True, "message": REGISTERED}
    notice = inbox.wait_for(account.email)
    assert "tried to register" in notice.subject
    assert (
        await state_of(app).database.control["users"].count_documents({"email": account.email}) == 1
    )
    # The existing password still works: nothing was changed.
    login = await client.post("/core/login", json={"email": account.email, "password": PASSWORD})
    assert login.status_code == 200


async def test_concurrent_registrations_of_one_address_create_one_account(
    client: httpx.AsyncClient, inbox: Inbox, app
) -> None:
    email = new_email()
    # Five: the most one address may register per window (QUARRY_REGISTER_MAX_PER_EMAIL).
    responses = await asyncio.gather(
        *(client.post("/core/register", json=body(email)) for _ in range(5))
    )
    assert [r.status_code for r in responses] == [201] * 5
    assert await state_of(app).database.control["users"].count_documents({"email": email}) == 1


async def test_register_validates_email_and_password(client: httpx.AsyncClient) -> None:
    response = await client.post("/core/register", json=body("not-an-email", "short"))
    details = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)["details"]
    assert {tuple(d["loc"]) for d in details} == {("body", "email"), ("body", "password")}


async def test_resend_verification_always_202(
    client: httpx.AsyncClient, inbox: Inbox, register, app
) -> None:
    unknown = await client.post("/core/resend-verification", json={"email": new_email()})
    verified = await register()
    known = await client.post("/core/resend-verification", json={"email": verified.email})
    # The path that does mail: an unverified account whose last mail is old enough.
    pending = new_email()
    await client.post("/core/register", json=body(pending))
    users = state_of(app).database.control["users"]
    await users.update_one({"email": pending}, {"$set": {"verification_sent_at": None}})
    mailing = await client.post("/core/resend-verification", json={"email": pending})
    assert unknown.status_code == known.status_code == mailing.status_code == 202
    assert unknown.json() == known.json() == mailing.json()
    assert len(inbox.mails_to(pending)) == 2  # it did mail; the answer does not say so


async def test_resend_verification_mails_a_fresh_link_at_most_once_a_minute(
    client: httpx.AsyncClient, inbox: Inbox, app
) -> None:
    email = new_email()
    await client.post("/core/register", json=body(email))
    users = state_of(app).database.control["users"]
    await users.update_one({"email": email}, {"$set": {"verification_sent_at": None}})
    assert (
        await client.post("/core/resend-verification", json={"email": email})
    ).status_code == 202
    second = inbox.wait_for(email, count=2)
    assert second.token("/core/verify")
    assert (
        await client.post("/core/resend-verification", json={"email": email})
    ).status_code == 202
    # Mail goes out in a background task that the ASGI call awaits, and the SMTP
    # server has the message before the send returns: the inbox is final here.
    assert len(inbox.mails_to(email)) == 2


async def test_expired_verify_token_is_refused(make_client, inbox: Inbox) -> None:

    async with make_client(verify_token_seconds=1) as (_app, http):
        email = new_email()
        await http.post("/core/register", json=body(email))
        token = inbox.wait_for(email).token("/core/verify")
        await asyncio.sleep(2.1)
        assert_envelope(
            await http.get("/core/verify", params={"token": token}),
            400,
            ErrorCode.VERIFY_TOKEN_INVALID,
        )
