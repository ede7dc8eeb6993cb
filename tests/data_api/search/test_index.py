"""Per-tenant tantivy indexes: matching, ranking, filters, sorting, snippets, and life on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import tantivy

from data_api.search.index import (
    Hit,
    IndexBusy,
    IndexedEntry,
    IndexMissing,
    SearchIndexes,
)
from data_api.search.query import compile_query

TENANT = "tenant1"
REPO_ROOT = Path(__file__).resolve().parents[3]
SEARCH_DEFAULTS: dict[str, Any] = {
    "home_dataset_ids": None,
    "entry_ids": None,
    "file_types": None,
    "sort_by": "relevance",
    "sort_order": "desc",
    "offset": 0,
    "limit": 20,
}


def make_entry(entry_id: str, text: str, **overrides: Any) -> IndexedEntry:
    fields: dict[str, Any] = {
        "entry_id": entry_id,
        "home_dataset_id": "ds1",
        "name": f"{entry_id}.txt",
        "file_type": "txt",
        "created_at": datetime(2024, 1, 1, tzinfo=UTC),
        "size": 100,
        "text": text,
    }
    return IndexedEntry(**(fields | overrides))


@pytest.fixture
def indexes(tmp_path: Path) -> SearchIndexes:
    return SearchIndexes(tmp_path / "search")


@pytest.fixture
def index_entries(indexes: SearchIndexes) -> Callable[..., int]:
    """Rebuild the tenant's index from the given entries."""

    def index(*entries: IndexedEntry, tenant: str = TENANT) -> int:
        return indexes.rebuild(tenant, entries)

    return index


def search(indexes: SearchIndexes, text: str, **options: Any) -> tuple[int, list[Hit]]:
    return indexes.search(TENANT, compile_query(text), **(SEARCH_DEFAULTS | options))


def found(indexes: SearchIndexes, text: str, **options: Any) -> list[str]:
    return [hit.entry_id for hit in search(indexes, text, **options)[1]]


def live_generation(root: Path) -> Path:
    tenant_dir = root / TENANT
    return tenant_dir / (tenant_dir / "CURRENT").read_text().strip()


# --- matching ----------------------------------------------------------------------


@pytest.fixture
def wolves(index_entries: Callable[..., int]) -> None:
    index_entries(
        make_entry("big-bad", "the big bad wolf"),
        make_entry("bad-big", "a bad big wolf"),
        make_entry("big-only", "a big friendly giant"),
        make_entry("fox", "a quick brown fox"),
    )


@pytest.mark.usefixtures("wolves")
def test_all_words_must_match(indexes: SearchIndexes) -> None:
    assert set(found(indexes, "big wolf")) == {"big-bad", "bad-big"}


@pytest.mark.usefixtures("wolves")
def test_and_requires_both(indexes: SearchIndexes) -> None:
    assert set(found(indexes, "big AND friendly")) == {"big-only"}


@pytest.mark.usefixtures("wolves")
def test_or_accepts_either(indexes: SearchIndexes) -> None:
    assert set(found(indexes, "friendly OR fox")) == {"big-only", "fox"}


@pytest.mark.usefixtures("wolves")
def test_not_excludes(indexes: SearchIndexes) -> None:
    assert set(found(indexes, "big NOT wolf")) == {"big-only"}


@pytest.mark.usefixtures("wolves")
def test_parentheses_group(indexes: SearchIndexes) -> None:
    assert set(found(indexes, "a (fox OR giant) NOT friendly")) == {"fox"}


@pytest.mark.usefixtures("wolves")
def test_phrase_keeps_word_order(indexes: SearchIndexes) -> None:
    assert found(indexes, '"big bad"') == ["big-bad"]
    assert found(indexes, '"bad big"') == ["bad-big"]


@pytest.mark.usefixtures("wolves")
def test_lower_case_and_is_a_word(indexes: SearchIndexes) -> None:
    assert found(indexes, "big and wolf") == []


