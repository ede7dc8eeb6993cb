"""Keyword search over HTTP (`spec/entries.md`, "Keyword search"): the query language
and its errors, snippets, BM25 ranking, file-type filters, sorting, paging, the
dataset scope (path, `dataset_id`, `dataset_ids`, linked items) and the search rate
limit. One corpus, uploaded through the entries API and indexed once, serves the
module; tests that change data make their own datasets."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI

from app.errors import ErrorCode
from tests.fixtures.accounts import Account, register_account
from tests.fixtures.datasets import DATASETS, create_dataset
from tests.fixtures.engine import DatabaseServer
from tests.fixtures.entries import Sync, module_app, module_settings, upload_texts
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.mailbox import Inbox
from tests.fixtures.search import (
    found,
    ids,
    search,
    upload_searchable,
    wait_until_found,
    wait_until_searchable,
)

#: filename → text, uploaded together into the corpus's main dataset.
MAIN_FILES = {
    # query language
    "qa.txt": "alpha bravo charlie",
    "qb.txt": "alpha delta",
    "qc.txt": "bravo echo",
    "qd.txt": "charlie bravo alpha",
    "p1.txt": "the forecast for spring",
    "p2.txt": "forecasting models improve",
    "p3.txt": "fore and aft",
    "c1.txt": "cafe society",
    "c2.txt": "café culture",
    "c3.txt": "caffeine rush",
    "l1.txt": "lumber and timber",
    "l2.txt": "lumber timber",
    "l3.txt": "lumber or timber",
    "zebra.txt": "striped animal",
    "f2.txt": "the name: zebra grazes",
    "f4.txt": "page size 0 to 99 bytes",
    "tiny.txt": "tiny",
    # snippets and ranking (same number of words: BM25 then weighs occurrences)
    "s1.txt": "Quarterly notes: <script>alert(1)</script> revenue grew",
    "r1.txt": "kiwi kiwi kiwi mango papaya",
    "r2.txt": "kiwi lemon lime mango papaya",
    # file types
    "walrus.txt": "walrus tusk",
    "walrus.md": "# walrus\n\ntusk",
    "walrus.csv": "animal,feature\nwalrus,tusk\n",
    # scope: the same words as o2.txt in the other dataset
    "o1.txt": "obsidian shard",
}
#: Uploaded one by one, in this order (created_at follows it); names (one
#: capitalised: sorting ignores case), sizes and occurrences of "nebula" put them
#: in other orders. Five words each, so BM25 weighs only the occurrences ("!" is
#: no word, it only adds bytes).
SORTED_FILES = {
    "Nu.txt": "nebula nebula quasar pulsar comet" + "!" * 20,  # 2 occurrences, 53 bytes
    "lambda.txt": "nebula quasar pulsar comet meteor" + "!" * 10,  # 1 occurrence, 43 bytes
    "mu.txt": "nebula nebula nebula quasar pulsar",  # 3 occurrences, 34 bytes
}


@dataclass
class Corpus:
    app: FastAPI
    http: httpx.AsyncClient
    owner: Account
    stranger: Account
    main: str
    other: str
    strangers: str
    #: filename → entry id
    entry: dict[str, str]

    def ids_of(self, *names: str) -> list[str]:
        return [self.entry[name] for name in names]


async def build_corpus(app: FastAPI, http: httpx.AsyncClient, smtp: Inbox) -> Corpus:
    owner = await register_account(http, smtp)
    stranger = await register_account(http, smtp)
    main = (await create_dataset(http, owner.bearer, name="main"))["id"]
    other = (await create_dataset(http, owner.bearer, name="other"))["id"]
    strangers = (await create_dataset(http, stranger.bearer, name="theirs"))["id"]
    main_ids = await upload_texts(http, owner.bearer, main, MAIN_FILES)
    entry = dict(zip(MAIN_FILES, main_ids, strict=True))
    for name, text in SORTED_FILES.items():
        [entry[name]] = await upload_texts(http, owner.bearer, main, {name: text})
    [entry["o2.txt"]] = await upload_texts(http, owner.bearer, other, {"o2.txt": "obsidian shard"})
    [entry["x.txt"]] = await upload_texts(
        http, stranger.bearer, strangers, {"x.txt": "obsidian shard"}
    )
    await wait_until_searchable(http, owner.bearer, [i for n, i in entry.items() if n != "x.txt"])
    await wait_until_searchable(http, stranger.bearer, [entry["x.txt"]])
    return Corpus(app, http, owner, stranger, main, other, strangers, entry)


@pytest.fixture(scope="module")
async def corpus(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Corpus]:
    settings = module_settings(database_server, smtp_server, tmp_path_factory.mktemp("search"))
    async with module_app(database_server, sync_client, settings) as (app, http):
        yield await build_corpus(app, http, smtp_server)


async def owner_finds(corpus: Corpus, query: str, **options: Any) -> list[str]:
    return await found(corpus.http, corpus.owner.bearer, query, **options)


async def owner_finds_set(corpus: Corpus, query: str, **options: Any) -> set[str]:
    return set(await owner_finds(corpus, query, **options))


# ---------------------------------------------------------------- query language


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("alpha bravo", ["qa.txt", "qd.txt"], id="words-all-required"),
        pytest.param("alpha AND bravo", ["qa.txt", "qd.txt"], id="AND"),
        pytest.param("delta OR echo", ["qb.txt", "qc.txt"], id="OR"),
        pytest.param("alpha NOT bravo", ["qb.txt"], id="NOT-excludes"),
        pytest.param("alpha AND (delta OR echo)", ["qb.txt"], id="parentheses"),
        pytest.param("(alpha AND delta) OR echo", ["qb.txt", "qc.txt"], id="parentheses-other"),
        pytest.param("alpha AND delta OR echo", ["qb.txt", "qc.txt"], id="AND-binds-tighter"),
        pytest.param('"alpha bravo"', ["qa.txt"], id="phrase"),
        pytest.param('"bravo alpha"', ["qd.txt"], id="phrase-other-order"),
        pytest.param("forec*", ["p1.txt", "p2.txt"], id="prefix"),
        pytest.param("CAFÉ", ["c1.txt", "c2.txt"], id="case-and-accents"),
        pytest.param("cafe", ["c1.txt", "c2.txt"], id="unaccented-finds-accented"),
        pytest.param("lumber and timber", ["l1.txt"], id="lower-case-and-is-a-word"),
        pytest.param("lumber or timber", ["l3.txt"], id="lower-case-or-is-a-word"),
        pytest.param("lumber AND timber", ["l1.txt", "l2.txt", "l3.txt"], id="upper-case-AND"),
        pytest.param("lumber OR timber", ["l1.txt", "l2.txt", "l3.txt"], id="upper-case-OR"),
        pytest.param("zebra", ["zebra.txt", "f2.txt"], id="names-are-searched"),
        pytest.param("name:zebra", ["f2.txt"], id="field-syntax-is-text"),
        pytest.param("name:tiny", [], id="field-syntax-no-field"),
        pytest.param("size:[0 TO 99]", ["f4.txt"], id="range-syntax-is-text"),
        pytest.param("alpha" + " " * 495, ["qa.txt", "qb.txt", "qd.txt"], id="500-characters"),
    ],
)
async def test_query_language_finds_exactly_the_matching_entries(
    corpus: Corpus, query: str, expected: list[str]
) -> None:
    response = await search(corpus.http, corpus.owner.bearer, query, page_size=100)
    assert response.status_code == 200, response.text
    assert set(ids(response)) == set(corpus.ids_of(*expected))
    assert response.json()["pagination"]["total_items"] == len(expected)


@pytest.mark.parametrize(
    ("query", "position"),
    [
        pytest.param("revenue (forecast", 8, id="unclosed-parenthesis"),
        pytest.param("revenue forecast)", 16, id="stray-closing-parenthesis"),
        pytest.param('revenue "forecast', 8, id="unterminated-quote"),
        pytest.param("revenue AND", 8, id="dangling-AND"),
        pytest.param("AND revenue", 0, id="leading-AND"),
        pytest.param("revenue OR", 8, id="dangling-OR"),
        pytest.param("NOT revenue", 0, id="only-NOT"),
        pytest.param("revenue OR NOT draft", 11, id="an-alternative-of-only-NOT"),
        pytest.param("revenue NOT", 8, id="NOT-without-a-term"),
        pytest.param("revenue f*", 9, id="prefix-too-short"),
        pytest.param("   ", 0, id="only-spaces"),
    ],
)
async def test_a_syntax_error_is_400_invalid_query_with_its_position(
    corpus: Corpus, query: str, position: int
) -> None:
    response = await search(corpus.http, corpus.owner.bearer, query)
    body = assert_envelope(response, 400, ErrorCode.INVALID_QUERY)
    assert body["details"][0]["position"] == position
    assert body["details"][0]["loc"] == ["body", "query"]


@pytest.mark.parametrize("query", ["", "a" * 501], ids=["empty", "501-characters"])
async def test_an_empty_or_too_long_query_is_422(corpus: Corpus, query: str) -> None:
    response = await search(corpus.http, corpus.owner.bearer, query)
    body = assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)
    assert ["body", "query"] in [detail["loc"] for detail in body["details"]]


@pytest.mark.parametrize("scoped", [False, True], ids=["global", "scoped"])
async def test_an_unknown_body_field_is_422(corpus: Corpus, scoped: bool) -> None:
    response = await search(
        corpus.http,
        corpus.owner.bearer,
        "alpha",
        scope=corpus.main if scoped else None,
        fields=["name"],
    )
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)


# ---------------------------------------------------------------- the answer


@pytest.mark.smoke
async def test_a_snippet_escapes_the_documents_html_and_marks_the_match(corpus: Corpus) -> None:
    response = await search(corpus.http, corpus.owner.bearer, "revenue")
    [hit] = response.json()["data"]
    assert hit["entry"]["id"] == corpus.entry["s1.txt"]
    [snippet] = hit["snippets"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in snippet
    assert "<mark>revenue</mark>" in snippet
    assert set(re.findall(r"<[^>]*>", snippet)) == {"<mark>", "</mark>"}


async def test_a_hit_carries_the_entry_its_dataset_a_score_and_snippets(corpus: Corpus) -> None:
    response = await search(corpus.http, corpus.owner.bearer, "striped")
    body = response.json()
    assert body["success"] is True
    [hit] = body["data"]
    assert set(hit) == {"entry", "dataset_id", "score", "snippets"}
    assert hit["entry"]["id"] == corpus.entry["zebra.txt"]
    assert hit["entry"]["name"] == "zebra.txt"
    assert hit["entry"]["text_status"] == "done"
    assert hit["dataset_id"] == corpus.main
    assert isinstance(hit["score"], float) and hit["score"] > 0
    assert hit["snippets"] == ["<mark>striped</mark> animal"]
    assert isinstance(body["took_ms"], int | float) and body["took_ms"] >= 0


async def test_more_occurrences_in_a_document_of_the_same_length_rank_higher(
    corpus: Corpus,
) -> None:
    response = await search(corpus.http, corpus.owner.bearer, "kiwi")
    assert ids(response) == corpus.ids_of("r1.txt", "r2.txt")
    first, second = response.json()["data"]
    assert first["score"] > second["score"]


@pytest.mark.parametrize(
    ("file_types", "expected"),
    [
        (["md"], ["walrus.md"]),
        (["txt", "csv"], ["walrus.txt", "walrus.csv"]),
        (["MD"], ["walrus.md"]),
        (["pdf"], []),
    ],
)
async def test_file_types_filter_by_extension(
    corpus: Corpus, file_types: list[str], expected: list[str]
) -> None:
    assert await owner_finds_set(corpus, "walrus", file_types=file_types) == set(
        corpus.ids_of(*expected)
    )


# ---------------------------------------------------------------- sorting and paging

ASCENDING = {
    "created_at": list(SORTED_FILES),
    "relevance": ["lambda.txt", "Nu.txt", "mu.txt"],
    "name": ["lambda.txt", "mu.txt", "Nu.txt"],
    "size": ["mu.txt", "lambda.txt", "Nu.txt"],
}


@pytest.mark.parametrize("sort_order", ["asc", "desc"])
@pytest.mark.parametrize("sort_by", sorted(ASCENDING))
async def test_sort_by_and_order_give_the_expected_order(
    corpus: Corpus, sort_by: str, sort_order: str
) -> None:
    expected = ASCENDING[sort_by] if sort_order == "asc" else ASCENDING[sort_by][::-1]
    found_ids = await owner_finds(corpus, "nebula", sort_by=sort_by, sort_order=sort_order)
    assert found_ids == corpus.ids_of(*expected)


async def test_relevance_descending_is_the_default_order(corpus: Corpus) -> None:
    assert await owner_finds(corpus, "nebula") == corpus.ids_of("mu.txt", "Nu.txt", "lambda.txt")


@pytest.mark.parametrize(
    ("page", "expected", "has_next", "has_previous"),
    [
        (1, ["mu.txt", "Nu.txt"], True, False),
        (2, ["lambda.txt"], False, True),
        (3, [], False, True),
    ],
)
async def test_pages_split_the_hits_and_count_them_all(
    corpus: Corpus, page: int, expected: list[str], has_next: bool, has_previous: bool
) -> None:
    response = await search(corpus.http, corpus.owner.bearer, "nebula", page=page, page_size=2)
    assert ids(response) == corpus.ids_of(*expected)
    assert response.json()["pagination"] == {
        "page": page,
        "page_size": 2,
        "total_items": 3,
        "total_pages": 2,
        "has_next": has_next,
        "has_previous": has_previous,
    }


@pytest.mark.parametrize(
    "paging", [{"page_size": 0}, {"page_size": 101}, {"page": 0}], ids=["0", "101", "page-0"]
)
async def test_page_size_and_page_out_of_range_are_422(
    corpus: Corpus, paging: dict[str, int]
) -> None:
    response = await search(corpus.http, corpus.owner.bearer, "nebula", **paging)
    assert_envelope(response, 422, ErrorCode.VALIDATION_ERROR)


# ---------------------------------------------------------------- scope


async def test_without_a_dataset_every_readable_dataset_is_searched(corpus: Corpus) -> None:
    response = await search(corpus.http, corpus.owner.bearer, "obsidian")
    hits = {hit["entry"]["id"]: hit["dataset_id"] for hit in response.json()["data"]}
    assert hits == {corpus.entry["o1.txt"]: corpus.main, corpus.entry["o2.txt"]: corpus.other}


async def test_a_scoped_search_returns_only_that_datasets_items(corpus: Corpus) -> None:
    for dataset, name in ((corpus.main, "o1.txt"), (corpus.other, "o2.txt")):
        response = await search(corpus.http, corpus.owner.bearer, "obsidian", scope=dataset)
        assert ids(response) == [corpus.entry[name]]
        assert response.json()["data"][0]["dataset_id"] == dataset
        assert response.json()["pagination"]["total_items"] == 1


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"dataset_id": "main"}, ["o1.txt"]),
        ({"dataset_ids": ["other"]}, ["o2.txt"]),
        ({"dataset_ids": ["main", "other"]}, ["o1.txt", "o2.txt"]),
        ({"dataset_id": "main", "dataset_ids": ["other"]}, ["o1.txt", "o2.txt"]),
    ],
)
async def test_dataset_ids_in_the_body_scope_the_search(
    corpus: Corpus, scope: dict[str, Any], expected: list[str]
) -> None:
    named = {"main": corpus.main, "other": corpus.other}
    body = {
        key: named[value] if isinstance(value, str) else [named[v] for v in value]
        for key, value in scope.items()
    }
    assert await owner_finds_set(corpus, "obsidian", **body) == set(corpus.ids_of(*expected))


async def test_a_renamed_entry_is_found_by_its_new_name(corpus: Corpus) -> None:
    http, owner = corpus.http, corpus.owner.bearer
    dataset = (await create_dataset(http, owner, name="renaming"))["id"]
    [entry_id] = await upload_searchable(http, owner, dataset, {"sapphire.txt": "gemstone"})
    renamed = await http.patch(f"/api/v1/entries/{entry_id}", json={"name": "topaz"}, headers=owner)
    assert renamed.status_code == 200, renamed.text
    await wait_until_found(http, owner, "topaz", [entry_id])
    assert await owner_finds(corpus, "sapphire") == []
    assert await owner_finds(corpus, "gemstone") == [entry_id]


async def test_a_linked_entry_is_found_by_the_linking_datasets_search_until_unlinked(
    corpus: Corpus,
) -> None:
    http, owner = corpus.http, corpus.owner.bearer
    curated = (await create_dataset(http, owner, name="curated"))["id"]
    linked = await http.post(
        f"{DATASETS}/{curated}/items", json={"entry_ids": [corpus.entry["o1.txt"]]}, headers=owner
    )
    assert linked.status_code == 200, linked.text
    response = await search(http, owner, "obsidian", scope=curated)
    assert ids(response) == [corpus.entry["o1.txt"]]
    assert response.json()["data"][0]["dataset_id"] == curated
    unlinked = await http.request(
        "DELETE",
        f"{DATASETS}/{curated}/items",
        json={"entry_ids": [corpus.entry["o1.txt"]]},
        headers=owner,
    )
    assert unlinked.status_code == 200, unlinked.text
    response = await search(http, owner, "obsidian", scope=curated)
    assert ids(response) == []
    assert response.json()["pagination"]["total_items"] == 0
    # Unlinking does not delete: the entry is still found in its home.
    assert await owner_finds(corpus, "obsidian", scope=corpus.main) == [corpus.entry["o1.txt"]]


async def test_an_entry_uploaded_into_a_linking_dataset_is_found_there_too(
    corpus: Corpus,
) -> None:
    http, owner = corpus.http, corpus.owner.bearer
    mixed = (await create_dataset(http, owner, name="mixed"))["id"]
    linked = await http.post(
        f"{DATASETS}/{mixed}/items", json={"entry_ids": [corpus.entry["o2.txt"]]}, headers=owner
    )
    assert linked.status_code == 200, linked.text
    [own] = await upload_searchable(http, owner, mixed, {"o3.txt": "obsidian blade"})
    found_ids = await owner_finds(corpus, "obsidian", scope=mixed)
    assert set(found_ids) == {own, corpus.entry["o2.txt"]}


@pytest.mark.parametrize("how", ["path", "dataset_id", "dataset_ids"])
@pytest.mark.parametrize("whose", ["strangers", "unknown"])
async def test_a_dataset_the_caller_cannot_read_is_404(
    corpus: Corpus, how: str, whose: str
) -> None:
    dataset = corpus.strangers if whose == "strangers" else str(ObjectId())
    http, owner = corpus.http, corpus.owner.bearer
    if how == "path":
        response = await search(http, owner, "obsidian", scope=dataset)
    elif how == "dataset_id":
        response = await search(http, owner, "obsidian", dataset_id=dataset)
    else:
        response = await search(http, owner, "obsidian", dataset_ids=[corpus.main, dataset])
    assert_envelope(response, 404, ErrorCode.DATASET_NOT_FOUND)


async def test_the_stranger_finds_only_their_own_entry(corpus: Corpus) -> None:
    found_ids = await found(corpus.http, corpus.stranger.bearer, "obsidian")
    assert found_ids == [corpus.entry["x.txt"]]


async def test_search_needs_authentication(corpus: Corpus) -> None:
    response = await corpus.http.post("/api/v1/search", json={"query": "obsidian"})
    assert_envelope(response, 401, ErrorCode.NOT_AUTHENTICATED)


# ---------------------------------------------------------------- rate limit


@dataclass
class Limited:
    http: httpx.AsyncClient
    register: Callable[[], Awaitable[Account]]


@pytest.fixture(scope="module")
async def limited(
    database_server: DatabaseServer,
    smtp_server: Inbox,
    sync_client: Sync,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Limited]:
    """An app whose only limit is 2 searches per minute (and user)."""
    settings = module_settings(
        database_server, smtp_server, tmp_path_factory.mktemp("limited"), rate_limit_search=2
    )
    async with module_app(database_server, sync_client, settings) as (_, http):

        async def register() -> Account:
            return await register_account(http, smtp_server)

        yield Limited(http, register)


async def test_the_third_search_in_a_minute_is_429_rate_limited(limited: Limited) -> None:
    user = await limited.register()
    for _ in range(2):
        response = await search(limited.http, user.bearer, "anything")
        assert response.status_code == 200, response.text
    response = await search(limited.http, user.bearer, "anything")
    assert_envelope(response, 429, ErrorCode.RATE_LIMITED)
    assert int(response.headers["retry-after"]) >= 1


async def test_scoped_searches_count_against_the_same_budget(limited: Limited) -> None:
    user = await limited.register()
    dataset = (await create_dataset(limited.http, user.bearer, name="limited"))["id"]
    assert (await search(limited.http, user.bearer, "anything")).status_code == 200
    assert (await search(limited.http, user.bearer, "anything", scope=dataset)).status_code == 200
    response = await search(limited.http, user.bearer, "anything", scope=dataset)
    assert_envelope(response, 429, ErrorCode.RATE_LIMITED)
    assert "retry-after" in response.headers
    response = await search(limited.http, user.bearer, "anything")
    assert_envelope(response, 429, ErrorCode.RATE_LIMITED)
