"""The client's datasets, items, subsets, shares, tags, access check and audit
surfaces (`quarry.datasets`, `quarry.tags`, `quarry.audit`) against a real server:
each method's answer, the stored state read back through the API (or the raw
driver), and the server's refusals as typed errors with their code and request id."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.database import Database
from quarry_client import (
    AsyncQuarry,
    BadRequest,
    Conflict,
    NotFound,
    PermissionDenied,
    Quarry,
    QuarryError,
    ValidationError,
)

MakeQuarry = Callable[..., Any]
Mongo = MongoClient[dict[str, Any]]


def token() -> str:
    """A word no other test's dataset carries (to filter listings down to this test's)."""
    return f"t{uuid.uuid4().hex[:12]}"


def control_of(sync_client: Mongo, email: str) -> Database[dict[str, Any]]:
    """The control database of the server this account lives on."""
    for name in sync_client.list_database_names():
        if name.startswith("quarry_client_") and sync_client[name]["users"].find_one(
            {"email": email}
        ):
            return sync_client[name]
    raise AssertionError(f"no control database holds {email}")


def promote(sync_client: Mongo, client: Quarry) -> None:
    """Make the client's account a platform administrator."""
    control = control_of(sync_client, client.account_email)
    control["users"].update_one({"email": client.account_email}, {"$set": {"role": "admin"}})


def user_id(client: Quarry) -> str:
    return client.auth.me().id


def upload(client: Quarry, dataset_id: str, name: str = "note.txt") -> str:
    """An entry uploaded into the dataset (through the transport: entries are another
    area's methods); its id."""
    response = client.transport.request(
        "POST",
        "/api/v1/entries",
        params={"dataset_id": dataset_id},
        files={"file": (name, b"hello quarry", "text/plain")},
    )
    return str(response.json()["data"]["id"])


def assert_refused(error: QuarryError, status: int, code: str) -> None:
    assert error.status_code == status
    assert error.error_code == code
    assert error.request_id


def in_an_hour(hours: float = 1) -> datetime:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0)


# ---------------------------------------------------------------- datasets


def test_create_answers_the_dataset_and_stores_it(quarry: Quarry, sync_client: Mongo) -> None:
    answer = quarry.datasets.create(
        "Sensors", description="north field", metadata={"year": 2024}, source_query="q"
    )
    dataset = answer.data
    assert (dataset.name, dataset.description, dataset.metadata) == (
        "Sensors",
        "north field",
        {"year": 2024},
    )
    assert dataset.user_permission == "owner"
    assert dataset.owner_email == quarry.account_email
    assert answer.skipped_ids is None
    stored = control_of(sync_client, quarry.account_email)["datasets"].find_one(
        {"_id": ObjectId(dataset.id)}
    )
    assert stored is not None and stored["name"] == "Sensors"
    assert stored["metadata"] == {"year": 2024}


def test_get_reads_the_dataset_back(quarry: Quarry) -> None:
    created = quarry.datasets.create("Read me", is_public=True).data
    dataset = quarry.datasets.get(created.id)
    assert dataset.id == created.id
    assert dataset.is_public is True
    assert dataset.item_count == 0
    assert 0 < dataset.expires_in_hours <= 90 * 24


def test_create_with_entry_ids_links_them_and_lists_the_skipped(quarry: Quarry) -> None:
    home = quarry.datasets.create("home").data
    entry = upload(quarry, home.id)
    unknown = str(ObjectId())
    answer = quarry.datasets.create("curated", entry_ids=[entry, unknown])
    assert answer.skipped_ids == [unknown]
    assert [i.id for i in quarry.datasets.iterate_items(answer.data.id)] == [entry]


def test_create_with_only_unknown_entry_ids_is_no_valid_entries(quarry: Quarry) -> None:
    with pytest.raises(BadRequest) as raised:
        quarry.datasets.create("empty", entry_ids=[str(ObjectId())])
    assert_refused(raised.value, 400, "NO_VALID_ENTRIES")