def test_prefix_matches_longer_words(
    indexes: SearchIndexes, index_entries: Callable[..., int]
) -> None:
    index_entries(
        make_entry("a", "forecast for Q4"),
        make_entry("b", "forecasting methods"),
        make_entry("c", "before the fore"),
    )
    assert set(found(indexes, "forec*")) == {"a", "b"}


def test_prefix_of_a_hyphenated_word(
    indexes: SearchIndexes, index_entries: Callable[..., int]
) -> None:
    index_entries(make_entry("a", "send an e-mail"), make_entry("b", "send a mail"))
    assert found(indexes, "e-mai*") == ["a"]


def test_matching_ignores_case_and_accents(
    indexes: SearchIndexes, index_entries: Callable[..., int]
) -> None:
    index_entries(make_entry("a", "Le café est naïf"), make_entry("b", "Tea time"))
    assert found(indexes, "CAFE") == ["a"]
    assert found(indexes, "café NAÏF") == ["a"]
    assert found(indexes, '"CAFÉ EST"') == ["a"]


def test_name_is_searched_too(indexes: SearchIndexes, index_entries: Callable[..., int]) -> None:
    index_entries(make_entry("a", "quarterly numbers", name="Budget 2024.xlsx"))
    assert found(indexes, "budget quarterly") == ["a"]


@pytest.mark.parametrize("text", ["size:[0 TO 99]", "entry_id:secret", "text:foo"])
def test_tantivy_syntax_is_searched_as_text(
    indexes: SearchIndexes, index_entries: Callable[..., int], text: str
) -> None:
    index_entries(
        make_entry("literal", "notes: size:[0 TO 99] entry_id:secret text:foo name:"),
        make_entry("secret", "nothing to see", size=5),
    )
    assert found(indexes, text) == ["literal"]


# --- ranking, filters, sorting ---------------------------------------------------------


def test_bm25_ranks_more_occurrences_higher(
    indexes: SearchIndexes, index_entries: Callable[..., int]
) -> None:
    index_entries(
        make_entry("once", "alpha beta gamma delta epsilon"),
        make_entry("thrice", "alpha alpha alpha beta gamma"),
    )
    total, hits = search(indexes, "alpha")
    assert total == 2
    assert [hit.entry_id for hit in hits] == ["thrice", "once"]
    assert hits[0].score > hits[1].score > 0


@pytest.fixture
def catalogue(index_entries: Callable[..., int]) -> None:
    index_entries(
        make_entry(
            "e1",
            "report report report",
            name="Charlie",
            home_dataset_id="ds1",
            file_type="pdf",
            created_at=datetime(2024, 1, 2, tzinfo=UTC),
            size=300,
        ),
        make_entry(
            "e2",
            "report and more words here",
            name="alpha",
            home_dataset_id="ds2",
            file_type="docx",
            created_at=datetime(2024, 1, 3, tzinfo=UTC),
            size=100,
        ),
        make_entry(
            "e3",
            "a report with plenty of other words in it",
            name="Bravo",
            home_dataset_id="ds3",
            file_type="pdf",
            created_at=datetime(2024, 1, 1, tzinfo=UTC),
            size=200,
        ),
    )


@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize(
    ("sort_by", "ascending"),
    [
        ("relevance", ["e3", "e2", "e1"]),
        ("created_at", ["e3", "e1", "e2"]),
        ("name", ["e2", "e3", "e1"]),
        ("size", ["e2", "e3", "e1"]),
    ],
)
@pytest.mark.parametrize("sort_order", ["asc", "desc"])
def test_sorting(
    indexes: SearchIndexes, sort_by: str, ascending: list[str], sort_order: str
) -> None:
    expected = ascending if sort_order == "asc" else ascending[::-1]
    assert found(indexes, "report", sort_by=sort_by, sort_order=sort_order) == expected


