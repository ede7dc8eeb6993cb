"""Hostile input through every JSON field that reaches the database, and one
tenant aiming every endpoint at another tenant's ids.

Each case asserts the answer (status, error code, the envelope) and the stored
state: a refused request wrote nothing, an accepted one stored exactly what was
sent, as data (a `__proto__` key is an ordinary field name to a document store).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from app.errors import ErrorCode
from app.wiring import state_of
from data_api.datasets.expiry import ExpirySweeper
from tests.fixtures.accounts import Account
from tests.fixtures.databases import metadata, upload
from tests.fixtures.documents import Crud, api_key
from tests.fixtures.envelopes import assert_envelope

JSON = {"content-type": "application/json"}


def raw_body(crud: Crud, field: str, value: str) -> bytes:
    """A request body with `value` (raw JSON text, NaN and all) under `field`."""
    head = json.dumps(crud.body())[:-1]
    return f'{head}, "{field}": {value}}}'.encode()


# ----------------------------------------------------------------- documents

HOSTILE_DOCUMENTS = {
    "operator at the top": ('{"email": "a@x.io", "$where": "sleep(1000)"}', "$where"),
    "operator nested": ('{"email": "a@x.io", "p": {"$gt": ""}}', "$gt"),
    "operator in an array": ('{"email": "a@x.io", "l": [{"$ne": 1}]}', "$ne"),
    "dotted key": ('{"email": "a@x.io", "a.b": 1}', "'.'"),
    "NUL in a key": ('{"email": "a@x.io", "k\\u0000": 1}', "NUL"),
    "NaN": ('{"email": "a@x.io", "age": NaN}', "integer"),
    "Infinity": ('{"email": "a@x.io", "extra": Infinity}', "non-finite"),
    "-Infinity in a float field": ('{"email": "a@x.io", "score": -Infinity}', "non-finite"),
    "1e400": ('{"email": "a@x.io", "extra": 1e400}', "non-finite"),
    "integer over 64 bits": ('{"email": "a@x.io", "age": 123456789012345678901234567890}', "64"),
    "untyped integer over 64 bits": ('{"email": "a@x.io", "n": 99999999999999999999}', "64"),
    "email as an operator object": ('{"email": {"$gt": ""}}', "email"),
}


@pytest.mark.parametrize("case", HOSTILE_DOCUMENTS, ids=list(HOSTILE_DOCUMENTS))
async def test_hostile_documents_are_refused_and_nothing_is_written(
    make_crud: Any, case: str
) -> None:
    crud: Crud = await make_crud(
        [
            {
                "name": "users",
                "fields": [
                    {"name": "email", "type": "string", "unique": True},
                    {"name": "age", "type": "int"},
                    {"name": "score", "type": "float"},
                ],
            }
        ]
    )
    document, mentioned = HOSTILE_DOCUMENTS[case]
    for data in (document, f'[{{"email": "ok@x.io"}}, {document}]'):
        response = await crud.http.post(
            "/api/crud", content=raw_body(crud, "data", data), headers={**crud.headers, **JSON}
        )
        body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
        assert mentioned in json.dumps(body["details"]), body
    assert await crud.stored() == []


async def test_proto_keys_and_10_mb_strings_are_stored_as_plain_data(crud: Crud) -> None:
    big = "x" * 10_000_000
    response = await crud.insert(
        [
            {"email": "p@x.io", "__proto__": {"admin": True}, "constructor": {"prototype": 1}},
            {"email": "big@x.io", "bio": big},
        ]
    )
    assert response.status_code == 201, response.text[:300]
    stored = {doc["email"]: doc for doc in await crud.stored()}
    assert stored["p@x.io"]["__proto__"] == {"admin": True}
    assert stored["p@x.io"]["constructor"] == {"prototype": 1}
    assert stored["big@x.io"]["bio"] == big
    found = await crud.find(filters=json.dumps({"__proto__.admin": True}))
    assert [doc["email"] for doc in found.json()["data"]] == ["p@x.io"]


async def test_nesting_deeper_than_the_parser_allows_is_malformed_json(crud: Crud) -> None:
    deep = '{"a": ' * 5000 + "1" + "}" * 5000
    response = await crud.http.post(
        "/api/crud",
        content=raw_body(crud, "data", f'{{"email": "d@x.io", "x": {deep}}}'),
        headers={**crud.headers, **JSON},
    )
    body = assert_envelope(response, 400, ErrorCode.MALFORMED_JSON)
    assert "nest" in body["message"]
    nested_filter = '{"$and": [' * 3000 + "{}" + "]}" * 3000
    response = await crud.http.post(
        "/api/crud/count",
        content=raw_body(crud, "filters", nested_filter),
        headers={**crud.headers, **JSON},
    )
    assert response.status_code in (400, 422)
    assert response.json()["error_code"] in ("MALFORMED_JSON", "INVALID_FILTER")
    assert await crud.stored() == []


async def test_body_over_the_limit_is_413_and_nothing_is_written(crud: Crud) -> None:
    limit = state_of(crud.app).settings.max_body_bytes
    response = await crud.insert({"email": "huge@x.io", "bio": "x" * (limit + 1)})
    assert_envelope(response, 413, ErrorCode.PAYLOAD_TOO_LARGE)
    assert await crud.stored() == []


# ------------------------------------------------- filters, updates, queries

INJECTED_CALLS: list[tuple[str, str, dict[str, Any], int, str, str]] = [
    # (name, path, body fields, status, error code, word in the message)
    (
        "$where in a filter",
        "/api/crud/count",
        {"filters": {"$where": "1"}},
        400,
        "INVALID_FILTER",
        "$where",
    ),
    (
        "$where under a field",
        "/api/crud/count",
        {"filters": {"email": {"$where": "1"}}},
        400,
        "INVALID_FILTER",
        "$where",
    ),
    (
        "$function",
        "/api/crud/count",
        {"filters": {"$expr": {"$function": {"body": "x", "args": [], "lang": "js"}}}},
        400,
        "INVALID_FILTER",
        "$",
    ),
    (
        "$accumulator in a group",
        "/api/crud/aggregate",
        {"pipeline": [{"$group": {"_id": None, "x": {"$accumulator": {}}}}]},
        400,
        "INVALID_PIPELINE",
        "$accumulator",
    ),
    (
        "$out",
        "/api/crud/aggregate",
        {"pipeline": [{"$out": "stolen"}]},
        400,
        "INVALID_PIPELINE",
        "$out",
    ),
    (
        "$merge",
        "/api/crud/aggregate",
        {"pipeline": [{"$merge": {"into": {"db": "quarry", "coll": "users"}}}]},
        400,
        "INVALID_PIPELINE",
        "$merge",
    ),
    (
        "$lookup into the control database",
        "/api/crud/aggregate",
        {
            "pipeline": [
                {
                    "$lookup": {
                        "from": {"db": "quarry", "coll": "users"},
                        "as": "x",
                        "localField": "a",
                        "foreignField": "b",
                    }
                }
            ]
        },
        400,
        "INVALID_PIPELINE",
        "$lookup",
    ),
    (
        "$unionWith",
        "/api/crud/aggregate",
        {"pipeline": [{"$unionWith": "other"}]},
        400,
        "INVALID_PIPELINE",
        "$unionWith",
    ),
    (
        "operator object as a comparison value",
        "/api/crud/count",
        {"filters": {"email": {"$gt": {"$where": 1}}}},
        400,
        "INVALID_FILTER",
        "email",
    ),
    (
        "$where in an update",
        "/api/crud",
        {"filters": {"email": "a@x.io"}, "update_data": {"$where": "1"}},
        400,
        "INVALID_UPDATE",
        "$where",
    ),
    (
        "operator key inside $set",
        "/api/crud",
        {"filters": {"email": "a@x.io"}, "update_data": {"$set": {"$where": 1}}},
        422,
        "VALIDATION_ERROR",
        "$",
    ),
    (
        "dotted path into an operator",
        "/api/crud",
        {"filters": {"email": "a@x.io"}, "update_data": {"$set": {"p.$gt": 1}}},
        422,
        "VALIDATION_ERROR",
        "$",
    ),
    (
        "$rename onto _id",
        "/api/crud",
        {"filters": {"email": "a@x.io"}, "update_data": {"$rename": {"age": "_id"}}},
        422,
        "VALIDATION_ERROR",
        "_id",
    ),
]


@pytest.mark.parametrize(
    ("path", "fields", "status", "code", "word"),
    [call[1:] for call in INJECTED_CALLS],
    ids=[call[0] for call in INJECTED_CALLS],
)
async def test_operator_injection_is_refused_and_changes_nothing(
    crud: Crud, path: str, fields: dict[str, Any], status: int, code: str, word: str
) -> None:
    assert (await crud.insert({"email": "a@x.io", "age": 1})).status_code == 201
    before = await crud.stored()
    method = "PATCH" if "update_data" in fields else "POST"
    response = await crud.http.request(method, path, json=crud.body(**fields), headers=crud.headers)
    body = assert_envelope(response, status, code)
    assert word in body["message"] + json.dumps(body["details"])
    assert await crud.stored() == before
    physical = await crud.physical()
    assert "stolen" not in await physical.database.list_collection_names()


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"sort": json.dumps({"$where": 1})}, "INVALID_SORT"),
        ({"sort": json.dumps({"email": {"$meta": "textScore"}})}, "INVALID_SORT"),
        ({"fields": json.dumps({"$where": 1})}, "INVALID_PROJECTION"),
        ({"fields": json.dumps({"x": {"$function": {}}})}, "INVALID_PROJECTION"),
        ({"filters": '{"email": {"$regex": "' + "a" * 600 + '"}}'}, "INVALID_FILTER"),
        ({"filters": "NaN"}, "INVALID_FILTER"),
        ({"filters": '{"age": NaN}'}, "INVALID_FILTER"),
        ({"filters": '{"age": 1e400}'}, "INVALID_FILTER"),
    ],
)
async def test_hostile_query_parameters_are_400(
    crud: Crud, params: dict[str, str], code: str
) -> None:
    assert_envelope(await crud.find(**params), 400, code)


NAMES = ["$cmd", "a.b", "../etc", "a\x00b", "x" * 200, "", "a b/c", "a$b"]


@pytest.mark.parametrize("name", NAMES, ids=[repr(n)[:20] for n in NAMES])
async def test_hostile_database_and_collection_names_are_refused(
    client: httpx.AsyncClient, owner: Account, sync_client: Any, name: str
) -> None:
    before = set(sync_client.list_database_names())
    response = await client.post(
        "/api/create_database",
        json={"db_name": name, "collections": [{"name": "users"}]},
        headers=owner.bearer,
    )
    assert response.status_code == 422, response.text
    assert set(sync_client.list_database_names()) == before
    response = await client.post(
        "/api/create_database",
        json={"db_name": f"ok_{ObjectId()}", "collections": [{"name": name}]},
        headers=owner.bearer,
    )
    assert response.status_code == 422, response.text
    assert set(sync_client.list_database_names()) == before


@pytest.mark.parametrize("name", ["admin", "local", "config"])
async def test_system_database_names_are_only_display_names(
    client: httpx.AsyncClient, owner: Account, sync_client: Any, name: str
) -> None:
    """A tenant may call a database `admin`; the physical name is always the
    tenant's own, so the server's `admin` is never touched."""
    admin_before = sorted(sync_client.admin.list_collection_names())
    response = await client.post(
        "/api/create_database",
        json={"db_name": name, "collections": [{"name": "events"}]},
        headers=owner.bearer,
    )
    assert response.status_code == 201, response.text
    database_id = response.json()["database"]["id"]
    physical = (await metadata(client, owner, database_id))["dbName"]
    assert physical != name and physical in sync_client.list_database_names()
    assert sorted(sync_client.admin.list_collection_names()) == admin_before


async def test_system_collection_names_are_refused(
    client: httpx.AsyncClient, owner: Account
) -> None:
    for name in ("system.users", "system.js", "system.profile"):
        response = await client.post(
            "/api/create_database",
            json={"db_name": f"ok_{ObjectId()}", "collections": [{"name": name}]},
            headers=owner.bearer,
        )
        assert response.status_code == 422, response.text


# ------------------------------------------------------------------- imports


async def import_file(
    client: httpx.AsyncClient, owner: Account, database_id: str, content: bytes, **options: Any
) -> httpx.Response:
    return await upload(client, owner, database_id, content, collection="events", **options)


IMPORT_CASES = {
    "operator key": b'[{"n": 1}, {"n": 2, "$where": "1"}]',
    "nested operator key": b'[{"n": 1}, {"n": 2, "p": {"$gt": 1}}]',
    "dotted key": b'[{"n": 1}, {"n": 2, "a.b": 1}]',
    "NaN": b'[{"n": 1}, {"n": NaN}]',
    "Infinity": b'[{"n": 1}, {"n": Infinity}]',
    "1e400": b'[{"n": 1}, {"n": 1e400}]',
    "integer over 64 bits": b'[{"n": 1}, {"n": 123456789012345678901234567890}]',
    "deep nesting": b'[{"n": 1}, ' + b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"]",
    "invalid UTF-8": b'[{"n": 1}, {"n": "\xff\xfe"}]',
}


@pytest.mark.parametrize("case", IMPORT_CASES, ids=list(IMPORT_CASES))
async def test_hostile_import_records_abort_and_leave_nothing(
    client: httpx.AsyncClient,
    owner: Account,
    create_database: Any,
    sync_client: Any,
    case: str,
) -> None:
    created = await create_database(owner, collections=[{"name": "events", "fields": []}])
    database_id = created["database"]["id"]
    db_name = (await metadata(client, owner, database_id))["dbName"]
    response = await import_file(client, owner, database_id, IMPORT_CASES[case])
    assert response.status_code in (400, 409, 422), response.text
    assert response.json()["error_code"] in (
        "INVALID_IMPORT_FILE",
        "VALIDATION_ERROR",
        "IMPORT_REJECTED",
    ), response.text
    assert sync_client[db_name]["events"].count_documents({}) == 0


async def test_import_records_with_proto_keys_are_plain_data(
    client: httpx.AsyncClient, owner: Account, create_database: Any, sync_client: Any
) -> None:
    created = await create_database(owner, collections=[{"name": "events", "fields": []}])
    database_id = created["database"]["id"]
    db_name = (await metadata(client, owner, database_id))["dbName"]
    response = await import_file(
        client, owner, database_id, b'[{"__proto__": {"admin": true}, "n": 1}]'
    )
    assert response.status_code == 200, response.text
    assert sync_client[db_name]["events"].find_one({}, {"_id": 0}) == {
        "__proto__": {"admin": True},
        "n": 1,
    }


async def test_invalid_utf8_in_multipart_fields_is_a_clear_error(
    client: httpx.AsyncClient, owner: Account, create_database: Any, sync_client: Any
) -> None:
    created = await create_database(owner, collections=[{"name": "events", "fields": []}])
    database_id = created["database"]["id"]
    db_name = (await metadata(client, owner, database_id))["dbName"]
    boundary = "quarryboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="database_id"\r\n\r\n'
            f"{database_id}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="collection_name"\r\n\r\n'
        ).encode()
        + b"ev\xff\xfents\r\n"
        + (
            f'--{boundary}\r\nContent-Disposition: form-data; name="json_file"; '
            f'filename="e.json"\r\nContent-Type: application/json\r\n\r\n'
        ).encode()
        + b'[{"n": 1}]\r\n'
        + f"--{boundary}--\r\n".encode()
    )
    response = await client.post(
        "/api/import_data",
        content=body,
        headers={**owner.bearer, "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code in (400, 422), response.text
    assert set(response.json()) == {"success", "error_code", "message", "details", "request_id"}
    assert sync_client[db_name].list_collection_names() in ([], ["events"])
    assert sync_client[db_name]["events"].count_documents({}) == 0
    broken = await client.post(
        "/api/import_data",
        content=b"--nope\r\n\xff\xfe garbage",
        headers={**owner.bearer, "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert broken.status_code in (400, 422), broken.text
    assert broken.json()["success"] is False


# ----------------------------------------------------------------- isolation


async def snapshot(client: httpx.AsyncClient, victim: Crud, sync_client: Any) -> dict[str, Any]:
    meta = await metadata(client, victim.account, victim.database_id)
    keys = (await client.get("/api/api_keys", headers=victim.account.bearer)).json()
    return {
        "metadata": meta,
        "keys": keys,
        "documents": list(sync_client[meta["dbName"]]["users"].find().sort("_id", 1)),
        "collections": sorted(sync_client[meta["dbName"]].list_collection_names()),
    }


async def test_another_tenant_gets_404_everywhere_and_changes_nothing(
    client: httpx.AsyncClient,
    make_crud: Any,
    owner: Account,
    other_owner: Account,
    sync_client: Any,
) -> None:
    victim: Crud = await make_crud([{"name": "users", "fields": []}], account=owner)
    assert (await victim.insert([{"email": f"{i}@x.io"} for i in range(5)])).status_code == 201
    victim_key_id = (await client.get("/api/api_keys", headers=owner.bearer)).json()["data"][0][
        "id"
    ]
    before = await snapshot(client, victim, sync_client)
    attacker_key = await api_key(client, other_owner)
    db = victim.database_id
    target = {"database_id": db, "collection_name": "users"}
    calls = [
        ("GET", "/api/get_metadata", {"params": {"database_id": db}}, "DATABASE_NOT_FOUND"),
        ("GET", "/api/list_collections", {"params": {"database_id": db}}, "DATABASE_NOT_FOUND"),
        (
            "POST",
            "/api/create_collections",
            {"json": {"database_id": db, "collections": [{"name": "evil"}]}},
            "DATABASE_NOT_FOUND",
        ),
        (
            "POST",
            "/api/update_schema",
            {"json": {**target, "fields": [{"name": "email", "type": "int"}]}},
            "DATABASE_NOT_FOUND",
        ),
        (
            "POST",
            "/api/drop_collections",
            {"json": {"database_id": db, "collection_names": ["users"]}},
            "DATABASE_NOT_FOUND",
        ),
        (
            "DELETE",
            "/api/drop_collections",
            {"json": {"database_id": db, "collection_names": ["users"]}},
            "DATABASE_NOT_FOUND",
        ),
        (
            "POST",
            "/api/drop_database",
            {"json": {"database_id": db, "confirmation": before["metadata"]["displayName"]}},
            "DATABASE_NOT_FOUND",
        ),
        (
            "DELETE",
            "/api/drop_database",
            {"json": {"database_id": db, "confirmation": before["metadata"]["displayName"]}},
            "DATABASE_NOT_FOUND",
        ),
        ("GET", "/api/export_data", {"params": target}, "DATABASE_NOT_FOUND"),
        (
            "POST",
            "/api/import_data",
            {
                "data": target,
                "files": {"json_file": ("e.json", b'[{"evil": 1}]', "application/json")},
            },
            "DATABASE_NOT_FOUND",
        ),
        ("DELETE", f"/api/api_keys/{victim_key_id}", {}, "API_KEY_NOT_FOUND"),
        ("GET", "/api/crud", {"params": target}, "DATABASE_NOT_FOUND"),
        ("POST", "/api/crud", {"json": {**target, "data": {"evil": 1}}}, "DATABASE_NOT_FOUND"),
        (
            "PUT",
            "/api/crud",
            {"json": {**target, "filters": {}, "update_data": {"evil": 1}, "all": True}},
            "DATABASE_NOT_FOUND",
        ),
        (
            "PATCH",
            "/api/crud",
            {"json": {**target, "filters": {}, "update_data": {"evil": 1}, "all": True}},
            "DATABASE_NOT_FOUND",
        ),
        (
            "DELETE",
            "/api/crud",
            {"json": {**target, "filters": {}, "all": True}},
            "DATABASE_NOT_FOUND",
        ),
        (
            "GET",
            f"/api/crud/{before['documents'][0]['_id']}",
            {"params": target},
            "DATABASE_NOT_FOUND",
        ),
        ("POST", "/api/crud/count", {"json": target}, "DATABASE_NOT_FOUND"),
        (
            "POST",
            "/api/crud/aggregate",
            {"json": {**target, "pipeline": [{"$match": {}}]}},
            "DATABASE_NOT_FOUND",
        ),
        (
            "POST",
            "/api/crud/bulk",
            {"json": {**target, "operations": [{"delete": {"filters": {}, "all": True}}]}},
            "DATABASE_NOT_FOUND",
        ),
    ]
    credentials = [other_owner.bearer, {"X-API-Key": attacker_key}]
    for method, path, options, code in calls:
        for headers in credentials:
            if path.startswith("/api/api_keys") and "X-API-Key" in headers:
                continue  # key management takes a session token only
            response = await client.request(method, path, headers=headers, **options)
            assert response.status_code == 404, (method, path, response.text)
            assert_envelope(response, 404, code)
    assert await snapshot(client, victim, sync_client) == before


# ----------------------------------------------------------------- datasets


async def dataset_snapshot(sync_client: Any, control_db: str, dataset_id: str) -> dict[str, Any]:
    control = sync_client[control_db]
    oid = ObjectId(dataset_id)
    dataset = control["datasets"].find_one({"_id": oid})
    assert dataset is not None
    tenant = sync_client[f"qt_{dataset['owner_id']}"]
    return {
        "dataset": dataset,
        "shares": list(control["shares"].find({"dataset_id": oid}).sort("_id", 1)),
        "items": list(tenant["items"].find({"dataset_id": oid}).sort("_id", 1)),
        "entries": list(tenant["entries"].find({"dataset_id": oid}).sort("_id", 1)),
    }


async def test_another_tenant_gets_404_on_every_dataset_endpoint_and_changes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    owner: Account,
    other_owner: Account,
    sync_client: Any,
) -> None:
    created = await client.post(
        "/api/v1/datasets", json={"name": "private", "metadata": {"k": 1}}, headers=owner.bearer
    )
    assert created.status_code == 201, created.text
    ds = created.json()["data"]["id"]
    me = (await client.get("/core/me", headers=owner.bearer)).json()["data"]["id"]
    entry = (
        await state_of(app)
        .get(ExpirySweeper)
        .service.create_entry_record(
            owner_id=ObjectId(me),
            dataset_id=ObjectId(ds),
            name="e.txt",
            size=1,
            content_type="text/plain",
        )
    )
    third = (await client.get("/core/me", headers=other_owner.bearer)).json()["data"]
    tag = (await client.get("/api/v1/tags", headers=owner.bearer)).json()["data"][0]["id"]
    tagged = await client.post(
        f"/api/v1/datasets/{ds}/tags", json={"tag_id": tag}, headers=owner.bearer
    )
    assert tagged.status_code == 200
    control_db = state_of(app).settings.control_db
    share_id = str(ObjectId())
    before = await dataset_snapshot(sync_client, control_db, ds)
    attacker_key = await api_key(client, other_owner)
    base = f"/api/v1/datasets/{ds}"
    calls: dict[tuple[str, str], dict[str, Any]] = {
        ("GET", "/api/v1/datasets/{dataset_id}"): {},
        ("PATCH", "/api/v1/datasets/{dataset_id}"): {"json": {"name": "pwned"}},
        ("PUT", "/api/v1/datasets/{dataset_id}"): {"json": {"name": "pwned"}},
        ("DELETE", "/api/v1/datasets/{dataset_id}"): {},
        ("PATCH", "/api/v1/datasets/{dataset_id}/metadata"): {"json": {"k": None}},
        ("PUT", "/api/v1/datasets/{dataset_id}/metadata"): {"json": {}},
        ("GET", "/api/v1/datasets/{dataset_id}/tags"): {},
        ("POST", "/api/v1/datasets/{dataset_id}/tags"): {"json": {"tag_name": "test"}},
        ("DELETE", "/api/v1/datasets/{dataset_id}/tags/{tag_id}"): {"path": f"{base}/tags/{tag}"},
        ("POST", "/api/v1/datasets/{dataset_id}/shares"): {"json": {"user_id": third["id"]}},
        ("GET", "/api/v1/datasets/{dataset_id}/shares"): {},
        ("PATCH", "/api/v1/datasets/{dataset_id}/shares/{share_id}"): {
            "path": f"{base}/shares/{share_id}",
            "json": {"permission": "admin"},
        },
        ("DELETE", "/api/v1/datasets/{dataset_id}/shares/{share_id}"): {
            "path": f"{base}/shares/{share_id}"
        },
        ("POST", "/api/v1/datasets/{dataset_id}/items"): {"json": {"entry_ids": [str(entry)]}},
        ("GET", "/api/v1/datasets/{dataset_id}/items"): {},
        ("DELETE", "/api/v1/datasets/{dataset_id}/items"): {"json": {"entry_ids": [str(entry)]}},
        ("POST", "/api/v1/datasets/{dataset_id}/subset"): {
            "json": {"name": "stolen", "entry_ids": [str(entry)]}
        },
        ("GET", "/api/v1/datasets/{dataset_id}/entries"): {},
        ("POST", "/api/v1/datasets/{dataset_id}/search"): {"json": {"query": "e"}},
    }
    # Every route on one dataset is in the table: a new one cannot skip isolation.
    routes = {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if (route.path or "").startswith("/api/v1/datasets/{dataset_id}")
        for method in route.methods or ()
    }
    assert routes == set(calls), routes ^ set(calls)
    for (method, template), options in calls.items():
        path = options.get("path", template.replace("{dataset_id}", ds))
        body = {k: v for k, v in options.items() if k != "path"}
        for headers in (other_owner.bearer, {"X-API-Key": attacker_key}):
            response = await client.request(method, path, headers=headers, **body)
            assert_envelope(response, 404, ErrorCode.DATASET_NOT_FOUND)
    check = await client.post(
        "/api/v1/access/check", json={"dataset_id": ds}, headers=other_owner.bearer
    )
    assert (
        check.json()["data"]["has_access"] is False and check.json()["data"]["permission"] is None
    )
    listed = await client.get("/api/v1/datasets", headers=other_owner.bearer)
    assert ds not in [d["id"] for d in listed.json()["data"]]
    subset_target = sync_client[control_db]["datasets"].count_documents({"name": "stolen"})
    assert subset_target == 0
    assert await dataset_snapshot(sync_client, control_db, ds) == before


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "metadata": {"$where": "1"}},
        {"name": "x", "metadata": {"a.b": 1}},
        {"name": "x", "metadata": {"nested": {"$gt": 1}}},
        {"name": "x", "metadata": {"": 1}},
        {"name": "x", "unknown": True},
        {"name": "", "metadata": {}},
        {"name": "x", "is_public": {"$ne": False}},
    ],
)
async def test_hostile_dataset_bodies_are_422_and_write_nothing(
    app: FastAPI, client: httpx.AsyncClient, owner: Account, body: dict[str, Any], sync_client: Any
) -> None:
    response = await client.post("/api/v1/datasets", json=body, headers=owner.bearer)
    assert response.status_code == 422, response.text
    assert response.json()["success"] is False
    control = sync_client[state_of(app).settings.control_db]
    assert control["datasets"].count_documents({}) == 0


@pytest.mark.parametrize(
    "params",
    [{"$where": "1"}, {"a.b": "1"}, {"": "x"}],
)
async def test_hostile_metadata_search_keys_are_refused(
    client: httpx.AsyncClient, owner: Account, params: dict[str, str]
) -> None:
    response = await client.get("/api/v1/datasets/search", params=params, headers=owner.bearer)
    assert response.status_code in (400, 422), response.text
    assert response.json()["success"] is False


async def test_search_text_is_literal_not_a_pattern(
    client: httpx.AsyncClient, owner: Account
) -> None:
    for name in ("50% off", "a_b", "back\\slash", "(.*)"):
        created = await client.post("/api/v1/datasets", json={"name": name}, headers=owner.bearer)
        assert created.status_code == 201
    for text, expected in (("%", ["50% off"]), ("_", ["a_b"]), ("\\", ["back\\slash"]),
                           (".*", ["(.*)"]), ("(", ["(.*)"])):  # fmt: skip
        response = await client.get(
            "/api/v1/datasets", params={"search": text}, headers=owner.bearer
        )
        assert [d["name"] for d in response.json()["data"]] == expected, text


# ----------------------------------------------------------------- rows


async def rows_snapshot(sync_client: Any, control_db: str, dataset_id: str) -> dict[str, Any]:
    control = sync_client[control_db]
    oid = ObjectId(dataset_id)
    dataset = control["datasets"].find_one({"_id": oid})
    assert dataset is not None
    tenant = sync_client[f"qt_{dataset['owner_id']}"]
    return {
        "dataset": dataset,
        "columns": list(control["columns"].find({"dataset_id": oid}).sort("_id", 1)),
        "directory": tenant["row_dirs"].find_one({"_id": oid}),
        "buckets": list(tenant["row_buckets"].find({"dataset_id": oid}).sort("_id", 1)),
    }


async def test_another_tenant_gets_404_on_every_rows_endpoint_and_changes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    owner: Account,
    other_owner: Account,
    sync_client: Any,
) -> None:
    created = await client.post("/api/v1/datasets", json={"name": "ts"}, headers=owner.bearer)
    assert created.status_code == 201, created.text
    ds = created.json()["data"]["id"]
    rows = [{"timestamp": 1000 * n, "values": {"v": n}} for n in range(10)]
    inserted = await client.post(
        "/api/v1/rows/bulk_insert", json={"dataset": ds, "rows": rows}, headers=owner.bearer
    )
    assert inserted.status_code == 200, inserted.text
    column = await client.post(
        "/api/v1/columns", json={"dataset": ds, "name": "v", "dtype": "int"}, headers=owner.bearer
    )
    assert column.status_code == 201, column.text
    column_id = column.json()["data"]["id"]
    before = await rows_snapshot(sync_client, state_of(app).settings.control_db, ds)
    attacker_key = await api_key(client, other_owner)
    on = f"?dataset={ds}"
    calls: dict[tuple[str, str], dict[str, Any]] = {
        ("GET", "/api/v1/columns"): {"path": f"/api/v1/columns{on}"},
        ("POST", "/api/v1/columns"): {"json": {"dataset": ds, "name": "w", "dtype": "int"}},
        ("DELETE", "/api/v1/columns/{column_id}"): {"path": f"/api/v1/columns/{column_id}"},
        ("POST", "/api/v1/rows"): {"json": {"dataset": ds, "timestamp": 5, "values": {}}},
        ("POST", "/api/v1/rows/bulk_insert"): {
            "json": {"dataset": ds, "rows": [{"timestamp": 5}], "on_conflict": "replace"}
        },
        ("GET", "/api/v1/rows"): {"path": f"/api/v1/rows{on}"},
        ("DELETE", "/api/v1/rows"): {"json": {"dataset": ds, "all": True}},
        ("GET", "/api/v1/rows/bulk_download"): {"path": f"/api/v1/rows/bulk_download{on}"},
        ("GET", "/api/v1/rows/live"): {"path": f"/api/v1/rows/live{on}"},
        ("GET", "/api/v1/rows/stream"): {"path": f"/api/v1/rows/stream{on}"},
        ("GET", "/api/v1/rows/aggregate"): {"path": f"/api/v1/rows/aggregate{on}"},
    }
    # Every rows and columns route is in the table: a new one cannot skip isolation.
    routes = {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if (route.path or "").startswith(("/api/v1/rows", "/api/v1/columns"))
        for method in route.methods or ()
    }
    assert routes == set(calls), routes ^ set(calls)
    for (method, template), options in calls.items():
        path = options.get("path", template)
        body = {k: v for k, v in options.items() if k != "path"}
        expected = (
            ErrorCode.COLUMN_NOT_FOUND if "{column_id}" in template else ErrorCode.DATASET_NOT_FOUND
        )
        for headers in (other_owner.bearer, {"X-API-Key": attacker_key}):
            response = await client.request(method, path, headers=headers, **body)
            assert_envelope(response, 404, expected)
    # NDJSON loads name the dataset in the query.
    loaded = await client.post(
        f"/api/v1/rows/bulk_insert?dataset={ds}",
        content=b'{"timestamp": 7, "values": {}}\n',
        headers={**other_owner.bearer, "content-type": "application/x-ndjson"},
    )
    assert_envelope(loaded, 404, ErrorCode.DATASET_NOT_FOUND)
    assert await rows_snapshot(sync_client, state_of(app).settings.control_db, ds) == before


@pytest.mark.parametrize(
    "values",
    [
        {"price": {"$gt": 1}},
        {"$where": 1},
        {"a.b": 1},
        {"price": [1, 2]},
        {"": 1},
        {"timestamp": 1},
    ],
)
async def test_hostile_row_values_are_422_and_write_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    owner: Account,
    sync_client: Any,
    values: dict[str, Any],
) -> None:
    created = await client.post("/api/v1/datasets", json={"name": "ts"}, headers=owner.bearer)
    ds = created.json()["data"]["id"]
    rows = [{"timestamp": 1, "values": {"ok": 1}}, {"timestamp": 2, "values": values}]
    response = await client.post(
        "/api/v1/rows/bulk_insert", json={"dataset": ds, "rows": rows}, headers=owner.bearer
    )
    body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert body["details"][0]["loc"][:3] == ["body", "rows", 1]
    owner_id = sync_client[state_of(app).settings.control_db]["datasets"].find_one(
        {"_id": ObjectId(ds)}
    )["owner_id"]
    tenant = sync_client[f"qt_{owner_id}"]
    assert tenant["row_dirs"].count_documents({}) == 0
    assert tenant["row_buckets"].count_documents({}) == 0
