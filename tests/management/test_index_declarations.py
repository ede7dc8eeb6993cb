"""Declared indexes (compound, directional, unique, without declaring their fields),
their state in `get_metadata` (building → valid, off with the reason), and the
documents that hold them off: listed, converted, counted in the background.

One app and two owners serve the whole module (registering is the slow part);
each test makes its own database. What bypasses validation (documents of another
type) is written with the raw driver on the test's own engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from bson import Int64, ObjectId
from fastapi import FastAPI
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure

from app.db import Collection
from app.engine import EngineSql, typed_indexes
from app.errors import ErrorCode
from app.wiring import state_of
from management import index_checks, index_service
from management import repository as management_repository
from management.index_checks import ViolationChecks
from management.index_service import MISSING_ON_ENGINE
from management.indexes import UNCONVERTIBLE, lossless_conversion
from tests.fixtures.accounts import Account, register_account
from tests.fixtures.databases import unique_name
from tests.fixtures.engine import DatabaseServer
from tests.fixtures.entries import Sync, module_app, module_settings
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.mailbox import Inbox

#: Seconds a test waits for the typed-index builder at most.
SETTLE_SECONDS = 30

ORDERS: dict[str, Any] = {
    "name": "orders",
    "fields": [{"name": "sku", "type": "string"}],
    "indexes": [
        {
            "keys": [
                {"field": "price", "type": "float", "direction": -1},
                {"field": "sku", "type": "string"},
            ]
        },
    ],
}


@dataclass
class Served:
    app: FastAPI
    http: httpx.AsyncClient
    owner: Account
    other: Account
    sync: Sync

    async def create(self, *collections: dict[str, Any]) -> str:
        """A new database of the owner with these collections; its id."""
        response = await self.http.post(
            "/api/create_database",
            json={"db_name": unique_name("idx"), "collections": list(collections)},
            headers=self.owner.bearer,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["database"]["id"])

    async def metadata(self, database_id: str) -> dict[str, Any]:
        response = await self.http.get(
            "/api/get_metadata", params={"database_id": database_id}, headers=self.owner.bearer
        )
        assert response.status_code == 200, response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    async def indexes(self, database_id: str, collection: str = "orders") -> dict[str, Any]:
        """The collection's indexes in `get_metadata`, by name."""
        data = await self.metadata(database_id)
        entry = next(c for c in data["collections"] if c["name"] == collection)
        return {index["name"]: index for index in entry["indexes"]}

    async def db_name(self, database_id: str) -> str:
        return str((await self.metadata(database_id))["dbName"])

    async def raw(self, database_id: str, collection: str = "orders") -> AsyncCollection[Any]:
        """The collection through the driver alone: no schema, no validation."""
        return state_of(self.app).database.client[await self.db_name(database_id)][collection]

    async def handle(self, database_id: str, collection: str = "orders") -> Collection:
        """The collection through the engine adapter: the write path every Quarry
        write takes (on the embedded engine, the write door's locks; a raw driver
        write beside it could lose an update to FerretDB's read-then-write-back)."""
        return state_of(self.app).database.db(await self.db_name(database_id))[collection]

    def engine_indexes(self, db_name: str, collection: str = "orders") -> dict[str, Any]:
        return {i["name"]: i for i in self.sync[db_name][collection].list_indexes()}

    async def update_schema(self, database_id: str, **body: Any) -> httpx.Response:
        return await self.http.post(
            "/api/update_schema",
            json={"database_id": database_id, "collection_name": "orders", **body},
            headers=self.owner.bearer,
        )

    async def insert(self, database_id: str, data: Any) -> httpx.Response:
        return await self.http.post(
            "/api/crud",
            json={"database_id": database_id, "collection_name": "orders", "data": data},
            headers=self.owner.bearer,
        )

    async def violations(self, database_id: str, field: str, **params: Any) -> httpx.Response:
        return await self.http.get(
            "/api/index_violations",
            params={
                "database_id": database_id,
                "collection_name": "orders",
                "field": field,
                **params,
            },
            headers=self.owner.bearer,
        )

    async def convert(
        self, database_id: str, field: str, after: str | None = None
    ) -> httpx.Response:
        body = {"database_id": database_id, "collection_name": "orders", "field": field}
        return await self.http.post(
            "/api/convert_index_violations",
            json=body if after is None else {**body, "after": after},
            headers=self.owner.bearer,
        )

    def engine_sql(self) -> EngineSql:
        found = state_of(self.app).database.engine_reads
        if not isinstance(found, EngineSql):
            pytest.skip("typed indexes belong to the embedded engine on PostgreSQL")
        return found

    async def settled(self) -> None:
        await asyncio.wait_for(self.engine_sql().indexes_settled(), SETTLE_SECONDS)


@pytest.fixture(scope="module")
async def served(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Served]:
    data_dir = tmp_path_factory.mktemp("index-declarations") / "data"
    settings = module_settings(database_server, smtp_server, data_dir)
    async with module_app(database_server, sync_client, settings) as (app, http):
        owner = await register_account(http, smtp_server)
        other = await register_account(http, smtp_server)
        yield Served(app, http, owner, other, sync_client)


@contextlib.contextmanager
def open_snapshot(database_server: DatabaseServer) -> Iterator[psycopg.Connection[Any]]:
    """A transaction holding a snapshot: `CREATE INDEX CONCURRENTLY` cannot finish
    (its index stays not valid) until it ends."""
    if database_server.engine is None:
        pytest.skip("typed indexes belong to the embedded engine")
    conninfo = database_server.engine.postgres_conninfo()
    assert conninfo
    with psycopg.connect(conninfo) as blocker:
        blocker.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        blocker.execute("SELECT 1")
        try:
            yield blocker
        finally:
            blocker.rollback()


# ------------------------------------------------------------------ declaration