def test_list_returns_one_page_and_iterate_every_page(quarry: Quarry) -> None:
    word = token()
    ids = {quarry.datasets.create(f"{word} {n}").data.id for n in range(3)}
    page = quarry.datasets.list(search=word, page=1, page_size=2)
    assert len(page.data) == 2
    assert page.pagination.total_items == 3
    assert page.pagination.has_next is True
    second = quarry.datasets.list(search=word, page=2, page_size=2)
    assert {d.id for d in page.data + second.data} == ids
    assert {d.id for d in quarry.datasets.iterate(search=word, page_size=2)} == ids


async def test_iterate_async_yields_every_page(aquarry: AsyncQuarry) -> None:
    word = token()
    ids = {(await aquarry.datasets.create(f"{word} {n}")).data.id for n in range(3)}
    seen = [d.id async for d in aquarry.datasets.iterate(search=word, page_size=2)]
    assert sorted(seen) == sorted(ids)


def test_list_filters_by_owner_and_visibility(make_quarry: MakeQuarry) -> None:
    owner, other = make_quarry(), make_quarry()
    word = token()
    public = owner.datasets.create(f"{word} public", is_public=True).data
    private = owner.datasets.create(f"{word} private").data
    mine = other.datasets.create(f"{word} mine").data
    assert {d.id for d in other.datasets.iterate(search=word)} == {public.id, mine.id}
    assert [d.id for d in other.datasets.iterate(search=word, owned_only=True)] == [mine.id]
    assert [d.id for d in owner.datasets.iterate(search=word, is_public=False)] == [private.id]


def test_search_matches_metadata_exactly(quarry: Quarry) -> None:
    word = token()
    hit = quarry.datasets.create("hit", metadata={"run": word, "year": 2024}).data
    quarry.datasets.create("miss", metadata={"run": word, "year": 2023})
    page = quarry.datasets.search({"run": word, "year": 2024})
    assert [d.id for d in page.data] == [hit.id]
    every = quarry.datasets.iterate_search({"run": word}, page_size=1)
    assert len({d.id for d in every}) == 2


def test_search_without_a_filter_is_filter_required(quarry: Quarry) -> None:
    with pytest.raises(BadRequest) as raised:
        quarry.datasets.search({})
    assert_refused(raised.value, 400, "FILTER_REQUIRED")


def test_update_changes_only_the_given_fields(quarry: Quarry) -> None:
    dataset = quarry.datasets.create("before", description="kept", metadata={"a": 1}).data
    updated = quarry.datasets.update(dataset.id, name="after", acl_override_enabled=True)
    assert (updated.name, updated.acl_override_enabled) == ("after", True)
    stored = quarry.datasets.get(dataset.id)
    assert (stored.name, stored.description, stored.metadata) == ("after", "kept", {"a": 1})
    assert stored.acl_override_enabled is True


def test_update_with_nothing_to_change_is_a_validation_error(quarry: Quarry) -> None:
    dataset = quarry.datasets.create("unchanged").data
    with pytest.raises(ValidationError) as raised:
        quarry.datasets.update(dataset.id)
    assert_refused(raised.value, 422, "VALIDATION_ERROR")


def test_update_expiry_moves_expires_at(quarry: Quarry) -> None:
    dataset = quarry.datasets.create("expiring").data
    moment = in_an_hour(48)
    assert quarry.datasets.update(dataset.id, expires_at=moment).expires_at == moment
    assert quarry.datasets.get(dataset.id).expires_at == moment


def test_replace_sets_name_description_and_metadata(quarry: Quarry) -> None:
    dataset = quarry.datasets.create("old", description="old", metadata={"a": 1}).data
    replaced = quarry.datasets.replace(dataset.id, name="new", metadata={"b": 2})
    assert (replaced.name, replaced.description, replaced.metadata) == ("new", "", {"b": 2})
    stored = quarry.datasets.get(dataset.id)
    assert (stored.name, stored.description, stored.metadata) == ("new", "", {"b": 2})


