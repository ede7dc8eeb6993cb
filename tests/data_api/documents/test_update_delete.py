"""PUT/PATCH and DELETE /api/crud: schema-checked updates, guarded deletes,
and failed writes that leave the collection as it was."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.fixtures.documents import SEED_DATA, Crud
from tests.fixtures.envelopes import assert_envelope

TAGGED = [
    {"name": "email", "type": "string", "required": True, "unique": True},
    {"name": "tags", "type": "array", "items": "string"},
    {"name": "score", "type": "float"},
    {"name": "plan", "type": "string", "default": "free", "enum": ["free", "pro"]},
    {"name": "seen", "type": "date"},
]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.smoke
async def test_seed_update_example(crud: Crud, method: str) -> None:
    await crud.insert(SEED_DATA)
    response = await crud.update(
        method,
        filters={"email": "alice@example.com"},
        update_data={"newsletter_subscribed": True},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True, "matched_count": 1, "modified_count": 1, "upserted_id": None
    }  # fmt: skip
    stored = await crud.stored({"email": "alice@example.com"})
    assert stored[0]["newsletter_subscribed"] is True
    assert "newsletter_subscribed" not in (await crud.stored({"email": "bob@example.com"}))[0]


@pytest.mark.parametrize(
    "update_data, loc",
    [
        ({"$inc": {"email": 1}}, ["update_data", "$inc", "email"]),
        ({"age": "old"}, ["update_data", "$set", "age"]),
        ({"$inc": {"age": 1.5}}, ["update_data", "$inc", "age"]),
        ({"_id": "new"}, ["update_data", "$set", "_id"]),
        ({"$unset": {"email": ""}}, ["update_data", "$unset", "email"]),
        ({"$set": {"age": 1}, "$inc": {"age": 1}}, ["update_data", "$inc", "age"]),
        ({"$set": {"age": 1}, "plain": 2}, ["update_data"]),
    ],
)
async def test_update_type_errors_and_id_changes_are_refused(
    crud: Crud, update_data: dict, loc: list
) -> None:
    await crud.insert(SEED_DATA)
    before = await crud.stored()
    response = await crud.update(filters={"email": "alice@example.com"}, update_data=update_data)
    body = assert_envelope(response, 422, "VALIDATION_ERROR")
    assert loc in [detail["loc"] for detail in body["details"]], body
    assert await crud.stored() == before


async def test_unknown_update_operator_is_named(crud: Crud) -> None:
    response = await crud.update(filters={"age": 1}, update_data={"$setOnInsert": {"age": 2}})
    assert "$setOnInsert" in assert_envelope(response, 400, "INVALID_UPDATE")["message"]


async def test_strict_schema_refuses_new_fields_in_updates(make_crud) -> None:
    crud = await make_crud(
        [{"name": "t", "fields": [{"name": "a", "type": "int"}], "strict": True}]
    )
    await crud.insert({"a": 1})
    response = await crud.update(filters={"a": 1}, update_data={"b": 2})
    assert_envelope(response, 422, "VALIDATION_ERROR")
    assert "b" not in (await crud.stored())[0]


async def test_update_values_are_converted_by_the_schema(make_crud) -> None:
    crud = await make_crud([{"name": "people", "fields": TAGGED}])
    await crud.insert({"email": "a@example.com", "tags": ["x"]})
    response = await crud.update(
        filters={"email": "a@example.com"},
        update_data={
            "$set": {"seen": "2024-02-03T04:05:06Z", "score": 2},
            "$push": {"tags": {"$each": ["y", "z"]}},
            "$currentDate": {"touched": True},
        },
    )
    assert response.status_code == 200, response.text
    stored = (await crud.stored())[0]
    assert stored["seen"] == datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert stored["score"] == 2.0 and isinstance(stored["score"], float)
    assert stored["tags"] == ["x", "y", "z"]
    assert isinstance(stored["touched"], datetime)
    bad = await crud.update(filters={"email": "a@example.com"}, update_data={"$push": {"tags": 5}})
    assert_envelope(bad, 422, "VALIDATION_ERROR")
    enum = await crud.update(filters={"email": "a@example.com"}, update_data={"plan": "gold"})
    assert_envelope(enum, 422, "VALIDATION_ERROR")
    pulled = await crud.update(
        filters={"email": "a@example.com"}, update_data={"$pull": {"tags": "x"}}
    )
    assert pulled.status_code == 200
    assert (await crud.stored())[0]["tags"] == ["y", "z"]


async def test_pull_condition_is_501_on_the_embedded_engine_else_applied(
    make_crud, database_server
) -> None:
    crud = await make_crud([{"name": "people", "fields": TAGGED}])
    await crud.insert({"email": "a@example.com", "tags": ["x", "y", "z"]})
    response = await crud.update(
        filters={"email": "a@example.com"}, update_data={"$pull": {"tags": {"$in": ["x", "z"]}}}
    )
    if database_server.engine is not None:
        body = assert_envelope(response, 501, "ENGINE_UNSUPPORTED")
        assert "MongoDB" in body["message"]
        assert (await crud.stored())[0]["tags"] == ["x", "y", "z"]
    else:
        assert response.status_code == 200
        assert (await crud.stored())[0]["tags"] == ["y"]


async def test_multi_false_updates_one_document(crud: Crud) -> None:
    await crud.insert([{"email": f"{n}@example.com", "age": 1} for n in range(3)])
    response = await crud.update(filters={"age": 1}, update_data={"age": 2}, multi=False)
    assert response.json()["modified_count"] == 1
    assert len(await crud.stored({"age": 2})) == 1
    assert len(await crud.stored({"age": 1})) == 2


async def test_update_without_filter_needs_all(crud: Crud) -> None:
    await crud.insert(SEED_DATA)
    refused = await crud.update(update_data={"age": 5})
    assert_envelope(refused, 400, "FILTER_REQUIRED")
    assert await crud.stored({"age": 5}) == []
    accepted = await crud.update(update_data={"age": 5}, all=True)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["modified_count"] == 2
    stored = await crud.stored()
    assert len(stored) == 2 and all(document["age"] == 5 for document in stored)


@pytest.mark.smoke
async def test_duplicate_key_update_puts_every_document_back(crud: Crud) -> None:
    await crud.insert([{"email": f"{n}@example.com", "age": 7} for n in range(4)])
    before = await crud.stored()
    response = await crud.update(filters={"age": 7}, update_data={"email": "same@example.com"})
    body = assert_envelope(response, 409, "DUPLICATE_KEY")
    assert body["details"][0]["field"] == "email"
    assert body["details"][0]["index"] == "email_unique"
    assert await crud.stored() == before


async def test_upsert_inserts_a_valid_document_with_defaults(make_crud) -> None:
    crud = await make_crud([{"name": "people", "fields": TAGGED}])
    response = await crud.update(
        filters={"email": "new@example.com"}, update_data={"score": 1.5}, upsert=True
    )
    assert response.status_code == 200, response.text
    upserted = response.json()["upserted_id"]
    assert upserted is not None
    stored = await crud.stored()
    assert stored == [
        {"_id": stored[0]["_id"], "email": "new@example.com", "score": 1.5, "plan": "free"}
    ]
    assert str(stored[0]["_id"]) == upserted


async def test_upsert_missing_a_required_field_leaves_nothing(crud: Crud) -> None:
    response = await crud.update(filters={"age": 3}, update_data={"age": 4}, upsert=True)
    body = assert_envelope(response, 422, "VALIDATION_ERROR")
    assert ["upsert", "email"] in [detail["loc"] for detail in body["details"]]
    assert await crud.stored() == []


@pytest.mark.smoke
async def test_delete_without_filter_is_refused_and_all_deletes(crud: Crud) -> None:
    await crud.insert(SEED_DATA)
    assert_envelope(await crud.delete(), 400, "FILTER_REQUIRED")
    assert_envelope(await crud.delete(filters={}), 400, "FILTER_REQUIRED")
    assert len(await crud.stored()) == 2
    response = await crud.delete(all=True)
    assert response.json() == {"success": True, "deleted_count": 2}
    assert await crud.stored() == []


async def test_delete_by_filter_multi_and_single(crud: Crud) -> None:
    await crud.insert([{"email": f"{n}@example.com", "age": n % 2} for n in range(6)])
    one = await crud.delete(filters={"age": 0}, multi=False)
    assert one.json()["deleted_count"] == 1
    rest = await crud.delete(filters={"age": 0})
    assert rest.json()["deleted_count"] == 2
    assert len(await crud.stored()) == 3


async def test_delete_with_query_parameters(crud: Crud) -> None:
    await crud.insert(SEED_DATA)
    response = await crud.http.delete(
        "/api/crud",
        params=crud.params(filters='{"email": "bob@example.com"}'),
        headers=crud.headers,
    )
    assert response.json()["deleted_count"] == 1
    assert [doc["email"] for doc in await crud.stored()] == ["alice@example.com"]
    missing = await crud.http.delete("/api/crud", headers=crud.headers)
    assert_envelope(missing, 422, "VALIDATION_ERROR")


async def test_delete_of_more_than_65535_documents_deletes_them_all(
    crud: Crud, sync_client
) -> None:
    """The embedded engine deletes in one SQL statement with a parameter per document,
    which PostgreSQL refuses above 65,535 (and SQLite above 32,766): nothing was
    deleted and the answer was a 500."""
    physical = await crud.physical()
    users = sync_client[physical.database.name]["users"]
    users.insert_many([{"email": f"u{i}@example.com", "age": i % 7} for i in range(70_000)])
    response = await crud.delete(filters={}, all=True)
    assert response.status_code == 200, response.text
    assert response.json()["deleted_count"] == 70_000
    assert users.count_documents({}) == 0


async def test_dotted_filters_reach_documents_whose_path_crosses_an_array(make_crud) -> None:
    """FerretDB on PostgreSQL pushed `{"items.sku": "a"}` down as a JSON path that
    cannot step through arrays: find saw both documents, update and delete one."""
    crud = await make_crud([{"name": "orders", "fields": []}])
    documents = [
        {"_id": "array", "items": [{"sku": "a"}, {"sku": "b"}]},
        {"_id": "object", "items": {"sku": "a"}},
        {"_id": "other", "items": [{"sku": "c"}]},
    ]
    assert (await crud.insert(documents)).status_code == 201
    where = {"items.sku": "a"}
    counted = await crud.post("/api/crud/count", filters=where)
    assert counted.json()["count"] == 2
    updated = await crud.update("PATCH", filters=where, update_data={"$set": {"seen": True}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["matched_count"] == 2
    assert sorted(d["_id"] for d in await crud.stored({"seen": True})) == ["array", "object"]
    deleted = await crud.delete(filters={"items.sku": {"$eq": "a"}, "seen": True})
    assert deleted.json()["deleted_count"] == 2
    assert [d["_id"] for d in await crud.stored()] == ["other"]
