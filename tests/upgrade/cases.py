"""What must survive an upgrade, kind by kind of stored state (`harness.py`).

Each case writes through the earlier release and checks through the current
code: by id, by content, and by the rules the stored state carries (a unique
index still refuses a duplicate; a refresh token issued before still rotates; a
search index built before still finds what it indexed). An issue that changes
stored state adds its own case here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

from app.errors import ErrorCode
from tests.fixtures.accounts import Account, register_account
from tests.fixtures.databases import USERS_SCHEMA
from tests.fixtures.documents import api_key
from tests.fixtures.entries import download, upload_one, wait_for_text
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.search import wait_until_found
from tests.upgrade.harness import Api, UpgradeCase, Written

ROWS = "/api/v1/rows"


async def logged_in(api: Api, account: Account) -> Account:
    """`account` logged in again through `api` (its password, a new pair)."""
    response = await api.http.post(
        "/core/login", json={"email": account.email, "password": account.password}
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    return Account(account.email, account.password, tokens["access"], tokens["refresh"])


class Accounts:
    """Accounts, their refresh tokens and API keys."""

    name = "accounts"

    async def write(self, api: Api, written: Written) -> None:
        account = await register_account(api.http, api.inbox)
        written["account"] = account
        written["key"] = await api_key(api.http, account)

    async def check(self, api: Api, written: Written) -> None:
        account: Account = written["account"]
        again = await logged_in(api, account)
        me = await api.http.get("/core/me", headers=again.bearer)
        assert me.status_code == 200, me.text
        assert me.json()["data"]["email"] == account.email
        rotated = await api.http.post("/core/token/refresh", json={"refresh": account.refresh})
        assert rotated.status_code == 200, rotated.text
        listed = await api.http.get("/api/list_databases", headers={"X-API-Key": written["key"]})
        assert listed.status_code == 200, listed.text


class Documents:
    """A logical database with a typed, uniquely indexed collection and its documents."""

    name = "documents"
    DOCUMENTS = (
        {"email": "ada@example.com", "signup_date": "2024-01-02T03:04:05.678Z", "age": 36},
        {"email": "alan@example.com", "signup_date": "2023-06-23T00:00:00Z", "age": 41},
    )

    async def write(self, api: Api, written: Written) -> None:
        account = await register_account(api.http, api.inbox)
        created = await api.http.post(
            "/api/create_database",
            json={"db_name": "shop", "collections": [{"name": "users", "fields": USERS_SCHEMA}]},
            headers=account.bearer,
        )
        assert created.status_code == 201, created.text
        database_id = created.json()["database"]["id"]
        inserted = await api.http.post(
            "/api/crud",
            json={"database_id": database_id, "collection_name": "users", "data": self.DOCUMENTS},
            headers=account.bearer,
        )
        assert inserted.status_code == 201, inserted.text
        written["account"] = account
        written["database_id"] = database_id
        written["ids"] = inserted.json()["inserted_ids"]

    async def check(self, api: Api, written: Written) -> None:
        account = await logged_in(api, written["account"])
        where = {"database_id": written["database_id"], "collection_name": "users"}
        for document_id, expected in zip(written["ids"], self.DOCUMENTS, strict=True):
            response = await api.http.get(
                f"/api/crud/{document_id}", params=where, headers=account.bearer
            )
            assert response.status_code == 200, response.text
            assert response.json()["data"] == {"_id": document_id, **expected}, response.text
        duplicate = await api.http.post(
            "/api/crud",
            json={**where, "data": [{"email": "ada@example.com"}]},
            headers=account.bearer,
        )
        assert_envelope(duplicate, 409, ErrorCode.DUPLICATE_KEY)
        dated = await api.http.get(
            "/api/crud",
            params={
                **where,
                "filters": json.dumps({"signup_date": {"$lt": "2024-01-01T00:00:00Z"}}),
            },
            headers=account.bearer,
        )
        assert [d["email"] for d in dated.json()["data"]] == ["alan@example.com"]
        # Sorted, ranged and counted reads of data written before the read planner's
        # typed indexes existed (the current server builds them at start; until they
        # are valid FerretDB answers): the same answer either way.
        ordered = await api.http.get(
            "/api/crud",
            params={
                **where,
                "filters": json.dumps({"signup_date": {"$gte": "2000-01-01T00:00:00Z"}}),
                "sort": json.dumps({"signup_date": -1}),
                "page_size": 1,
            },
            headers=account.bearer,
        )
        assert ordered.status_code == 200, ordered.text
        assert [d["email"] for d in ordered.json()["data"]] == ["ada@example.com"]
        assert ordered.json()["pagination"]["total_items"] == 2
        await self.check_indexes(api, account, written["database_id"])

    @staticmethod
    async def check_indexes(api: Api, account: Account, database_id: str) -> None:
        """Index entries stored before declared indexes existed (`{name, field,
        unique}`) read with their keys and state, and a declared index joins them."""
        # The builder is told of the old collection at start; its typed indexes are
        # then built, and both indexes serve (the data holds the declared types).
        deadline = time.monotonic() + 60
        while True:
            metadata = await api.http.get(
                "/api/get_metadata", params={"database_id": database_id}, headers=account.bearer
            )
            assert metadata.status_code == 200, metadata.text
            (users,) = metadata.json()["data"]["collections"]
            indexes = {index["name"]: index for index in users["indexes"]}
            states = {name: index["state"] for name, index in indexes.items()}
            if "building" not in states.values():
                break
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.2)
        assert states == {"email_unique": "valid", "signup_date_index": "valid"}, indexes
        assert [
            (k["field"], k["type"], k["direction"]) for k in indexes["email_unique"]["keys"]
        ] == [("email", "string", 1)]
        assert indexes["email_unique"]["declared"] is False
        declared = await api.http.post(
            "/api/update_schema",
            json={
                "database_id": database_id,
                "collection_name": "users",
                "fields": USERS_SCHEMA,
                "indexes": [{"keys": [{"field": "age", "type": "int", "direction": -1}]}],
            },
            headers=account.bearer,
        )
        assert declared.status_code == 200, declared.text
        names = {index["name"] for index in declared.json()["collection"]["indexes"]}
        assert names == {"email_unique", "signup_date_index", "age_-1"}


class UniqueMissingKey:
    """Documents that lack a `unique` field, written while the engine let several do
    so (before issue 25's missing-key rule). The rule's index cannot be built over
    them; the collection keeps serving: they stay readable and updatable, a present
    value is still refused twice, and no write fails on the half-built index."""

    name = "unique-missing-key"

    async def write(self, api: Api, written: Written) -> None:
        account = await register_account(api.http, api.inbox)
        created = await api.http.post(
            "/api/create_database",
            json={
                "db_name": "codes",
                "collections": [
                    {
                        "name": "items",
                        "fields": [{"name": "code", "type": "string", "unique": True}],
                    }
                ],
            },
            headers=account.bearer,
        )
        assert created.status_code == 201, created.text
        database_id = created.json()["database"]["id"]
        inserted = await api.http.post(
            "/api/crud",
            json={
                "database_id": database_id,
                "collection_name": "items",
                "data": [{"n": 1}, {"n": 2}, {"code": "a", "n": 3}],
            },
            headers=account.bearer,
        )
        assert inserted.status_code == 201, inserted.text
        written["account"] = account
        written["database_id"] = database_id
        written["ids"] = inserted.json()["inserted_ids"]

    async def check(self, api: Api, written: Written) -> None:
        account = await logged_in(api, written["account"])
        where = {"database_id": written["database_id"], "collection_name": "items"}
        first, second, _ = written["ids"]
        for document_id, n in ((first, 1), (second, 2)):
            changed = await api.http.patch(
                "/api/crud",
                json={
                    **where,
                    "filters": {"_id": document_id},
                    "update_data": {"$set": {"n": n * 10}},
                },
                headers=account.bearer,
            )
            assert changed.status_code == 200, changed.text
            assert changed.json()["modified_count"] == 1, changed.text
            read = await api.http.get(
                f"/api/crud/{document_id}", params=where, headers=account.bearer
            )
            assert read.json()["data"] == {"_id": document_id, "n": n * 10}, read.text
        duplicate = await api.http.post(
            "/api/crud", json={**where, "data": [{"code": "a"}]}, headers=account.bearer
        )
        assert_envelope(duplicate, 409, ErrorCode.DUPLICATE_KEY)
        fresh = await api.http.post(
            "/api/crud", json={**where, "data": [{"code": "b"}]}, headers=account.bearer
        )
        assert fresh.status_code == 201, fresh.text
        # A schema change makes FerretDB rewrite the collection's index metadata, which
        # the engine's trigger follows: it must not fail on the rule it cannot build.
        indexed = await api.http.post(
            "/api/update_schema",
            json={
                **where,
                "fields": [
                    {"name": "code", "type": "string", "unique": True},
                    {"name": "n", "type": "int", "index": True},
                ],
            },
            headers=account.bearer,
        )
        assert indexed.status_code == 200, indexed.text


class DatasetsAndEntries:
    """A dataset shared with a reader, an entry with its extracted text, and the
    search index built for it."""

    name = "datasets and entries"
    TEXT = b"Quarterly harvest ledger for the northern orchards, upgrade proof.\n"

    async def write(self, api: Api, written: Written) -> None:
        owner = await register_account(api.http, api.inbox)
        reader = await register_account(api.http, api.inbox)
        created = await api.http.post(
            "/api/v1/datasets", json={"name": "orchards"}, headers=owner.bearer
        )
        assert created.status_code == 201, created.text
        dataset_id = created.json()["data"]["id"]
        shared = await api.http.post(
            f"/api/v1/datasets/{dataset_id}/shares",
            json={"email": reader.email},
            headers=owner.bearer,
        )
        assert shared.status_code == 201, shared.text
        entry = await upload_one(api.http, owner.bearer, dataset_id, "ledger.txt", self.TEXT)
        assert (await wait_for_text(api.http, owner.bearer, entry["id"]))["text_status"] == "done"
        # Indexed by this release, so the current one opens an index it did not build.
        await wait_until_found(api.http, owner.bearer, "orchards", [entry["id"]])
        written.values.update(owner=owner, reader=reader, dataset=dataset_id, entry=entry["id"])

    async def check(self, api: Api, written: Written) -> None:
        owner = await logged_in(api, written["owner"])
        reader = await logged_in(api, written["reader"])
        dataset = await api.http.get(
            f"/api/v1/datasets/{written['dataset']}", headers=reader.bearer
        )
        assert dataset.status_code == 200, dataset.text
        assert dataset.json()["data"]["name"] == "orchards"
        fetched = await download(api.http, reader.bearer, written["entry"])
        assert fetched.status_code == 200, fetched.text
        assert hashlib.sha256(fetched.content).digest() == hashlib.sha256(self.TEXT).digest()
        await wait_until_found(api.http, owner.bearer, "orchards", [written["entry"]])


class Rows:
    """Timeseries rows of a dataset."""

    name = "rows"
    ROWS = tuple({"timestamp": f"2024-05-01T00:00:0{n}Z", "values": {"t": n / 2}} for n in range(5))

    async def write(self, api: Api, written: Written) -> None:
        owner = await register_account(api.http, api.inbox)
        created = await api.http.post(
            "/api/v1/datasets", json={"name": "sensor"}, headers=owner.bearer
        )
        assert created.status_code == 201, created.text
        dataset_id = created.json()["data"]["id"]
        inserted = await api.http.post(
            f"{ROWS}/bulk_insert",
            json={"dataset": dataset_id, "rows": list(self.ROWS)},
            headers=owner.bearer,
        )
        assert inserted.status_code == 200, inserted.text
        written.values.update(owner=owner, dataset=dataset_id)

    async def check(self, api: Api, written: Written) -> None:
        owner = await logged_in(api, written["owner"])
        response = await api.http.get(
            ROWS, params={"dataset": written["dataset"]}, headers=owner.bearer
        )
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()["data"]
        assert [(r["timestamp"], r["values"]) for r in rows] == [
            (row["timestamp"], row["values"]) for row in self.ROWS
        ], rows


class AuditRecords:
    """The audit records of an account's requests (the whole chain is verified by
    the current `quarry audit verify` before the current server starts)."""

    name = "audit records"

    async def write(self, api: Api, written: Written) -> None:
        account = await register_account(api.http, api.inbox)
        created = await api.http.post(
            "/api/api_keys", json={"name": "audited"}, headers=account.bearer
        )
        assert created.status_code == 201, created.text
        listed = await api.http.get("/api/v1/audit", headers=account.bearer)
        assert listed.status_code == 200, listed.text
        written["account"] = account
        written["records"] = listed.json()["data"]

    async def check(self, api: Api, written: Written) -> None:
        account = await logged_in(api, written["account"])
        listed = await api.http.get("/api/v1/audit", params={"limit": 1000}, headers=account.bearer)
        assert listed.status_code == 200, listed.text
        now = {record["id"]: record for record in listed.json()["data"]}
        for record in written["records"]:
            assert now[record["id"]] == record


CASES: tuple[UpgradeCase, ...] = (
    Accounts(),
    Documents(),
    UniqueMissingKey(),
    DatasetsAndEntries(),
    Rows(),
    AuditRecords(),
)
