"""GET /api/crud, GET /api/crud/{id}, POST /api/crud/count: safe filters,
sort, projection, offset and cursor pagination."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.fixtures.documents import SEED_DATA, Crud
from tests.fixtures.envelopes import assert_envelope


async def seed(crud: Crud, count: int, **extra: object) -> list[str]:
    documents = [{"email": f"u{n:05d}@example.com", "age": n % 50, **extra} for n in range(count)]
    response = await crud.insert(documents)
    assert response.status_code == 201, response.text
    return response.json()["inserted_ids"]  # type: ignore[no-any-return]


@pytest.mark.smoke
async def test_seed_read_example(crud: Crud) -> None:
    await crud.insert(SEED_DATA)
    response = await crud.find(filters=json.dumps({"email": "alice@example.com"}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert [doc["email"] for doc in body["data"]] == ["alice@example.com"]
    assert body["data"][0]["signup_date"] == "2023-10-27T10:00:00Z"
    assert body["pagination"]["total_items"] == 1 and body["pagination"]["page"] == 1


async def test_date_filters_compare_as_dates(crud: Crud) -> None:
    await crud.insert(
        [
            {"email": "early@example.com", "signup_date": "2023-09-30T23:59:59Z"},
            {"email": "late@example.com", "signup_date": "2023-10-01T00:00:00.001Z"},
            # Same instant written with an offset: a string comparison would get it wrong.
            {"email": "offset@example.com", "signup_date": "2023-10-01T01:30:00+02:00"},
        ]
    )
    response = await crud.find(
        filters=json.dumps({"signup_date": {"$gte": "2023-10-01T00:00:00Z"}})
    )
    assert sorted(doc["email"] for doc in response.json()["data"]) == ["late@example.com"]


async def test_id_strings_match_object_ids(crud: Crud) -> None:
    ids = await seed(crud, 3)
    response = await crud.find(filters=json.dumps({"_id": ids[1]}))
    assert [doc["_id"] for doc in response.json()["data"]] == [ids[1]]
    response = await crud.find(filters=json.dumps({"_id": {"$in": [ids[0], ids[2]]}}))
    assert [doc["_id"] for doc in response.json()["data"]] == [ids[0], ids[2]]


@pytest.mark.parametrize(
    "operator, condition",
    [
        ("$where", {"$where": "sleep(1000)"}),
        ("$expr", {"$expr": {"$gt": ["$age", 1]}}),
        ("$function", {"age": {"$function": {"body": "x", "args": [], "lang": "js"}}}),
        ("$accumulator", {"age": {"$accumulator": {}}}),
        ("$jsonSchema", {"$jsonSchema": {}}),
        ("$text", {"$text": {"$search": "x"}}),
        ("$x", {"age": {"$x": 1}}),
        ("$lookup", {"$or": [{"age": {"$elemMatch": {"$lookup": 1}}}]}),
    ],
)
async def test_refused_operators_are_named(crud: Crud, operator: str, condition: dict) -> None:
    response = await crud.find(filters=json.dumps(condition))
    body = assert_envelope(response, 400, "INVALID_FILTER")
    assert operator in body["message"]


async def test_long_regex_and_deep_nesting_are_refused(crud: Crud) -> None:
    response = await crud.find(filters=json.dumps({"email": {"$regex": "a" * 513}}))
    assert "512" in assert_envelope(response, 400, "INVALID_FILTER")["message"]
    nested: dict = {"age": 1}
    for _ in range(21):
        nested = {"$and": [nested]}
    response = await crud.find(filters=json.dumps(nested))
    assert "20" in assert_envelope(response, 400, "INVALID_FILTER")["message"]


async def test_malformed_filter_json_names_the_position(crud: Crud) -> None:
    response = await crud.find(filters='{"email": "a@example.com",}')
    assert "position 26" in assert_envelope(response, 400, "INVALID_FILTER")["message"]


async def test_regex_the_engine_cannot_compile_is_a_bad_filter(crud: Crud) -> None:
    await seed(crud, 1)
    response = await crud.find(filters=json.dumps({"email": {"$regex": "("}}))
    assert_envelope(response, 400, "INVALID_FILTER")


async def test_projection_includes_excludes_and_refuses_mixing(crud: Crud) -> None:
    await seed(crud, 2)
    included = (await crud.find(fields='{"email": 1}')).json()["data"][0]
    assert set(included) == {"_id", "email"}
    excluded = (await crud.find(fields='{"age": 0, "_id": 0}')).json()["data"][0]
    assert set(excluded) == {"email"}
    listed = (await crud.find(fields="email,age")).json()["data"][0]
    assert set(listed) == {"_id", "email", "age"}
    assert_envelope(await crud.find(fields='{"email": 1, "age": 0}'), 400, "INVALID_PROJECTION")
    assert_envelope(await crud.find(fields='{"email": {"$slice": 1}}'), 400, "INVALID_PROJECTION")


async def test_sort_orders_and_refuses_bad_keys(crud: Crud) -> None:
    await seed(crud, 10)
    ages = [doc["age"] for doc in (await crud.find(sort='{"age": -1}')).json()["data"]]
    assert ages == sorted(ages, reverse=True)
    assert_envelope(await crud.find(sort='{"age": 2}'), 400, "INVALID_SORT")
    nine = json.dumps({f"f{n}": 1 for n in range(9)})
    assert_envelope(await crud.find(sort=nine), 400, "INVALID_SORT")
    assert_envelope(await crud.find(sort='{"$where": 1}'), 400, "INVALID_SORT")


async def test_offset_pages_and_a_page_beyond_the_end(crud: Crud) -> None:
    ids = await seed(crud, 25)
    second = (await crud.find(page=2, page_size=10)).json()
    assert [doc["_id"] for doc in second["data"]] == ids[10:20]
    assert second["pagination"] == {
        "page": 2, "page_size": 10, "total_items": 25, "total_pages": 3,
        "has_next": True, "has_previous": True, "next_cursor": second["pagination"]["next_cursor"],
    }  # fmt: skip
    last = (await crud.find(page=3, page_size=10)).json()
    assert [doc["_id"] for doc in last["data"]] == ids[20:]
    assert last["pagination"]["total_items"] == 25 and last["pagination"]["has_next"] is False
    assert last["pagination"]["next_cursor"] is None
    beyond = (await crud.find(page=9, page_size=10)).json()
    assert beyond["data"] == [] and beyond["pagination"]["has_next"] is False
    assert beyond["pagination"]["total_items"] == 25


@pytest.mark.parametrize("size", [0, 1001])
async def test_page_size_limits(crud: Crud, size: int) -> None:
    assert_envelope(await crud.find(page_size=size), 422, "VALIDATION_ERROR")


async def test_cursor_walk_sees_every_document_once_while_others_are_inserted(
    crud: Crud,
) -> None:
    for start in range(0, 10_000, 5_000):
        documents = [
            {"email": f"w{n:05d}@example.com", "age": n} for n in range(start, start + 5000)
        ]
        assert (await crud.insert(documents)).status_code == 201
    expected = {doc["_id"] for doc in await crud.stored()}
    seen: list[str] = []
    writer_done = asyncio.Event()

    async def writer() -> None:
        for n in range(20):
            await crud.insert({"email": f"late{n}@example.com", "age": -1})
            await asyncio.sleep(0)
        writer_done.set()

    task = asyncio.create_task(writer())
    cursor = None
    while True:
        params = {"page_size": 1000, "sort": '{"age": 1}'}
        if cursor:
            params["after"] = cursor
        body = (await crud.find(**params)).json()
        seen.extend(doc["_id"] for doc in body["data"])
        cursor = body["pagination"]["next_cursor"]
        if not cursor:
            break
    await task
    assert len(seen) == len(set(seen)), "a document was returned twice"
    assert {str(value) for value in expected} <= set(seen), "a document was skipped"
    assert writer_done.is_set()


async def test_cursor_follows_mixed_types_and_missing_values(crud: Crud) -> None:
    values = [3, None, "b", 1.5, "a", True, {"k": 1}, 7, "2023-01-01"]
    documents = [{"email": f"m{n}@example.com", "rank": value} for n, value in enumerate(values)]
    documents += [{"email": "missing1@example.com"}, {"email": "missing2@example.com"}]
    await crud.insert(documents)
    for direction in (1, -1):
        expected = [
            str(doc["_id"])
            for doc in await (await crud.physical())
            .find({})
            .sort([("rank", direction), ("_id", 1)])
            .to_list()
        ]
        walked: list[str] = []
        cursor = None
        while True:
            params = {"page_size": 2, "sort": json.dumps({"rank": direction})}
            if cursor:
                params["after"] = cursor
            response = await crud.find(**params)
            assert response.status_code == 200, response.text
            walked += [doc["_id"] for doc in response.json()["data"]]
            cursor = response.json()["pagination"]["next_cursor"]
            if not cursor:
                break
        assert walked == expected


async def test_cursor_with_projection_that_drops_the_sort_key(crud: Crud) -> None:
    await seed(crud, 5)
    first = (await crud.find(page_size=2, sort='{"age": 1}', fields="email")).json()
    assert all(set(doc) == {"_id", "email"} for doc in first["data"])
    second = await crud.find(
        page_size=2, sort='{"age": 1}', fields="email", after=first["pagination"]["next_cursor"]
    )
    assert second.status_code == 200 and len(second.json()["data"]) == 2
    assert second.json()["pagination"]["total_items"] is None
    counted = await crud.find(
        page_size=2, sort='{"age": 1}', fields="email", count="true",
        after=first["pagination"]["next_cursor"],
    )  # fmt: skip
    assert counted.json()["pagination"]["total_items"] == 5


async def test_tampered_or_foreign_cursors_are_refused(crud: Crud) -> None:
    await seed(crud, 5)
    cursor = (await crud.find(page_size=2)).json()["pagination"]["next_cursor"]
    body, signature = cursor.split(".")
    forged = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + signature
    assert_envelope(await crud.find(page_size=2, after=forged), 400, "INVALID_CURSOR")
    assert_envelope(await crud.find(page_size=2, after="garbage"), 400, "INVALID_CURSOR")
    other_query = await crud.find(page_size=2, after=cursor, filters='{"age": 1}')
    assert_envelope(other_query, 400, "INVALID_CURSOR")


async def test_get_by_id_with_fields_and_missing(crud: Crud) -> None:
    ids = await seed(crud, 2)
    params = crud.params(fields="email")
    response = await crud.http.get(f"/api/crud/{ids[1]}", params=params, headers=crud.headers)
    assert response.json() == {
        "success": True,
        "data": {"_id": ids[1], "email": "u00001@example.com"},
    }
    missing = await crud.http.get(
        "/api/crud/60c72b2f9b1d8b1a2d3e4567", params=crud.params(), headers=crud.headers
    )
    assert_envelope(missing, 404, "DOCUMENT_NOT_FOUND")


async def test_get_by_string_and_number_ids(crud: Crud) -> None:
    await crud.insert(
        [{"_id": "user-1", "email": "s@example.com"}, {"_id": 42, "email": "n@example.com"}]
    )
    for document_id, email in (("user-1", "s@example.com"), ("42", "n@example.com")):
        response = await crud.http.get(
            f"/api/crud/{document_id}", params=crud.params(), headers=crud.headers
        )
        assert response.json()["data"]["email"] == email


async def test_count_with_and_without_filter(crud: Crud) -> None:
    await seed(crud, 30)
    response = await crud.post("/api/crud/count", filters={"age": {"$lt": 10}})
    assert response.json() == {"success": True, "count": 10}
    assert (await crud.post("/api/crud/count")).json()["count"] == 30
    assert_envelope(
        await crud.post("/api/crud/count", filters={"$where": "1"}), 400, "INVALID_FILTER"
    )


async def test_cursor_walks_ids_of_every_allowed_type(crud: Crud) -> None:
    ids = [7, 2.5, "a", "b", {"$oid": "60c72b2f9b1d8b1a2d3e4567"}]
    await crud.insert([{"_id": value, "email": f"i{n}@example.com"} for n, value in enumerate(ids)])
    walked: list = []
    cursor = None
    while True:
        body = (await crud.find(page_size=1, **({"after": cursor} if cursor else {}))).json()
        walked += [doc["_id"] for doc in body["data"]]
        cursor = body["pagination"]["next_cursor"]
        if not cursor:
            break
    assert walked == [2.5, 7, "a", "b", "60c72b2f9b1d8b1a2d3e4567"]


@pytest.mark.parametrize("items", [None, "string"])
@pytest.mark.smoke
async def test_array_filters_match_elements_with_or_without_items(
    make_crud, items: str | None
) -> None:
    """`{"tags": "a"}` matches arrays holding "a" (MongoDB's element rule), whether
    the schema declares `items` or not; a whole array still matches exactly."""
    field = {"name": "tags", "type": "array", **({"items": items} if items else {})}
    crud = await make_crud([{"name": "posts", "fields": [field]}])
    response = await crud.insert(
        [{"_id": "p1", "tags": ["a", "b"]}, {"_id": "p2", "tags": ["c"]}, {"_id": "p3", "tags": []}]
    )
    assert response.status_code == 201, response.text

    async def ids(filters: dict) -> list[str]:
        found = await crud.find(filters=json.dumps(filters), sort=json.dumps({"_id": 1}))
        assert found.status_code == 200, found.text
        return [doc["_id"] for doc in found.json()["data"]]

    assert await ids({"tags": "a"}) == ["p1"]
    assert await ids({"tags": {"$in": ["a", "c"]}}) == ["p1", "p2"]
    assert await ids({"tags": {"$all": ["a", "b"]}}) == ["p1"]
    assert await ids({"tags": {"$ne": "c"}}) == ["p1", "p3"]
    assert await ids({"tags": ["a", "b"]}) == ["p1"]
    assert await ids({"tags": {"$size": 0}}) == ["p3"]
