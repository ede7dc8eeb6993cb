"""What an entries request may carry (`spec/entries.md`): a batch of texts
answers a repeated id once and is bounded as a whole, metadata nesting is bounded
on upload and on patch (422, nothing stored), and the empty file input a browser
sends for "no file" is not an entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.errors import ErrorCode
from app.wiring import state_of
from data_api.entries import service as entry_service
from tests.fixtures.accounts import Account
from tests.fixtures.datasets import QUIET_SETTINGS, create_dataset, user_id_of
from tests.fixtures.entries import (
    ENTRIES,
    Stored,
    file,
    form_field,
    post_parts,
    upload,
    upload_one,
    wait_for_text,
)
from tests.fixtures.envelopes import assert_envelope


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> Any:
    return make_settings(**QUIET_SETTINGS)


async def test_batch_content_answers_a_repeated_id_once_and_bounds_the_whole_answer(
    client: httpx.AsyncClient, owner: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = (await create_dataset(client, owner.bearer))["id"]
    first = await upload_one(client, owner.bearer, dataset, "a.txt", b"aaaaaaaa")
    second = await upload_one(client, owner.bearer, dataset, "b.txt", b"bbbbbbbb")
    for entry in (first, second):
        assert (await wait_for_text(client, owner.bearer, entry["id"]))["text_status"] == "done"
    monkeypatch.setattr(entry_service, "BATCH_CONTENT_CHARS", 12)
    response = await client.post(
        f"{ENTRIES}/batch/content",
        json={"ids": [first["id"], first["id"], second["id"]]},
        headers=owner.bearer,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [(d["id"], d["text"], d["truncated"]) for d in data] == [
        (first["id"], "aaaaaaaa", False),
        (second["id"], "bbbb", True),
    ]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize("depth", [25, 5000])
async def test_metadata_nested_too_deep_is_422_and_nothing_is_stored(
    app: FastAPI, client: httpx.AsyncClient, owner: Account, sync_client: Any, depth: int
) -> None:
    dataset = (await create_dataset(client, owner.bearer))["id"]
    stored = Stored(sync_client, state_of(app).settings.control_db, await user_id_of(client, owner))
    before = stored.totals()
    deep = '{"k": ' * depth + "1" + "}" * depth  # beyond what json.dumps would write
    response = await upload(client, owner.bearer, dataset, [("a.txt", b"x")], metadata=deep)
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert stored.totals() == before


async def test_patching_metadata_nested_too_deep_is_422(
    client: httpx.AsyncClient, owner: Account
) -> None:
    dataset = (await create_dataset(client, owner.bearer))["id"]
    entry = await upload_one(client, owner.bearer, dataset, "a.txt", b"x")
    response = await client.patch(
        f"{ENTRIES}/{entry['id']}", json={"metadata": _nested(25)}, headers=owner.bearer
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    got = await client.get(f"{ENTRIES}/{entry['id']}", headers=owner.bearer)
    assert got.json()["data"]["metadata"] == {}


async def test_an_empty_browser_file_input_is_not_an_entry(
    client: httpx.AsyncClient, owner: Account
) -> None:
    dataset = (await create_dataset(client, owner.bearer))["id"]
    parts = [form_field("dataset_id", dataset), file("", b""), file("real.txt", b"content")]
    response = await post_parts(client, owner.bearer, parts)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["name"] == "real.txt"
    only_empty = await post_parts(
        client, owner.bearer, [form_field("dataset_id", dataset), file("", b"")]
    )
    assert_envelope(only_empty, 422, ErrorCode.VALIDATION_ERROR)