def test_merge_metadata_adds_changes_and_removes_keys(quarry: Quarry) -> None:
    dataset = quarry.datasets.create("m", metadata={"keep": 1, "drop": 2, "change": 3}).data
    merged = quarry.datasets.merge_metadata(dataset.id, {"drop": None, "change": 4, "new": 5})
    assert merged.metadata == {"keep": 1, "change": 4, "new": 5}
    assert quarry.datasets.get(dataset.id).metadata == {"keep": 1, "change": 4, "new": 5}


def test_replace_metadata_replaces_it_whole(quarry: Quarry) -> None:
    dataset = quarry.datasets.create("m", metadata={"a": 1}).data
    assert quarry.datasets.replace_metadata(dataset.id, {"b": 2}).metadata == {"b": 2}
    assert quarry.datasets.get(dataset.id).metadata == {"b": 2}


def test_delete_makes_the_dataset_not_found(quarry: Quarry) -> None:
    dataset = quarry.datasets.create("doomed").data
    quarry.datasets.delete(dataset.id)
    with pytest.raises(NotFound) as raised:
        quarry.datasets.get(dataset.id)
    assert_refused(raised.value, 404, "DATASET_NOT_FOUND")


def test_expiring_is_for_platform_admins(make_quarry: MakeQuarry, sync_client: Mongo) -> None:
    client = make_quarry()
    soon = client.datasets.create("soon", expires_at=in_an_hour(30)).data
    with pytest.raises(PermissionDenied) as raised:
        client.datasets.expiring()
    assert_refused(raised.value, 403, "INSUFFICIENT_PERMISSION")
    promote(sync_client, client)
    expiring = client.datasets.expiring(within_hours=48)
    assert soon.id in [d.id for d in expiring]
    assert all(d.expires_in_hours <= 48 for d in expiring)


# ---------------------------------------------------------------- tags


def test_tag_catalogue_has_the_builtin_tags(quarry: Quarry) -> None:
    names = [t.name for t in quarry.tags.list()]
    assert {"public", "test"} <= set(names)


def test_creating_a_tag_is_for_platform_admins(quarry: Quarry) -> None:
    with pytest.raises(PermissionDenied) as raised:
        quarry.tags.create(token())
    assert_refused(raised.value, 403, "INSUFFICIENT_PERMISSION")


def test_a_private_tag_is_acquired_with_its_secret_and_grants_read(
    make_quarry: MakeQuarry, sync_client: Mongo
) -> None:
    admin, reader = make_quarry(), make_quarry()
    promote(sync_client, admin)
    name = token()
    tag = admin.tags.create(name, is_public=False, secret="s3cret-tag", metadata={"k": "v"})
    assert (tag.name, tag.is_public, tag.metadata) == (name, False, {"k": "v"})
    assert name in [t.name for t in reader.tags.list()]
    dataset = admin.datasets.create("tagged").data
    admin.datasets.add_tag(dataset.id, tag_id=tag.id)
    with pytest.raises(PermissionDenied) as raised:
        reader.tags.acquire(name, secret="wrong-secret")
    assert_refused(raised.value, 403, "INVALID_TAG_SECRET")
    assert reader.tags.acquire(name, secret="s3cret-tag").id == tag.id
    assert [t.id for t in reader.tags.mine()] == [tag.id]
    access = reader.datasets.check_access(dataset.id)
    assert (access.has_access, access.permission, access.matching_tags) == (True, "read", [name])
    assert reader.datasets.get(dataset.id).user_permission == "read"


def test_releasing_a_tag_takes_its_datasets_away(make_quarry: MakeQuarry) -> None:
    owner, reader = make_quarry(), make_quarry()
    dataset = owner.datasets.create("tagged").data
    owner.datasets.add_tag(dataset.id, tag_name="test")
    held = reader.tags.acquire("test")
    assert reader.datasets.get(dataset.id).id == dataset.id
    reader.tags.release(held.id)
    assert reader.tags.mine() == []
    with pytest.raises(NotFound) as raised:
        reader.datasets.get(dataset.id)
    assert_refused(raised.value, 404, "DATASET_NOT_FOUND")