@pytest.mark.parametrize("sort_order", ["asc", "desc"])
def test_created_at_sorts_to_the_microsecond(
    indexes: SearchIndexes, index_entries: Callable[..., int], sort_order: str
) -> None:
    moment = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    index_entries(
        make_entry("later", "note", created_at=moment.replace(microsecond=2)),
        make_entry("earlier", "note", created_at=moment.replace(microsecond=1)),
    )
    ascending = ["earlier", "later"]
    expected = ascending if sort_order == "asc" else ascending[::-1]
    assert found(indexes, "note", sort_by="created_at", sort_order=sort_order) == expected


@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize("sort_order", ["asc", "desc"])
def test_relevance_pages_cover_every_hit_once(indexes: SearchIndexes, sort_order: str) -> None:
    pages = [
        search(indexes, "report", sort_order=sort_order, offset=offset, limit=2)
        for offset in (0, 2, 4)
    ]
    assert [total for total, _ in pages] == [3, 3, 3]
    ids = [hit.entry_id for _, hits in pages for hit in hits]
    assert ids == found(indexes, "report", sort_order=sort_order)


@pytest.mark.usefixtures("catalogue")
def test_field_sorts_report_bm25_scores(indexes: SearchIndexes) -> None:
    by_relevance = {hit.entry_id: hit.score for hit in search(indexes, "report")[1]}
    _, by_size = search(indexes, "report", sort_by="size")
    assert {hit.entry_id: hit.score for hit in by_size} == pytest.approx(by_relevance)


@pytest.mark.usefixtures("catalogue")
def test_file_types_filter(indexes: SearchIndexes) -> None:
    assert set(found(indexes, "report", file_types={"pdf"})) == {"e1", "e3"}
    assert found(indexes, "report", file_types=set()) == []


@pytest.mark.usefixtures("catalogue")
def test_datasets_or_entries_restrict(indexes: SearchIndexes) -> None:
    restricted = found(indexes, "report", home_dataset_ids={"ds1"}, entry_ids={"e3"})
    assert set(restricted) == {"e1", "e3"}


@pytest.mark.usefixtures("catalogue")
def test_entries_alone_restrict(indexes: SearchIndexes) -> None:
    assert found(indexes, "report", entry_ids={"e2"}) == ["e2"]


@pytest.mark.usefixtures("catalogue")
def test_no_datasets_and_no_entries_find_nothing(indexes: SearchIndexes) -> None:
    assert search(indexes, "report", home_dataset_ids=set(), entry_ids=set()) == (0, [])


@pytest.mark.usefixtures("catalogue")
def test_filters_do_not_change_scores(indexes: SearchIndexes) -> None:
    open_score = {hit.entry_id: hit.score for hit in search(indexes, "report")[1]}["e1"]
    (hit,) = search(indexes, "report", home_dataset_ids={"ds1"}, file_types={"pdf"})[1]
    assert hit.score == pytest.approx(open_score)


@pytest.mark.usefixtures("catalogue")
def test_bad_sort_is_rejected(indexes: SearchIndexes) -> None:
    with pytest.raises(ValueError, match="cannot sort by"):
        search(indexes, "report", sort_by="entry_id")


# --- snippets ----------------------------------------------------------------------


def snippets(indexes: SearchIndexes, text: str) -> list[str]:
    (hit,) = search(indexes, text)[1]
    return hit.snippets


def test_snippet_escapes_the_documents_html(
    indexes: SearchIndexes, index_entries: Callable[..., int]
) -> None:
    index_entries(make_entry("a", "the <script>alert('x')</script> & \"revenue\""))
    assert snippets(indexes, "revenue") == [
        "the &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; "
        "&amp; &quot;<mark>revenue</mark>&quot;"
    ]


def test_snippet_marks_the_right_characters_after_non_ascii_text(
    indexes: SearchIndexes, index_entries: Callable[..., int]
) -> None:
    index_entries(make_entry("a", "naïve café revenue"))
    assert snippets(indexes, "revenue") == ["naïve café <mark>revenue</mark>"]
    assert snippets(indexes, "cafe") == ["naïve <mark>café</mark> revenue"]


