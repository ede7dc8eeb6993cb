"""Mail delivery modes and secrets in logs."""

from __future__ import annotations

import email
import io
import logging
import sys
from email import policy

import httpx

from app.engine import free_port
from app.main import create_app
from tests.fixtures.accounts import PASSWORD, new_email


def quarry_log_stream() -> tuple[logging.Handler, io.StringIO]:
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "quarry")
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    return handler, stream


async def test_without_smtp_mail_goes_to_the_outbox_and_no_link_to_the_log(
    make_settings, tmp_path
) -> None:
    app = create_app(make_settings(smtp_host="", data_dir=tmp_path / "dev"))
    handler, stream = quarry_log_stream()
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            ) as http,
        ):
            address = new_email()
            response = await http.post(
                "/core/register",
                json={"email": address, "firstName": "A", "lastName": "B", "password": PASSWORD},
            )
            assert response.status_code == 201
            files = list((tmp_path / "dev" / "outbox").glob("*.eml"))
            assert len(files) == 1
            message = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
            assert address in message["To"]
            plain = message.get_body(preferencelist=("plain",)).get_content()
            html = message.get_body(preferencelist=("html",)).get_content()
            link = next(w for w in plain.split() if "/core/verify?token=" in w)
            assert link in html
            token = link.split("token=")[1]
            # The log names the file to open, never the link: its token is a credential.
            assert str(files[0]) in stream.getvalue()
            assert token not in stream.getvalue()
            assert (await http.get("/core/verify", params={"token": token})).status_code == 200
    finally:
        handler.setStream(sys.stderr)  # type: ignore[attr-defined]


async def test_failed_mail_is_logged_and_does_not_fail_the_request(make_settings, caplog) -> None:
    app = create_app(make_settings(smtp_port=free_port(), smtp_timeout_seconds=2))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as http,
    ):
        response = await http.post(
            "/core/register",
            json={"email": new_email(), "firstName": "A", "lastName": "B", "password": PASSWORD},
            headers={"X-Request-ID": "mail-failure-1"},
        )
    assert response.status_code == 201
    failures = [r for r in caplog.records if r.name == "quarry.mail" and r.levelno == logging.ERROR]
    assert failures and failures[0].request_id == "mail-failure-1"


class RawMessages(logging.Handler):
    """Every message as the code logged it, before any handler's filter (the
    scrubber rewrites records in place, so caplog only ever sees them scrubbed)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("quarry"):
            self.messages.append(record.getMessage())


async def test_no_password_token_or_key_reaches_the_logs(make_settings, inbox) -> None:
    app = create_app(make_settings())
    handler, stream = quarry_log_stream()
    root = logging.getLogger()
    raw_messages = RawMessages()
    root.handlers.insert(0, raw_messages)  # runs before the quarry handler's scrubber
    level = root.level
    root.setLevel(logging.DEBUG)
    secrets: list[str] = [PASSWORD, "a-new-password-9"]
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            ) as http,
        ):
            address = new_email()
            await http.post(
                "/core/register",
                json={"email": address, "firstName": "A", "lastName": "B", "password": PASSWORD},
            )
            verify = inbox.wait_for(address).token("/core/verify")
            secrets.append(verify)
            await http.get("/core/verify", params={"token": verify})
            pair = (
                await http.post("/core/login", json={"email": address, "password": PASSWORD})
            ).json()
            secrets += [pair["access"], pair["refresh"]]
            bearer = {"Authorization": f"Bearer {pair['access']}"}
            key = (await http.post("/api/api_keys", headers=bearer, json={"name": "k"})).json()[
                "data"
            ]["key"]
            secrets.append(key)
            await http.get("/api/api_keys", headers={"X-API-Key": key})
            await http.post("/core/login", json={"email": address, "password": "wrong-password-x"})
            secrets.append("wrong-password-x")
            await http.post("/core/password/forgot", json={"email": address})
            reset = inbox.wait_for(address, count=2).token("/core/password/reset")
            secrets.append(reset)
            await http.post(
                "/core/password/reset", json={"token": reset, "password": "a-new-password-9"}
            )
            await http.post("/core/token/refresh", json={"refresh": pair["refresh"]})
    finally:
        handler.setStream(sys.stderr)  # type: ignore[attr-defined]
        root.removeHandler(raw_messages)
        root.setLevel(level)
    written = stream.getvalue()
    raw = "\n".join(raw_messages.messages)
    assert "POST /core/login" in written and "POST /core/login" in raw
    for secret in secrets:
        assert secret not in written, "a secret reached the server log"
        assert secret not in raw, "a secret was logged (before scrubbing)"