def test_dataset_tags_are_added_listed_and_removed(quarry: Quarry) -> None:
    dataset = quarry.datasets.create("tags").data
    added = quarry.datasets.add_tag(dataset.id, tag_name="public")
    assert [t.name for t in added] == ["public"]
    assert [t.name for t in quarry.datasets.list_tags(dataset.id)] == ["public"]
    assert quarry.datasets.get(dataset.id).tags == ["public"]
    quarry.datasets.remove_tag(dataset.id, added[0].id)
    assert quarry.datasets.list_tags(dataset.id) == []


def test_an_unknown_tag_is_tag_not_found(quarry: Quarry) -> None:
    dataset = quarry.datasets.create("tags").data
    with pytest.raises(NotFound) as raised:
        quarry.datasets.add_tag(dataset.id, tag_name=token())
    assert_refused(raised.value, 404, "TAG_NOT_FOUND")


# ---------------------------------------------------------------- shares


def test_a_share_lets_the_other_user_read_and_revoking_it_hides_the_dataset(
    make_quarry: MakeQuarry, sync_client: Mongo
) -> None:
    owner, reader = make_quarry(), make_quarry()
    dataset = owner.datasets.create("shared").data
    with pytest.raises(NotFound):
        reader.datasets.get(dataset.id)
    share = owner.datasets.share(dataset.id, email=reader.account_email)
    assert (share.email, share.permission, share.dataset_id) == (
        reader.account_email,
        "read",
        dataset.id,
    )
    assert reader.datasets.get(dataset.id).user_permission == "read"
    assert dataset.id in [d.id for d in reader.datasets.iterate()]
    stored = control_of(sync_client, owner.account_email)["shares"].find_one(
        {"_id": ObjectId(share.id)}
    )
    assert stored is not None and stored["permission"] == "read"
    owner.datasets.delete_share(dataset.id, share.id)
    with pytest.raises(NotFound) as raised:
        reader.datasets.get(dataset.id)
    assert_refused(raised.value, 404, "DATASET_NOT_FOUND")
    assert owner.datasets.list_shares(dataset.id) == []


def test_shares_are_listed_and_updated(make_quarry: MakeQuarry) -> None:
    owner, writer = make_quarry(), make_quarry()
    dataset = owner.datasets.create("shared").data
    expiry = in_an_hour(24)
    share = owner.datasets.share(
        dataset.id, user_id=user_id(writer), permission="read", expires_at=expiry
    )
    assert share.expires_at == expiry
    assert [s.id for s in owner.datasets.list_shares(dataset.id)] == [share.id]
    assert writer.datasets.check_access(dataset.id, require_write=True).has_access is False
    updated = owner.datasets.update_share(dataset.id, share.id, permission="write")
    assert (updated.permission, updated.expires_at) == ("write", expiry)
    assert owner.datasets.list_shares(dataset.id)[0].permission == "write"
    access = writer.datasets.check_access(dataset.id, require_write=True)
    assert (access.has_access, access.is_owner, access.permission) == (True, False, "write")


def test_a_second_share_to_the_same_user_is_share_exists(make_quarry: MakeQuarry) -> None:
    owner, reader = make_quarry(), make_quarry()
    dataset = owner.datasets.create("shared").data
    owner.datasets.share(dataset.id, email=reader.account_email)
    with pytest.raises(Conflict) as raised:
        owner.datasets.share(dataset.id, email=reader.account_email, permission="write")
    assert_refused(raised.value, 409, "SHARE_EXISTS")


def test_sharing_with_an_unknown_email_is_user_not_found(quarry: Quarry) -> None:
    dataset = quarry.datasets.create("shared").data
    with pytest.raises(NotFound) as raised:
        quarry.datasets.share(dataset.id, email=f"{token()}@example.com")
    assert_refused(raised.value, 404, "USER_NOT_FOUND")


