"""Settings rules and logging: production refuses dev secrets; JSON logs carry the
request id and never a secret."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from app.logs import scrub
from app.main import create_app
from app.settings import Settings
from tests.fixtures.routes import install_test_routes

REPO = Path(__file__).resolve().parents[2]


def test_production_refuses_a_missing_secret_key() -> None:
    with pytest.raises(ValidationError, match="QUARRY_SECRET_KEY"):
        Settings(env="production", public_url="https://q.example.com", secret_key="")


def test_production_refuses_a_short_secret_key() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(env="production", public_url="https://q.example.com", secret_key="short")


def test_production_accepts_a_long_secret_key() -> None:
    settings = Settings(
        env="production",
        public_url="https://q.example.com",
        secret_key="k" * 32,
        smtp_host="smtp.example.com",
    )
    assert settings.resolved_public_url == "https://q.example.com"


def test_production_refuses_to_start_without_smtp() -> None:
    """Without SMTP, verification and reset links would land in files on the server."""
    with pytest.raises(ValidationError, match="QUARRY_SMTP_HOST"):
        Settings(env="production", public_url="https://q.example.com", secret_key="k" * 32)


def test_cli_names_the_missing_setting_in_production() -> None:
    env = {**os.environ, "QUARRY_ENV": "production", "QUARRY_SECRET_KEY": ""}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "QUARRY_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_settings_read_quarry_environment(monkeypatch) -> None:
    monkeypatch.setenv("QUARRY_PORT", "9123")
    monkeypatch.setenv("QUARRY_CONTROL_DB", "elsewhere")
    settings = Settings()
    assert (settings.port, settings.control_db) == (9123, "elsewhere")


def test_scrub_masks_tokens_keys_and_passwords() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnop"
    key = "qk_AbCdEfGh_" + "z" * 40
    text = scrub(f"token {jwt} key {key} password=hunter2 Authorization: Bearer abc.def")
    for secret in (jwt, key, "hunter2", "abc.def"):
        assert secret not in text


async def test_json_logs_carry_request_id_and_no_secrets(make_settings) -> None:
    app = create_app(make_settings(log_format="json"))
    install_test_routes(app)
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "quarry")
    stream = io.StringIO()
    handler.setStream(stream)
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnop"
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as http,
        ):
            await http.get(
                f"/nope?token={jwt}",
                headers={"X-Request-ID": "req-42", "Authorization": f"Bearer {jwt}"},
            )
            await http.get("/_test/boom", headers={"X-Request-ID": "req-43"})
    finally:
        handler.setStream(sys.stderr)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [e for e in lines if e["logger"] == "quarry.access"]
    assert any(e["request_id"] == "req-42" and e["http_status"] == 404 for e in access)
    errors = [e for e in lines if e["logger"] == "quarry.errors"]
    assert errors and errors[0]["request_id"] == "req-43" and "exception" in errors[0]
    assert jwt not in stream.getvalue()
    assert "hunter2" not in stream.getvalue()
