"""`client.documents` against a real server: insert, find by page and by cursor,
iteration over every page, get, update, delete, count, aggregate and bulk, with
the stored state checked through the API and with the raw driver."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient
from quarry_client import AsyncQuarry, BadRequest, Conflict, NotFound, Quarry, ValidationError

from tests.fixtures.mailbox import Inbox
from tests.fixtures.quarry_server import verified_account

Raw = MongoClient[dict[str, Any]]

PEOPLE = {
    "name": "people",
    "fields": [
        {"name": "email", "type": "string", "required": True, "unique": True},
        {"name": "n", "type": "int", "required": True},
        {"name": "plan", "type": "string", "enum": ["free", "pro"], "default": "free"},
        {"name": "joined", "type": "date"},
    ],
}


@pytest.fixture(scope="module")
def account(quarry_url: str, smtp_server: Inbox) -> tuple[str, str]:
    """One account for the module (registrations are budgeted per address)."""
    return verified_account(quarry_url, smtp_server)


@pytest.fixture(scope="module")
def quarry(quarry_url: str, account: tuple[str, str]) -> Iterator[Quarry]:
    with Quarry(quarry_url) as client:
        client.auth.login(*account)
        yield client


@pytest.fixture
async def aquarry(quarry_url: str, account: tuple[str, str]) -> AsyncIterator[AsyncQuarry]:
    async with AsyncQuarry(quarry_url) as client:
        await client.auth.login(*account)
        yield client


@pytest.fixture
def people(quarry: Quarry) -> tuple[str, str]:
    """A database whose `people` holds n = 0..9 (plan "pro" for odd n); (id, dbName)."""
    created = quarry.databases.create(f"people_{uuid.uuid4().hex[:8]}", collections=[PEOPLE])
    database_id = created.database.id
    quarry.documents.insert(
        database_id,
        "people",
        [
            {"email": f"p{n}@example.com", "n": n, "plan": "pro" if n % 2 else "free"}
            for n in range(10)
        ],
    )
    return database_id, quarry.databases.get(database_id).dbName


def person(n: int) -> dict[str, Any]:
    return {"email": f"new{n}@example.com", "n": n}


# --------------------------------------------------------------------- insert


def test_insert_one_fills_defaults_and_converts_types(
    quarry: Quarry, people: tuple[str, str], sync_client: Raw
) -> None:
    database_id, db_name = people
    answer = quarry.documents.insert(
        database_id, "people", {**person(100), "joined": datetime(2024, 2, 3, tzinfo=UTC)}
    )
    assert answer.inserted_count == 1 and len(answer.inserted_ids) == 1
    raw = sync_client[db_name]["people"].find_one({"_id": ObjectId(answer.inserted_ids[0])})
    assert raw is not None and raw["plan"] == "free"
    assert raw["joined"] == datetime(2024, 2, 3, tzinfo=UTC)


def test_insert_a_list_is_all_or_nothing(
    quarry: Quarry, people: tuple[str, str], sync_client: Raw
) -> None:
    database_id, db_name = people
    answer = quarry.documents.insert(database_id, "people", [person(100), person(101)])
    assert answer.inserted_count == 2
    with pytest.raises(ValidationError) as caught:
        quarry.documents.insert(database_id, "people", [person(102), {"email": "x@y.z"}])
    assert caught.value.details is not None and caught.value.details[0]["loc"] == ["data", 1, "n"]
    assert sync_client[db_name]["people"].count_documents({}) == 12


def test_insert_many_sends_batches(quarry: Quarry, people: tuple[str, str]) -> None:
    database_id, _ = people
    answer = quarry.documents.insert_many(
        database_id, "people", (person(n) for n in range(100, 125)), batch_size=10
    )
    assert answer.inserted_count == 25 and len(set(answer.inserted_ids)) == 25
    assert quarry.documents.count(database_id, "people") == 35


def test_a_duplicate_unique_field_is_a_conflict(quarry: Quarry, people: tuple[str, str]) -> None:
    database_id, _ = people
    with pytest.raises(Conflict) as caught:
        quarry.documents.insert(database_id, "people", {"email": "p3@example.com", "n": 3})
    assert caught.value.error_code == "DUPLICATE_KEY" and caught.value.request_id


# ---------------------------------------------------------------------- reads


def test_find_filters_sorts_projects_and_pages(quarry: Quarry, people: tuple[str, str]) -> None:
    database_id, _ = people
    page = quarry.documents.find(
        database_id,
        "people",
        {"plan": "pro"},
        sort={"n": -1},
        projection=["n"],
        page=2,
        page_size=2,
    )
    assert [d["n"] for d in page.data] == [5, 3]
    assert all(set(d) == {"_id", "n"} for d in page.data)
    assert (page.pagination.page, page.pagination.total_items, page.pagination.has_next) == (
        2,
        5,
        True,
    )


def test_find_after_a_cursor_continues_where_the_page_ended(
    quarry: Quarry, people: tuple[str, str]
) -> None:
    database_id, _ = people
    first = quarry.documents.find(database_id, "people", sort=[("n", 1)], page_size=4)
    cursor = first.pagination.next_cursor
    assert cursor is not None
    second = quarry.documents.find(
        database_id, "people", sort=[("n", 1)], page_size=4, after=cursor, count=True
    )
    assert [d["n"] for d in second.data] == [4, 5, 6, 7]
    assert (second.pagination.page, second.pagination.total_items) == (None, 10)


def test_iterate_yields_every_match_in_order(quarry: Quarry, people: tuple[str, str]) -> None:
    database_id, _ = people
    found = list(
        quarry.documents.iterate(
            database_id,
            "people",
            {"n": {"$gte": 2}},
            sort={"n": -1},
            projection={"email": 0},
            page_size=3,
        )
    )
    assert [d["n"] for d in found] == list(range(9, 1, -1))
    assert all("email" not in d for d in found)


def test_an_invalid_filter_is_a_bad_request(quarry: Quarry, people: tuple[str, str]) -> None:
    database_id, _ = people
    with pytest.raises(BadRequest) as caught:
        quarry.documents.find(database_id, "people", {"$where": "1"})
    assert caught.value.error_code == "INVALID_FILTER" and "$where" in caught.value.message


def test_get_reads_one_document_by_id(quarry: Quarry, people: tuple[str, str]) -> None:
    database_id, _ = people
    some = quarry.documents.find(database_id, "people", {"n": 4}).data[0]
    got = quarry.documents.get(database_id, "people", some["_id"])
    assert got == some
    assert quarry.documents.get(database_id, "people", some["_id"], projection="n") == {
        "_id": some["_id"],
        "n": 4,
    }
    with pytest.raises(NotFound) as caught:
        quarry.documents.get(database_id, "people", str(ObjectId()))
    assert caught.value.error_code == "DOCUMENT_NOT_FOUND"


def test_an_unknown_collection_is_not_found(quarry: Quarry, people: tuple[str, str]) -> None:
    database_id, _ = people
    with pytest.raises(NotFound) as caught:
        quarry.documents.count(database_id, "nope")
    assert caught.value.error_code == "COLLECTION_NOT_FOUND"


# --------------------------------------------------------------------- writes


def test_update_with_a_plain_object_sets_the_fields(
    quarry: Quarry, people: tuple[str, str], sync_client: Raw
) -> None:
    database_id, db_name = people
    answer = quarry.documents.update(database_id, "people", {"plan": "free"}, {"plan": "pro"})
    assert (answer.matched_count, answer.modified_count, answer.upserted_id) == (5, 5, None)
    assert sync_client[db_name]["people"].count_documents({"plan": "pro"}) == 10


def test_update_by_put_with_operators_and_upsert(
    quarry: Quarry, people: tuple[str, str], sync_client: Raw
) -> None:
    database_id, db_name = people
    answer = quarry.documents.update(
        database_id, "people", {"n": 1}, {"$inc": {"n": 100}}, multi=False, verb="PUT"
    )
    assert (answer.matched_count, answer.modified_count) == (1, 1)
    assert sync_client[db_name]["people"].find_one({"email": "p1@example.com"})["n"] == 101  # type: ignore[index]
    upserted = quarry.documents.update(
        database_id, "people", {"email": "up@example.com"}, {"$set": {"n": 7}}, upsert=True
    )
    assert upserted.upserted_id is not None
    raw = sync_client[db_name]["people"].find_one({"_id": ObjectId(upserted.upserted_id)})
    assert raw is not None and (raw["email"], raw["n"]) == ("up@example.com", 7)


def test_an_update_that_breaks_the_schema_is_refused(
    quarry: Quarry, people: tuple[str, str]
) -> None:
    database_id, _ = people
    with pytest.raises(ValidationError):
        quarry.documents.update(database_id, "people", {"n": 1}, {"plan": "gold"})


def test_delete_needs_a_filter_or_all_documents(
    quarry: Quarry, people: tuple[str, str], sync_client: Raw
) -> None:
    database_id, db_name = people
    assert quarry.documents.delete(database_id, "people", {"n": {"$lt": 3}}) == 3
    assert quarry.documents.delete(database_id, "people", {"n": {"$gte": 3}}, multi=False) == 1
    with pytest.raises(BadRequest) as caught:
        quarry.documents.delete(database_id, "people", None)
    assert caught.value.error_code == "FILTER_REQUIRED"
    assert sync_client[db_name]["people"].count_documents({}) == 6
    assert quarry.documents.delete(database_id, "people", {}, all_documents=True) == 6
    assert sync_client[db_name]["people"].count_documents({}) == 0


def test_count_with_and_without_a_filter(quarry: Quarry, people: tuple[str, str]) -> None:
    database_id, _ = people
    assert quarry.documents.count(database_id, "people") == 10
    assert quarry.documents.count(database_id, "people", {"plan": "pro", "n": {"$gt": 4}}) == 3


def test_aggregate_groups_the_documents(quarry: Quarry, people: tuple[str, str]) -> None:
    database_id, _ = people
    result = quarry.documents.aggregate(
        database_id,
        "people",
        [{"$group": {"_id": "$plan", "total": {"$sum": "$n"}}}, {"$sort": {"_id": 1}}],
    )
    assert result == [{"_id": "free", "total": 20}, {"_id": "pro", "total": 25}]
    with pytest.raises(BadRequest) as caught:
        quarry.documents.aggregate(database_id, "people", [{"$out": "elsewhere"}])
    assert caught.value.error_code == "INVALID_PIPELINE"


def test_bulk_runs_mixed_operations_in_order(
    quarry: Quarry, people: tuple[str, str], sync_client: Raw
) -> None:
    database_id, db_name = people
    answer = quarry.documents.bulk(
        database_id,
        "people",
        [
            {"insert": person(50)},
            {"update": {"filters": {"n": 50}, "update_data": {"$set": {"plan": "pro"}}}},
            {"delete": {"filters": {"n": {"$lt": 2}}}},
        ],
    )
    assert (answer.inserted_count, answer.modified_count, answer.deleted_count) == (1, 1, 2)
    assert [r.op for r in answer.results] == ["insert", "update", "delete"]
    raw = sync_client[db_name]["people"].find_one({"n": 50})
    assert raw is not None and raw["plan"] == "pro"
    assert sync_client[db_name]["people"].count_documents({}) == 9


# ---------------------------------------------------------- cursor iteration


@pytest.fixture
def ten_thousand(quarry: Quarry, sync_client: Raw) -> tuple[str, set[str]]:
    """A collection of 10,000 documents; its database id and the stored `_id`s."""
    created = quarry.databases.create(f"big_{uuid.uuid4().hex[:8]}", collections=[PEOPLE])
    database_id = created.database.id
    quarry.documents.insert_many(
        database_id, "people", (person(n) for n in range(10_000)), batch_size=2500
    )
    db_name = quarry.databases.get(database_id).dbName
    ids = {str(d["_id"]) for d in sync_client[db_name]["people"].find({}, {"_id": 1})}
    assert len(ids) == 10_000
    return database_id, ids


async def test_cursor_iteration_over_10000_documents_equals_the_stored_set(
    quarry: Quarry, aquarry: AsyncQuarry, ten_thousand: tuple[str, set[str]]
) -> None:
    database_id, stored = ten_thousand
    blocking = [d["_id"] for d in quarry.documents.iterate(database_id, "people")]
    assert len(blocking) == 10_000 and set(blocking) == stored
    assert blocking == sorted(blocking)
    concurrent = [
        d["_id"] async for d in aquarry.documents.iterate(database_id, "people", projection=["n"])
    ]
    assert len(concurrent) == 10_000 and set(concurrent) == stored


async def test_async_crud_round_trip(aquarry: AsyncQuarry, sync_client: Raw) -> None:
    created = await aquarry.databases.create(f"a_{uuid.uuid4().hex[:8]}", collections=[PEOPLE])
    database_id = created.database.id
    inserted = await aquarry.documents.insert(database_id, "people", [person(1), person(2)])
    first = inserted.inserted_ids[0]
    assert (await aquarry.documents.get(database_id, "people", first))["n"] == 1
    await aquarry.documents.update(database_id, "people", {"n": 1}, {"plan": "pro"})
    page = await aquarry.documents.find(database_id, "people", {"plan": "pro"})
    assert [d["_id"] for d in page.data] == [first]
    assert await aquarry.documents.count(database_id, "people") == 2
    assert await aquarry.documents.aggregate(database_id, "people", [{"$count": "c"}]) == [{"c": 2}]
    bulk = await aquarry.documents.bulk(database_id, "people", [{"insert": person(3)}])
    assert bulk.inserted_count == 1
    assert await aquarry.documents.delete(database_id, "people", {"n": {"$gte": 2}}) == 2
    db_name = (await aquarry.databases.get(database_id)).dbName
    assert [d["n"] for d in sync_client[db_name]["people"].find()] == [1]
