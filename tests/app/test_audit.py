"""The audit log (app/audit/): one record per mutating
request, actors, no secrets, visibility, paging, export, the hash chain and its
verification (function and CLI), concurrent appends, retention."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI
from pymongo.errors import AutoReconnect

from app.audit import (
    MUTATING_METHODS,
    AuditLog,
    AuditVisibility,
    audited_routes,
    email_fingerprint,
    record_hash,
)
from app.audit.records import ANCHORS, HEAD, RECORDS
from app.cli import main as quarry
from app.clock import utc_now
from app.settings import Settings
from app.wiring import state_of
from tests.fixtures.accounts import PASSWORD, Account

Records = list[dict[str, Any]]


def audit_log(app: FastAPI) -> AuditLog:
    log: AuditLog = state_of(app).get(AuditLog)
    return log


async def all_records(app: FastAPI) -> Records:
    cursor = state_of(app).database.control[RECORDS].find({}).sort("seq", 1)
    return [record async for record in cursor]


async def records_after(app: FastAPI, seq: int) -> Records:
    return [r for r in await all_records(app) if r["seq"] > seq]


async def last_seq(app: FastAPI) -> int:
    records = await all_records(app)
    return records[-1]["seq"] if records else 0


async def user_id_of(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.get("/core/me", headers=account.bearer)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["id"])


async def append_some(app: FastAPI, count: int, **fields: Any) -> None:
    for number in range(count):
        await audit_log(app).append(action="test.event", details={"n": number}, **fields)


async def run_cli(argv: list[str]) -> int:
    return await asyncio.to_thread(quarry, argv)


@pytest.fixture
def cli_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`quarry` in this process reads the test's database from the environment."""
    monkeypatch.setenv("QUARRY_MONGODB_URL", settings.mongodb_url)
    monkeypatch.setenv("QUARRY_CONTROL_DB", settings.control_db)
    return settings


# ------------------------------------------------------------------ recording


