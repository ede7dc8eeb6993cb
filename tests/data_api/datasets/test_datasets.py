"""Datasets (`spec/datasets.md`, Datasets): the seeds' examples in Quarry's ids and
envelope, listing and its filters and paging, metadata search, the expiring list,
updates, deletion and malformed ids — each checked against what is stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI

from app.clock import utc_now
from app.errors import ErrorCode
from app.settings import Settings
from app.wiring import state_of
from tests.fixtures.accounts import Account
from tests.fixtures.datasets import (
    DATASETS,
    QUIET_SETTINGS,
    Register,
    add_entry,
    create_dataset,
    dataset_row,
    from_now,
    make_platform_admin,
    new_dataset,
    parse_time,
    rows,
    share,
    tag_dataset,
    tenant_rows,
    user_id_of,
)
from tests.fixtures.envelopes import assert_envelope


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(**QUIET_SETTINGS)


def ids_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [d["id"] for d in response.json()["data"]]


def hours_until(value: str) -> float:
    return (parse_time(value) - utc_now()).total_seconds() / 3600


# ---------------------------------------------------------------- seed 002


async def test_create_as_in_seed_002_answers_the_dataset_and_stores_it_owned_by_the_caller(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    body = {
        "name": "btc_hourly_ohlcv",
        "description": "Bitcoin hourly OHLCV candles from Tiingo",
        "metadata": {"source": "tiingo", "ticker": "btcusd", "frequency": "1h"},
    }
    response = await client.post(DATASETS, json=body, headers=owner.bearer)
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    owner_id = await user_id_of(client, owner)
    assert ObjectId(data["id"]) and len(data["id"]) == 24
    assert {k: data[k] for k in body} == body
    assert data["owner_id"] == str(owner_id)
    assert data["owner_email"] == owner.email
    assert data["user_permission"] == "owner"
    assert data["columns"] == [] and data["tags"] == []
    assert data["item_count"] == data["entry_count"] == data["row_count"] == 0
    assert data["is_public"] is False and data["acl_override_enabled"] is False
    assert data["created_at"] == data["updated_at"]
    stored = await dataset_row(app, data["id"])
    assert stored["owner_id"] == owner_id
    assert stored["name"] == body["name"] and stored["metadata"] == body["metadata"]
    assert stored["is_public"] is False


async def test_metadata_merge_adds_keys_and_a_null_value_removes_one(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    dataset = await create_dataset(client, owner.bearer, metadata={"source": "tiingo"})
    path = f"{DATASETS}/{dataset['id']}/metadata"
    merged = await client.patch(path, json={"version": "2.0"}, headers=owner.bearer)
    assert merged.status_code == 200, merged.text
    assert merged.json()["data"]["metadata"] == {"source": "tiingo", "version": "2.0"}
    removed = await client.patch(path, json={"source": None}, headers=owner.bearer)
    assert removed.status_code == 200, removed.text
    assert removed.json()["data"]["metadata"] == {"version": "2.0"}
    assert (await dataset_row(app, dataset["id"]))["metadata"] == {"version": "2.0"}


async def test_metadata_put_replaces_the_whole_metadata(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    dataset = await create_dataset(client, owner.bearer, metadata={"source": "tiingo", "a": 1})
    response = await client.put(
        f"{DATASETS}/{dataset['id']}/metadata", json={"version": "3"}, headers=owner.bearer
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["metadata"] == {"version": "3"}
    assert (await dataset_row(app, dataset["id"]))["metadata"] == {"version": "3"}


async def test_acquiring_the_public_tag_as_in_seed_002_reads_datasets_tagged_public(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    creator, consumer = await register(), await register()
    dataset = await create_dataset(client, creator.bearer, name="my_btc_prices")
    assert dataset["id"] not in ids_of(await client.get(DATASETS, headers=consumer.bearer))
    await tag_dataset(client, creator.bearer, dataset["id"], "public")
    acquired = await client.post(
        "/api/v1/tags/acquire", json={"tag_name": "public"}, headers=consumer.bearer
    )
    assert acquired.status_code == 200, acquired.text
    assert dataset["id"] in ids_of(await client.get(DATASETS, headers=consumer.bearer))
    read = await client.get(f"{DATASETS}/{dataset['id']}", headers=consumer.bearer)
    assert read.status_code == 200 and read.json()["data"]["user_permission"] == "read"
    assert read.json()["data"]["tags"] == ["public"]
    consumer_id = await user_id_of(client, consumer)
    held = await rows(app, "user_tags", {"user_id": consumer_id})
    assert [row["tag_id"] for row in held] == [
        (await rows(app, "tags", {"name": "public"}))[0]["_id"]
    ]


async def test_access_check_as_in_seed_002_names_the_matching_tags(
    client: httpx.AsyncClient, register: Register
) -> None:
    creator, consumer = await register(), await register()
    dataset = await create_dataset(client, creator.bearer)
    await tag_dataset(client, creator.bearer, dataset["id"], "public")
    await client.post("/api/v1/tags/acquire", json={"tag_name": "public"}, headers=consumer.bearer)
    response = await client.post(
        "/api/v1/access/check",
        json={"dataset_id": dataset["id"], "require_write": False},
        headers=consumer.bearer,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True,
        "data": {
            "has_access": True,
            "is_owner": False,
            "permission": "read",
            "matching_tags": ["public"],
        },
    }


async def test_access_check_requiring_write_is_false_for_a_reader(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner, reader = await register(), await register()
    dataset = await create_dataset(client, owner.bearer)
    await share(client, owner.bearer, dataset["id"], email=reader.email)
    response = await client.post(
        "/api/v1/access/check",
        json={"dataset_id": dataset["id"], "require_write": True},
        headers=reader.bearer,
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["has_access"] is False
    assert response.json()["data"]["permission"] == "read"


async def test_access_check_on_a_dataset_you_cannot_see_answers_as_for_no_dataset(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner, stranger = await register(), await register()
    dataset = await create_dataset(client, owner.bearer)
    answers = [
        await client.post(
            "/api/v1/access/check", json={"dataset_id": target}, headers=stranger.bearer
        )
        for target in (dataset["id"], str(ObjectId()))
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["data"] == {
        "has_access": False,
        "is_owner": False,
        "permission": None,
        "matching_tags": [],
    }


async def test_access_check_with_a_malformed_dataset_id_is_422_invalid_id(
    client: httpx.AsyncClient, register: Register
) -> None:
    caller = await register()
    response = await client.post(
        "/api/v1/access/check", json={"dataset_id": "nope"}, headers=caller.bearer
    )
    assert_envelope(response, 422, ErrorCode.INVALID_ID)


# ---------------------------------------------------------------- seed 003


async def test_create_as_in_seed_003_links_the_file_ids_and_skips_invalid_ones(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    owner_id = await user_id_of(client, owner)
    source = await create_dataset(client, owner.bearer, name="regional shares")
    files = [str(await add_entry(app, owner_id, source["id"], f"q4-{n}.pdf")) for n in range(3)]
    expires_at = from_now(days=30)
    response = await client.post(
        DATASETS,
        json={
            "name": "Q4 Financial Reports",
            "description": "All Q4 reports across regional shares",
            "file_ids": [*files, "a1b2c3"],
            "is_public": False,
            "acl_override_enabled": False,
            "expires_at": expires_at,
        },
        headers=owner.bearer,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["skipped_ids"] == ["a1b2c3"]
    data = body["data"]
    assert data["item_count"] == 3 and data["entry_count"] == 0
    assert data["user_permission"] == "owner"
    assert parse_time(data["expires_at"]) == parse_time(expires_at)
    assert 30 * 24 - 1 < data["expires_in_hours"] <= 30 * 24
    items = await tenant_rows(app, owner_id, "items", {"dataset_id": ObjectId(data["id"])})
    assert sorted(str(i["entry_id"]) for i in items) == sorted(files)
    assert {str(i["home_dataset_id"]) for i in items} == {source["id"]}


async def test_share_as_in_seed_003_lets_the_colleague_read_until_the_share_expires(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner, analyst = await register(), await register()
    dataset = await create_dataset(client, owner.bearer, name="Q4 Financial Reports")
    expires_at = from_now(days=60)
    response = await client.post(
        f"{DATASETS}/{dataset['id']}/shares",
        json={"email": analyst.email, "permission": "read", "expires_at": expires_at},
        headers=owner.bearer,
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    analyst_id, owner_id = await user_id_of(client, analyst), await user_id_of(client, owner)
    assert data["dataset_id"] == dataset["id"] and data["user_id"] == str(analyst_id)
    assert data["email"] == analyst.email and data["permission"] == "read"
    assert data["created_by"] == str(owner_id)
    assert parse_time(data["expires_at"]) == parse_time(expires_at)
    [stored] = await rows(app, "shares", {"dataset_id": ObjectId(dataset["id"])})
    assert stored["_id"] == ObjectId(data["id"]) and stored["user_id"] == analyst_id
    assert stored["permission"] == "read" and stored["expires_at"] == parse_time(expires_at)
    read = await client.get(f"{DATASETS}/{dataset['id']}", headers=analyst.bearer)
    assert read.status_code == 200 and read.json()["data"]["user_permission"] == "read"


async def test_patch_as_in_seed_003_changes_name_visibility_and_expiry(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    dataset = await create_dataset(client, owner.bearer, name="Q4 Financial Reports")
    expires_at = from_now(days=200)
    response = await client.patch(
        f"{DATASETS}/{dataset['id']}",
        json={
            "name": "Q4 Financial Reports (Updated)",
            "is_public": True,
            "expires_at": expires_at,
        },
        headers=owner.bearer,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["name"] == "Q4 Financial Reports (Updated)" and data["is_public"] is True
    assert parse_time(data["updated_at"]) > parse_time(dataset["updated_at"])
    stored = await dataset_row(app, dataset["id"])
    assert stored["name"] == "Q4 Financial Reports (Updated)" and stored["is_public"] is True
    assert stored["expires_at"] == parse_time(expires_at)


async def test_subset_as_in_seed_003_is_a_new_dataset_of_the_caller_with_those_files(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner, analyst = await register(), await register()
    owner_id, analyst_id = await user_id_of(client, owner), await user_id_of(client, analyst)
    source = await create_dataset(client, owner.bearer, name="Q4 Financial Reports")
    files = [str(await add_entry(app, owner_id, source["id"], f"r{n}.pdf")) for n in range(3)]
    await share(client, owner.bearer, source["id"], email=analyst.email)
    response = await client.post(
        f"{DATASETS}/{source['id']}/subset",
        json={
            "name": "Q4 PDFs Only",
            "description": "PDF subset of Q4 reports",
            "file_ids": files[:2],
        },
        headers=analyst.bearer,
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["owner_id"] == str(analyst_id) and data["user_permission"] == "owner"
    assert data["name"] == "Q4 PDFs Only" and data["item_count"] == 2
    items = await tenant_rows(app, analyst_id, "items", {"dataset_id": ObjectId(data["id"])})
    assert sorted(str(i["entry_id"]) for i in items) == sorted(files[:2])
    assert (await dataset_row(app, data["id"]))["owner_id"] == analyst_id
    source_items = await tenant_rows(app, owner_id, "items", {"dataset_id": ObjectId(source["id"])})
    assert len(source_items) == 3


async def test_expiring_as_in_seed_003_lists_the_window_soonest_first_for_admins(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner, admin = await register(), await register()
    await make_platform_admin(app, await user_id_of(client, admin))
    later = await create_dataset(client, owner.bearer, name="later", expires_at=from_now(hours=5))
    sooner = await create_dataset(client, owner.bearer, name="sooner", expires_at=from_now(hours=2))
    await create_dataset(client, owner.bearer, name="outside", expires_at=from_now(hours=300))
    await create_dataset(client, owner.bearer, name="default expiry")
    response = await client.get(
        f"{DATASETS}/expiring", params={"within_hours": 10}, headers=admin.bearer
    )
    assert ids_of(response) == [sooner["id"], later["id"]]
    default_window = await client.get(f"{DATASETS}/expiring", headers=admin.bearer)
    assert len(ids_of(default_window)) == 2  # 240 hours
    assert [d["user_permission"] for d in response.json()["data"]] == ["admin", "admin"]


async def test_expiring_is_forbidden_to_callers_who_are_not_platform_admins(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    await create_dataset(client, owner.bearer, expires_at=from_now(hours=2))
    response = await client.get(f"{DATASETS}/expiring", headers=owner.bearer)
    assert_envelope(response, 403, ErrorCode.INSUFFICIENT_PERMISSION)


async def test_a_new_dataset_expires_after_the_default_90_days(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    dataset = await create_dataset(client, owner.bearer)
    assert 90 * 24 - 1 < dataset["expires_in_hours"] <= 90 * 24
    stored = await dataset_row(app, dataset["id"])
    left = stored["expires_at"] - utc_now()
    assert timedelta(days=90) - timedelta(minutes=1) < left <= timedelta(days=90)


# ---------------------------------------------------------------- listing


async def test_list_search_matches_name_or_description_case_insensitively(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    by_name = await create_dataset(client, owner.bearer, name="Bitcoin prices")
    by_description = await create_dataset(
        client, owner.bearer, name="hourly", description="candles of BITCOIN"
    )
    await create_dataset(client, owner.bearer, name="ether", description="ether prices")
    response = await client.get(DATASETS, params={"search": "bitcoin"}, headers=owner.bearer)
    assert sorted(ids_of(response)) == sorted([by_name["id"], by_description["id"]])


async def test_list_search_takes_percent_and_underscore_literally(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    underscore = await create_dataset(client, owner.bearer, name="a_b")
    percent = await create_dataset(client, owner.bearer, name="50% off")
    await create_dataset(client, owner.bearer, name="axb")
    by_underscore = await client.get(DATASETS, params={"search": "_"}, headers=owner.bearer)
    assert ids_of(by_underscore) == [underscore["id"]]
    by_percent = await client.get(DATASETS, params={"search": "%"}, headers=owner.bearer)
    assert ids_of(by_percent) == [percent["id"]]


async def test_list_search_ignores_the_case_of_non_ascii_letters(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    apples = await create_dataset(client, owner.bearer, name="Äpfel und Birnen")
    await create_dataset(client, owner.bearer, name="Apfel")
    response = await client.get(DATASETS, params={"search": "äPFEL"}, headers=owner.bearer)
    assert ids_of(response) == [apples["id"]]


async def test_list_owned_only_leaves_out_datasets_shared_with_you(
    client: httpx.AsyncClient, register: Register
) -> None:
    me, other = await register(), await register()
    mine = await create_dataset(client, me.bearer, name="mine")
    theirs = await create_dataset(client, other.bearer, name="theirs")
    await share(client, other.bearer, theirs["id"], email=me.email)
    everything = await client.get(DATASETS, headers=me.bearer)
    assert sorted(ids_of(everything)) == sorted([mine["id"], theirs["id"]])
    owned = await client.get(DATASETS, params={"owned_only": "true"}, headers=me.bearer)
    assert ids_of(owned) == [mine["id"]]


async def test_list_tag_filter_keeps_the_datasets_carrying_that_tag(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    tagged = await create_dataset(client, owner.bearer, name="tagged")
    await create_dataset(client, owner.bearer, name="untagged")
    await tag_dataset(client, owner.bearer, tagged["id"], "test")
    response = await client.get(DATASETS, params={"tag": "test"}, headers=owner.bearer)
    assert ids_of(response) == [tagged["id"]]
    unknown = await client.get(DATASETS, params={"tag": "no-such-tag"}, headers=owner.bearer)
    assert ids_of(unknown) == []


async def test_list_is_public_filter_keeps_public_or_private_datasets(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    public = await create_dataset(client, owner.bearer, name="open", is_public=True)
    private = await create_dataset(client, owner.bearer, name="closed")
    only_public = await client.get(DATASETS, params={"is_public": "true"}, headers=owner.bearer)
    assert ids_of(only_public) == [public["id"]]
    only_private = await client.get(DATASETS, params={"is_public": "false"}, headers=owner.bearer)
    assert ids_of(only_private) == [private["id"]]


async def test_list_shows_only_the_datasets_you_can_read(
    client: httpx.AsyncClient, register: Register
) -> None:
    me, other = await register(), await register()
    mine = await create_dataset(client, me.bearer, name="mine")
    public = await create_dataset(client, other.bearer, name="open", is_public=True)
    await create_dataset(client, other.bearer, name="closed")
    response = await client.get(DATASETS, headers=me.bearer)
    assert sorted(ids_of(response)) == sorted([mine["id"], public["id"]])
    permissions = {d["id"]: d["user_permission"] for d in response.json()["data"]}
    assert permissions == {mine["id"]: "owner", public["id"]: "read"}


async def test_list_shows_a_dataset_reachable_in_several_ways_once(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner, reader = await register(), await register()
    dataset = await create_dataset(client, owner.bearer, is_public=True)
    await share(client, owner.bearer, dataset["id"], email=reader.email, permission="write")
    await tag_dataset(client, owner.bearer, dataset["id"], "test")
    await client.post("/api/v1/tags/acquire", json={"tag_name": "test"}, headers=reader.bearer)
    response = await client.get(DATASETS, headers=reader.bearer)
    assert ids_of(response) == [dataset["id"]]
    assert response.json()["pagination"]["total_items"] == 1
    assert response.json()["data"][0]["user_permission"] == "write"


async def test_list_shows_a_dataset_shared_until_later_but_not_one_whose_share_expired(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner, reader = await register(), await register()
    live = await create_dataset(client, owner.bearer, name="live")
    lapsed = await create_dataset(client, owner.bearer, name="lapsed")
    await share(client, owner.bearer, live["id"], email=reader.email, expires_at=from_now(hours=1))
    made = await share(
        client, owner.bearer, lapsed["id"], email=reader.email, expires_at=from_now(hours=1)
    )
    await (
        state_of(app)
        .database.control["shares"]
        .update_one(
            {"_id": ObjectId(made["id"])},
            {"$set": {"expires_at": utc_now() - timedelta(seconds=1)}},
        )
    )
    assert ids_of(await client.get(DATASETS, headers=reader.bearer)) == [live["id"]]


async def five_datasets(client: httpx.AsyncClient, owner: Account) -> list[str]:
    """Five datasets, newest first (the list's order)."""
    made = [(await create_dataset(client, owner.bearer, name=f"d{n}"))["id"] for n in range(5)]
    return made[::-1]


async def test_list_is_sorted_by_updated_at_newest_first(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    newest_first = await five_datasets(client, owner)
    assert ids_of(await client.get(DATASETS, headers=owner.bearer)) == newest_first
    oldest = newest_first[-1]
    touched = await client.patch(
        f"{DATASETS}/{oldest}", json={"description": "touched"}, headers=owner.bearer
    )
    assert touched.status_code == 200, touched.text
    listed = ids_of(await client.get(DATASETS, headers=owner.bearer))
    assert listed == [oldest, *newest_first[:-1]]


async def test_list_pages_by_page_and_page_size_with_next_and_previous_links(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    newest_first = await five_datasets(client, owner)
    response = await client.get(
        DATASETS, params={"page": 2, "page_size": 2, "search": "d"}, headers=owner.bearer
    )
    assert ids_of(response) == newest_first[2:4]
    pagination = response.json()["pagination"]
    assert {k: pagination[k] for k in ("page", "page_size", "total_items", "total_pages")} == {
        "page": 2,
        "page_size": 2,
        "total_items": 5,
        "total_pages": 3,
    }
    assert pagination["has_next"] is True and pagination["has_previous"] is True
    following = httpx.URL(pagination["next"])
    assert following.path == DATASETS
    assert dict(following.params) == {"page": "3", "page_size": "2", "search": "d"}
    assert dict(httpx.URL(pagination["previous"]).params) == {
        "page": "1",
        "page_size": "2",
        "search": "d",
    }
    last = await client.get(pagination["next"], headers=owner.bearer)
    assert ids_of(last) == newest_first[4:]
    assert last.json()["pagination"]["next"] is None


async def test_list_pages_by_limit_and_offset_with_next_and_previous_links(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    newest_first = await five_datasets(client, owner)
    response = await client.get(DATASETS, params={"limit": 2, "offset": 2}, headers=owner.bearer)
    assert ids_of(response) == newest_first[2:4]
    pagination = response.json()["pagination"]
    assert pagination["limit"] == 2 and pagination["offset"] == 2
    assert pagination["total_items"] == 5
    assert dict(httpx.URL(pagination["next"]).params) == {"limit": "2", "offset": "4"}
    assert dict(httpx.URL(pagination["previous"]).params) == {"limit": "2", "offset": "0"}
    first = await client.get(pagination["previous"], headers=owner.bearer)
    assert ids_of(first) == newest_first[:2]
    assert first.json()["pagination"]["previous"] is None


async def test_list_defaults_to_20_a_page(client: httpx.AsyncClient, register: Register) -> None:
    owner = await register()
    await create_dataset(client, owner.bearer)
    pagination = (await client.get(DATASETS, headers=owner.bearer)).json()["pagination"]
    assert pagination["page"] == 1 and pagination["page_size"] == 20
    assert pagination["next"] is None and pagination["previous"] is None


@pytest.mark.parametrize(
    "params", [{"page_size": 101}, {"page_size": 0}, {"limit": 1001}, {"page": 0}, {"offset": -1}]
)
async def test_list_paging_out_of_range_is_422(
    client: httpx.AsyncClient, register: Register, params: dict[str, int]
) -> None:
    owner = await register()
    response = await client.get(DATASETS, params=params, headers=owner.bearer)
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)


# ---------------------------------------------------------------- metadata search


async def test_metadata_search_matches_a_number_and_a_string_as_written(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    number = await create_dataset(client, owner.bearer, metadata={"year": 2024})
    string = await create_dataset(client, owner.bearer, metadata={"year": "2024"})
    await create_dataset(client, owner.bearer, metadata={"year": 2023})
    await create_dataset(client, owner.bearer, metadata={"month": 2024})
    response = await client.get(f"{DATASETS}/search", params={"year": 2024}, headers=owner.bearer)
    assert sorted(ids_of(response)) == sorted([number["id"], string["id"]])


async def test_metadata_search_matches_a_boolean_as_written(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    premium = await create_dataset(client, owner.bearer, metadata={"premium": True})
    await create_dataset(client, owner.bearer, metadata={"premium": False})
    response = await client.get(
        f"{DATASETS}/search", params={"premium": "true"}, headers=owner.bearer
    )
    assert ids_of(response) == [premium["id"]]


async def test_metadata_search_needs_every_filter_to_match(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    both = await create_dataset(
        client, owner.bearer, metadata={"ticker": "btcusd", "frequency": "1min"}
    )
    await create_dataset(client, owner.bearer, metadata={"ticker": "btcusd", "frequency": "1h"})
    response = await client.get(
        f"{DATASETS}/search",
        params={"ticker": "btcusd", "frequency": "1min"},
        headers=owner.bearer,
    )
    assert ids_of(response) == [both["id"]]


async def test_metadata_search_never_returns_a_dataset_you_cannot_read(
    client: httpx.AsyncClient, register: Register
) -> None:
    me, other = await register(), await register()
    mine = await create_dataset(client, me.bearer, metadata={"source": "tiingo"})
    await create_dataset(client, other.bearer, metadata={"source": "tiingo"})
    response = await client.get(
        f"{DATASETS}/search", params={"source": "tiingo"}, headers=me.bearer
    )
    assert ids_of(response) == [mine["id"]]


async def test_metadata_search_without_a_filter_is_400_filter_required(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    await create_dataset(client, owner.bearer, metadata={"year": 2024})
    response = await client.get(f"{DATASETS}/search", params={"limit": 10}, headers=owner.bearer)
    assert_envelope(response, 400, ErrorCode.FILTER_REQUIRED)


# ---------------------------------------------------------------- updates


async def test_patch_with_nothing_to_change_is_422_and_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    dataset = await create_dataset(client, owner.bearer)
    before = await dataset_row(app, dataset["id"])
    response = await client.patch(f"{DATASETS}/{dataset['id']}", json={}, headers=owner.bearer)
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert await dataset_row(app, dataset["id"]) == before


async def test_patch_with_a_null_name_is_422_and_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    dataset = await create_dataset(client, owner.bearer)
    before = await dataset_row(app, dataset["id"])
    response = await client.patch(
        f"{DATASETS}/{dataset['id']}", json={"name": None}, headers=owner.bearer
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert await dataset_row(app, dataset["id"]) == before


@pytest.mark.parametrize("expires_at", [{"hours": -1}, {"days": 3651}], ids=["past", "beyond max"])
async def test_create_with_expires_at_out_of_range_is_422_and_stores_nothing(
    app: FastAPI, client: httpx.AsyncClient, register: Register, expires_at: dict[str, float]
) -> None:
    owner = await register()
    response = await client.post(
        DATASETS, json={"name": "x", "expires_at": from_now(**expires_at)}, headers=owner.bearer
    )
    body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert body["details"][0]["loc"] == ["body", "expires_at"]
    assert await rows(app, "datasets") == []


@pytest.mark.parametrize("expires_at", [{"hours": -1}, {"days": 3651}], ids=["past", "beyond max"])
async def test_patch_with_expires_at_out_of_range_is_422_and_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, register: Register, expires_at: dict[str, float]
) -> None:
    owner = await register()
    dataset = await create_dataset(client, owner.bearer)
    before = await dataset_row(app, dataset["id"])
    response = await client.patch(
        f"{DATASETS}/{dataset['id']}",
        json={"expires_at": from_now(**expires_at)},
        headers=owner.bearer,
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert await dataset_row(app, dataset["id"]) == before


async def test_put_replaces_name_description_and_metadata(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    dataset = await create_dataset(
        client, owner.bearer, name="old", description="old text", metadata={"a": 1, "b": 2}
    )
    response = await client.put(
        f"{DATASETS}/{dataset['id']}",
        json={"name": "new", "metadata": {"c": 3}},
        headers=owner.bearer,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["name"], data["description"], data["metadata"]) == ("new", "", {"c": 3})
    stored = await dataset_row(app, dataset["id"])
    assert (stored["name"], stored["description"], stored["metadata"]) == ("new", "", {"c": 3})


NAIVE = "2030-01-01T00:00:00"  # no `Z`, no offset


async def naive_expiry_request(
    app: FastAPI, client: httpx.AsyncClient, owner: Account, what: str
) -> tuple[httpx.Response, str]:
    """Send `expires_at` without a timezone to `what`; the response and the id of the
    dataset whose expiry it sets (when it is accepted)."""
    if what == "create":
        response = await client.post(
            DATASETS, json={"name": "naive", "expires_at": NAIVE}, headers=owner.bearer
        )
        return response, response.json().get("data", {}).get("id", "")
    dataset = await create_dataset(client, owner.bearer)
    if what == "patch":
        response = await client.patch(
            f"{DATASETS}/{dataset['id']}", json={"expires_at": NAIVE}, headers=owner.bearer
        )
        return response, dataset["id"]
    entry = await add_entry(app, await user_id_of(client, owner), dataset["id"])
    response = await client.post(
        f"{DATASETS}/{dataset['id']}/subset",
        json={"name": "naive", "entry_ids": [str(entry)], "expires_at": NAIVE},
        headers=owner.bearer,
    )
    return response, response.json().get("data", {}).get("id", "")


@pytest.mark.parametrize("what", ["create", "patch", "subset"])
async def test_an_expires_at_without_a_timezone_is_read_as_utc_or_refused_never_a_500(
    app: FastAPI, client: httpx.AsyncClient, register: Register, what: str
) -> None:
    owner = await register()
    response, dataset_id = await naive_expiry_request(app, client, owner, what)
    assert response.status_code in (200, 201, 422), response.text
    if response.status_code == 422:
        assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    else:
        stored = (await dataset_row(app, dataset_id))["expires_at"]
        assert stored == parse_time(NAIVE + "Z")


async def test_a_platform_admin_lists_every_dataset_as_admin(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner, admin = await register(), await register()
    await make_platform_admin(app, await user_id_of(client, admin))
    theirs = await create_dataset(client, owner.bearer, name="private")
    mine = await create_dataset(client, admin.bearer, name="own")
    response = await client.get(DATASETS, headers=admin.bearer)
    assert ids_of(response) == [mine["id"], theirs["id"]]
    permissions = [d["user_permission"] for d in response.json()["data"]]
    assert permissions == ["owner", "admin"]


async def test_names_are_not_unique(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    first = await create_dataset(client, owner.bearer, name="same")
    second = await create_dataset(client, owner.bearer, name="same")
    assert first["id"] != second["id"]
    assert [row["name"] for row in await rows(app, "datasets")] == ["same", "same"]


async def test_get_answers_the_counts_tags_and_owner_email(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner, reader = await register(), await register()
    owner_id = await user_id_of(client, owner)
    home = await create_dataset(client, owner.bearer, name="home")
    dataset = await create_dataset(client, owner.bearer, name="curated")
    await add_entry(app, owner_id, dataset["id"])
    elsewhere = await add_entry(app, owner_id, home["id"])
    added = await client.post(
        f"{DATASETS}/{dataset['id']}/items",
        json={"entry_ids": [str(elsewhere)]},
        headers=owner.bearer,
    )
    assert added.status_code == 200, added.text
    await tag_dataset(client, owner.bearer, dataset["id"], "test")
    await share(client, owner.bearer, dataset["id"], email=reader.email, permission="write")
    response = await client.get(f"{DATASETS}/{dataset['id']}", headers=reader.bearer)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    # The item homed in "home", which the reader cannot read, is neither listed nor counted.
    assert data["item_count"] == 1 and data["entry_count"] == 1 and data["row_count"] == 0
    assert data["tags"] == ["test"] and data["owner_email"] == owner.email
    assert data["user_permission"] == "write"
    as_owner = await client.get(f"{DATASETS}/{dataset['id']}", headers=owner.bearer)
    assert as_owner.json()["data"]["item_count"] == 2


# ---------------------------------------------------------------- deletion


async def test_delete_removes_the_dataset_its_items_shares_and_entries_homed_there(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner, reader = await register(), await register()
    owner_id = await user_id_of(client, owner)
    dataset = await create_dataset(client, owner.bearer)
    kept = await create_dataset(client, owner.bearer, name="kept")
    entries = [await add_entry(app, owner_id, dataset["id"], f"e{n}") for n in range(2)]
    await add_entry(app, owner_id, kept["id"])
    await share(client, owner.bearer, dataset["id"], email=reader.email)
    await tag_dataset(client, owner.bearer, dataset["id"], "test")
    oid = ObjectId(dataset["id"])
    response = await client.delete(f"{DATASETS}/{dataset['id']}", headers=owner.bearer)
    assert response.status_code == 204, response.text
    assert await dataset_row(app, oid) is None
    assert await rows(app, "shares", {"dataset_id": oid}) == []
    assert await rows(app, "entry_homes", {"_id": {"$in": entries}}) == []
    assert await tenant_rows(app, owner_id, "items", {"dataset_id": oid}) == []
    assert await tenant_rows(app, owner_id, "entries", {"dataset_id": oid}) == []
    assert await dataset_row(app, kept["id"]) is not None
    assert len(await tenant_rows(app, owner_id, "entries", {"dataset_id": ObjectId(kept["id"])}))
    gone = await client.get(f"{DATASETS}/{dataset['id']}", headers=owner.bearer)
    assert_envelope(gone, 404, ErrorCode.DATASET_NOT_FOUND)


async def test_delete_unlinks_the_entries_homed_there_from_every_other_dataset(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner, curator = await register(), await register()
    owner_id, curator_id = await user_id_of(client, owner), await user_id_of(client, curator)
    dataset = await create_dataset(client, owner.bearer)
    entry = str(await add_entry(app, owner_id, dataset["id"]))
    await share(client, owner.bearer, dataset["id"], email=curator.email)
    own_curated = await create_dataset(client, owner.bearer, name="mine", entry_ids=[entry])
    their_curated = await create_dataset(client, curator.bearer, name="theirs", entry_ids=[entry])
    response = await client.delete(f"{DATASETS}/{dataset['id']}", headers=owner.bearer)
    assert response.status_code == 204, response.text
    linked = {"entry_id": ObjectId(entry)}
    assert await tenant_rows(app, owner_id, "items", linked) == []
    assert await tenant_rows(app, curator_id, "items", linked) == []
    for survivor, reader in ((own_curated, owner), (their_curated, curator)):
        answer = await client.get(f"{DATASETS}/{survivor['id']}", headers=reader.bearer)
        assert answer.status_code == 200 and answer.json()["data"]["item_count"] == 0


# ---------------------------------------------------------------- malformed ids


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/datasets/{id}", None),
        ("PATCH", "/api/v1/datasets/{id}", {"name": "x"}),
        ("DELETE", "/api/v1/datasets/{id}", None),
        ("GET", "/api/v1/datasets/{id}/items", None),
        ("POST", "/api/v1/datasets/{id}/shares", {"email": "a@example.com"}),
        ("POST", "/api/v1/datasets/{id}/subset", {"name": "x", "entry_ids": ["x"]}),
    ],
)
@pytest.mark.parametrize("bad_id", ["nope", "zz" * 12])
async def test_a_malformed_dataset_id_is_422_invalid_id(
    client: httpx.AsyncClient,
    register: Register,
    method: str,
    path: str,
    body: Any,
    bad_id: str,
) -> None:
    caller = await register()
    response = await client.request(
        method, path.format(id=bad_id), json=body, headers=caller.bearer
    )
    assert_envelope(response, 422, ErrorCode.INVALID_ID)


async def test_paging_flags_agree_with_the_links_at_any_offset(
    client: httpx.AsyncClient, register: Any
) -> None:
    owner = await register()
    for n in range(12):
        await new_dataset(client, owner, name=f"d{n}")
    page = await client.get(
        "/api/v1/datasets", params={"offset": 5, "limit": 10}, headers=owner.bearer
    )
    pagination = page.json()["pagination"]
    assert len(page.json()["data"]) == 7
    assert pagination["has_previous"] is True and pagination["previous"] is not None
    assert pagination["has_next"] is False and pagination["next"] is None