async def test_an_index_is_declared_without_declaring_its_fields(served: Served) -> None:
    database_id = await served.create(ORDERS)
    engine = served.engine_indexes(await served.db_name(database_id))
    assert engine["price_-1_sku_1"]["key"] == {"price": -1, "sku": 1}
    assert not engine["price_-1_sku_1"].get("unique")
    index = (await served.indexes(database_id))["price_-1_sku_1"]
    assert index["declared"] is True
    assert index["unique"] is False
    assert [(k["field"], k["type"], k["direction"]) for k in index["keys"]] == [
        ("price", "float", -1),
        ("sku", "string", 1),
    ]
    control = state_of(served.app).settings.control_db
    record = served.sync[control]["databases"].find_one({"_id": ObjectId(database_id)})
    assert record is not None
    (entry,) = record["collections"]
    assert [field["name"] for field in entry["fields"]] == ["sku"]
    assert entry["indexes"] == [
        {
            "name": "price_-1_sku_1",
            "field": "price",
            "unique": False,
            "declared": True,
            "keys": [
                {"field": "price", "type": "float", "direction": -1},
                {"field": "sku", "type": "string", "direction": 1},
            ],
        }
    ]


async def test_a_unique_compound_index_is_enforced_with_missing_keys_as_null(
    served: Served,
) -> None:
    """The engine's unique index refuses a second (a, b); a missing key counts as
    null, as on MongoDB (on the embedded engine its `qnul_` shadow index says so)."""
    database_id = await served.create(
        {
            "name": "orders",
            "indexes": [
                {
                    "name": "one_per_pair",
                    "keys": [
                        {"field": "a", "type": "int"},
                        {"field": "b", "type": "string", "direction": -1},
                    ],
                    "unique": True,
                }
            ],
        }
    )
    engine = served.engine_indexes(await served.db_name(database_id))
    assert engine["one_per_pair"]["key"] == {"a": 1, "b": -1}
    assert engine["one_per_pair"]["unique"] is True
    assert (
        await served.insert(database_id, [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}])
    ).status_code == 201
    assert_envelope(
        await served.insert(database_id, {"a": 1, "b": "x"}), 409, ErrorCode.DUPLICATE_KEY
    )
    assert (await served.insert(database_id, {"a": 1})).status_code == 201
    assert_envelope(await served.insert(database_id, {"a": 1}), 409, ErrorCode.DUPLICATE_KEY)
    assert_envelope(
        await served.insert(database_id, {"a": 1, "b": None}), 409, ErrorCode.DUPLICATE_KEY
    )
    raw = await served.raw(database_id)
    assert await raw.count_documents({}) == 3


async def test_a_key_of_another_type_than_its_declared_field_is_refused(served: Served) -> None:
    name = unique_name("idx")
    response = await served.http.post(
        "/api/create_database",
        json={
            "db_name": name,
            "collections": [
                {
                    "name": "orders",
                    "fields": [{"name": "price", "type": "int"}],
                    "indexes": [{"keys": [{"field": "price", "type": "float"}]}],
                }
            ],
        },
        headers=served.owner.bearer,
    )
    body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert [(d["loc"], d["type"]) for d in body["details"]] == [
        (["collections", 0, "indexes", 0, "keys", 0, "type"], "type_mismatch")
    ]
    listed = await served.http.get(
        "/api/list_databases", params={"search": name}, headers=served.owner.bearer
    )
    assert listed.json()["pagination"]["total_items"] == 0


async def test_an_index_name_or_key_pattern_taken_is_refused(served: Served) -> None:
    database_id = await served.create(
        {"name": "orders", "fields": [{"name": "email", "type": "string", "unique": True}]}
    )
    taken_name = await served.update_schema(
        database_id,
        fields=[{"name": "email", "type": "string", "unique": True}],
        indexes=[{"name": "email_unique", "keys": [{"field": "sku", "type": "string"}]}],
    )
    body = assert_envelope(taken_name, 422, ErrorCode.VALIDATION_ERROR)
    assert [(d["loc"], d["type"]) for d in body["details"]] == [
        (["indexes", 0, "name"], "index_name_taken")
    ]
    same_keys = await served.update_schema(
        database_id,
        fields=[{"name": "email", "type": "string", "unique": True}],
        indexes=[
            {"name": "by_sku", "keys": [{"field": "sku", "type": "string"}]},
            {"name": "by_sku_again", "keys": [{"field": "sku", "type": "string"}]},
        ],
    )
    body = assert_envelope(same_keys, 422, ErrorCode.VALIDATION_ERROR)
    assert [(d["loc"], d["type"]) for d in body["details"]] == [
        (["indexes", 1, "keys"], "index_keys_taken")
    ]
    assert set(served.engine_indexes(await served.db_name(database_id))) == {"_id_", "email_unique"}
    assert set(await served.indexes(database_id)) == {"email_unique"}


async def test_update_schema_adds_keeps_and_removes_declared_indexes(served: Served) -> None:
    database_id = await served.create(ORDERS)
    db_name = await served.db_name(database_id)
    fields = ORDERS["fields"]
    by_day = {"name": "by_day", "keys": [{"field": "day", "type": "date", "direction": -1}]}
    added = await served.update_schema(
        database_id, fields=fields, indexes=[*ORDERS["indexes"], by_day]
    )
    assert added.status_code == 200, added.text
    assert {i["name"] for i in added.json()["collection"]["indexes"]} == {
        "price_-1_sku_1",
        "by_day",
    }
    assert served.engine_indexes(db_name)["by_day"]["key"] == {"day": -1}

    kept = await served.update_schema(
        database_id, fields=[*fields, {"name": "note", "type": "string"}]
    )
    assert kept.status_code == 200, kept.text
    assert set(served.engine_indexes(db_name)) == {"_id_", "price_-1_sku_1", "by_day"}

    redefined = {**by_day, "unique": True}
    changed = await served.update_schema(database_id, fields=fields, indexes=[redefined])
    assert changed.status_code == 200, changed.text
    assert set(served.engine_indexes(db_name)) == {"_id_", "by_day"}
    assert served.engine_indexes(db_name)["by_day"]["unique"] is True

    removed = await served.update_schema(database_id, fields=fields, indexes=[])
    assert removed.status_code == 200, removed.text
    assert set(served.engine_indexes(db_name)) == {"_id_"}
    assert await served.indexes(database_id) == {}


