"""Per-user rate limits (app/limits/rate_limit.py, datasets.md "Rate limits"): exact under
concurrency across app instances, headers on every authenticated answer, a 429
that does nothing, operation limits, 0 disables, API keys share their user's
budget, state survives a restart, and every authenticated route is charged.

Limits here are 1 per minute (slots of 60 s) and the limiter's clock is frozen,
so no window boundary can open a slot in the middle of a test.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from app.errors import ErrorCode
from app.http import CallerDep, get_bearer_caller, get_caller
from app.limits import (
    OPERATION_KEY,
    OPERATIONS,
    SLOTS,
    Operation,
    RateLimiter,
    rate_limited_operation,
)
from app.main import create_app
from app.settings import Settings
from app.wiring import state_of
from tests.fixtures.accounts import Account
from tests.fixtures.documents import api_key
from tests.fixtures.envelopes import assert_envelope

#: Routes that take no credentials (conventions.md), so nothing to charge.
PUBLIC_PATHS = {
    "/health",
    "/api/v1/health",
    "/core/register",
    "/core/verify",
    "/core/resend-verification",
    "/core/login",
    "/core/token/refresh",
    "/core/logout",
    "/core/password/forgot",
    "/core/password/reset",
}


def freeze(*apps: FastAPI) -> float:
    """Stop the limiters' clocks at one moment (the same for every app given)."""
    moment = time.time()
    for app in apps:
        state_of(app).get(RateLimiter).clock = lambda: moment
    return moment


def limits(response: httpx.Response) -> tuple[int, int, int]:
    headers = response.headers
    return (
        int(headers["x-ratelimit-limit"]),
        int(headers["x-ratelimit-remaining"]),
        int(headers["x-ratelimit-reset"]),
    )


def assert_rate_limited(response: httpx.Response) -> None:
    assert_envelope(response, 429, ErrorCode.RATE_LIMITED)
    assert int(response.headers["retry-after"]) >= 1
    assert limits(response)[1] == 0


def install_limited_route(app: FastAPI, operation: Operation) -> str:
    path = f"/_test/limited/{operation}"

    @app.get(path, openapi_extra=rate_limited_operation(operation))
    async def limited(caller: CallerDep) -> dict[str, object]:
        return {"success": True}

    return path


async def test_parallel_requests_on_two_apps_get_exactly_the_remaining_budget(
    make_client: Callable[..., Any], register_in: Callable[..., Any]
) -> None:
    """Two app instances (two workers) on one control database, 30 requests at
    once against 10 remaining slots: exactly 10 get through."""
    shared = {
        "control_db": f"quarry_test_{uuid.uuid4().hex[:12]}",
        "rate_limit_per_minute": 1,
        "rate_limit_burst": 15,
    }
    async with make_client(**shared) as (one, http_one), make_client(**shared) as (two, http_two):
        freeze(one, two)
        account = await register_in(http_one)
        for _ in range(5):
            assert (await http_one.get("/core/me", headers=account.bearer)).status_code == 200
        answers = await asyncio.gather(
            *(http.get("/core/me", headers=account.bearer) for http in [http_one, http_two] * 15)
        )
        assert Counter(r.status_code for r in answers) == {200: 10, 429: 20}
        for response in answers:
            if response.status_code == 429:
                assert_rate_limited(response)
        assert await state_of(one).database.control[SLOTS].count_documents({}) == 15


async def test_headers_on_success_and_error_count_down(
    make_client: Callable[..., Any], register_in: Callable[..., Any]
) -> None:
    async with make_client(rate_limit_per_minute=1, rate_limit_burst=4) as (app, http):
        moment = freeze(app)
        account = await register_in(http)
        ok = await http.get("/core/me", headers=account.bearer)
        missing = await http.get(
            "/api/get_metadata", params={"database_id": str(ObjectId())}, headers=account.bearer
        )
        assert_envelope(missing, 404, ErrorCode.DATABASE_NOT_FOUND)
        ok_again = await http.get("/api/list_databases", headers=account.bearer)
        last = await http.get("/core/me", headers=account.bearer)
        refused = await http.get("/core/me", headers=account.bearer)
        answers = [ok, missing, ok_again, last]
        assert [limits(r)[:2] for r in answers] == [(4, 3), (4, 2), (4, 1), (4, 0)]
        resets = [limits(r)[2] for r in answers]
        assert resets[0] >= moment and all(b - a == 60 for a, b in itertools.pairwise(resets))
        assert_rate_limited(refused)
        assert limits(refused) == (4, 0, resets[-1])