async def test_every_mutating_endpoint_leaves_exactly_one_record(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    account = await register()
    routes = [
        route
        for route in audited_routes(app)
        if route.methods & MUTATING_METHODS and not route.read_only
    ]
    assert len(routes) > 20  # the table sees every included router
    seen = set()
    for route in routes:
        path = route.path
        while "{" in path:
            start, end = path.index("{"), path.index("}")
            path = path[:start] + str(ObjectId()) + path[end + 1 :]
        for method in sorted(route.methods & MUTATING_METHODS):
            before = await last_seq(app)
            response = await client.request(method, path, json={}, headers=account.bearer)
            new = await records_after(app, before)
            assert len(new) == 1, (method, route.path, response.status_code, new)
            assert new[0]["action"] == route.action, (method, route.path)
            assert new[0]["status"] == response.status_code
            assert new[0]["request_id"] == response.headers["x-request-id"]
            assert new[0]["details"]["method"] == method
            seen.add(route.action)
    assert {"auth.login", "auth.register", "auth.create_api_key", "auth.delete_api_key"} <= seen
    assert {"management.create_database", "documents.insert_documents"} <= seen


async def test_reads_are_not_recorded(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    account = await register()
    before = await last_seq(app)
    assert (await client.get("/core/me", headers=account.bearer)).status_code == 200
    assert (await client.get("/api/list_databases", headers=account.bearer)).status_code == 200
    assert (await client.get("/api/v1/audit", headers=account.bearer)).status_code == 200
    assert await records_after(app, before) == []


async def test_posts_that_only_read_are_not_recorded(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    """Search, batch reads and the access check are POSTs that change nothing."""
    account = await register()
    read_only = {r.path for r in audited_routes(app) if r.read_only}
    assert {
        "/api/v1/search",
        "/api/v1/datasets/{dataset_id}/search",
        "/api/v1/entries/batch",
        "/api/v1/entries/batch/content",
        "/api/v1/access/check",
    } <= read_only
    created = await client.post("/api/v1/datasets", json={"name": "d"}, headers=account.bearer)
    dataset_id = created.json()["data"]["id"]
    before = await last_seq(app)
    calls = [
        ("/api/v1/search", {"query": "anything"}),
        (f"/api/v1/datasets/{dataset_id}/search", {"query": "anything"}),
        ("/api/v1/entries/batch", {"dataset_id": dataset_id}),
        ("/api/v1/entries/batch/content", {"ids": [str(ObjectId())]}),
        ("/api/v1/access/check", {"dataset_id": dataset_id}),
    ]
    for path, body in calls:
        response = await client.post(path, json=body, headers=account.bearer)
        assert response.status_code == 200, (path, response.text)
    assert await records_after(app, before) == []


async def test_an_unknown_path_is_not_recorded(app: FastAPI, client: httpx.AsyncClient) -> None:
    before = await last_seq(app)
    assert (await client.post("/api/no_such_thing", json={})).status_code == 404
    assert await records_after(app, before) == []


async def test_login_ok_and_failed_are_recorded_with_the_actor(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    account = await register()
    user_id = await user_id_of(client, account)
    before = await last_seq(app)
    failed = await client.post("/core/login", json={"email": account.email, "password": "wrong"})
    assert failed.status_code == 401
    ok = await client.post("/core/login", json={"email": account.email, "password": PASSWORD})
    assert ok.status_code == 200
    failure, success = await records_after(app, before)
    assert failure["action"] == success["action"] == "auth.login"
    assert failure["status"] == 401 and failure["actor_user_id"] is None
    assert failure["details"]["email_sha256"] == email_fingerprint(account.email)
    assert success["status"] == 200
    assert str(success["actor_user_id"]) == user_id
    assert success["resource_type"] == "user" and success["resource_id"] == user_id
    assert success["ip"] and success["user_agent"]


async def test_authenticated_writes_name_the_caller_and_the_key_prefix(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    account = await register()
    user_id = await user_id_of(client, account)
    created = await client.post("/api/api_keys", json={"name": "ci"}, headers=account.bearer)
    assert created.status_code == 201
    key = created.json()["data"]
    before = await last_seq(app)
    body = {"db_name": "audited", "collections": []}
    response = await client.post(
        "/api/create_database", json=body, headers={"X-API-Key": key["key"]}
    )
    assert response.status_code == 201, response.text
    (record,) = await records_after(app, before)
    assert str(record["actor_user_id"]) == user_id
    assert record["api_key_prefix"] == key["prefix"]
    (creation,) = [r for r in await all_records(app) if r["action"] == "auth.create_api_key"]
    assert creation["resource_type"] == "api_key" and creation["resource_id"] == key["id"]
    deleted = await client.delete(f"/api/api_keys/{key['id']}", headers=account.bearer)
    assert deleted.status_code == 200
    deletion = (await all_records(app))[-1]
    assert deletion["action"] == "auth.delete_api_key"
    assert deletion["resource_type"] == "api_key" and deletion["resource_id"] == key["id"]


async def test_no_record_holds_a_secret(
    app: FastAPI, client: httpx.AsyncClient, register: Any, inbox: Any
) -> None:
    account = await register()
    secrets = [PASSWORD, account.access, account.refresh]
    key = (await client.post("/api/api_keys", json={"name": "k"}, headers=account.bearer)).json()
    secrets.append(key["data"]["key"])
    secrets.append(key["data"]["key"].split("_")[-1])  # the secret part alone
    by_key = {"X-API-Key": secrets[-2]}
    await client.post("/api/create_database", json={"db_name": "keyed"}, headers=by_key)
    new_password = "another horse battery staple"
    changed = await client.post(
        "/core/password/change",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=account.bearer,
    )
    assert changed.status_code == 200, changed.text
    secrets.append(new_password)
    inbox.clear()
    await client.post("/core/password/forgot", json={"email": account.email})
    reset_token = inbox.wait_for(account.email).token("/core/password/reset")
    secrets.append(reset_token)
    final_password = "a third horse battery staple"
    await client.post(
        "/core/password/reset", json={"token": reset_token, "password": final_password}
    )
    secrets.append(final_password)
    await client.post("/core/login", json={"email": account.email, "password": "typo-password"})
    secrets.append("typo-password")
    records = await all_records(app)
    actions = {r["action"] for r in records}
    assert {"auth.change_password", "auth.reset_password", "auth.verify_by_link"} <= actions
    text = json.dumps(records, default=str)
    for secret in secrets:
        assert secret not in text
    assert account.email not in text  # failed logins keep a fingerprint, not the address


# ------------------------------------------------------------------ reading


async def test_a_user_sees_only_their_own_records_and_an_admin_sees_all(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    alice, bob = await register(), await register()
    alice_id, bob_id = await user_id_of(client, alice), await user_id_of(client, bob)
    for account in (alice, bob):
        await client.patch("/core/me", json={"firstName": "Renamed"}, headers=account.bearer)
    mine = (await client.get("/api/v1/audit", headers=alice.bearer)).json()
    assert mine["success"] is True and mine["data"]
    assert {r["actor_user_id"] for r in mine["data"]} == {alice_id}
    theirs = await client.get(
        "/api/v1/audit", params={"actor_user_id": bob_id}, headers=alice.bearer
    )
    assert theirs.json()["data"] == []

    await (
        state_of(app)
        .database.control["users"]
        .update_one({"_id": ObjectId(alice_id)}, {"$set": {"role": "admin"}})
    )
    everything = await client.get("/api/v1/audit", params={"limit": 1000}, headers=alice.bearer)
    actors = {r["actor_user_id"] for r in everything.json()["data"]}
    assert {alice_id, bob_id, None} <= actors  # failed or anonymous events too
    bobs = await client.get("/api/v1/audit", params={"actor_user_id": bob_id}, headers=alice.bearer)
    assert bobs.json()["data"] and {r["actor_user_id"] for r in bobs.json()["data"]} == {bob_id}


async def test_a_registered_visibility_grants_the_datasets_a_user_administers(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    alice = await register()
    alice_id = ObjectId(await user_id_of(client, alice))
    mine, other = ObjectId(), ObjectId()

    class Visibility:
        async def dataset_ids_administered(self, user_id: ObjectId) -> list[ObjectId]:
            return [mine] if user_id == alice_id else []

        async def is_platform_admin(self, user_id: ObjectId) -> bool:
            return False

    state_of(app).provide(Visibility(), as_=AuditVisibility)
    stranger = ObjectId()
    await audit_log(app).append(action="datasets.share", dataset_id=mine, actor_user_id=stranger)
    await audit_log(app).append(action="datasets.share", dataset_id=other, actor_user_id=stranger)
    seen = await client.get(
        "/api/v1/audit", params={"action": "datasets.share"}, headers=alice.bearer
    )
    assert [r["dataset_id"] for r in seen.json()["data"]] == [str(mine)]
    on_mine = await client.get(
        "/api/v1/audit", params={"dataset_id": str(mine)}, headers=alice.bearer
    )
    assert [r["actor_user_id"] for r in on_mine.json()["data"]] == [str(stranger)]


async def page_through(client: httpx.AsyncClient, account: Account, **params: Any) -> Records:
    seen: Records = []
    after = None
    while True:
        query = {**params, **({"after": after} if after else {})}
        body = (await client.get("/api/v1/audit", params=query, headers=account.bearer)).json()
        seen.extend(body["data"])
        assert body["pagination"]["has_next"] == (body["pagination"]["next_cursor"] is not None)
        after = body["pagination"]["next_cursor"]
        if after is None:
            return seen


async def test_cursor_paging_returns_every_visible_record_once_newest_first(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    alice = await register()
    alice_id = await user_id_of(client, alice)
    await append_some(app, 7, actor_user_id=alice_id)
    await append_some(app, 3)  # nobody's
    expected = [r["seq"] for r in await all_records(app) if str(r["actor_user_id"]) == alice_id]
    paged = await page_through(client, alice, limit=3)
    assert [r["seq"] for r in paged] == sorted(expected, reverse=True)

    await (
        state_of(app)
        .database.control["users"]
        .update_one({"_id": ObjectId(alice_id)}, {"$set": {"role": "admin"}})
    )
    walked = await page_through(client, alice, limit=4)  # unfiltered: walks the chain
    assert [r["seq"] for r in walked] == [r["seq"] for r in reversed(await all_records(app))]
    events = await page_through(client, alice, limit=2, action="test.event")
    assert len(events) == 10
    first = (await all_records(app))[0]["at"]
    later = await page_through(client, alice, since=(first + timedelta(milliseconds=1)).isoformat())
    assert first not in {r["at"] for r in later} and len(later) < len(walked)


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor!",
        base64.urlsafe_b64encode(b'{"seq": "12"}').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"seq": 0}').decode(),
    ],
)
async def test_a_bad_cursor_is_a_400(client: httpx.AsyncClient, register: Any, cursor: str) -> None:
    account = await register()
    response = await client.get("/api/v1/audit", params={"after": cursor}, headers=account.bearer)
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_AUDIT_CURSOR"


async def test_reading_the_log_needs_credentials(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/audit", "/api/v1/audit/export"):
        assert (await client.get(path)).status_code == 401


async def test_export_streams_ndjson_oldest_first(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    alice = await register()
    alice_id = await user_id_of(client, alice)
    await append_some(app, 5, actor_user_id=alice_id)
    response = await client.get("/api/v1/audit/export", headers=alice.bearer)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    expected = [r["seq"] for r in await all_records(app) if str(r["actor_user_id"]) == alice_id]
    assert [line["seq"] for line in lines] == expected
    assert all(line["actor_user_id"] == alice_id and line["hash"] for line in lines)
    filtered = await client.get(
        "/api/v1/audit/export", params={"action": "test.event"}, headers=alice.bearer
    )
    assert len(filtered.text.splitlines()) == 5


# ------------------------------------------------------------------ the chain


async def test_records_are_chained_by_hash(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    await register()
    records = await all_records(app)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    previous = "0" * 64
    for record in records:
        assert record["prev_hash"] == previous
        assert record["hash"] == record_hash(record)
        previous = record["hash"]
    report = await audit_log(app).verify()
    assert report.ok and report.checked == len(records)


async def test_an_edited_record_fails_verify_naming_it(
    app: FastAPI, cli_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await append_some(app, 6)
    assert await run_cli(["audit", "verify"]) == 0
    assert "6 records" in capsys.readouterr().out
    control = state_of(app).database.control
    victim = await control[RECORDS].find_one({"seq": 4})
    await control[RECORDS].update_one({"_id": victim["_id"]}, {"$set": {"status": 200}})
    report = await audit_log(app).verify()
    assert not report.ok
    assert (report.problem, report.broken_seq, report.broken_id) == (
        "edited",
        4,
        str(victim["_id"]),
    )
    assert await run_cli(["audit", "verify"]) == 1
    error = capsys.readouterr().err
    assert "edited" in error and "seq 4" in error and str(victim["_id"]) in error


async def test_a_deleted_record_fails_verify_naming_it(
    app: FastAPI, cli_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await append_some(app, 6)
    control = state_of(app).database.control
    await control[RECORDS].delete_one({"seq": 3})
    report = await audit_log(app).verify()
    follower = await control[RECORDS].find_one({"seq": 4})
    assert (report.problem, report.broken_seq, report.broken_id) == (
        "missing",
        3,
        str(follower["_id"]),
    )
    assert await run_cli(["audit", "verify"]) == 1
    assert "seq 3 missing" in capsys.readouterr().err


async def test_a_truncated_tail_fails_verify(app: FastAPI) -> None:
    await append_some(app, 5)
    await state_of(app).database.control[RECORDS].delete_one({"seq": 5})
    report = await audit_log(app).verify()
    assert (report.problem, report.broken_seq) == ("missing", 5)


async def test_a_rehashed_edit_fails_verify_at_the_next_record(app: FastAPI) -> None:
    await append_some(app, 5)
    control = state_of(app).database.control
    forged = await control[RECORDS].find_one({"seq": 2})
    forged["details"] = {"n": 99}
    forged["hash"] = record_hash(forged)
    await control[RECORDS].replace_one({"_id": forged["_id"]}, forged)
    report = await audit_log(app).verify()
    follower = await control[RECORDS].find_one({"seq": 3})
    assert (report.problem, report.broken_seq, report.broken_id) == (
        "reordered",
        3,
        str(follower["_id"]),
    )


async def test_concurrent_appends_from_two_apps_make_one_gap_free_chain(
    make_client: Any, register_in: Any
) -> None:
    control_db = f"quarry_test_{uuid.uuid4().hex[:12]}"
    async with (
        make_client(control_db=control_db) as (first, first_http),
        make_client(control_db=control_db) as (second, second_http),
    ):
        account = await register_in(first_http)

        async def writes(app: FastAPI, http: httpx.AsyncClient) -> None:
            for number in range(15):
                await audit_log(app).append(action="test.concurrent", details={"n": number})
                await http.patch("/core/me", json={"lastName": "X"}, headers=account.bearer)

        await asyncio.gather(
            *(writes(app, http) for app, http in [(first, first_http), (second, second_http)] * 2)
        )
        records = await all_records(first)
        assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
        assert sum(r["action"] == "test.concurrent" for r in records) == 60
        assert sum(r["action"] == "auth.update_me" for r in records) == 60
        report = await audit_log(second).verify()
        assert report.ok, report.message
        await state_of(first).database.client.drop_database(control_db)


async def test_a_new_process_finds_the_head_without_the_head_document(
    make_client: Any,
) -> None:
    control_db = f"quarry_test_{uuid.uuid4().hex[:12]}"
    async with make_client(control_db=control_db) as (app, _):
        await append_some(app, 37)
        await state_of(app).database.control[HEAD].delete_many({})
    async with make_client(control_db=control_db) as (app, _):
        record = await audit_log(app).append(action="test.after_restart")
        assert record["seq"] == 38
        assert (await audit_log(app).verify()).ok
        await state_of(app).database.client.drop_database(control_db)


async def test_a_failed_audit_write_does_not_fail_the_request(
    app: FastAPI,
    client: httpx.AsyncClient,
    register: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = await register()

    async def unreachable(**_: Any) -> None:
        raise AutoReconnect("connection refused")

    monkeypatch.setattr(audit_log(app), "append", unreachable)
    with caplog.at_level(logging.WARNING, logger="quarry.audit"):
        response = await client.patch(
            "/core/me", json={"firstName": "Still"}, headers=account.bearer
        )
    assert response.status_code == 200
    assert "audit record of PATCH /core/me (status 200) not written" in caplog.text


# ------------------------------------------------------------------ retention


async def test_the_retention_sweep_deletes_from_the_oldest_end_and_keeps_the_chain_valid(
    app: FastAPI, cli_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    log = audit_log(app)
    await append_some(app, 5)
    await asyncio.sleep(0.05)
    await append_some(app, 4)
    records = await all_records(app)
    sixth = records[5]["at"]
    retention = timedelta(days=state_of(app).settings.audit_retention_days)
    removed = await log.sweep_expired(now=sixth + retention)
    assert removed == 5
    remaining = await all_records(app)
    assert [r["seq"] for r in remaining] == [6, 7, 8, 9]
    anchor = await log.anchor()
    assert (anchor.seq, anchor.hash) == (5, records[4]["hash"])
    report = await log.verify()
    assert report.ok and report.checked == 4 and report.anchor_seq == 5
    await log.append(action="test.after_sweep")
    assert await run_cli(["audit", "verify"]) == 0
    assert "5 records" in capsys.readouterr().out

    assert await log.sweep_expired(now=utc_now() + retention + timedelta(days=1)) == 5
    assert await all_records(app) == []
    record = await log.append(action="test.after_everything_swept")
    assert record["seq"] == 11 and record["prev_hash"] == (await log.anchor()).hash
    assert (await log.verify()).ok
    assert await state_of(app).database.control[ANCHORS].count_documents({}) == 1


async def test_deleting_old_records_without_the_sweep_fails_verify(app: FastAPI) -> None:
    await append_some(app, 4)
    await state_of(app).database.control[RECORDS].delete_one({"seq": 1})
    report = await audit_log(app).verify()
    assert (report.problem, report.broken_seq) == ("missing", 1)


async def test_management_and_document_writes_name_their_database(
    app: Any, client: Any, register: Any
) -> None:
    account = await register()
    created = await client.post(
        "/api/create_database",
        json={"db_name": "audited", "collections": [{"name": "users", "fields": []}]},
        headers=account.bearer,
    )
    assert created.status_code == 201, created.text
    database_id = created.json()["database"]["id"]
    inserted = await client.post(
        "/api/crud",
        json={"database_id": database_id, "collection_name": "users", "data": {"a": 1}},
        headers=account.bearer,
    )
    assert inserted.status_code == 201, inserted.text
    converted = await client.post(
        "/api/convert_index_violations",
        json={"database_id": database_id, "collection_name": "users", "field": "a"},
        headers=account.bearer,
    )
    assert converted.status_code == 422, converted.text  # `a` is no index key
    records = state_of(app).database.control["audit_log"]
    for action in (
        "management.create_database",
        "documents.insert_documents",
        "management.convert_index_violations",
    ):
        record = await records.find_one({"action": action})
        assert record is not None, action
        assert record["resource_type"] == "database"
        assert record["resource_id"] == database_id
    record = await records.find_one({"action": "management.convert_index_violations"})
    assert record is not None
    assert record["details"]["field"] == "a"


async def test_a_time_without_a_zone_is_utc_and_an_oversized_cursor_is_refused(
    client: Any, register: Any
) -> None:
    account = await register()
    for path in ("/api/v1/audit", "/api/v1/audit/export"):
        response = await client.get(
            path, params={"since": "2024-01-01T00:00:00", "until": "2100-01-01T00:00:00"},
            headers=account.bearer,
        )  # fmt: skip
        assert response.status_code == 200, response.text
    huge = base64.urlsafe_b64encode(json.dumps({"seq": 10**20}).encode()).decode().rstrip("=")
    response = await client.get(
        "/api/v1/audit", params={"after": huge, "action": "auth.login"}, headers=account.bearer
    )
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "INVALID_AUDIT_CURSOR"
