"""Property-based fuzzing of every operation in the OpenAPI document (schemathesis).

The served API (`quarry serve`, a real process on the session's engine) is driven
with generated requests — schema-valid and schema-violating ones — authenticated
as a real user who owns a real database with a `users` collection. Positive
cases aim at that database (their `database_id` / `collection_name` are replaced
by the real ones) so generated filters, documents, updates and pipelines reach
the engine; negative cases keep whatever was generated.

Pass criteria, per response: no 5xx; the status code is one the operation
documents; the body conforms to the documented schema and content type; every
error body is the envelope of conventions.md with the request id of the answer.

The example count per operation is bounded (`QUARRY_FUZZ_EXAMPLES`, default 15)
and generation is derandomized, so `make test` runs the same cases every time;
`QUARRY_FUZZ_EXAMPLES=500 QUARRY_FUZZ_RANDOM=1 make test PYTEST_ARGS="-m fuzz"`
explores further with a fresh seed.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from app.settings import Settings
from bench.harness import served_api
from bench.rate_limit import LIMITS_OUT_OF_REACH
from tests.fixtures.databases import USERS_SCHEMA

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("QUARRY_FUZZ_EXAMPLES", "15"))
RANDOM = os.environ.get("QUARRY_FUZZ_RANDOM") == "1"
PASSWORD = "fuzzing horse battery staple"
TOKEN_SECONDS = 60
ENVELOPE_KEYS = {"success", "error_code", "message", "details", "request_id"}
# Operations that would destroy the fixture's database or collection keep the
# generated (random) ids; the injection and isolation suite covers them on purpose.
DESTRUCTIVE = {"/api/drop_database", "/api/drop_collections"}


class LiveApi:
    def __init__(self, base: str, database_id: str, email: str) -> None:
        self.base, self.database_id, self.email = base, database_id, email
        self._token: tuple[float, str] | None = None

    def bearer(self) -> dict[str, str]:
        """An access token, renewed every minute. Access tokens are stateless for their
        15 minutes (a generated logout-all revokes refresh tokens only), so one serves
        many cases; a login per case made logins most of the run's time."""
        if self._token is None or time.monotonic() - self._token[0] > TOKEN_SECONDS:
            response = httpx.post(
                f"{self.base}/core/login", json={"email": self.email, "password": PASSWORD}
            )
            assert response.status_code == 200, response.text
            self._token = (time.monotonic(), response.json()["access"])
        return {"Authorization": f"Bearer {self._token[1]}"}


@pytest.fixture(scope="module")
def live_api(database_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    env = {
        "QUARRY_ARGON2_TIME_COST": "1",
        "QUARRY_ARGON2_MEMORY_KIB": "1024",
        "QUARRY_ARGON2_PARALLELISM": "1",
        "QUARRY_LOG_LEVEL": "INFO",
        # Generated logins must not lock the fixture's account out.
        "QUARRY_LOGIN_MAX_FAILURES": "1000000",
        # Nor may the rate limits refuse the generated cases (the limiter stays in
        # the path; tests/app/test_rate_limit.py tests its refusals).
        **LIMITS_OUT_OF_REACH,
    }
    with served_api(database_server.url, extra_env=env, log=log) as base:
        email = f"fuzz-{uuid.uuid4().hex[:10]}@example.com"
        registered = httpx.post(
            f"{base}/core/register",
            json={"email": email, "firstName": "Fuzz", "lastName": "Er", "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        api = LiveApi(base, "", email)
        created = httpx.post(
            f"{base}/api/create_database",
            json={
                "db_name": f"fuzz_{uuid.uuid4().hex[:8]}",
                "collections": [{"name": "users", "fields": USERS_SCHEMA}],
            },
            headers=api.bearer(),
        )
        assert created.status_code == 201, created.text
        api.database_id = created.json()["database"]["id"]
        try:
            yield api
        finally:
            print_server_errors(log)


def print_server_errors(log: Path) -> None:
    """Show the server's own account of any failure (pytest prints it on failure)."""
    lines = log.read_text(errors="replace").splitlines()
    errors = [line for line in lines if "ERROR" in line or "Traceback" in line]
    if errors:
        print("\n".join(errors[-50:]))


def load_schema() -> Any:
    """The served document, built from the app itself so that pytest lists one
    test per operation at collection time."""
    document = create_app(Settings(env="test")).openapi()
    loaded = schemathesis.openapi.from_dict(document)
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=EXAMPLES,
        deterministic=not RANDOM,
        database="none",
    )
    return loaded


@schemathesis.serializer("application/x-ndjson")
def ndjson_lines(ctx: Any, value: Any) -> bytes:
    """A rows NDJSON load (`POST /api/v1/rows/bulk_insert`): the generated row (or
    list of rows) as JSON lines."""
    rows = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


schema = load_schema()


def envelope_conformance(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error answer is the envelope, with the answer's request id."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"error answer is not JSON: {response.text[:200]!r}") from None
    assert isinstance(body, dict) and set(body) == ENVELOPE_KEYS, f"not the envelope: {body!r}"
    assert body["success"] is False
    assert isinstance(body["error_code"], str) and body["error_code"].isupper()
    assert isinstance(body["message"], str) and body["message"]
    assert [body["request_id"]] == response.headers.get("x-request-id")
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    envelope_conformance,
]


def aim_at_the_fixture(case: Any, api: LiveApi) -> None:
    """Positive cases address the real database and collection."""
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return
    if case.operation.path in DESTRUCTIVE:
        return
    for container in (case.query, case.body):
        if isinstance(container, dict):
            if "database_id" in container:
                container["database_id"] = api.database_id
            if "collection_name" in container:
                container["collection_name"] = "users"


@schema.parametrize()
def test_every_operation_holds_under_generated_input(case: Any, live_api: LiveApi) -> None:
    aim_at_the_fixture(case, live_api)
    headers = {**(case.headers or {}), **live_api.bearer()}
    case.call_and_validate(base_url=live_api.base, headers=headers, checks=CHECKS, timeout=60)


def test_requests_the_http_layer_refuses_still_get_the_envelope(live_api: LiveApi) -> None:
    """A request line over the HTTP parser's limit never reaches the app; the
    answer is still the envelope (was uvicorn's plain-text 400)."""
    host, port = live_api.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/api/crud?fields=" + "a" * 100_000, headers=live_api.bearer())
    response = connection.getresponse()
    assert response.status == 400
    assert response.getheader("content-type") == "application/json"
    body = json.loads(response.read())
    connection.close()
    assert set(body) == ENVELOPE_KEYS and body["error_code"] == "BAD_REQUEST"
    assert body["request_id"] == response.getheader("x-request-id")
    assert "could not be parsed" in body["message"]