async def test_unauthenticated_requests_are_not_charged(
    make_client: Callable[..., Any], register_in: Callable[..., Any]
) -> None:
    async with make_client(rate_limit_per_minute=1, rate_limit_burst=1) as (app, http):
        freeze(app)
        account = await register_in(http)
        for _ in range(3):
            anonymous = await http.get("/core/me")
            assert_envelope(anonymous, 401, ErrorCode.NOT_AUTHENTICATED)
            assert "x-ratelimit-limit" not in anonymous.headers
        assert limits(await http.get("/core/me", headers=account.bearer))[:2] == (1, 0)


async def test_a_refused_request_does_nothing(
    make_client: Callable[..., Any], register_in: Callable[..., Any]
) -> None:
    async with make_client(rate_limit_per_minute=1, rate_limit_burst=1) as (app, http):
        freeze(app)
        account = await register_in(http)
        assert (await http.get("/core/me", headers=account.bearer)).status_code == 200
        key = await http.post("/api/api_keys", headers=account.bearer, json={"name": "x"})
        assert_rate_limited(key)
        database = await http.post(
            "/api/create_database",
            json={"db_name": "refused", "collections": [{"name": "users", "fields": []}]},
            headers=account.bearer,
        )
        assert_rate_limited(database)
        control = state_of(app).database.control
        assert await control["api_keys"].count_documents({}) == 0
        assert await control["databases"].count_documents({}) == 0
        assert await control[SLOTS].count_documents({}) == 1


async def test_an_operation_limit_applies_on_top_and_takes_all_or_none(
    make_client: Callable[..., Any], register_in: Callable[..., Any]
) -> None:
    async with make_client(rate_limit_per_minute=1, rate_limit_burst=50, rate_limit_search=2) as (
        app,
        http,
    ):
        freeze(app)
        path = install_limited_route(app, "search")
        account, other = await register_in(http), await register_in(http)
        first = await http.get(path, headers=account.bearer)
        assert limits(first)[:2] == (2, 1)  # the operation's budget is closest to running out
        assert (await http.get(path, headers=account.bearer)).status_code == 200
        refused = await http.get(path, headers=account.bearer)
        assert_rate_limited(refused)
        assert limits(refused)[0] == 2 and "search" in refused.json()["message"]
        # The refused search took nothing from the general budget: 2 searches + this.
        assert limits(await http.get("/core/me", headers=account.bearer))[:2] == (50, 47)
        # Another user has budgets of their own.
        assert (await http.get(path, headers=other.bearer)).status_code == 200


async def test_a_request_refused_by_one_budget_keeps_nothing_of_the_others(
    make_client: Callable[..., Any], register_in: Callable[..., Any]
) -> None:
    """The search slot is taken first; the spent general budget then refuses,
    and the search slot is given back."""
    async with make_client(rate_limit_per_minute=1, rate_limit_burst=2, rate_limit_search=5) as (
        app,
        http,
    ):
        freeze(app)
        path = install_limited_route(app, "search")
        account = await register_in(http)
        for _ in range(2):
            assert (await http.get("/core/me", headers=account.bearer)).status_code == 200
        refused = await http.get(path, headers=account.bearer)
        assert_rate_limited(refused)
        assert limits(refused)[0] == 2
        slots = state_of(app).database.control[SLOTS]
        assert await slots.count_documents({"bucket": {"$regex": "^search:"}}) == 0
        assert await slots.count_documents({}) == 2


