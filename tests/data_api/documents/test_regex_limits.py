"""Every regular expression goes through the same limits however it is spelled
(length, options, nested quantifiers), in filters and in pipelines; `$range` is
bounded. One tenant must not be able to tie up the shared engine."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.errors import ErrorCode
from app.kit import MAX_REGEX
from tests.fixtures.documents import Crud
from tests.fixtures.envelopes import assert_envelope

LONG = "a" * (MAX_REGEX * 10)


def wrapped(pattern: str, options: str = "") -> dict[str, Any]:
    return {"$regularExpression": {"pattern": pattern, "options": options}}


@pytest.fixture
async def notes(make_crud) -> Crud:
    crud = await make_crud([{"name": "notes", "fields": [{"name": "title", "type": "string"}]}])
    documents = [
        {"_id": "n1", "title": "alpha", "body": "aaa", "meta": {"tag": "x1"}, "tags": ["ab"]},
        {"_id": "n2", "title": "beta", "body": "bbb", "meta": {"tag": "y2"}, "tags": ["cd"]},
    ]
    assert (await crud.insert(documents)).status_code == 201
    return crud


@pytest.mark.parametrize(
    "filters",
    [
        {"body": wrapped(LONG)},
        {"body": {"$in": [wrapped(LONG)]}},
        {"body": {"$nin": [wrapped(LONG)]}},
        {"tags": {"$all": [wrapped(LONG)]}},
        {"meta.tag": wrapped(LONG)},
        {"body": {"$eq": wrapped(LONG)}},
        {"body": wrapped("^a", "u")},
        {"body": wrapped("(a+)+$")},
        {"body": {"$in": [wrapped("(\\w+\\s?)*x")]}},
        {"body": {"$regex": "(a*)*b"}},
        {"body": {"$regex": LONG}},
    ],
    ids=[
        "wrapper", "in", "nin", "all", "dotted", "eq", "options", "nested", "nested-in",
        "operator-nested", "operator-long",
    ],
)  # fmt: skip
async def test_refused_regex_in_a_filter(notes: Crud, filters: dict[str, Any]) -> None:
    response = await notes.find(filters=json.dumps(filters))
    assert_envelope(response, 400, ErrorCode.INVALID_FILTER)
    counted = await notes.post("/api/crud/count", filters=filters)
    assert_envelope(counted, 400, ErrorCode.INVALID_FILTER)


async def test_a_regex_within_the_limits_still_matches(notes: Crud) -> None:
    for filters in (
        {"body": wrapped("^a+$")},
        {"body": {"$in": [wrapped("^A", "i"), "zzz"]}},
        {"meta.tag": wrapped("x\\d")},
        {"body": {"$regex": "^(ab|a)aa$"}},
    ):
        found = await notes.find(filters=json.dumps(filters))
        assert found.status_code == 200, (filters, found.text)
        assert [doc["_id"] for doc in found.json()["data"]] == ["n1"], filters


@pytest.mark.parametrize(
    "stage",
    [
        {"$project": {"m": {"$regexMatch": {"input": "$body", "regex": LONG}}}},
        {"$project": {"m": {"$regexFind": {"input": "$body", "regex": "(a+)+$"}}}},
        {"$project": {"m": {"$regexFindAll": {"input": "$body", "regex": "$title"}}}},
        {"$project": {"m": {"$regexMatch": {"input": "$body", "regex": "a", "options": "u"}}}},
        {"$project": {"m": {"$range": [0, 10**9]}}},
        {"$project": {"m": {"$range": [0, "$n"]}}},
        {"$match": {"body": wrapped(LONG)}},
    ],
    ids=["long", "nested", "field-path", "options", "range-huge", "range-field", "match"],
)
async def test_refused_regex_or_range_in_a_pipeline(notes: Crud, stage: dict[str, Any]) -> None:
    response = await notes.post("/api/crud/aggregate", pipeline=[stage])
    assert_envelope(response, 400, ErrorCode.INVALID_PIPELINE)


async def test_a_long_regex_cannot_be_stored_in_a_document_either(notes: Crud) -> None:
    response = await notes.insert({"_id": "n3", "pattern": wrapped(LONG)})
    assert response.status_code == 422, response.text
    assert [doc["_id"] for doc in await notes.stored()] == ["n1", "n2"]
