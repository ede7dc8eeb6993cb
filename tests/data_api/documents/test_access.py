"""Who may touch which documents: the owner's key or token, nobody else."""

from __future__ import annotations

import pytest

from tests.fixtures.documents import SEED_DATA, Crud, api_key
from tests.fixtures.envelopes import assert_envelope

CALLS = [
    ("POST", "/api/crud", {"data": {"email": "evil@example.com"}}),
    ("GET", "/api/crud", {}),
    ("GET", "/api/crud/{id}", {}),
    ("PUT", "/api/crud", {"filters": {}, "update_data": {"age": 1}, "all": True}),
    ("PATCH", "/api/crud", {"filters": {"age": 1}, "update_data": {"age": 2}}),
    ("DELETE", "/api/crud", {"all": True}),
    ("POST", "/api/crud/count", {}),
    ("POST", "/api/crud/aggregate", {"pipeline": [{"$match": {}}]}),
    ("POST", "/api/crud/bulk", {"operations": [{"delete": {"all": True}}]}),
]


async def call(crud: Crud, headers: dict, method: str, path: str, body: dict, doc_id: str):
    path = path.replace("{id}", doc_id)
    if method == "GET":
        return await crud.http.get(path, params=crud.params(), headers=headers)
    return await crud.http.request(method, path, json=crud.body(**body), headers=headers)


@pytest.mark.parametrize("method, path, body", CALLS)
async def test_another_owners_database_is_not_found_and_unchanged(
    crud: Crud, other_owner, client, method, path, body
) -> None:
    ids = (await crud.insert(SEED_DATA)).json()["inserted_ids"]
    before = await crud.stored()
    intruder = {"Authorization": f"Api-Key {await api_key(client, other_owner)}"}
    response = await call(crud, intruder, method, path, body, ids[0])
    assert_envelope(response, 404, "DATABASE_NOT_FOUND")
    assert await crud.stored() == before


async def test_bearer_token_works_too(crud: Crud) -> None:
    await crud.insert(SEED_DATA)
    response = await crud.http.get("/api/crud", params=crud.params(), headers=crud.account.bearer)
    assert response.status_code == 200 and len(response.json()["data"]) == 2


async def test_revoked_api_key_is_401(crud: Crud) -> None:
    keys = (await crud.http.get("/api/api_keys", headers=crud.account.bearer)).json()["data"]
    for key in keys:
        await crud.http.delete(f"/api/api_keys/{key['id']}", headers=crud.account.bearer)
    response = await crud.find()
    assert_envelope(response, 401, "API_KEY_INVALID")
    assert "www-authenticate" in response.headers


async def test_unknown_collection_and_bad_ids(crud: Crud) -> None:
    crud.collection = "nothere"
    assert_envelope(await crud.find(), 404, "COLLECTION_NOT_FOUND")
    crud.collection = "users"
    crud.database_id = "not-an-id"
    assert_envelope(await crud.find(), 422, "INVALID_ID")
    crud.database_id = "60c72b2f9b1d8b1a2d3e4567"
    assert_envelope(await crud.find(), 404, "DATABASE_NOT_FOUND")


async def test_missing_credentials_are_401(crud: Crud) -> None:
    response = await crud.http.get("/api/crud", params=crud.params())
    assert_envelope(response, 401, "NOT_AUTHENTICATED")