@pytest.mark.parametrize(
    ("overrides", "limited"),
    [
        ({"rate_limit_per_minute": 0, "rate_limit_search": 0}, False),
        ({"rate_limit_burst": 0, "rate_limit_search": 0}, False),
        ({"rate_limit_per_minute": 0, "rate_limit_search": 1}, True),
    ],
    ids=["all-off", "burst-0-is-off", "general-off-search-on"],
)
async def test_zero_disables_a_limit(
    make_client: Callable[..., Any],
    register_in: Callable[..., Any],
    overrides: dict[str, int],
    limited: bool,
) -> None:
    async with make_client(**{"rate_limit_burst": 1, **overrides}) as (app, http):
        freeze(app)
        path = install_limited_route(app, "search")
        account = await register_in(http)
        plain = [await http.get("/core/me", headers=account.bearer) for _ in range(5)]
        assert [r.status_code for r in plain] == [200] * 5
        assert all("x-ratelimit-limit" not in r.headers for r in plain)
        searches = [(await http.get(path, headers=account.bearer)).status_code for _ in range(3)]
        assert searches == ([200, 429, 429] if limited else [200, 200, 200])


async def test_an_api_key_spends_its_users_budget(
    make_client: Callable[..., Any], register_in: Callable[..., Any]
) -> None:
    async with make_client(rate_limit_per_minute=1, rate_limit_burst=3) as (app, http):
        freeze(app)
        account: Account = await register_in(http)
        key = {"X-API-Key": await api_key(http, account)}  # 1: the key's creation
        assert (await http.get("/api/list_databases", headers=key)).status_code == 200  # 2
        assert (await http.get("/core/me", headers=account.bearer)).status_code == 200  # 3
        assert_rate_limited(await http.get("/api/list_databases", headers=key))
        assert_rate_limited(await http.get("/core/me", headers=account.bearer))
        database = state_of(app).database
        buckets = await database.client[database.control_db_name][SLOTS].distinct("bucket")
        assert len(buckets) == 1 and buckets[0].startswith("general:")


async def test_a_spent_budget_stays_spent_after_a_restart(
    make_client: Callable[..., Any], register_in: Callable[..., Any]
) -> None:
    settings = {
        "control_db": f"quarry_test_{uuid.uuid4().hex[:12]}",
        "rate_limit_per_minute": 1,
        "rate_limit_burst": 2,
    }
    async with make_client(**settings) as (app, http):
        moment = freeze(app)
        account: Account = await register_in(http)
        key = {"X-API-Key": await api_key(http, account)}
        assert (await http.get("/api/list_databases", headers=key)).status_code == 200
    async with make_client(**settings) as (app, http):
        state_of(app).get(RateLimiter).clock = lambda: moment
        assert_rate_limited(await http.get("/api/list_databases", headers=key))


async def test_the_sweep_removes_slots_behind_the_window(
    make_client: Callable[..., Any], register_in: Callable[..., Any]
) -> None:
    async with make_client(rate_limit_per_minute=1, rate_limit_burst=3) as (app, http):
        moment = freeze(app)
        account = await register_in(http)
        for _ in range(3):
            assert (await http.get("/core/me", headers=account.bearer)).status_code == 200
        limiter = state_of(app).get(RateLimiter)
        limiter.clock = lambda: moment + 60  # one slot fell behind the window
        assert await limiter.sweep() == 1
        assert await state_of(app).database.control[SLOTS].count_documents({}) == 2
        assert (await http.get("/core/me", headers=account.bearer)).status_code == 200
        assert_rate_limited(await http.get("/core/me", headers=account.bearer))


def _calls(dependant: Dependant) -> Iterator[Any]:
    yield dependant.call
    for dependency in dependant.dependencies:
        yield from _calls(dependency)


def test_every_authenticated_route_is_charged() -> None:
    """The door is the caller dependency: every route but the public ones must
    resolve one, and a route's operation limit must be one the limiter knows."""
    app = create_app(Settings(env="test"))
    routes = [
        context
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
    ]
    assert routes
    for context in routes:
        route = context.original_route
        assert isinstance(route, APIRoute)
        calls = set(_calls(route.dependant))
        charged = get_caller in calls or get_bearer_caller in calls
        assert charged != (context.path in PUBLIC_PATHS), (context.path, context.methods)
        operation = (route.openapi_extra or {}).get(OPERATION_KEY)
        assert operation is None or (operation in OPERATIONS and charged), context.path


def test_every_authenticated_operation_documents_the_429() -> None:
    document = create_app(Settings(env="test")).openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if operation.get("security"):
                assert "429" in operation["responses"], (method, path)