async def test_an_index_renamed_or_made_unique_replaces_the_one_in_its_way(
    served: Served,
) -> None:
    """An engine keeps one index per key pattern: the old one goes first."""
    database_id = await served.create(
        {"name": "orders", "fields": [{"name": "sku", "type": "string", "index": True}]}
    )
    db_name = await served.db_name(database_id)
    price = [{"field": "price", "type": "float", "direction": -1}]
    first = await served.update_schema(
        database_id,
        fields=[{"name": "sku", "type": "string", "index": True}],
        indexes=[{"keys": price}],
    )
    assert first.status_code == 200, first.text
    renamed = await served.update_schema(
        database_id,
        fields=[{"name": "sku", "type": "string", "unique": True}],
        indexes=[{"name": "by_price", "keys": price}],
    )
    assert renamed.status_code == 200, renamed.text
    engine = served.engine_indexes(db_name)
    # The rename is metadata only: the engine's index keeps serving under its name.
    assert set(engine) == {"_id_", "sku_unique", "price_-1"}
    assert engine["price_-1"]["key"] == {"price": -1}
    assert engine["sku_unique"]["unique"] is True
    assert set(await served.indexes(database_id)) == {"sku_unique", "by_price"}
    # A replacement the documents refuse puts back what was in its way.
    assert (await served.insert(database_id, [{"price": 1.0, "sku": "a"}])).status_code == 201
    assert (await served.insert(database_id, [{"price": 1.0, "sku": "b"}])).status_code == 201
    refused = await served.update_schema(
        database_id,
        fields=[{"name": "sku", "type": "string", "unique": True}],
        indexes=[{"name": "one_price", "keys": price, "unique": True}],
    )
    assert_envelope(refused, 409, ErrorCode.DUPLICATE_KEY)
    assert set(served.engine_indexes(db_name)) == {"_id_", "sku_unique", "price_-1"}
    assert set(await served.indexes(database_id)) == {"sku_unique", "by_price"}
    assert (await served.indexes(database_id))["by_price"]["reason"] != MISSING_ON_ENGINE


async def test_a_unique_index_existing_documents_violate_changes_nothing(served: Served) -> None:
    database_id = await served.create(ORDERS)
    assert (await served.insert(database_id, [{"sku": "a"}, {"sku": "a"}])).status_code == 201
    response = await served.update_schema(
        database_id,
        fields=ORDERS["fields"],
        indexes=[
            {"name": "sku_once", "keys": [{"field": "sku", "type": "string"}], "unique": True}
        ],
    )
    assert_envelope(response, 409, ErrorCode.DUPLICATE_KEY)
    assert set(served.engine_indexes(await served.db_name(database_id))) == {
        "_id_",
        "price_-1_sku_1",
    }
    assert set(await served.indexes(database_id)) == {"price_-1_sku_1"}


# ------------------------------------------------------------------------ state


async def test_state_is_building_until_the_typed_index_serves_then_valid(
    served: Served, database_server: DatabaseServer
) -> None:
    served.engine_sql()
    with open_snapshot(database_server):
        database_id = await served.create(ORDERS)
        index = (await served.indexes(database_id))["price_-1_sku_1"]
        assert index["state"] == "building"
        assert index["reason"]
        assert {k["guard"]["state"] for k in index["keys"]} == {"building"}
    await served.settled()
    index = (await served.indexes(database_id))["price_-1_sku_1"]
    assert index["state"] == "valid", index
    assert index["reason"] is None
    assert [k["guard"] for k in index["keys"]] == [
        {"state": "valid", "reason": None, "violations": 0}
    ] * 2


async def test_types_without_typed_keys_are_off_with_the_reason(served: Served) -> None:
    served.engine_sql()
    database_id = await served.create(
        {
            "name": "orders",
            "indexes": [
                {"name": "by_tags", "keys": [{"field": "tags", "type": "array"}]},
                {"name": "by_city", "keys": [{"field": "address.city", "type": "string"}]},
            ],
        }
    )
    await served.settled()
    indexes = await served.indexes(database_id)
    assert indexes["by_tags"]["state"] == "off"
    assert indexes["by_tags"]["reason"] == "array fields have no typed key"
    assert indexes["by_city"]["state"] == "off"
    assert "dotted" in indexes["by_city"]["reason"]
    assert set(served.engine_indexes(await served.db_name(database_id))) == {
        "_id_",
        "by_tags",
        "by_city",
    }


async def test_documents_of_another_type_turn_the_index_off_with_their_count(
    served: Served,
) -> None:
    served.engine_sql()
    database_id = await served.create(ORDERS)
    assert (await served.insert(database_id, [{"price": 2.5, "sku": "a"}])).status_code == 201
    raw = await served.raw(database_id)
    await raw.insert_many([{"price": "cheap"}, {"price": "9"}, {"price": [1.0]}])
    await served.settled()
    index = (await served.indexes(database_id))["price_-1_sku_1"]
    assert index["state"] == "off"
    expected = "3 documents hold another type in price; GET /api/index_violations lists them"
    assert index["reason"] == expected
    assert index["keys"][0]["guard"] == {"state": "off", "reason": expected, "violations": 3}
    assert index["keys"][1]["guard"]["state"] == "valid"


# ------------------------------------------------------------------- violations


async def test_violations_are_listed_page_by_page(served: Served) -> None:
    database_id = await served.create(ORDERS)
    raw = await served.raw(database_id)
    await raw.insert_many(
        [
            {"_id": 1, "price": "x"},
            {"_id": 2, "price": 3},
            {"_id": 3, "price": 1.5},
            {"_id": 4, "price": None},
            {"_id": 5},
            {"_id": 6, "price": {"amount": 1}},
            {"_id": 7, "price": [2.0]},
        ]
    )
    first = await served.violations(database_id, "price", page=1, page_size=2)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["declared_type"] == "float"
    assert body["data"] == [{"_id": 1, "type": "string"}, {"_id": 2, "type": "int"}]
    assert body["pagination"] == {
        "page": 1,
        "page_size": 2,
        "total_items": 4,
        "total_pages": 2,
        "has_next": True,
        "has_previous": False,
    }
    second = (await served.violations(database_id, "price", page=2, page_size=2)).json()
    assert second["data"] == [{"_id": 6, "type": "object"}, {"_id": 7, "type": "array"}]
    assert_envelope(
        await served.violations(database_id, "nothing_indexed"), 422, ErrorCode.VALIDATION_ERROR
    )


