"""Tags, shares, items and subsets (`spec/datasets.md`): private tags and their
secrets, holding and releasing tags, tagging datasets; sharing by id or email, the
conflicts and refusals of sharing, share expiry to the second; linking, listing
(with file-level ACLs and their override), unlinking and subsetting items — each
checked against the stored catalogue and tenant rows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
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
    create_tag,
    dataset_row,
    from_now,
    iso,
    make_platform_admin,
    new_dataset,
    rows,
    service_of,
    share,
    stored_state,
    tag_dataset,
    tenant_rows,
    user_id_of,
)
from tests.fixtures.envelopes import assert_envelope

SECRET = "s3cret-partners-only"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(**QUIET_SETTINGS)


@pytest.fixture
async def admin(app: FastAPI, client: httpx.AsyncClient, register: Register) -> Account:
    """A platform administrator (they create tags)."""
    account = await register()
    await make_platform_admin(app, await user_id_of(client, account))
    return account


async def acquire(
    client: httpx.AsyncClient, account: Account, tag_name: str, secret: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"tag_name": tag_name}
    if secret is not None:
        body["secret"] = secret
    return await client.post("/api/v1/tags/acquire", json=body, headers=account.bearer)


def without_request_id(response: httpx.Response) -> dict[str, Any]:
    return {k: v for k, v in response.json().items() if k != "request_id"}


# ---------------------------------------------------------------- tags


async def test_a_wrong_secret_and_an_unknown_tag_get_the_same_403(
    client: httpx.AsyncClient, register: Register, admin: Account
) -> None:
    await create_tag(client, admin.bearer, name="partners", is_public=False, secret=SECRET)
    caller = await register()
    wrong = await acquire(client, caller, "partners", "not-the-secret")
    unknown = await acquire(client, caller, "no-such-tag", "not-the-secret")
    missing = await acquire(client, caller, "partners")
    for response in (wrong, unknown, missing):
        assert_envelope(response, 403, ErrorCode.INVALID_TAG_SECRET)
    assert without_request_id(wrong) == without_request_id(unknown) == without_request_id(missing)


async def test_a_refused_acquire_holds_nothing(
    app: FastAPI, client: httpx.AsyncClient, register: Register, admin: Account
) -> None:
    await create_tag(client, admin.bearer, name="partners", is_public=False, secret=SECRET)
    caller = await register()
    assert (await acquire(client, caller, "partners", "wrong-secret")).status_code == 403
    assert await rows(app, "user_tags") == []


async def test_a_private_tags_secret_is_not_stored_in_clear(
    app: FastAPI, client: httpx.AsyncClient, admin: Account
) -> None:
    tag = await create_tag(client, admin.bearer, name="partners", is_public=False, secret=SECRET)
    [row] = await rows(app, "tags", {"_id": ObjectId(tag["id"])})
    for field, value in row.items():
        raw = value if isinstance(value, bytes) else str(value).encode()
        assert SECRET.encode() not in raw, field
    assert "secret" not in row


async def test_the_tag_list_never_shows_a_secret(
    client: httpx.AsyncClient, register: Register, admin: Account
) -> None:
    await create_tag(client, admin.bearer, name="partners", is_public=False, secret=SECRET)
    caller = await register()
    response = await client.get("/api/v1/tags", headers=caller.bearer)
    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    fields = {field for tag in response.json()["data"] for field in tag}
    assert not {f for f in fields if "secret" in f or "hash" in f or "salt" in f}, fields
    listed = {t["name"]: t["is_public"] for t in response.json()["data"]}
    assert listed == {"partners": False, "public": True, "test": True}


async def test_the_right_secret_holds_a_private_tag_and_reads_its_datasets(
    app: FastAPI, client: httpx.AsyncClient, register: Register, admin: Account
) -> None:
    tag = await create_tag(client, admin.bearer, name="partners", is_public=False, secret=SECRET)
    owner, partner = await register(), await register()
    dataset = await create_dataset(client, owner.bearer)
    await tag_dataset(client, owner.bearer, dataset["id"], "partners")
    response = await acquire(client, partner, "partners", SECRET)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["id"] == tag["id"]
    partner_id = await user_id_of(client, partner)
    held = await rows(app, "user_tags", {"user_id": partner_id})
    assert [row["tag_id"] for row in held] == [ObjectId(tag["id"])]
    read = await client.get(f"{DATASETS}/{dataset['id']}", headers=partner.bearer)
    assert read.status_code == 200 and read.json()["data"]["user_permission"] == "read"


async def test_creating_a_tag_is_for_platform_admins_only(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    caller = await register()
    response = await client.post("/api/v1/tags", json={"name": "mine"}, headers=caller.bearer)
    assert_envelope(response, 403, ErrorCode.INSUFFICIENT_PERMISSION)
    assert [row["name"] for row in await rows(app, "tags", {"name": "mine"})] == []


async def test_a_second_tag_of_the_same_name_is_409(
    app: FastAPI, client: httpx.AsyncClient, admin: Account
) -> None:
    await create_tag(client, admin.bearer, name="partners")
    response = await client.post("/api/v1/tags", json={"name": "partners"}, headers=admin.bearer)
    assert_envelope(response, 409, ErrorCode.TAG_EXISTS)
    assert len(await rows(app, "tags", {"name": "partners"})) == 1


async def test_acquiring_a_tag_twice_holds_it_once(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    caller = await register()
    first, second = await acquire(client, caller, "public"), await acquire(client, caller, "public")
    assert (first.status_code, second.status_code) == (200, 200)
    caller_id = await user_id_of(client, caller)
    assert len(await rows(app, "user_tags", {"user_id": caller_id})) == 1
    mine = await client.get("/api/v1/tags/mine", headers=caller.bearer)
    assert [t["name"] for t in mine.json()["data"]] == ["public"]


async def test_releasing_a_tag_stops_holding_it(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner, caller = await register(), await register()
    dataset = await create_dataset(client, owner.bearer)
    await tag_dataset(client, owner.bearer, dataset["id"], "test")
    tag_id = (await acquire(client, caller, "test")).json()["data"]["id"]
    response = await client.delete(f"/api/v1/tags/mine/{tag_id}", headers=caller.bearer)
    assert response.status_code == 204, response.text
    assert await rows(app, "user_tags", {"user_id": await user_id_of(client, caller)}) == []
    assert (await client.get("/api/v1/tags/mine", headers=caller.bearer)).json()["data"] == []
    read = await client.get(f"{DATASETS}/{dataset['id']}", headers=caller.bearer)
    assert_envelope(read, 404, ErrorCode.DATASET_NOT_FOUND)


async def test_releasing_a_tag_you_do_not_hold_is_404_tag_not_found(
    client: httpx.AsyncClient, register: Register
) -> None:
    caller = await register()
    tags = (await client.get("/api/v1/tags", headers=caller.bearer)).json()["data"]
    response = await client.delete(f"/api/v1/tags/mine/{tags[0]['id']}", headers=caller.bearer)
    assert_envelope(response, 404, ErrorCode.TAG_NOT_FOUND)


async def test_a_dataset_is_tagged_by_name_or_by_id_and_untagged(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    dataset = await create_dataset(client, owner.bearer)
    path = f"{DATASETS}/{dataset['id']}/tags"
    by_name = await client.post(path, json={"tag_name": "public"}, headers=owner.bearer)
    assert by_name.status_code == 200, by_name.text
    catalogue = await client.get("/api/v1/tags", headers=owner.bearer)
    tags = {t["name"]: t["id"] for t in catalogue.json()["data"]}
    by_id = await client.post(path, json={"tag_id": tags["test"]}, headers=owner.bearer)
    assert by_id.status_code == 200, by_id.text
    assert sorted(t["name"] for t in by_id.json()["data"]) == ["public", "test"]
    stored = (await dataset_row(app, dataset["id"]))["tags"]
    assert sorted(stored) == sorted(ObjectId(tags[n]) for n in ("public", "test"))
    removed = await client.delete(f"{path}/{tags['public']}", headers=owner.bearer)
    assert removed.status_code == 204, removed.text
    assert (await dataset_row(app, dataset["id"]))["tags"] == [ObjectId(tags["test"])]
    listed = await client.get(path, headers=owner.bearer)
    assert [t["name"] for t in listed.json()["data"]] == ["test"]


@pytest.mark.parametrize("body", [{"tag_name": "no-such-tag"}, {"tag_id": str(ObjectId())}])
async def test_tagging_with_an_unknown_tag_is_404_tag_not_found(
    app: FastAPI, client: httpx.AsyncClient, register: Register, body: dict[str, str]
) -> None:
    owner = await register()
    dataset = await create_dataset(client, owner.bearer)
    response = await client.post(
        f"{DATASETS}/{dataset['id']}/tags", json=body, headers=owner.bearer
    )
    assert_envelope(response, 404, ErrorCode.TAG_NOT_FOUND)
    assert (await dataset_row(app, dataset["id"]))["tags"] == []


async def test_untagging_a_tag_the_dataset_does_not_carry_is_404_tag_not_found(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    dataset = await create_dataset(client, owner.bearer)
    response = await client.delete(
        f"{DATASETS}/{dataset['id']}/tags/{ObjectId()}", headers=owner.bearer
    )
    assert_envelope(response, 404, ErrorCode.TAG_NOT_FOUND)


async def test_tagging_with_both_a_name_and_an_id_is_422(
    client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    dataset = await create_dataset(client, owner.bearer)
    response = await client.post(
        f"{DATASETS}/{dataset['id']}/tags",
        json={"tag_name": "public", "tag_id": str(ObjectId())},
        headers=owner.bearer,
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)


# ---------------------------------------------------------------- shares


@dataclass
class Shared:
    """An owner's dataset and a second account to share it with."""

    dataset_id: str
    owner: Account
    owner_id: ObjectId
    other: Account
    other_id: ObjectId

    @property
    def shares_path(self) -> str:
        return f"{DATASETS}/{self.dataset_id}/shares"


