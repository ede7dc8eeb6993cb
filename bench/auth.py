"""Auth figures: login latency (Argon2id at the default cost) and the latency of
an authenticated request, each beside the raw operation it is built on.

- login: `POST /core/login` one at a time, against one Argon2 verification alone;
- Bearer request: `GET /core/me` (JWT check + one `find_one`) at 32 clients,
  against the raw driver's `find_one` of the same user at 32 tasks;
- API-key resolution: the authenticator's hash + indexed lookup, in-process,
  against the raw `find_one` by key hash.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Any

import httpx
from bson import ObjectId
from pymongo import AsyncMongoClient

from app.db import Database
from app.engine import choose_adapter
from app.settings import Settings
from auth.authenticator import HeaderAuthenticator
from auth.passwords import Passwords
from auth.service import AuthState
from auth.tokens import TokenCodec
from bench.harness import HttpConnection, LoadResult, Row, closed_loop, control_db

CONCURRENCY = 32
SECONDS = 8.0
LOGINS = 30
PASSWORD = "benchmark-password-123"


def _ms(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values) * 1000, values[max(0, int(len(values) * 0.99) - 1)] * 1000


async def _pool(api: str) -> asyncio.Queue[HttpConnection]:
    idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
    for _ in range(CONCURRENCY):
        idle.put_nowait(await HttpConnection.open(api))
    return idle


async def run(api: str, mongodb_url: str) -> tuple[list[Row], dict[str, Any]]:
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        await http.post(
            "/core/register",
            json={"email": email, "firstName": "B", "lastName": "M", "password": PASSWORD},
        )
        login_times = []
        for _ in range(LOGINS):
            started = time.perf_counter()
            response = await http.post("/core/login", json={"email": email, "password": PASSWORD})
            login_times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        access = response.json()["access"]

    settings = Settings()
    passwords = Passwords(settings)
    stored_hash = await passwords.hash(PASSWORD)
    verify_times = []
    for _ in range(LOGINS):
        started = time.perf_counter()
        await passwords.verify(PASSWORD, stored_hash)
        verify_times.append(time.perf_counter() - started)

    idle = await _pool(api)
    headers = {"Authorization": f"Bearer {access}"}

    async def me() -> None:
        connection = await idle.get()
        status, _ = await connection.request("GET", "/core/me", headers=headers)
        idle.put_nowait(connection)
        assert status == 200

    bearer = await closed_loop(me, concurrency=CONCURRENCY, seconds=SECONDS)
    while not idle.empty():
        await (idle.get_nowait()).close()

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_url, maxPoolSize=CONCURRENCY
    )
    users = client[control_db(api)]["users"]
    user = await users.find_one({"email": email})
    assert user is not None

    async def raw_user() -> None:
        await users.find_one({"_id": user["_id"]})

    raw_bearer = await closed_loop(raw_user, concurrency=CONCURRENCY, seconds=SECONDS)

    # API-key resolution in-process (no endpoint takes keys until the CRUD issue).
    bench_settings = Settings(mongodb_url=mongodb_url, control_db=control_db(api))
    state = AuthState(
        codec=TokenCodec("k" * 32, bench_settings),
        passwords=passwords,
        settings=bench_settings,
        mailer=None,  # type: ignore[arg-type]
    )
    database = Database(
        client=client, control_db_name=control_db(api), choose_adapter=choose_adapter
    )
    service_key = await _insert_key(database, user["_id"])
    authenticator = HeaderAuthenticator(database=database, state=state)

    async def resolve_key() -> None:
        await authenticator.authenticate(authorization=None, x_api_key=service_key)

    key_result = await closed_loop(resolve_key, concurrency=CONCURRENCY, seconds=SECONDS)
    keys = database.control["api_keys"]

    async def raw_key() -> None:
        await keys.find_one({"key_hash": "0" * 64})

    raw_key_result = await closed_loop(raw_key, concurrency=CONCURRENCY, seconds=SECONDS)
    await client.close()

    login_p50, login_p99 = _ms(login_times)
    verify_p50, verify_p99 = _ms(verify_times)
    rows = [
        Row(
            "login p50 / p99 ms (1 client)",
            f"{login_p50:.0f} / {login_p99:.0f}",
            f"{verify_p50:.0f} / {verify_p99:.0f} (argon2 only)",
            f"{verify_p50 / login_p50:.2f}",
            "(reference)",
        ),
        _rate_row("GET /core/me req/s", bearer, raw_bearer),
        _latency_row("GET /core/me p50 / p99 ms", bearer, raw_bearer),
        _rate_row("API-key resolution/s (in-process)", key_result, raw_key_result),
    ]
    return rows, {
        "login_ms": login_times,
        "argon2_verify_ms": verify_times,
        "me_api": bearer,
        "me_raw": raw_bearer,
        "api_key": key_result,
        "api_key_raw": raw_key_result,
    }


def _rate_row(figure: str, quarry: LoadResult, raw: LoadResult) -> Row:
    return Row(
        f"{figure} ({CONCURRENCY} clients)",
        f"{quarry.throughput:.0f}",
        f"{raw.throughput:.0f}",
        f"{quarry.throughput / raw.throughput:.2f}",
        "(reference)",
    )


def _latency_row(figure: str, quarry: LoadResult, raw: LoadResult) -> Row:
    return Row(
        figure,
        f"{quarry.p50_ms:.1f} / {quarry.p99_ms:.1f}",
        f"{raw.p50_ms:.1f} / {raw.p99_ms:.1f}",
        "",
        "",
    )


async def _insert_key(database: Database, user_id: ObjectId) -> str:
    from auth.service import hash_api_key, new_api_key

    key, prefix = new_api_key()
    await database.control["api_keys"].insert_one(
        {
            "user_id": user_id,
            "name": "bench",
            "prefix": prefix,
            "key_hash": hash_api_key(key),
            "created_at": None,
            "expires_at": None,
            "last_used_at": None,
        }
    )
    return key
