"""POST /api/crud/aggregate and /api/crud/bulk."""

from __future__ import annotations

import pytest

from app.wiring import state_of
from tests.fixtures.documents import Crud
from tests.fixtures.envelopes import assert_envelope


async def people(crud: Crud) -> None:
    documents = [
        {
            "email": f"p{n}@example.com",
            "age": n % 3,
            "signup_date": f"2023-10-{n + 1:02d}T00:00:00Z",
        }
        for n in range(9)
    ]
    assert (await crud.insert(documents)).status_code == 201


@pytest.mark.smoke
async def test_match_on_dates_then_group(crud: Crud) -> None:
    await people(crud)
    response = await crud.post(
        "/api/crud/aggregate",
        pipeline=[
            {"$match": {"signup_date": {"$gte": "2023-10-04T00:00:00Z"}}},
            {"$group": {"_id": "$age", "n": {"$sum": 1}}},
            {"$sort": {"_id": 1}},
        ],
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True,
        "data": [{"_id": 0, "n": 2}, {"_id": 1, "n": 2}, {"_id": 2, "n": 2}],
    }


async def test_sort_by_count(crud: Crud) -> None:
    await people(crud)
    await crud.insert({"email": "extra@example.com", "age": 1})
    response = await crud.post("/api/crud/aggregate", pipeline=[{"$sortByCount": "$age"}])
    assert response.status_code == 200, response.text
    assert response.json()["data"][0] == {"_id": 1, "count": 4}


@pytest.mark.parametrize(
    "pipeline, named",
    [
        ([{"$lookup": {"from": "other", "as": "x"}}], "$lookup"),
        ([{"$out": "stolen"}], "$out"),
        ([{"$merge": {"into": "x"}}], "$merge"),
        (
            [{"$project": {"x": {"$function": {"body": "1", "args": [], "lang": "js"}}}}],
            "$function",
        ),
        ([{"$group": {"_id": 1, "x": {"$accumulator": {}}}}], "$accumulator"),
        ([{"$match": {"$where": "1"}}], "$where"),
        ([{"$facet": {"a": [{"$out": "x"}]}}], "$out"),
        ([{"$facet": {"a": [{"$match": {"age": {"$function": 1}}}]}}], "$function"),
        ([{"$unionWith": "x"}], "$unionWith"),
    ],
)
async def test_refused_stages_and_operators_are_named(crud: Crud, pipeline, named) -> None:
    response = await crud.post("/api/crud/aggregate", pipeline=pipeline)
    assert named in assert_envelope(response, 400, "INVALID_PIPELINE")["message"]


async def test_stages_the_embedded_engine_lacks_are_501(crud: Crud, database_server) -> None:
    if database_server.engine is None:
        pytest.skip("MongoDB runs $facet and $bucket")
    await people(crud)
    for stage in (
        {"$facet": {"all": [{"$match": {"age": 1}}]}},
        {"$bucket": {"groupBy": "$age", "boundaries": [0, 1, 5]}},
    ):
        response = await crud.post("/api/crud/aggregate", pipeline=[stage])
        body = assert_envelope(response, 501, "ENGINE_UNSUPPORTED")
        assert next(iter(stage)) in body["message"] and "MongoDB" in body["message"]
    # An expression the engine lacks comes back from it as NotImplemented: 501, not 500.
    response = await crud.post(
        "/api/crud/aggregate", pipeline=[{"$project": {"x": {"$concat": ["a", "b"]}}}]
    )
    assert_envelope(response, 501, "ENGINE_UNSUPPORTED")


async def test_more_results_than_the_limit_is_refused(crud: Crud) -> None:
    await people(crud)
    settings = state_of(crud.app).settings
    state_of(crud.app).settings = settings.model_copy(update={"max_aggregate_documents": 5})
    response = await crud.post("/api/crud/aggregate", pipeline=[{"$match": {}}])
    assert "5" in assert_envelope(response, 422, "RESULT_TOO_LARGE")["message"]
    ok = await crud.post("/api/crud/aggregate", pipeline=[{"$limit": 5}])
    assert len(ok.json()["data"]) == 5


async def test_bulk_runs_mixed_operations_in_order(crud: Crud) -> None:
    await crud.insert([{"email": "a@example.com", "age": 1}, {"email": "b@example.com"}])
    response = await crud.post(
        "/api/crud/bulk",
        operations=[
            {"insert": {"email": "c@example.com", "age": 1}},
            {"update": {"filters": {"age": 1}, "update_data": {"$inc": {"age": 10}}}},
            {"delete": {"filters": {"email": "b@example.com"}}},
        ],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["inserted_count"], body["modified_count"], body["deleted_count"]) == (1, 2, 1)
    assert [result["op"] for result in body["results"]] == ["insert", "update", "delete"]
    stored = await crud.stored()
    assert sorted((doc["email"], doc.get("age")) for doc in stored) == [
        ("a@example.com", 11),
        ("c@example.com", 11),
    ]


@pytest.mark.smoke
async def test_bulk_failure_undoes_every_earlier_operation(crud: Crud) -> None:
    await crud.insert([{"email": "a@example.com", "age": 1}, {"email": "b@example.com", "age": 2}])
    before = await crud.stored()
    response = await crud.post(
        "/api/crud/bulk",
        operations=[
            {"insert": {"email": "new@example.com"}},
            {"update": {"filters": {"email": "a@example.com"}, "update_data": {"age": 99}}},
            {"delete": {"filters": {"email": "b@example.com"}}},
            {"insert": {"email": "a@example.com"}},
        ],
    )
    body = assert_envelope(response, 409, "DUPLICATE_KEY")
    assert body["details"][0]["loc"][:2] == ["operations", 3]
    assert await crud.stored() == before


async def test_bulk_failure_puts_back_many_changed_and_deleted_documents(crud: Crud) -> None:
    """More than a handful of pre-images go back by delete and re-insert
    (`management.repository.restore_into`), not one replace at a time."""
    await crud.insert([{"email": f"u{i}@example.com", "age": i} for i in range(60)])
    before = await crud.stored()
    response = await crud.post(
        "/api/crud/bulk",
        operations=[
            {"update": {"filters": {}, "all": True, "update_data": {"$inc": {"age": 100}}}},
            {"delete": {"filters": {"age": {"$gte": 130}}}},
            {"insert": {"email": "u0@example.com"}},
        ],
    )
    assert_envelope(response, 409, "DUPLICATE_KEY")
    assert sorted(await crud.stored(), key=lambda doc: doc["age"]) == before


async def test_bulk_validation_lists_every_bad_operation_and_writes_nothing(crud: Crud) -> None:
    response = await crud.post(
        "/api/crud/bulk",
        operations=[
            {"insert": {"email": "ok@example.com"}},
            {"insert": {"age": "x"}},
            {"update": {"filters": {"age": 1}, "update_data": {"$inc": {"email": 1}}}},
        ],
    )
    body = assert_envelope(response, 422, "VALIDATION_ERROR")
    locs = [detail["loc"][:2] for detail in body["details"]]
    assert ["operations", 1] in locs and ["operations", 2] in locs
    assert await crud.stored() == []
    refused = await crud.post(
        "/api/crud/bulk", operations=[{"delete": {"filters": {"$where": "1"}}}]
    )
    assert "Operation 0" in assert_envelope(refused, 400, "INVALID_FILTER")["message"]