def test_snippets_are_up_to_three_separate_fragments(
    indexes: SearchIndexes, index_entries: Callable[..., int]
) -> None:
    filler = " ".join(["filler"] * 60)
    text = " ".join([filler, "revenue one", filler, "revenue two", filler, "revenue three"])
    index_entries(make_entry("a", text + " " + filler + " revenue four " + filler))
    fragments = snippets(indexes, "revenue")
    assert len(fragments) == 3
    for fragment in fragments:
        assert fragment.count("<mark>revenue</mark>") == 1
        assert len(fragment) < 300
        assert fragment.startswith("…")
    assert len(set(fragments)) == 3


def test_snippet_falls_back_to_a_matching_name(
    indexes: SearchIndexes, index_entries: Callable[..., int]
) -> None:
    index_entries(make_entry("a", "quarterly numbers", name="Forecast <2024>.xlsx"))
    assert snippets(indexes, "forecast") == ["<mark>Forecast</mark> &lt;2024&gt;.xlsx"]


def test_snippet_marks_prefix_matches(
    indexes: SearchIndexes, index_entries: Callable[..., int]
) -> None:
    index_entries(make_entry("a", "the forecast and the forecasting team"))
    assert snippets(indexes, "forec*") == [
        "the <mark>forecast</mark> and the <mark>forecasting</mark> team"
    ]


# --- writing -------------------------------------------------------------------------


def test_write_upserts_and_deletes(
    indexes: SearchIndexes, index_entries: Callable[..., int]
) -> None:
    index_entries(make_entry("a", "old words"), make_entry("b", "doomed words"))
    indexes.write(TENANT, upserts=[make_entry("a", "new words")], deletes=["b"])
    assert found(indexes, "words") == ["a"]
    assert found(indexes, "old") == []
    assert found(indexes, "new") == ["a"]


def test_write_adds_a_new_entry(indexes: SearchIndexes, index_entries: Callable[..., int]) -> None:
    index_entries()
    indexes.write(TENANT, upserts=[make_entry("a", "fresh text")], deletes=[])
    assert found(indexes, "fresh") == ["a"]


def test_a_write_from_another_process_is_seen_by_an_open_searcher(
    indexes: SearchIndexes, index_entries: Callable[..., int], tmp_path: Path
) -> None:
    index_entries(make_entry("a", "first"))
    assert found(indexes, "second") == []
    script = (
        "import sys\n"
        "from datetime import datetime, UTC\n"
        "from pathlib import Path\n"
        "from data_api.search.index import IndexedEntry, SearchIndexes\n"
        "entry = IndexedEntry('b', 'ds1', 'b.txt', 'txt', datetime.now(UTC), 1, 'second')\n"
        f"SearchIndexes(Path(sys.argv[1])).write({TENANT!r}, upserts=[entry], deletes=[])\n"
    )
    environment = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "search")],
        check=True,
        cwd=REPO_ROOT,
        env=environment,
        timeout=60,
    )
    assert found(indexes, "second") == ["b"]


def test_a_held_writer_lock_makes_writes_busy(
    indexes: SearchIndexes, index_entries: Callable[..., int], tmp_path: Path
) -> None:
    index_entries(make_entry("a", "text"))
    holder = tantivy.Index.open(str(live_generation(tmp_path / "search")))
    writer = holder.writer(15_000_000, 1)
    try:
        with pytest.raises(IndexBusy):
            indexes.write(TENANT, upserts=[make_entry("b", "more")], deletes=[])
    finally:
        writer.wait_merging_threads()
    indexes.write(TENANT, upserts=[make_entry("b", "more")], deletes=[])
    assert found(indexes, "more") == ["b"]


def test_searches_from_many_threads_during_writes(
    indexes: SearchIndexes, index_entries: Callable[..., int]
) -> None:
    index_entries(*(make_entry(f"e{n}", f"shared word{n}") for n in range(50)))

    def count() -> int:
        return search(indexes, "shared")[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(count) for _ in range(200)]
        for n in range(5):
            indexes.write(TENANT, upserts=[make_entry(f"x{n}", "shared extra")], deletes=[])
        counts = [future.result() for future in futures]
    assert all(50 <= c <= 55 for c in counts)
    assert count() == 55