@pytest.fixture
async def shared(client: httpx.AsyncClient, register: Register) -> Shared:
    owner, other = await register(), await register()
    dataset = await create_dataset(client, owner.bearer)
    return Shared(
        dataset["id"],
        owner,
        await user_id_of(client, owner),
        other,
        await user_id_of(client, other),
    )


async def share_rows(app: FastAPI, dataset_id: str) -> list[Any]:
    return await rows(app, "shares", {"dataset_id": ObjectId(dataset_id)})


async def test_a_share_by_user_id_is_stored_and_answered(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    response = await client.post(
        shared.shares_path,
        json={"user_id": str(shared.other_id), "permission": "write"},
        headers=shared.owner.bearer,
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["user_id"] == str(shared.other_id) and data["email"] == shared.other.email
    assert data["permission"] == "write" and data["expires_at"] is None
    assert data["created_by"] == str(shared.owner_id)
    [row] = await share_rows(app, shared.dataset_id)
    assert (row["_id"], row["user_id"], row["permission"]) == (
        ObjectId(data["id"]),
        shared.other_id,
        "write",
    )
    assert row.get("expires_at") is None


async def test_a_share_by_email_reaches_that_user(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    data = await share(client, shared.owner.bearer, shared.dataset_id, email=shared.other.email)
    assert data["user_id"] == str(shared.other_id) and data["permission"] == "read"
    [row] = await share_rows(app, shared.dataset_id)
    assert row["user_id"] == shared.other_id
    read = await client.get(f"{DATASETS}/{shared.dataset_id}", headers=shared.other.bearer)
    assert read.status_code == 200 and read.json()["data"]["user_permission"] == "read"


async def test_a_share_by_email_ignores_the_emails_case(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    data = await share(
        client, shared.owner.bearer, shared.dataset_id, email=shared.other.email.upper()
    )
    assert data["user_id"] == str(shared.other_id) and data["email"] == shared.other.email
    assert [row["user_id"] for row in await share_rows(app, shared.dataset_id)] == [shared.other_id]


async def test_racing_shares_to_one_user_make_exactly_one(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(
                shared.shares_path,
                json={"user_id": str(shared.other_id), "permission": permission},
                headers=shared.owner.bearer,
            )
            for permission in ("read", "write", "admin", "read", "write", "admin")
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409, 409], [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 201).json()["data"]
    [row] = await share_rows(app, shared.dataset_id)
    assert (row["_id"], row["permission"]) == (ObjectId(winner["id"]), winner["permission"])


@pytest.mark.parametrize(
    "target", [{}, {"user_id": "{other_id}", "email": "{other_email}"}], ids=["none", "both"]
)
async def test_a_share_needs_exactly_one_target(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared, target: dict[str, str]
) -> None:
    body = {
        k: v.format(other_id=shared.other_id, other_email=shared.other.email)
        for k, v in target.items()
    }
    response = await client.post(shared.shares_path, json=body, headers=shared.owner.bearer)
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert await share_rows(app, shared.dataset_id) == []


@pytest.mark.parametrize(
    "target", [{"email": "nobody@example.com"}, {"user_id": str(ObjectId())}], ids=["email", "id"]
)
async def test_a_share_to_an_unknown_user_is_404_user_not_found(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared, target: dict[str, str]
) -> None:
    response = await client.post(shared.shares_path, json=target, headers=shared.owner.bearer)
    assert_envelope(response, 404, ErrorCode.USER_NOT_FOUND)
    assert await share_rows(app, shared.dataset_id) == []


async def test_a_share_to_a_malformed_user_id_is_422_invalid_id(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    response = await client.post(
        shared.shares_path, json={"user_id": "nope"}, headers=shared.owner.bearer
    )
    assert_envelope(response, 422, ErrorCode.INVALID_ID)
    assert await share_rows(app, shared.dataset_id) == []


async def test_a_share_to_the_owner_is_409_share_exists(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    response = await client.post(
        shared.shares_path, json={"email": shared.owner.email}, headers=shared.owner.bearer
    )
    assert_envelope(response, 409, ErrorCode.SHARE_EXISTS)
    assert await share_rows(app, shared.dataset_id) == []


async def test_a_second_share_to_the_same_user_is_409_and_keeps_the_first(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    await share(client, shared.owner.bearer, shared.dataset_id, email=shared.other.email)
    before = await share_rows(app, shared.dataset_id)
    response = await client.post(
        shared.shares_path,
        json={"user_id": str(shared.other_id), "permission": "admin"},
        headers=shared.owner.bearer,
    )
    assert_envelope(response, 409, ErrorCode.SHARE_EXISTS)
    assert await share_rows(app, shared.dataset_id) == before


async def test_a_share_to_a_user_whose_share_expired_replaces_it(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    old = await share(client, shared.owner.bearer, shared.dataset_id, email=shared.other.email)
    await (
        state_of(app)
        .database.control["shares"]
        .update_one(
            {"_id": ObjectId(old["id"])}, {"$set": {"expires_at": utc_now() - timedelta(seconds=1)}}
        )
    )
    new = await share(
        client, shared.owner.bearer, shared.dataset_id, email=shared.other.email, permission="write"
    )
    [row] = await share_rows(app, shared.dataset_id)
    assert row["_id"] == ObjectId(new["id"]) != ObjectId(old["id"])
    assert row["permission"] == "write"


async def test_a_write_share_holder_cannot_share(
    app: FastAPI, client: httpx.AsyncClient, register: Register, shared: Shared
) -> None:
    await share(
        client, shared.owner.bearer, shared.dataset_id, email=shared.other.email, permission="write"
    )
    third = await register()
    before = await share_rows(app, shared.dataset_id)
    response = await client.post(
        shared.shares_path, json={"email": third.email}, headers=shared.other.bearer
    )
    body = assert_envelope(response, 403, ErrorCode.INSUFFICIENT_PERMISSION)
    assert "admin" in body["message"]
    assert await share_rows(app, shared.dataset_id) == before


async def test_an_admin_share_holder_can_grant_up_to_admin(
    app: FastAPI, client: httpx.AsyncClient, register: Register, shared: Shared
) -> None:
    await share(
        client, shared.owner.bearer, shared.dataset_id, email=shared.other.email, permission="admin"
    )
    third = await register()
    granted = await share(
        client, shared.other.bearer, shared.dataset_id, email=third.email, permission="admin"
    )
    assert granted["permission"] == "admin" and granted["created_by"] == str(shared.other_id)
    stored = {row["user_id"]: row["permission"] for row in await share_rows(app, shared.dataset_id)}
    assert stored == {shared.other_id: "admin", await user_id_of(client, third): "admin"}


async def test_owner_is_not_a_permission_a_share_can_grant(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    response = await client.post(
        shared.shares_path,
        json={"email": shared.other.email, "permission": "owner"},
        headers=shared.owner.bearer,
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert await share_rows(app, shared.dataset_id) == []


async def test_a_share_expiring_in_the_past_is_422(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    response = await client.post(
        shared.shares_path,
        json={"email": shared.other.email, "expires_at": from_now(minutes=-1)},
        headers=shared.owner.bearer,
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert await share_rows(app, shared.dataset_id) == []


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_a_share_expiry_without_a_timezone_is_read_as_utc_or_refused_never_a_500(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared, method: str
) -> None:
    naive = "2030-01-01T00:00:00"
    if method == "POST":
        url, body = shared.shares_path, {"email": shared.other.email, "expires_at": naive}
    else:
        made = await share(client, shared.owner.bearer, shared.dataset_id, email=shared.other.email)
        url, body = f"{shared.shares_path}/{made['id']}", {"expires_at": naive}
    response = await client.request(method, url, json=body, headers=shared.owner.bearer)
    assert response.status_code in (200, 201, 422), response.text
    if response.status_code != 422:
        [row] = await share_rows(app, shared.dataset_id)
        assert iso(row["expires_at"]) == naive + "Z"


async def test_a_share_grants_nothing_from_the_second_it_expires(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    made = await share(client, shared.owner.bearer, shared.dataset_id, email=shared.other.email)
    expires_at = utc_now().replace(microsecond=0) + timedelta(seconds=3)
    patched = await client.patch(
        f"{shared.shares_path}/{made['id']}",
        json={"expires_at": iso(expires_at)},
        headers=shared.owner.bearer,
    )
    assert patched.status_code == 200, patched.text
    dataset_path = f"{DATASETS}/{shared.dataset_id}"
    assert (await client.get(dataset_path, headers=shared.other.bearer)).status_code == 200
    await asyncio.sleep((expires_at - utc_now()).total_seconds() + 0.05)
    gone = await client.get(dataset_path, headers=shared.other.bearer)
    assert_envelope(gone, 404, ErrorCode.DATASET_NOT_FOUND)
    listed = await client.get(DATASETS, headers=shared.other.bearer)
    assert listed.json()["data"] == []
    [row] = await share_rows(app, shared.dataset_id)  # no sweep was needed
    assert row["expires_at"] == expires_at
    live = await client.get(shared.shares_path, headers=shared.owner.bearer)
    assert live.json()["data"] == []


async def test_an_expired_share_written_into_its_row_answers_404_at_once(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    made = await share(client, shared.owner.bearer, shared.dataset_id, email=shared.other.email)
    await (
        state_of(app)
        .database.control["shares"]
        .update_one(
            {"_id": ObjectId(made["id"])},
            {"$set": {"expires_at": utc_now() - timedelta(milliseconds=1)}},
        )
    )
    read = await client.get(f"{DATASETS}/{shared.dataset_id}", headers=shared.other.bearer)
    assert_envelope(read, 404, ErrorCode.DATASET_NOT_FOUND)
    patch = await client.patch(
        f"{shared.shares_path}/{made['id']}",
        json={"permission": "write"},
        headers=shared.owner.bearer,
    )
    assert_envelope(patch, 404, ErrorCode.SHARE_NOT_FOUND)


async def test_patching_a_share_changes_the_holders_level(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    made = await share(client, shared.owner.bearer, shared.dataset_id, email=shared.other.email)
    response = await client.patch(
        f"{shared.shares_path}/{made['id']}",
        json={"permission": "write"},
        headers=shared.owner.bearer,
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["permission"] == "write"
    [row] = await share_rows(app, shared.dataset_id)
    assert row["permission"] == "write"
    read = await client.get(f"{DATASETS}/{shared.dataset_id}", headers=shared.other.bearer)
    assert read.json()["data"]["user_permission"] == "write"


@pytest.mark.parametrize(
    "body",
    [{}, {"permission": "owner"}, {"permission": None}, {"expires_at": from_now(minutes=-1)}],
    ids=["nothing", "owner", "null permission", "past expiry"],
)
async def test_patching_a_share_with_an_invalid_change_is_422_and_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared, body: dict[str, Any]
) -> None:
    made = await share(client, shared.owner.bearer, shared.dataset_id, email=shared.other.email)
    before = await share_rows(app, shared.dataset_id)
    response = await client.patch(
        f"{shared.shares_path}/{made['id']}", json=body, headers=shared.owner.bearer
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert await share_rows(app, shared.dataset_id) == before


async def test_deleting_a_share_revokes_it_at_once(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared
) -> None:
    made = await share(client, shared.owner.bearer, shared.dataset_id, email=shared.other.email)
    response = await client.delete(
        f"{shared.shares_path}/{made['id']}", headers=shared.owner.bearer
    )
    assert response.status_code == 204, response.text
    assert await share_rows(app, shared.dataset_id) == []
    read = await client.get(f"{DATASETS}/{shared.dataset_id}", headers=shared.other.bearer)
    assert_envelope(read, 404, ErrorCode.DATASET_NOT_FOUND)


async def test_the_share_list_names_each_live_share_with_its_email(
    client: httpx.AsyncClient, register: Register, shared: Shared
) -> None:
    third = await register()
    first = await share(client, shared.owner.bearer, shared.dataset_id, email=shared.other.email)
    second = await share(
        client, shared.owner.bearer, shared.dataset_id, email=third.email, permission="write"
    )
    response = await client.get(shared.shares_path, headers=shared.owner.bearer)
    assert response.status_code == 200, response.text
    listed = [(s["id"], s["email"], s["permission"]) for s in response.json()["data"]]
    assert listed == [
        (first["id"], shared.other.email, "read"),
        (second["id"], third.email, "write"),
    ]


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_an_unknown_share_is_404_share_not_found(
    client: httpx.AsyncClient, shared: Shared, method: str
) -> None:
    body = {"permission": "write"} if method == "PATCH" else None
    response = await client.request(
        method, f"{shared.shares_path}/{ObjectId()}", json=body, headers=shared.owner.bearer
    )
    assert_envelope(response, 404, ErrorCode.SHARE_NOT_FOUND)


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_a_share_of_another_dataset_is_404_share_not_found_and_unchanged(
    app: FastAPI, client: httpx.AsyncClient, shared: Shared, method: str
) -> None:
    made = await share(client, shared.owner.bearer, shared.dataset_id, email=shared.other.email)
    elsewhere = await create_dataset(client, shared.owner.bearer, name="elsewhere")
    before = await share_rows(app, shared.dataset_id)
    body = {"permission": "write"} if method == "PATCH" else None
    response = await client.request(
        method,
        f"{DATASETS}/{elsewhere['id']}/shares/{made['id']}",
        json=body,
        headers=shared.owner.bearer,
    )
    assert_envelope(response, 404, ErrorCode.SHARE_NOT_FOUND)
    assert await share_rows(app, shared.dataset_id) == before


# ---------------------------------------------------------------- items


@dataclass
class Curated:
    """A curator's dataset `virtual` whose items are homed in two of the curator's
    datasets: `shared_home` (the reader can read it) and `private_home` (they cannot).
    The reader holds a read share on `virtual`."""

    curator: Account
    curator_id: ObjectId
    reader: Account
    reader_id: ObjectId
    virtual: str
    shared_home: str
    private_home: str
    shared_entry: str
    private_entry: str

    def path(self, suffix: str = "") -> str:
        return f"{DATASETS}/{self.virtual}{suffix}"


@pytest.fixture
async def curated(app: FastAPI, client: httpx.AsyncClient, register: Register) -> Curated:
    curator, reader = await register(), await register()
    curator_id = await user_id_of(client, curator)
    shared_home = (await create_dataset(client, curator.bearer, name="shared home"))["id"]
    private_home = (await create_dataset(client, curator.bearer, name="private home"))["id"]
    shared_entry = str(await add_entry(app, curator_id, shared_home, "open.txt"))
    private_entry = str(await add_entry(app, curator_id, private_home, "closed.txt"))
    virtual = await create_dataset(
        client, curator.bearer, name="virtual", entry_ids=[shared_entry, private_entry]
    )
    for dataset_id in (shared_home, virtual["id"]):
        await share(client, curator.bearer, dataset_id, email=reader.email)
    return Curated(
        curator,
        curator_id,
        reader,
        await user_id_of(client, reader),
        virtual["id"],
        shared_home,
        private_home,
        shared_entry,
        private_entry,
    )


def listed_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


async def test_adding_items_is_idempotent(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    owner_id = await user_id_of(client, owner)
    home = await create_dataset(client, owner.bearer, name="home")
    target = await create_dataset(client, owner.bearer, name="target")
    entry = str(await add_entry(app, owner_id, home["id"]))
    for _ in range(2):
        response = await client.post(
            f"{DATASETS}/{target['id']}/items",
            json={"entry_ids": [entry, entry], "notes": "from the crawl"},
            headers=owner.bearer,
        )
        assert response.status_code == 200, response.text
        assert response.json() == {
            "success": True,
            "added": 1,
            "skipped_ids": [],
            "dataset_id": target["id"],
        }
    items = await tenant_rows(app, owner_id, "items", {"dataset_id": ObjectId(target["id"])})
    assert [(str(i["entry_id"]), i["notes"]) for i in items] == [(entry, "from the crawl")]


async def test_adding_items_skips_unknown_and_unreadable_entries(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner, stranger = await register(), await register()
    owner_id, stranger_id = await user_id_of(client, owner), await user_id_of(client, stranger)
    target = await create_dataset(client, owner.bearer, name="target")
    theirs = await create_dataset(client, stranger.bearer, name="theirs")
    readable = str(await add_entry(app, owner_id, target["id"]))
    unreadable = str(await add_entry(app, stranger_id, theirs["id"]))
    unknown, malformed = str(ObjectId()), "not-an-id"
    response = await client.post(
        f"{DATASETS}/{target['id']}/items",
        json={"file_ids": [readable, unreadable, unknown, malformed]},
        headers=owner.bearer,
    )
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 1
    assert response.json()["skipped_ids"] == [unreadable, unknown, malformed]
    items = await tenant_rows(app, owner_id, "items", {"dataset_id": ObjectId(target["id"])})
    assert [str(i["entry_id"]) for i in items] == [readable]


async def test_items_added_by_a_writer_are_stored_in_the_owners_tenant_database(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner, writer = await register(), await register()
    owner_id, writer_id = await user_id_of(client, owner), await user_id_of(client, writer)
    target = await create_dataset(client, owner.bearer, name="target")
    await share(client, owner.bearer, target["id"], email=writer.email, permission="write")
    own = await create_dataset(client, writer.bearer, name="writer's own")
    entry = str(await add_entry(app, writer_id, own["id"]))
    response = await client.post(
        f"{DATASETS}/{target['id']}/items", json={"entry_ids": [entry]}, headers=writer.bearer
    )
    assert response.status_code == 200 and response.json()["added"] == 1, response.text
    [item] = await tenant_rows(app, owner_id, "items", {"dataset_id": ObjectId(target["id"])})
    assert (str(item["entry_id"]), item["added_by"]) == (entry, writer_id)
    assert await tenant_rows(app, writer_id, "items", {"dataset_id": ObjectId(target["id"])}) == []
    assert await tenant_rows(app, owner_id, "entries") == []


async def test_the_item_list_pages(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    owner = await register()
    owner_id = await user_id_of(client, owner)
    dataset = await create_dataset(client, owner.bearer)
    entries = [str(await add_entry(app, owner_id, dataset["id"], f"e{n}")) for n in range(3)]
    response = await client.get(
        f"{DATASETS}/{dataset['id']}/items",
        params={"page": 2, "page_size": 2},
        headers=owner.bearer,
    )
    assert listed_ids(response) == entries[2:]
    pagination = response.json()["pagination"]
    assert (pagination["total_items"], pagination["total_pages"]) == (3, 2)
    assert pagination["has_previous"] is True and pagination["has_next"] is False


async def test_a_reader_lists_only_the_items_whose_home_they_can_read(
    client: httpx.AsyncClient, curated: Curated
) -> None:
    response = await client.get(curated.path("/items"), headers=curated.reader.bearer)
    assert listed_ids(response) == [curated.shared_entry]
    assert response.json()["pagination"]["total_items"] == 1
    [item] = response.json()["data"]
    assert item["home_dataset_id"] == curated.shared_home
    assert item["added_by"] == str(curated.curator_id) and item["name"] == "open.txt"
    owner_view = await client.get(curated.path("/items"), headers=curated.curator.bearer)
    assert sorted(listed_ids(owner_view)) == sorted([curated.shared_entry, curated.private_entry])


async def acl_override_on(client: httpx.AsyncClient, curated: Curated) -> None:
    response = await client.patch(
        curated.path(), json={"acl_override_enabled": True}, headers=curated.curator.bearer
    )
    assert response.status_code == 200, response.text


async def test_with_the_acl_override_a_reader_lists_every_item(
    app: FastAPI, client: httpx.AsyncClient, curated: Curated
) -> None:
    await acl_override_on(client, curated)
    assert (await dataset_row(app, curated.virtual))["acl_override_enabled"] is True
    response = await client.get(curated.path("/items"), headers=curated.reader.bearer)
    assert sorted(listed_ids(response)) == sorted([curated.shared_entry, curated.private_entry])


async def test_a_read_through_the_acl_override_is_audited(
    app: FastAPI, client: httpx.AsyncClient, curated: Curated
) -> None:
    await acl_override_on(client, curated)
    response = await client.get(curated.path("/items"), headers=curated.reader.bearer)
    assert response.status_code == 200, response.text
    records = [r for r in await rows(app, "audit_log") if "acl_override" in str(r.get("action"))]
    assert len(records) == 1, records
    [record] = records
    assert record["actor_user_id"] == curated.reader_id
    assert record["dataset_id"] == ObjectId(curated.virtual)
    assert record["details"]["entry_ids"] == [curated.private_entry]


async def test_removing_items_unlinks_them_and_keeps_the_entries(
    app: FastAPI, client: httpx.AsyncClient, curated: Curated
) -> None:
    response = await client.request(
        "DELETE",
        curated.path("/items"),
        json={"entry_ids": [curated.private_entry, str(ObjectId())]},
        headers=curated.curator.bearer,
    )
    assert response.status_code == 200, response.text
    assert response.json()["removed"] == 1
    items = await tenant_rows(
        app, curated.curator_id, "items", {"dataset_id": ObjectId(curated.virtual)}
    )
    assert [str(i["entry_id"]) for i in items] == [curated.shared_entry]
    entry = ObjectId(curated.private_entry)
    assert len(await tenant_rows(app, curated.curator_id, "entries", {"_id": entry})) == 1
    assert len(await rows(app, "entry_homes", {"_id": entry})) == 1
    home_items = await tenant_rows(
        app, curated.curator_id, "items", {"dataset_id": ObjectId(curated.private_home)}
    )
    assert [i["entry_id"] for i in home_items] == [entry]


async def test_a_subset_is_a_new_dataset_of_the_caller_with_those_items(
    app: FastAPI, client: httpx.AsyncClient, curated: Curated
) -> None:
    before = await tenant_rows(app, curated.curator_id, "items")
    response = await client.post(
        curated.path("/subset"),
        json={"name": "mine", "entry_ids": [curated.shared_entry]},
        headers=curated.reader.bearer,
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["owner_id"] == str(curated.reader_id) and data["user_permission"] == "owner"
    assert data["item_count"] == 1
    row = await dataset_row(app, data["id"])
    assert row["owner_id"] == curated.reader_id and row["name"] == "mine"
    items = await tenant_rows(app, curated.reader_id, "items", {"dataset_id": ObjectId(data["id"])})
    assert [(str(i["entry_id"]), str(i["home_dataset_id"])) for i in items] == [
        (curated.shared_entry, curated.shared_home)
    ]
    assert await tenant_rows(app, curated.curator_id, "items") == before


async def test_a_subset_of_ids_that_are_not_items_of_the_source_is_400_not_in_source(
    app: FastAPI, client: httpx.AsyncClient, curated: Curated
) -> None:
    strangers = [str(ObjectId()), "not-an-id"]
    before = await stored_state(app, [curated.curator_id, curated.reader_id])
    response = await client.post(
        curated.path("/subset"),
        json={"name": "mine", "entry_ids": [curated.shared_entry, *strangers]},
        headers=curated.reader.bearer,
    )
    body = assert_envelope(response, 400, ErrorCode.NOT_IN_SOURCE)
    assert [d["msg"] for d in body["details"]] == strangers
    assert await stored_state(app, [curated.curator_id, curated.reader_id]) == before


async def test_creating_with_entry_ids_of_which_none_is_valid_is_400_no_valid_entries(
    app: FastAPI, client: httpx.AsyncClient, curated: Curated
) -> None:
    before = await stored_state(app, [curated.curator_id, curated.reader_id])
    response = await client.post(
        DATASETS,
        json={"name": "nothing", "entry_ids": [curated.private_entry, str(ObjectId()), "nope"]},
        headers=curated.reader.bearer,
    )
    assert_envelope(response, 400, ErrorCode.NO_VALID_ENTRIES)
    assert await stored_state(app, [curated.curator_id, curated.reader_id]) == before


async def test_creating_with_some_valid_entry_ids_links_those_and_lists_the_rest(
    app: FastAPI, client: httpx.AsyncClient, curated: Curated
) -> None:
    unknown = str(ObjectId())
    response = await client.post(
        DATASETS,
        json={"name": "mine", "entry_ids": [curated.shared_entry, curated.private_entry, unknown]},
        headers=curated.reader.bearer,
    )
    assert response.status_code == 201, response.text
    assert response.json()["skipped_ids"] == [curated.private_entry, unknown]
    dataset_id = ObjectId(response.json()["data"]["id"])
    items = await tenant_rows(app, curated.reader_id, "items", {"dataset_id": dataset_id})
    assert [str(i["entry_id"]) for i in items] == [curated.shared_entry]


async def entry_shared_with_a_curator(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> tuple[Any, Any, ObjectId]:
    """An entry in a private dataset shared (read) with a curator, and a reader who
    has no level on that dataset: (curator, reader, entry id)."""
    home_owner, curator, reader = await register(), await register(), await register()
    home = await new_dataset(client, home_owner, name="private home")
    entry = await service_of(app).create_entry_record(
        owner_id=await user_id_of(client, home_owner),
        dataset_id=ObjectId(home),
        name="secret.txt",
        size=1,
        content_type="text/plain",
    )
    shared = await client.post(
        f"/api/v1/datasets/{home}/shares", json={"email": curator.email}, headers=home_owner.bearer
    )
    assert shared.status_code == 201
    return curator, reader, entry


async def test_a_subset_cannot_take_items_seen_only_through_the_acl_override(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    curator, reader, entry = await entry_shared_with_a_curator(app, client, register)
    curated = await new_dataset(client, curator, name="curated")
    await client.patch(
        f"/api/v1/datasets/{curated}",
        json={"acl_override_enabled": True, "is_public": True},
        headers=curator.bearer,
    )
    added = await client.post(
        f"/api/v1/datasets/{curated}/items", json={"entry_ids": [str(entry)]},
        headers=curator.bearer,
    )  # fmt: skip
    assert added.json()["added"] == 1
    # The reader sees the entry through the override, but cannot republish it.
    listed = await client.get(f"/api/v1/datasets/{curated}/items", headers=reader.bearer)
    assert [i["id"] for i in listed.json()["data"]] == [str(entry)]
    subset = await client.post(
        f"/api/v1/datasets/{curated}/subset",
        json={"name": "stolen", "entry_ids": [str(entry)]},
        headers=reader.bearer,
    )
    body = assert_envelope(subset, 400, ErrorCode.NOT_IN_SOURCE)
    assert body["details"][0]["msg"] == str(entry)
    control = state_of(app).database.control
    assert await control["datasets"].count_documents({"name": "stolen"}) == 0


async def test_item_count_counts_only_the_items_the_caller_may_see(
    app: FastAPI, client: httpx.AsyncClient, register: Any
) -> None:
    curator, reader, entry = await entry_shared_with_a_curator(app, client, register)
    curated = await new_dataset(client, curator, name="curated", is_public=True)
    await client.post(
        f"/api/v1/datasets/{curated}/items", json={"entry_ids": [str(entry)]},
        headers=curator.bearer,
    )  # fmt: skip
    as_curator = await client.get(f"/api/v1/datasets/{curated}", headers=curator.bearer)
    as_reader = await client.get(f"/api/v1/datasets/{curated}", headers=reader.bearer)
    assert as_curator.json()["data"]["item_count"] == 1
    assert as_reader.json()["data"]["item_count"] == 0
    listed = await client.get(f"/api/v1/datasets/{curated}/items", headers=reader.bearer)
    assert listed.json()["data"] == []