async def test_conversion_converts_what_converts_and_leaves_the_rest(served: Served) -> None:
    served.engine_sql()
    oid = ObjectId()
    database_id = await served.create(
        {
            "name": "orders",
            "indexes": [
                {"name": name, "keys": [{"field": name, "type": kind}]}
                for name, kind in (
                    ("price", "float"),
                    ("qty", "int"),
                    ("day", "date"),
                    ("ref", "id"),
                    ("ok", "bool"),
                )
            ],
        }
    )
    raw = await served.raw(database_id)
    await raw.insert_many(
        [
            {"_id": 1, "price": "42", "qty": 3.0, "day": "2024-02-29T12:00:00.123Z"},
            {"_id": 2, "price": Int64(7), "qty": "12", "ref": str(oid), "ok": "true"},
            {"_id": 3, "price": "cheap", "qty": 2.5, "day": "tomorrow", "ok": "yes"},
            {"_id": 4, "price": 1.5, "qty": "007", "ref": "not-an-id"},
        ]
    )
    answers = {
        field: (await served.convert(database_id, field)).json()
        for field in ("price", "qty", "day", "ref", "ok")
    }
    counts = {f: (a["converted"], a["unconvertible"], a["remaining"]) for f, a in answers.items()}
    assert counts == {
        "price": (2, 1, 0),
        "qty": (2, 2, 0),
        "day": (1, 1, 0),
        "ref": (1, 1, 0),
        "ok": (1, 1, 0),
    }
    assert answers["price"]["cap"] == index_service.CONVERT_CAP == 1000
    stored = {d["_id"]: d async for d in raw.find({})}
    assert stored[1]["price"] == 42.0 and isinstance(stored[1]["price"], float)
    assert stored[2]["price"] == 7.0 and isinstance(stored[2]["price"], float)
    assert stored[3]["price"] == "cheap"
    assert stored[1]["qty"] == 3 and isinstance(stored[1]["qty"], int)
    assert stored[2]["qty"] == 12
    assert stored[3]["qty"] == 2.5
    assert stored[4]["qty"] == "007"
    assert stored[1]["day"] == datetime(2024, 2, 29, 12, 0, 0, 123000, tzinfo=UTC)
    assert stored[2]["ref"] == oid
    assert stored[2]["ok"] is True
    # What did not convert still holds `price` off; once it is gone, it serves again.
    await served.settled()
    assert (await served.indexes(database_id))["price"]["state"] == "off"
    await raw.delete_one({"_id": 3})
    assert (await served.indexes(database_id))["price"]["state"] == "valid"


async def test_each_call_converts_up_to_the_cap_and_says_what_remains(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_service, "CONVERT_CAP", 3)
    database_id = await served.create(ORDERS)
    raw = await served.raw(database_id)
    await raw.insert_many([{"_id": n, "price": "x" if n == 2 else str(n)} for n in range(1, 7)])
    first = (await served.convert(database_id, "price")).json()
    assert (first["converted"], first["unconvertible"], first["remaining"], first["cap"]) == (
        3,
        1,
        2,
        3,
    )
    second = (await served.convert(database_id, "price")).json()
    assert (second["converted"], second["unconvertible"], second["remaining"]) == (2, 1, 0)
    assert [d["price"] async for d in raw.find({}).sort("_id", 1)] == [1.0, "x", 3.0, 4.0, 5.0, 6.0]