# --- life on disk --------------------------------------------------------------------


def test_a_tenant_without_an_index_is_missing(indexes: SearchIndexes) -> None:
    assert not indexes.exists(TENANT)
    assert not indexes.healthy(TENANT)
    with pytest.raises(IndexMissing):
        search(indexes, "anything")
    with pytest.raises(IndexMissing):
        indexes.write(TENANT, upserts=[], deletes=[])


def test_rebuild_creates_a_healthy_index(
    indexes: SearchIndexes, index_entries: Callable[..., int]
) -> None:
    assert index_entries(make_entry("a", "x"), make_entry("b", "y")) == 2
    assert indexes.exists(TENANT)
    assert indexes.healthy(TENANT)


def test_garbled_meta_is_missing_until_rebuilt(
    indexes: SearchIndexes, index_entries: Callable[..., int], tmp_path: Path
) -> None:
    entries = [make_entry("a", "alpha beta"), make_entry("b", "alpha")]
    index_entries(*entries)
    before = search(indexes, "alpha")
    (live_generation(tmp_path / "search") / "meta.json").write_text("{garbage")
    with pytest.raises(IndexMissing):
        search(indexes, "alpha")
    assert not indexes.healthy(TENANT)
    index_entries(*entries)
    assert search(indexes, "alpha") == before


def test_a_lost_segment_file_is_missing_until_rebuilt(
    indexes: SearchIndexes, index_entries: Callable[..., int], tmp_path: Path
) -> None:
    entries = [make_entry("a", "alpha beta"), make_entry("b", "alpha")]
    index_entries(*entries)
    before = search(indexes, "alpha")
    segment_file = sorted(live_generation(tmp_path / "search").glob("*.store"))[0]
    segment_file.unlink()
    fresh = SearchIndexes(tmp_path / "search")  # as a newly started process would
    assert not fresh.healthy(TENANT)
    with pytest.raises(IndexMissing):
        fresh.search(TENANT, compile_query("alpha"), **SEARCH_DEFAULTS)
    fresh.rebuild(TENANT, entries)
    assert search(indexes, "alpha") == before


def test_rebuild_swaps_under_an_open_searcher(
    indexes: SearchIndexes, index_entries: Callable[..., int], tmp_path: Path
) -> None:
    index_entries(make_entry("a", "old content"))
    other_process = SearchIndexes(tmp_path / "search")
    assert found(indexes, "content") == ["a"]
    assert other_process.search(TENANT, compile_query("content"), **SEARCH_DEFAULTS)[0] == 1
    other_process.rebuild(TENANT, [make_entry("b", "new content"), make_entry("c", "content")])
    assert set(found(indexes, "content")) == {"b", "c"}
    assert found(indexes, "old") == []
    generations = [p.name for p in (tmp_path / "search" / TENANT).glob("gen-*")]
    assert generations == [live_generation(tmp_path / "search").name]


def test_drop_removes_the_index(indexes: SearchIndexes, index_entries: Callable[..., int]) -> None:
    index_entries(make_entry("a", "x"))
    indexes.drop(TENANT)
    assert not indexes.exists(TENANT)
    with pytest.raises(IndexMissing):
        search(indexes, "x")


def test_tenant_ids_cannot_leave_the_root(indexes: SearchIndexes) -> None:
    with pytest.raises(ValueError, match="tenant id"):
        indexes.exists("../elsewhere")


def test_snippets_of_long_unspaced_non_ascii_text(
    indexes: SearchIndexes, index_entries: Callable[..., int]
) -> None:
    index_entries(make_entry("a", "é" * 700 + " revenue " + "日本語" * 300))
    (fragment,) = snippets(indexes, "revenue")
    assert "<mark>revenue</mark>" in fragment
