"""POST /api/crud: validated, converted, all-or-nothing inserts."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from bson import ObjectId

from tests.fixtures.documents import SEED_DATA, Crud
from tests.fixtures.envelopes import assert_envelope


@pytest.mark.smoke
async def test_seed_insert_example_stores_dates_and_answers_ids(crud: Crud) -> None:
    response = await crud.insert(SEED_DATA)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True and body["inserted_count"] == 2
    assert all(re.fullmatch(r"[0-9a-f]{24}", value) for value in body["inserted_ids"])
    stored = await crud.stored()
    assert [doc["_id"] for doc in stored] == [ObjectId(value) for value in body["inserted_ids"]]
    assert stored[0]["signup_date"] == datetime(2023, 10, 27, 10, 0, tzinfo=UTC)


async def test_single_object_is_inserted_with_defaults(make_crud) -> None:
    crud = await make_crud(
        [{"name": "items", "fields": [{"name": "status", "type": "string", "default": "new"}]}]
    )
    response = await crud.insert({"title": "one"})
    assert response.status_code == 201, response.text
    stored = await crud.stored()
    assert stored[0]["status"] == "new" and stored[0]["title"] == "one"


async def test_every_bad_document_is_listed_and_nothing_is_written(crud: Crud) -> None:
    response = await crud.insert(
        [{"email": "ok@example.com"}, {"email": 5}, {"signup_date": "yesterday"}]
    )
    assert_envelope(response, 422, "VALIDATION_ERROR")
    locs = [detail["loc"] for detail in response.json()["details"]]
    assert ["data", 1, "email"] in locs
    assert ["data", 2, "email"] in locs and ["data", 2, "signup_date"] in locs
    assert await crud.stored() == []


@pytest.mark.smoke
async def test_duplicate_key_in_a_batch_removes_what_the_request_wrote(crud: Crud) -> None:
    assert (await crud.insert({"email": "alice@example.com", "age": 30})).status_code == 201
    before = await crud.stored()
    response = await crud.insert(
        [{"email": "n1@example.com"}, {"email": "n2@example.com"}, {"email": "alice@example.com"}]
    )
    assert_envelope(response, 409, "DUPLICATE_KEY")
    detail = response.json()["details"][0]
    assert detail["field"] == "email" and detail["index"] == "email_unique"
    assert detail["loc"] == ["data", 2, "email"]
    assert "email" in response.json()["message"]
    assert await crud.stored() == before


async def test_duplicate_inside_one_batch_leaves_nothing(crud: Crud) -> None:
    response = await crud.insert([{"email": "same@example.com"}, {"email": "same@example.com"}])
    assert_envelope(response, 409, "DUPLICATE_KEY")
    assert response.json()["details"][0]["field"] == "email"
    assert await crud.stored() == []


async def test_existing_client_id_is_a_duplicate_and_the_original_stays(crud: Crud) -> None:
    assert (await crud.insert({"_id": "k1", "email": "a@example.com"})).status_code == 201
    before = await crud.stored()
    response = await crud.insert(
        [{"_id": "k2", "email": "b@example.com"}, {"_id": "k1", "email": "c@example.com"}]
    )
    assert_envelope(response, 409, "DUPLICATE_KEY")
    assert response.json()["details"][0]["field"] == "_id"
    assert await crud.stored() == before


async def test_more_than_ten_thousand_documents_are_refused(crud: Crud) -> None:
    documents = [{"email": f"u{n}@example.com"} for n in range(10_001)]
    response = await crud.insert(documents)
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")
    assert "10,000" in response.json()["message"] and "10,001" in response.json()["message"]
    assert await crud.stored() == []


async def test_strict_schema_refuses_unknown_fields(make_crud) -> None:
    crud = await make_crud(
        [{"name": "tight", "fields": [{"name": "a", "type": "int"}], "strict": True}]
    )
    response = await crud.insert({"a": 1, "b": 2})
    assert_envelope(response, 422, "VALIDATION_ERROR")
    assert response.json()["details"][0]["loc"] == ["data", "b"]
    assert await crud.stored() == []


async def test_hex_string_id_is_stored_as_object_id(crud: Crud) -> None:
    oid = "60c72b2f9b1d8b1a2d3e4567"
    response = await crud.insert({"_id": oid, "email": "x@example.com"})
    assert response.status_code == 201
    assert response.json()["inserted_ids"] == [oid]
    assert (await crud.stored())[0]["_id"] == ObjectId(oid)


async def test_empty_batch_is_refused(crud: Crud) -> None:
    assert_envelope(await crud.insert([]), 422, "VALIDATION_ERROR")


async def test_id_of_another_type_is_refused(crud: Crud) -> None:
    response = await crud.insert({"_id": True, "email": "b@example.com"})
    body = assert_envelope(response, 422, "VALIDATION_ERROR")
    assert body["details"][0]["loc"] == ["data", "_id"]
    assert await crud.stored() == []