async def test_conversion_never_overwrites_a_concurrent_write(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another write lands between the conversion's read and its update of the
    same document: the conditional update misses, the other write stays."""
    database_id = await served.create(ORDERS)
    raw = await served.raw(database_id)
    await raw.insert_many([{"_id": n, "price": str(n)} for n in range(1, 6)])
    writer = await served.handle(database_id)
    real_find = management_repository.find_violations

    async def find_then_race(**kwargs: Any) -> list[dict[str, Any]]:
        found = await real_find(**kwargs)
        if found:
            await writer.update_one({"_id": 3}, {"$set": {"price": "30"}})
        return found

    monkeypatch.setattr(management_repository, "find_violations", find_then_race)
    answer = (await served.convert(database_id, "price")).json()
    # The end was reached: what changed behind the token is for a new walk.
    assert (answer["converted"], answer["changed"], answer["remaining"]) == (4, 1, 0)
    assert answer["next_after"] is None
    assert (await raw.find_one({"_id": 3}))["price"] == "30"
    monkeypatch.undo()
    again = (await served.convert(database_id, "price")).json()
    assert (again["converted"], again["remaining"]) == (1, 0)
    assert [d["price"] async for d in raw.find({}).sort("_id", 1)] == [1.0, 2.0, 30.0, 4.0, 5.0]


async def test_conversion_races_concurrent_updates_without_losing_them(served: Served) -> None:
    database_id = await served.create(ORDERS)
    raw = await served.raw(database_id)
    await raw.insert_many([{"_id": n, "price": str(n)} for n in range(40)])
    writer = await served.handle(database_id)

    async def overwrite() -> None:
        for n in range(0, 40, 2):
            await writer.update_one({"_id": n}, {"$set": {"price": f"new-{n}"}})

    answer, _ = await asyncio.gather(served.convert(database_id, "price"), overwrite())
    assert answer.status_code == 200, answer.text
    stored = {d["_id"]: d["price"] async for d in raw.find({})}
    for n in range(0, 40, 2):
        assert stored[n] == f"new-{n}"  # the later write is never overwritten
    for n in range(1, 40, 2):
        assert stored[n] == float(n)


# ---------------------------------------------------------------- background job


async def test_a_type_change_is_checked_in_the_background(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    database_id = await served.create(
        {"name": "orders", "fields": [{"name": "qty", "type": "string", "index": True}]}
    )
    assert (await served.insert(database_id, [{"qty": "1"}, {"qty": "two"}])).status_code == 201
    checks = state_of(served.app).get(ViolationChecks)
    with caplog.at_level(logging.WARNING, logger="quarry.management"):
        response = await served.update_schema(
            database_id, fields=[{"name": "qty", "type": "int", "index": True}]
        )
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 10
        while not any(key.database_id == database_id for key in checks.last):
            assert time.monotonic() < deadline, "no violation check ran"
            await asyncio.sleep(0.05)
    (result,) = [r for k, r in checks.last.items() if k.database_id == database_id]
    assert (result.schema_type, result.violations) == ("int", 2)
    (warning,) = [r for r in caplog.records if database_id in r.getMessage()]
    assert "2 documents" in warning.getMessage()
    assert "/api/index_violations" in warning.getMessage()


# ---------------------------------------------------------------------- owners


async def test_another_owners_database_is_not_found(served: Served) -> None:
    database_id = await served.create(ORDERS)
    listed = await served.http.get(
        "/api/index_violations",
        params={"database_id": database_id, "collection_name": "orders", "field": "price"},
        headers=served.other.bearer,
    )
    assert_envelope(listed, 404, ErrorCode.DATABASE_NOT_FOUND)
    converted = await served.http.post(
        "/api/convert_index_violations",
        json={"database_id": database_id, "collection_name": "orders", "field": "price"},
        headers=served.other.bearer,
    )
    assert_envelope(converted, 404, ErrorCode.DATABASE_NOT_FOUND)
    unknown = await served.violations(database_id, "price", collection_name="nope")
    assert_envelope(unknown, 404, ErrorCode.COLLECTION_NOT_FOUND)


async def test_conversion_never_overwrites_an_array_written_meanwhile(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An array holding the value read matches `{field: old}`; the condition
    excludes arrays, so the array written meanwhile stays and counts as changed."""
    database_id = await served.create(ORDERS)
    raw = await served.raw(database_id)
    await raw.insert_many([{"_id": 1, "price": "5"}])
    writer = await served.handle(database_id)
    real_find = management_repository.find_violations

    async def find_then_race(**kwargs: Any) -> list[dict[str, Any]]:
        found = await real_find(**kwargs)
        if found:
            await writer.update_one({"_id": 1}, {"$set": {"price": ["5", "x"]}})
        return found

    monkeypatch.setattr(management_repository, "find_violations", find_then_race)
    answer = await served.convert(database_id, "price")
    assert answer.status_code == 200, answer.text
    assert (answer.json()["converted"], answer.json()["changed"]) == (0, 1)
    assert (await raw.find_one({"_id": 1}))["price"] == ["5", "x"]


@pytest.mark.parametrize("written", [[{"b": "5"}], {"b": ["5"]}, "scalar"])
async def test_conversion_of_a_dotted_key_never_overwrites_an_array_or_fails(
    served: Served, monkeypatch: pytest.MonkeyPatch, written: Any
) -> None:
    """A parent made an array (or a scalar, which `$set` cannot go through)
    meanwhile: counted as changed, never a 500, the write kept."""
    database_id = await served.create(
        {"name": "orders", "indexes": [{"name": "ab", "keys": [{"field": "a.b", "type": "int"}]}]}
    )
    raw = await served.raw(database_id)
    await raw.insert_many([{"_id": 1, "a": {"b": "5"}}])
    writer = await served.handle(database_id)
    real_find = management_repository.find_violations

    async def find_then_race(**kwargs: Any) -> list[dict[str, Any]]:
        found = await real_find(**kwargs)
        if found:
            await writer.update_one({"_id": 1}, {"$set": {"a": written}})
        return found

    monkeypatch.setattr(management_repository, "find_violations", find_then_race)
    answer = await served.convert(database_id, "a.b")
    assert answer.status_code == 200, answer.text
    assert (answer.json()["converted"], answer.json()["changed"]) == (0, 1)
    assert (await raw.find_one({"_id": 1}))["a"] == written


async def test_a_type_change_waits_for_a_conversion_and_is_never_undone(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """update_schema retypes `price` to string while a conversion to float runs:
    the conversion holds the database's lease, so the change lands after it and
    nothing is converted to the type that is no longer declared afterwards."""
    database_id = await served.create(ORDERS)
    raw = await served.raw(database_id)
    await raw.insert_many([{"_id": n, "price": str(n)} for n in range(1, 6)])
    real_find = management_repository.find_violations
    retyped: list[asyncio.Task[httpx.Response]] = []
    done_during_conversion: list[bool] = []

    async def find_then_retype(**kwargs: Any) -> list[dict[str, Any]]:
        found = await real_find(**kwargs)
        if found and not retyped:
            retyped.append(
                asyncio.create_task(
                    served.update_schema(
                        database_id,
                        fields=ORDERS["fields"],
                        indexes=[{"keys": [{"field": "price", "type": "string"}]}],
                    )
                )
            )
            # The change gets its chance to run first (it cannot while the lease is held).
            await asyncio.wait({retyped[0]}, timeout=0.5)
            done_during_conversion.append(retyped[0].done())
        return found

    monkeypatch.setattr(management_repository, "find_violations", find_then_retype)
    answer = await served.convert(database_id, "price")
    assert answer.status_code == 200, answer.text
    change = await asyncio.wait_for(retyped[0], 15)
    assert change.status_code == 200, change.text
    assert done_during_conversion == [False]
    assert answer.json()["converted"] == 5  # all under the type declared when it ran
    assert (await served.indexes(database_id))["price_1"]["keys"][0]["type"] == "string"
    again = await served.convert(database_id, "price")
    assert again.status_code == 200
    assert (again.json()["declared_type"], again.json()["converted"]) == ("string", 0)


async def test_a_conversion_while_the_database_is_locked_is_busy(served: Served) -> None:
    database_id = await served.create(ORDERS)
    raw = await served.raw(database_id)
    await raw.insert_many([{"_id": 1, "price": "1"}])
    control = state_of(served.app).database.control
    await management_repository.acquire_lock(db=control, name=f"database:{database_id}")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                management_repository.acquire_lock, "__kwdefaults__", {"wait_seconds": 0.2}
            )
            answer = await served.convert(database_id, "price")
    finally:
        await control["locks"].delete_one({"_id": f"database:{database_id}"})
    assert_envelope(answer, 409, ErrorCode.DATABASE_BUSY)
    assert (await raw.find_one({"_id": 1}))["price"] == "1"


async def test_a_conversion_colliding_in_a_unique_index_is_a_conflict(served: Served) -> None:
    """`"12"` converts to 12, which another document holds under a unique index:
    counted in `conflicts`, left as it was, and the call goes on."""
    database_id = await served.create(
        {
            "name": "orders",
            "indexes": [{"name": "q", "keys": [{"field": "q", "type": "int"}], "unique": True}],
        }
    )
    raw = await served.raw(database_id)
    await raw.insert_many([{"_id": 1, "q": 12}, {"_id": 2, "q": "12"}, {"_id": 3, "q": "13"}])
    answer = await served.convert(database_id, "q")
    assert answer.status_code == 200, answer.text
    counts = answer.json()
    assert (counts["converted"], counts["conflicts"], counts["unconvertible"]) == (1, 1, 0)
    assert counts["remaining"] == 0
    assert [d["q"] async for d in raw.find({}).sort("_id", 1)] == [12, "12", 13]


async def test_a_date_beyond_year_9999_in_utc_is_unconvertible(served: Served) -> None:
    database_id = await served.create(
        {"name": "orders", "indexes": [{"name": "day", "keys": [{"field": "day", "type": "date"}]}]}
    )
    raw = await served.raw(database_id)
    await raw.insert_many([{"_id": 1, "day": "9999-12-31T23:59:59-01:00"}])
    answer = await served.convert(database_id, "day")
    assert answer.status_code == 200, answer.text
    assert (answer.json()["converted"], answer.json()["unconvertible"]) == (0, 1)
    assert (await raw.find_one({"_id": 1}))["day"] == "9999-12-31T23:59:59-01:00"


async def test_renaming_a_unique_index_keeps_the_engines_index_without_a_gap(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same keys, directions and uniqueness under a new name: nothing is dropped
    or made on the engine, so no duplicate can slip in while the schema says unique."""
    database_id = await served.create(
        {"name": "orders", "fields": [{"name": "sku", "type": "string", "unique": True}]}
    )
    assert (await served.insert(database_id, {"sku": "a"})).status_code == 201
    real_create, real_drop = management_repository.create_index, management_repository.drop_index
    touched: list[str] = []

    async def create(**kwargs: Any) -> None:
        touched.append(f"create {kwargs['name']}")
        await real_create(**kwargs)

    async def drop(**kwargs: Any) -> None:
        touched.append(f"drop {kwargs['name']}")
        await real_drop(**kwargs)

    monkeypatch.setattr(management_repository, "create_index", create)
    monkeypatch.setattr(management_repository, "drop_index", drop)
    by_sku = {"name": "by_sku", "keys": [{"field": "sku", "type": "string"}], "unique": True}
    renamed = await served.update_schema(
        database_id, fields=[{"name": "sku", "type": "string"}], indexes=[by_sku]
    )
    assert renamed.status_code == 200, renamed.text
    assert touched == []
    db_name = await served.db_name(database_id)
    assert set(served.engine_indexes(db_name)) == {"_id_", "sku_unique"}
    index = (await served.indexes(database_id))["by_sku"]
    assert (index["unique"], index["reason"]) == (True, None)
    assert_envelope(await served.insert(database_id, {"sku": "a"}), 409, ErrorCode.DUPLICATE_KEY)
    # Renamed back and kept as is: still the same engine index, stored under both names.
    again = await served.update_schema(
        database_id, fields=[{"name": "sku", "type": "string"}], indexes=[by_sku]
    )
    assert again.status_code == 200 and touched == []
    control = state_of(served.app).settings.control_db
    record = served.sync[control]["databases"].find_one({"_id": ObjectId(database_id)})
    assert record is not None
    (stored,) = record["collections"][0]["indexes"]
    assert (stored["name"], stored["engine_name"]) == ("by_sku", "sku_unique")


async def test_an_index_that_cannot_be_restored_leaves_the_schema_and_says_so(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A duplicate written while the old unique index was dropped makes both the new
    index and the restore fail: the answer names the index removed, and the stored
    schema no longer claims it."""
    sku = {"field": "sku", "type": "string"}
    database_id = await served.create(
        {"name": "orders", "indexes": [{"name": "u", "keys": [sku], "unique": True}]}
    )
    writer = await served.handle(database_id)
    real_create = management_repository.create_index
    calls: list[str] = []

    async def create_after_duplicates(**kwargs: Any) -> None:
        if not calls:
            await writer.insert_one({"sku": "a"})
            await writer.insert_one({"sku": "a"})
        calls.append(kwargs["name"])
        await real_create(**kwargs)

    monkeypatch.setattr(management_repository, "create_index", create_after_duplicates)
    wider = [sku, {"field": "price", "type": "float"}]
    response = await served.update_schema(
        database_id, fields=[], indexes=[{"name": "u", "keys": wider, "unique": True}]
    )
    monkeypatch.undo()
    body = assert_envelope(response, 409, ErrorCode.DUPLICATE_KEY)
    assert "'u'" in body["message"] and "removed" in body["message"]
    assert {"loc": ["indexes", "u"], "type": "index_removed"}.items() <= body["details"][1].items()
    db_name = await served.db_name(database_id)
    assert set(served.engine_indexes(db_name)) == {"_id_"}
    assert await served.indexes(database_id) == {}


async def test_an_index_missing_on_the_engine_is_off_and_made_again(served: Served) -> None:
    database_id = await served.create(ORDERS)
    db_name = await served.db_name(database_id)
    served.sync[db_name]["orders"].drop_index("price_-1_sku_1")
    index = (await served.indexes(database_id))["price_-1_sku_1"]
    assert (index["state"], index["reason"]) == ("off", MISSING_ON_ENGINE)
    response = await served.update_schema(database_id, fields=ORDERS["fields"])
    assert response.status_code == 200, response.text
    assert served.engine_indexes(db_name)["price_-1_sku_1"]["key"] == {"price": -1, "sku": 1}
    assert (await served.indexes(database_id))["price_-1_sku_1"]["reason"] != MISSING_ON_ENGINE


async def test_conversion_resumes_after_the_documents_it_left_in_place(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More unconvertible documents first in `_id` order than one call reads: the
    token moves past them, so every later call gets further and the end is reached."""
    monkeypatch.setattr(index_service, "READ_CAP", 3)
    monkeypatch.setattr(index_service, "CONVERT_BATCH", 2)
    database_id = await served.create(ORDERS)
    raw = await served.raw(database_id)
    await raw.insert_many([{"_id": n, "price": "x" if n <= 4 else str(n)} for n in range(1, 8)])
    answers = []
    after = None
    for _ in range(5):
        response = await served.convert(database_id, "price", after)
        assert response.status_code == 200, response.text
        answers.append(response.json())
        after = answers[-1]["next_after"]
        if after is None:
            break
    got = [(a["converted"], a["unconvertible"], a["remaining"], a["next_after"]) for a in answers]
    assert got == [
        (0, 3, 4, '{"$numberInt": "3"}'),
        (2, 1, 1, '{"$numberInt": "6"}'),
        (1, 0, 0, None),
    ]
    assert [d["price"] async for d in raw.find({}).sort("_id", 1)] == [
        *["x"] * 4,
        5.0,
        6.0,
        7.0,
    ]


async def test_conversion_resumes_across_ids_of_mixed_types(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_service, "READ_CAP", 1)
    database_id = await served.create(ORDERS)
    raw = await served.raw(database_id)
    ids: list[Any] = [ObjectId(), 2, "b", Int64(1), "a", 1.5, datetime(2024, 1, 1, tzinfo=UTC)]
    await raw.insert_many([{"_id": key, "price": "1"} for key in ids])
    after, calls = None, 0
    while True:
        calls += 1
        assert calls <= len(ids) + 1, "the token does not move forward"
        response = await served.convert(database_id, "price", after)
        assert response.status_code == 200, response.text
        after = response.json()["next_after"]
        if after is None:
            break
    assert await raw.count_documents({"price": "1"}) == 0
    assert calls == len(ids)


async def test_a_resume_token_that_is_not_one_is_refused(served: Served) -> None:
    database_id = await served.create(ORDERS)
    for token in ("{", "[1]", '{"$numberInt": "x"}'):
        response = await served.convert(database_id, "price", token)
        body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
        assert body["details"][0]["loc"][-1] == "after"


# ---------------------------------------------------------------- conversion rules

_OID = "65f0a1b2c3d4e5f6a7b8c9d0"
_U = UNCONVERTIBLE


@pytest.mark.parametrize(
    ("schema_type", "value", "expected"),
    [
        # integers written plainly
        ("int", "12", 12),
        ("int", "-12", -12),
        ("int", "+12", _U),
        ("int", "012", _U),
        ("int", "-0", _U),
        ("int", "12.5", _U),
        ("int", "9223372036854775807", Int64(2**63 - 1)),
        ("int", "9223372036854775808", _U),
        ("number", "12", 12),
        ("number", "12.5", 12.5),
        ("number", "+12", _U),
        # doubles: only their shortest form (repr) comes back as written
        ("float", "12", 12.0),
        ("float", "12.5", 12.5),
        ("float", "-0.0", -0.0),
        ("float", "1e+16", 1e16),
        ("float", "12.50", _U),
        ("float", "1e16", _U),
        ("float", ".5", _U),
        ("float", "inf", _U),
        ("float", "nan", _U),
        ("float", "9007199254740993", _U),
        ("float", 7, 7.0),
        ("float", Int64(2**53 + 1), _U),
        ("float", True, _U),
        # integral doubles to int, but not -0.0
        ("int", 3.0, 3),
        ("int", -0.0, _U),
        ("int", 2.5, _U),
        ("int", 1e19, _U),
        # dates: one form, with a zone, whole milliseconds
        ("date", "2024-02-29T12:00:00.123Z", datetime(2024, 2, 29, 12, 0, 0, 123000, tzinfo=UTC)),
        ("date", "2024-02-29T12:00:00+02:00", datetime(2024, 2, 29, 10, 0, tzinfo=UTC)),
        ("date", "2024-02-29T12:00:00", _U),
        ("date", "2024-02-29", _U),
        ("date", "2024-02-29 12:00:00Z", _U),
        ("date", "2024-W09-4T12:00:00Z", _U),
        ("date", "20240229T120000Z", _U),
        ("date", "2024-02-29T12:00:00.1234Z", _U),
        ("date", "2023-02-29T12:00:00Z", _U),
        ("date", "9999-12-31T23:59:59-01:00", _U),
        ("date", "0001-01-01T00:00:00+01:00", _U),
        ("date", "2024-02-29T12:00:00+0200", _U),
        # ids and booleans: as written by a machine, exactly
        ("id", _OID, ObjectId(_OID)),
        ("id", _OID.upper(), _U),
        ("bool", "true", True),
        ("bool", "false", False),
        ("bool", "True", _U),
        ("bool", "TRUE", _U),
        ("string", 12, _U),
    ],
)
def test_lossless_conversion(schema_type: str, value: Any, expected: Any) -> None:
    got = lossless_conversion(schema_type, value)
    if expected is UNCONVERTIBLE:
        assert got is UNCONVERTIBLE
        return
    assert got == expected and type(got) is type(expected)
    if isinstance(expected, float):
        assert str(got) == str(expected)  # the sign of zero too


# ------------------------------------------------------------------------ cost


async def test_the_guard_count_stops_at_its_cap(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    served.engine_sql()
    monkeypatch.setattr(typed_indexes, "GUARD_COUNT_CAP", 3)
    database_id = await served.create(ORDERS)
    raw = await served.raw(database_id)
    await raw.insert_many([{"price": "x", "sku": str(n)} for n in range(5)])
    await served.settled()
    key = (await served.indexes(database_id))["price_-1_sku_1"]["keys"][0]
    assert key["guard"]["state"] == "off"
    assert key["guard"]["violations"] == 3
    assert key["guard"]["reason"].startswith("3 or more documents hold another type in price")


async def test_the_violation_count_is_time_limited(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing's reads carry the read time limit; a count past it is 504."""
    database_id = await served.create(ORDERS)
    raw = await served.raw(database_id)
    await raw.insert_many([{"_id": 1, "price": "x"}])
    database = state_of(served.app).database
    seen: list[Any] = []
    real_find = Collection.find

    def find(self: Collection, *args: Any, **kwargs: Any) -> Any:
        if "price" in (kwargs.get("projection") or {}):  # the listing's read
            seen.append(kwargs.get("max_time_ms"))
        return real_find(self, *args, **kwargs)

    async def slow_count(self: Collection, *args: Any, **kwargs: Any) -> int:
        await asyncio.sleep(5)
        return 0

    monkeypatch.setattr(Collection, "find", find)
    monkeypatch.setattr(Collection, "count_documents", slow_count)
    monkeypatch.setattr(database, "query_timeout", 0.1)
    response = await served.violations(database_id, "price")
    assert_envelope(response, 504, ErrorCode.QUERY_TIMEOUT)
    assert seen == [100]


async def test_the_listing_refuses_pages_past_its_bound(served: Served) -> None:
    database_id = await served.create(ORDERS)
    response = await served.violations(
        database_id, "price", page=index_service.MAX_VIOLATION_PAGES + 1
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)


class FailingCounts:
    """A `Database` whose counts fail (the engine away), counting the attempts."""

    def __init__(self) -> None:
        self.attempts = 0

    async def count_limited(self, db_name: str, collection: str, query: Any) -> int:
        self.attempts += 1
        raise ConnectionFailure("away")


async def test_a_failing_background_count_backs_off_then_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(index_checks.time, "monotonic", lambda: now[0])
    database = FailingCounts()
    checks = ViolationChecks(database)  # type: ignore[arg-type]
    checks.want("d", "db", "orders", {"qty": "int"})
    await checks.run_due()
    await checks.run_due()  # backing off: not tried again at once
    assert database.attempts == 1
    for _ in range(index_checks.MAX_ATTEMPTS + 2):
        now[0] += index_checks.MAX_BACKOFF_SECONDS
        await checks.run_due()
    assert database.attempts == index_checks.MAX_ATTEMPTS
    assert checks.last == {}


class CountingDatabase:
    async def count_limited(self, db_name: str, collection: str, query: Any) -> int:
        return 1


async def test_background_results_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_checks, "MAX_RESULTS", 2)
    checks = ViolationChecks(CountingDatabase())  # type: ignore[arg-type]
    for field in ("a", "b", "c"):
        checks.want("d", "db", "orders", {field: "int"})
        await checks.run_due()
    assert [key.field for key in checks.last] == ["b", "c"]


async def test_an_index_as_get_metadata_shows_it_goes_back_as_it_is(served: Served) -> None:
    """A derived name (`price_-1_sku_1`) breaks the explicit-name rule, but equals
    the name its keys derive: accepted as if left out, nothing changes."""
    database_id = await served.create(ORDERS)
    shown = (await served.indexes(database_id))["price_-1_sku_1"]
    declaration = {
        "name": shown["name"],
        "keys": [{k: v for k, v in key.items() if k != "guard"} for key in shown["keys"]],
        "unique": shown["unique"],
    }
    response = await served.update_schema(
        database_id, fields=ORDERS["fields"], indexes=[declaration]
    )
    assert response.status_code == 200, response.text
    assert set(served.engine_indexes(await served.db_name(database_id))) == {
        "_id_",
        "price_-1_sku_1",
    }
    assert set(await served.indexes(database_id)) == {"price_-1_sku_1"}
    other = {**declaration, "name": "price_-1"}  # derived from other keys: the rule holds
    refused = await served.update_schema(database_id, fields=ORDERS["fields"], indexes=[other])
    body = assert_envelope(refused, 422, ErrorCode.VALIDATION_ERROR)
    assert body["details"][0]["type"] == "invalid_name"


async def test_more_indexes_than_a_collection_may_have_are_refused(served: Served) -> None:
    """_id's, 40 field flags' and 24 declared make 65: one more than MongoDB allows."""
    database_id = await served.create(ORDERS)
    fields = [{"name": f"g{i}", "type": "int", "index": True} for i in range(40)]
    declared = [{"keys": [{"field": f"f{i}", "type": "int"}]} for i in range(24)]
    response = await served.update_schema(database_id, fields=fields, indexes=declared)
    body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert [(d["loc"], d["type"]) for d in body["details"]] == [(["indexes"], "too_many_indexes")]
    assert set(served.engine_indexes(await served.db_name(database_id))) == {
        "_id_",
        "price_-1_sku_1",
    }
    fitting = await served.update_schema(database_id, fields=fields, indexes=declared[:23])
    assert fitting.status_code == 200, fitting.text
    assert len(served.engine_indexes(await served.db_name(database_id))) == 64


async def test_more_declared_indexes_than_the_cap_are_refused(served: Served) -> None:
    database_id = await served.create(ORDERS)
    declared = [{"keys": [{"field": f"f{i}", "type": "int"}]} for i in range(33)]
    response = await served.update_schema(database_id, fields=[], indexes=declared)
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)


async def test_a_unique_dotted_key_says_what_the_engine_does_with_a_missing_key(
    served: Served,
) -> None:
    """MongoDB counts a missing `a.b` as null under a unique index; the embedded
    engine does not (documents lacking it do not collide), and get_metadata says so."""
    database_id = await served.create(
        {
            "name": "orders",
            "indexes": [
                {"name": "u", "keys": [{"field": "a.b", "type": "int"}], "unique": True},
                {"name": "plain", "keys": [{"field": "c.d", "type": "int"}]},
                {"name": "top", "keys": [{"field": "e", "type": "int"}], "unique": True},
            ],
        }
    )
    first = await served.insert(database_id, {"e": 1})
    second = await served.insert(database_id, {"e": 2})
    capabilities = (await state_of(served.app).database.adapter()).capabilities
    indexes = await served.indexes(database_id)
    assert indexes["plain"]["note"] is None and indexes["top"]["note"] is None
    assert first.status_code == 201
    if capabilities.dotted_missing_as_null:
        assert_envelope(second, 409, ErrorCode.DUPLICATE_KEY)
        assert indexes["u"]["note"] is None
    else:
        assert second.status_code == 201
        assert indexes["u"]["note"] == (
            "a missing key is not counted as null for a dotted key on the embedded FerretDB "
            "engine: documents that lack it do not collide"
        )


async def test_a_conversion_past_its_time_stops_after_a_batch_and_goes_on_later(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call stays inside the lease it holds: past `CONVERT_SECONDS` it stops at the
    end of its batch, and the token carries the next call on."""
    monkeypatch.setattr(index_service, "CONVERT_SECONDS", 0.0)
    monkeypatch.setattr(index_service, "CONVERT_BATCH", 2)
    database_id = await served.create(ORDERS)
    raw = await served.raw(database_id)
    await raw.insert_many([{"_id": n, "price": str(n)} for n in range(1, 6)])
    first = (await served.convert(database_id, "price")).json()
    assert (first["converted"], first["remaining"]) == (2, 3)
    second = (await served.convert(database_id, "price", first["next_after"])).json()
    third = (await served.convert(database_id, "price", second["next_after"])).json()
    assert [(a["converted"], a["next_after"]) for a in (second, third)] == [
        (2, '{"$numberInt": "4"}'),
        (1, None),
    ]
    assert await raw.count_documents({"price": {"$type": "string"}}) == 0