def test_a_reader_cannot_share_further(make_quarry: MakeQuarry) -> None:
    owner, reader, third = make_quarry(), make_quarry(), make_quarry()
    dataset = owner.datasets.create("shared").data
    owner.datasets.share(dataset.id, email=reader.account_email)
    with pytest.raises(PermissionDenied) as raised:
        reader.datasets.share(dataset.id, email=third.account_email)
    assert_refused(raised.value, 403, "INSUFFICIENT_PERMISSION")


# ---------------------------------------------------------------- items and subsets


def test_items_are_added_listed_and_removed(quarry: Quarry) -> None:
    home = quarry.datasets.create("home").data
    first, second = upload(quarry, home.id, "a.txt"), upload(quarry, home.id, "b.txt")
    curated = quarry.datasets.create("curated").data
    added = quarry.datasets.add_items(curated.id, [first, second], notes="picked")
    assert (added.added, added.skipped_ids, added.dataset_id) == (2, [], curated.id)
    again = quarry.datasets.add_items(curated.id, [first, str(ObjectId())])
    assert again.added == 1 and len(again.skipped_ids) == 1
    page = quarry.datasets.list_items(curated.id, page_size=1)
    assert page.pagination.total_items == 2 and len(page.data) == 1
    items = list(quarry.datasets.iterate_items(curated.id, page_size=1))
    assert {i.id for i in items} == {first, second}
    assert {(i.home_dataset_id, i.notes) for i in items} == {(home.id, "picked")}
    assert quarry.datasets.remove_items(curated.id, [first]) == 1
    assert [i.id for i in quarry.datasets.iterate_items(curated.id)] == [second]
    assert quarry.datasets.get(curated.id).item_count == 1
    assert {i.id for i in quarry.datasets.iterate_items(home.id)} == {first, second}


async def test_iterate_items_async_yields_every_page(aquarry: AsyncQuarry) -> None:
    home = (await aquarry.datasets.create("home")).data
    entries = set()
    for name in ("a.txt", "b.txt", "c.txt"):
        response = await aquarry.transport.request(
            "POST",
            "/api/v1/entries",
            params={"dataset_id": home.id},
            files={"file": (name, b"x", "text/plain")},
        )
        entries.add(response.json()["data"]["id"])
    seen = [i.id async for i in aquarry.datasets.iterate_items(home.id, page_size=2)]
    assert sorted(seen) == sorted(entries)


def test_a_subset_is_a_new_dataset_of_some_items(make_quarry: MakeQuarry) -> None:
    owner, reader = make_quarry(), make_quarry()
    source = owner.datasets.create("source", is_public=True).data
    first, _ = upload(owner, source.id, "a.txt"), upload(owner, source.id, "b.txt")
    subset = reader.datasets.create_subset(source.id, "mine", [first], description="one")
    assert (subset.name, subset.description, subset.user_permission) == ("mine", "one", "owner")
    assert subset.owner_email == reader.account_email
    assert [i.id for i in reader.datasets.iterate_items(subset.id)] == [first]


def test_a_subset_of_entries_not_in_the_source_is_not_in_source(quarry: Quarry) -> None:
    source = quarry.datasets.create("source").data
    stranger = str(ObjectId())
    with pytest.raises(BadRequest) as raised:
        quarry.datasets.create_subset(source.id, "bad", [stranger])
    assert_refused(raised.value, 400, "NOT_IN_SOURCE")
    assert raised.value.details and raised.value.details[0]["msg"] == stranger


# ---------------------------------------------------------------- access check


def test_check_access_for_the_owner_and_for_a_stranger(make_quarry: MakeQuarry) -> None:
    owner, stranger = make_quarry(), make_quarry()
    dataset = owner.datasets.create("private").data
    mine = owner.datasets.check_access(dataset.id, require_write=True)
    assert (mine.has_access, mine.is_owner, mine.permission) == (True, True, "owner")
    theirs = stranger.datasets.check_access(dataset.id)
    assert (theirs.has_access, theirs.is_owner, theirs.permission) == (False, False, None)
    assert not theirs.matching_tags


# ---------------------------------------------------------------- audit


def audited_dataset(client: Quarry) -> str:
    """A dataset with four audited changes after its creation."""
    dataset = client.datasets.create("audited").data
    for n in range(4):
        client.datasets.merge_metadata(dataset.id, {"n": n})
    return dataset.id


def test_audit_pages_follow_the_cursor_newest_first(quarry: Quarry) -> None:
    dataset_id = audited_dataset(quarry)
    first = quarry.audit.page(dataset_id=dataset_id, limit=2)
    assert len(first.data) == 2 and first.pagination.has_next
    second = quarry.audit.page(dataset_id=dataset_id, limit=2, after=first.pagination.next_cursor)
    records = list(quarry.audit.iterate(dataset_id=dataset_id, page_size=2))
    assert [r.id for r in records[:4]] == [r.id for r in first.data + second.data]
    assert len(records) == 5
    assert [r.seq for r in records] == sorted((r.seq for r in records), reverse=True)
    assert records[-1].action == "datasets.create_dataset"
    assert {r.action for r in records[:4]} == {"datasets.merge_metadata"}


def test_audit_filters_by_action(quarry: Quarry) -> None:
    dataset_id = audited_dataset(quarry)
    records = list(quarry.audit.iterate(dataset_id=dataset_id, action="datasets.create_dataset"))
    assert [(r.action, r.dataset_id) for r in records] == [("datasets.create_dataset", dataset_id)]
    assert records[0].actor_user_id == user_id(quarry)


def test_audit_with_a_malformed_cursor_is_a_bad_request(quarry: Quarry) -> None:
    with pytest.raises(BadRequest) as raised:
        quarry.audit.page(after="not-a-cursor")
    assert_refused(raised.value, 400, "INVALID_AUDIT_CURSOR")


def test_audit_export_writes_ndjson_oldest_first(quarry: Quarry, tmp_path: Path) -> None:
    dataset_id = audited_dataset(quarry)
    target = tmp_path / "audit.ndjson"
    written = quarry.audit.export_to(target, dataset_id=dataset_id)
    lines = target.read_bytes().splitlines()
    assert written == target.stat().st_size and len(lines) == 5
    exported = [json.loads(line) for line in lines]
    listed = list(quarry.audit.iterate(dataset_id=dataset_id))
    assert [r["id"] for r in exported] == [r.id for r in reversed(listed)]
    assert [r.id for r in quarry.audit.export_records(dataset_id=dataset_id)] == [
        r["id"] for r in exported
    ]


def test_audit_export_since_a_moment_leaves_older_records_out(quarry: Quarry) -> None:
    dataset_id = audited_dataset(quarry)
    newest = quarry.audit.page(dataset_id=dataset_id, limit=1).data[0]
    later = list(quarry.audit.export_records(dataset_id=dataset_id, since=newest.at))
    assert [r.id for r in later] == [newest.id]
    older = quarry.audit.iterate(dataset_id=dataset_id, until=newest.at)
    assert newest.id not in [r.id for r in older]


async def test_audit_iterate_and_export_async(aquarry: AsyncQuarry) -> None:
    dataset = (await aquarry.datasets.create("audited")).data
    for n in range(2):
        await aquarry.datasets.merge_metadata(dataset.id, {"n": n})
    listed = [r.id async for r in aquarry.audit.iterate(dataset_id=dataset.id, page_size=1)]
    assert len(listed) == 3
    body = b"".join([c async for c in aquarry.audit.export_chunks(dataset_id=dataset.id)])
    assert [json.loads(line)["id"] for line in body.splitlines()] == listed[::-1]
    records = [r.id async for r in aquarry.audit.export_records(dataset_id=dataset.id)]
    assert records == listed[::-1]
