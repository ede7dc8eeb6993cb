"""Per-tenant tantivy indexes for keyword search: layout, writes, rebuilds, searches.

The index is derived data (spec/entries.md, "Keyword search"): MongoDB holds the
truth, and any index can be rebuilt from it. Each tenant owns `<root>/<tenant>/`,
holding generations of its index (`gen-…/`) and a `CURRENT` file naming the live
one. A rebuild fills a new generation off to the side and swaps `CURRENT` with one
atomic rename, so no process ever reads a half-built index; rebuilds of one tenant
take turns through a lock file. Incremental writes go to the live generation
through tantivy's own writer lock, which every process shares: a second writer
gets `IndexBusy` and retries. Each process keeps one opened index per tenant and
reloads it before every search (tantivy's reload costs microseconds when nothing
changed), so a commit from any process is visible to the next search. An index
that is missing, unreadable or built with another schema raises `IndexMissing`,
and the caller rebuilds it from MongoDB.

Matching and BM25 ranking are tantivy's; queries arrive already compiled by
`query.compile_query`. This module adds the filters (datasets, entries, file
types), sorting and HTML-safe snippets.
"""

from __future__ import annotations

import fcntl
import html
import os
import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import tantivy

from data_api.search.query import (
    ANALYZER_NAME,
    SEARCHED_FIELDS,
    QuerySyntaxError,
    build_analyzer,
    terms_of,
)

WRITER_HEAP_BYTES = 50_000_000
# tantivy gives each indexing thread an equal share of the heap, at least 15 MB.
REBUILD_THREADS = 3
GUARD_HEAP_BYTES = 15_000_000
REBUILD_LOCK_WAIT_SECONDS = 5.0
MAX_OPEN_INDEXES = 256
MAX_SNIPPETS = 3
SNIPPET_BYTES = 200
SNIPPET_SCAN_BYTES = 64_000
HIGHLIGHT_EXPANSIONS = 50
SORT_FIELDS = {"created_at": "created_at_us", "name": "name_sort", "size": "size"}
SORT_ORDERS = {"asc": tantivy.Order.Asc, "desc": tantivy.Order.Desc}

_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_GENERATION = re.compile(r"gen-[0-9]+-[0-9]+-[0-9]+")
_WORD = re.compile(r"[^\W_]")
_EDGE_BYTES = 16
_CELL_BYTES = 2 * SNIPPET_BYTES
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class IndexedEntry:
    """What the index holds about one entry."""

    entry_id: str
    home_dataset_id: str
    name: str
    file_type: str
    created_at: datetime
    size: int
    text: str


@dataclass
class Hit:
    """One search result: the entry, its BM25 score and HTML-safe snippets."""

    entry_id: str
    score: float
    snippets: list[str]


class SearchIndexError(Exception):
    """Base of the index's own failures; carries the tenant."""

    def __init__(self, tenant_id: str, message: str) -> None:
        super().__init__(message)
        self.tenant_id = tenant_id


class IndexMissing(SearchIndexError):
    """The tenant's index is absent, unreadable or outdated: rebuild it."""

    def __init__(self, tenant_id: str, reason: str = "no index") -> None:
        super().__init__(tenant_id, f"search index of tenant {tenant_id}: {reason}")


class IndexBusy(SearchIndexError):
    """Another writer (in any process) holds the tenant's index: retry shortly."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(tenant_id, f"search index of tenant {tenant_id} is being written")


def build_schema() -> tantivy.Schema:
    """The fields of every tenant's index."""
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("entry_id", stored=True, fast=True, tokenizer_name="raw")
    builder.add_text_field("home_dataset_id", fast=True, tokenizer_name="raw")
    builder.add_text_field("file_type", tokenizer_name="raw", index_option="basic")
    builder.add_text_field("name", stored=True, tokenizer_name=ANALYZER_NAME)
    builder.add_text_field("name_sort", fast=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("text", stored=True, tokenizer_name=ANALYZER_NAME)
    builder.add_date_field("created_at", stored=True)
    # Sorting uses microseconds: tantivy's date fast fields keep whole seconds only.
    builder.add_integer_field("created_at_us", fast=True)
    builder.add_unsigned_field("size", stored=True, fast=True)
    return builder.build()


@dataclass
class _OpenIndex:
    generation: str
    index: tantivy.Index


class SearchIndexes:
    """Every tenant's index under one root directory; safe to share between threads."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._schema = build_schema()
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _OpenIndex] = OrderedDict()

    # --- state -----------------------------------------------------------------

    def exists(self, tenant_id: str) -> bool:
        """Whether the tenant has a live generation on disk (it may still be corrupt)."""
        try:
            generation = self._current_generation(tenant_id)
        except IndexMissing:
            return False
        return (self._tenant_dir(tenant_id) / generation / "meta.json").is_file()

    def healthy(self, tenant_id: str) -> bool:
        """Whether the live generation opens from scratch, as a new process would."""
        try:
            self._open_generation(tenant_id, self._current_generation(tenant_id))
        except IndexMissing:
            return False
        return True

    def drop(self, tenant_id: str) -> None:
        """Remove the tenant's index entirely."""
        tenant_dir = self._tenant_dir(tenant_id)
        self._forget(tenant_id)
        shutil.rmtree(tenant_dir, ignore_errors=True)

    # --- searching ---------------------------------------------------------------

    def search(
        self,
        tenant_id: str,
        query: str,
        *,
        home_dataset_ids: Collection[str] | None,
        entry_ids: Collection[str] | None,
        file_types: Collection[str] | None,
        sort_by: str,
        sort_order: str,
        offset: int,
        limit: int,
    ) -> tuple[int, list[Hit]]:
        """One page of the entries matching a compiled query, and how many match.

        An entry must be in one of `home_dataset_ids` or one of `entry_ids` (when
        either is given; None means no restriction) and of one of `file_types`.
        Scores are BM25 whatever the sort. Raises IndexMissing, QuerySyntaxError
        (tantivy refused the compiled query) and ValueError (bad sort or page).
        """
        _check_page(sort_by, sort_order, offset, limit)
        filters = _filters(self._schema, home_dataset_ids, entry_ids, file_types)
        if filters is None:
            return 0, []
        index = self._index(tenant_id)
        searcher = index.searcher()
        matched = _parse(index, query)
        filtered = _filtered(matched, filters)
        if sort_by == "relevance":
            total, page = _relevance_page(searcher, filtered, sort_order, offset, limit)
        else:
            total, page = _field_page(searcher, filtered, sort_by, sort_order, offset, limit)
        documents = [searcher.doc(address) for _, address in page]
        if sort_by != "relevance":
            page = _with_scores(searcher, self._schema, matched, page, documents)
        highlighter = _Highlighter(searcher, self._schema, matched, query)
        hits = [
            Hit(_entry_id(document), float(score), highlighter.snippets(document))
            for (score, _), document in zip(page, documents, strict=True)
        ]
        return total, hits

    # --- writing -------------------------------------------------------------------

    def write(self, tenant_id: str, *, upserts: list[IndexedEntry], deletes: list[str]) -> None:
        """Apply upserts and deletes in one commit to the live generation.

        Raises IndexMissing (rebuild, which will include these changes) and
        IndexBusy (another writer holds the index: retry).
        """
        writer = _open_writer(self._index(tenant_id), tenant_id, WRITER_HEAP_BYTES, 1)
        try:
            for entry_id in deletes:
                writer.delete_documents_by_term("entry_id", entry_id)
            for entry in upserts:
                writer.delete_documents_by_term("entry_id", entry.entry_id)
                writer.add_document(_document(entry))
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        finally:
            # A writer dropped mid-merge throws the merge away, so segments would pile
            # up across many small commits; waiting usually costs nothing, now and then
            # a merge of large segments (about 1 s per 100 MB). It releases the lock.
            writer.wait_merging_threads()

    def rebuild(self, tenant_id: str, entries: Iterable[IndexedEntry]) -> int:
        """Build a new generation from `entries`, make it live, return how many it holds.

        While building, it holds the old generation's writer lock when it can, so a
        write racing the rebuild gets IndexBusy and is retried into the new
        generation rather than lost in the old one. `entries` must not repeat an id.
        """
        tenant_dir = self._tenant_dir(tenant_id)
        tenant_dir.mkdir(parents=True, exist_ok=True)
        with _rebuild_turn(tenant_dir):
            with self._old_generation_held(tenant_id):
                generation, count = self._build(tenant_dir, entries)
                _publish(tenant_dir, generation)
            _retire_old_generations(tenant_dir, generation)
        return count

    # --- generations -----------------------------------------------------------------

    def _tenant_dir(self, tenant_id: str) -> Path:
        if not _TENANT_ID.fullmatch(tenant_id):
            raise ValueError(f"not a usable tenant id: {tenant_id!r}")
        return self._root / tenant_id

    def _current_generation(self, tenant_id: str) -> str:
        try:
            generation = (self._tenant_dir(tenant_id) / "CURRENT").read_text().strip()
        except OSError as error:
            raise IndexMissing(tenant_id) from error
        if not _GENERATION.fullmatch(generation):
            raise IndexMissing(tenant_id, "CURRENT does not name a generation")
        return generation

    def _open_generation(self, tenant_id: str, generation: str) -> tantivy.Index:
        path = self._tenant_dir(tenant_id) / generation
        try:
            index = tantivy.Index.open(str(path))
        except ValueError as error:
            raise IndexMissing(tenant_id, str(error)) from error
        if index.schema != self._schema:
            raise IndexMissing(tenant_id, "built with another schema")
        index.register_tokenizer(ANALYZER_NAME, build_analyzer())
        # We reload before each search; tantivy's own policy would add a watcher thread.
        index.config_reader("manual")
        return index

    def _index(self, tenant_id: str) -> tantivy.Index:
        """The tenant's live index, reloaded to see every commit made so far."""
        try:
            return self._refreshed(tenant_id)
        except IndexMissing:
            # A rebuild elsewhere may have retired the generation just read: look again.
            return self._refreshed(tenant_id)

    def _refreshed(self, tenant_id: str) -> tantivy.Index:
        generation = self._current_generation(tenant_id)
        with self._lock:
            cached = self._open.get(tenant_id)
            if cached is None or cached.generation != generation:
                cached = _OpenIndex(generation, self._open_generation(tenant_id, generation))
                self._open[tenant_id] = cached
                if len(self._open) > MAX_OPEN_INDEXES:
                    self._open.popitem(last=False)
            self._open.move_to_end(tenant_id)
        try:
            cached.index.reload()
        except ValueError as error:
            self._forget(tenant_id)
            raise IndexMissing(tenant_id, str(error)) from error
        return cached.index

    def _forget(self, tenant_id: str) -> None:
        with self._lock:
            self._open.pop(tenant_id, None)

    @contextmanager
    def _old_generation_held(self, tenant_id: str) -> Iterator[None]:
        writer = self._old_generation_writer(tenant_id)
        try:
            yield
        finally:
            if writer is not None:
                writer.wait_merging_threads()

    def _old_generation_writer(self, tenant_id: str) -> tantivy.IndexWriter | None:
        try:
            index = self._index(tenant_id)
        except IndexMissing:
            return None
        deadline = time.monotonic() + REBUILD_LOCK_WAIT_SECONDS
        while True:
            try:
                return _open_writer(index, tenant_id, GUARD_HEAP_BYTES, 1)
            except IndexBusy:
                if time.monotonic() > deadline:
                    return None  # a stuck writer must not block the rebuild forever
                time.sleep(0.05)
            except IndexMissing:
                return None

    def _build(self, tenant_dir: Path, entries: Iterable[IndexedEntry]) -> tuple[str, int]:
        unique = f"{time.time_ns()}-{os.getpid()}-{threading.get_ident()}"
        building = tenant_dir / f"build-{unique}"
        building.mkdir()
        try:
            count = self._fill(building, entries)
            generation = f"gen-{unique}"
            building.rename(tenant_dir / generation)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        return generation, count

    def _fill(self, directory: Path, entries: Iterable[IndexedEntry]) -> int:
        index = tantivy.Index(self._schema, path=str(directory), reuse=False)
        index.register_tokenizer(ANALYZER_NAME, build_analyzer())
        writer = index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=REBUILD_THREADS)
        count = 0
        try:
            for entry in entries:
                writer.add_document(_document(entry))
                count += 1
            writer.commit()
        finally:
            writer.wait_merging_threads()
        return count


# --- files ------------------------------------------------------------------------


@contextmanager
def _rebuild_turn(tenant_dir: Path) -> Iterator[None]:
    """Rebuilds of one tenant, in any process, take turns."""
    with (tenant_dir / "REBUILD.lock").open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _publish(tenant_dir: Path, generation: str) -> None:
    staged = tenant_dir / f"CURRENT.{generation}"
    with staged.open("w") as current:
        current.write(generation + "\n")
        current.flush()
        os.fsync(current.fileno())
    os.replace(staged, tenant_dir / "CURRENT")


def _retire_old_generations(tenant_dir: Path, live: str) -> None:
    # Processes still reading a retired generation keep their open files (POSIX);
    # they switch to the live one on their next search.
    for child in tenant_dir.iterdir():
        retired = child.name.startswith("gen-") and child.name != live
        crashed_build = child.name.startswith("build-")
        if retired or crashed_build:
            shutil.rmtree(child, ignore_errors=True)
        elif child.name.startswith("CURRENT."):  # left by a crash mid-publish
            child.unlink(missing_ok=True)


def _open_writer(
    index: tantivy.Index, tenant_id: str, heap_bytes: int, threads: int
) -> tantivy.IndexWriter:
    try:
        return index.writer(heap_size=heap_bytes, num_threads=threads)
    except ValueError as error:
        if "LockBusy" in str(error):
            raise IndexBusy(tenant_id) from error
        raise IndexMissing(tenant_id, str(error)) from error


def _document(entry: IndexedEntry) -> tantivy.Document:
    document = tantivy.Document()
    document.add_text("entry_id", entry.entry_id)
    document.add_text("home_dataset_id", entry.home_dataset_id)
    document.add_text("file_type", entry.file_type)
    document.add_text("name", entry.name)
    document.add_text("name_sort", entry.name.lower())
    document.add_text("text", entry.text)
    created_at = _as_utc(entry.created_at)
    document.add_date("created_at", created_at)
    document.add_integer("created_at_us", (created_at - _EPOCH) // timedelta(microseconds=1))
    # A plain int would be stored as I64, which the unsigned fast field rejects.
    document.add_unsigned("size", entry.size)
    return document


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _entry_id(document: tantivy.Document) -> str:
    return str(document.get_first("entry_id"))


# --- queries ----------------------------------------------------------------------

_Page = list[tuple[float, tantivy.DocAddress]]


def _check_page(sort_by: str, sort_order: str, offset: int, limit: int) -> None:
    if sort_by != "relevance" and sort_by not in SORT_FIELDS:
        raise ValueError(f"cannot sort by {sort_by!r}")
    if sort_order not in SORT_ORDERS:
        raise ValueError(f"sort order must be asc or desc, not {sort_order!r}")
    if offset < 0 or limit < 1:
        raise ValueError("offset must be >= 0 and limit >= 1")


def _parse(index: tantivy.Index, compiled: str) -> tantivy.Query:
    try:
        return index.parse_query(
            compiled,
            list(SEARCHED_FIELDS),
            conjunction_by_default=True,
            allow_regexes=True,
        )
    except ValueError as error:
        raise QuerySyntaxError(f"the search engine refused the query: {error}", 0) from error


def _filters(
    schema: tantivy.Schema,
    home_dataset_ids: Collection[str] | None,
    entry_ids: Collection[str] | None,
    file_types: Collection[str] | None,
) -> list[tantivy.Query] | None:
    """The restrictions as queries, or None when they leave nothing to find."""
    filters: list[tantivy.Query] = []
    if home_dataset_ids is not None or entry_ids is not None:
        reachable = [
            tantivy.Query.term_set_query(schema, field, list(values))
            for field, values in (("home_dataset_id", home_dataset_ids), ("entry_id", entry_ids))
            if values
        ]
        if not reachable:
            return None
        filters.append(tantivy.Query.boolean_query([(tantivy.Occur.Should, q) for q in reachable]))
    if file_types is not None:
        if not file_types:
            return None
        filters.append(tantivy.Query.term_set_query(schema, "file_type", list(file_types)))
    return filters


def _filtered(matched: tantivy.Query, filters: list[tantivy.Query]) -> tantivy.Query:
    if not filters:
        return matched
    # Scored 0 so that a filtered search reports the same BM25 scores as an open one.
    clauses = [(tantivy.Occur.Must, matched)] + [
        (tantivy.Occur.Must, tantivy.Query.const_score_query(f, 0.0)) for f in filters
    ]
    return tantivy.Query.boolean_query(clauses)


def _relevance_page(
    searcher: tantivy.Searcher, query: tantivy.Query, sort_order: str, offset: int, limit: int
) -> tuple[int, _Page]:
    if sort_order == "desc":
        result = searcher.search(query, limit, count=True, offset=offset)
        return result.count, result.hits
    total = searcher.search(query, 1, count=True).count
    # Ascending relevance is the tail of the descending order, read backwards.
    end = total - offset
    if end <= 0:
        return total, []
    start = max(0, end - limit)
    hits = searcher.search(query, end - start, count=False, offset=start).hits
    return total, hits[::-1]


def _field_page(
    searcher: tantivy.Searcher,
    query: tantivy.Query,
    sort_by: str,
    sort_order: str,
    offset: int,
    limit: int,
) -> tuple[int, list[tuple[object, tantivy.DocAddress]]]:
    result = searcher.search(
        query,
        limit,
        count=True,
        order_by_field=SORT_FIELDS[sort_by],
        order=SORT_ORDERS[sort_order],
        offset=offset,
    )
    return result.count, result.hits


def _with_scores(
    searcher: tantivy.Searcher,
    schema: tantivy.Schema,
    matched: tantivy.Query,
    page: list[tuple[object, tantivy.DocAddress]],
    documents: list[tantivy.Document],
) -> _Page:
    """The page's BM25 scores, from a second search narrowed to the page's entries."""
    if not page:
        return []
    only_page = tantivy.Query.term_set_query(schema, "entry_id", [_entry_id(d) for d in documents])
    scored = tantivy.Query.boolean_query(
        [
            (tantivy.Occur.Must, matched),
            (tantivy.Occur.Must, tantivy.Query.const_score_query(only_page, 0.0)),
        ]
    )
    scores = {
        _address_key(address): score
        for score, address in searcher.search(scored, len(page), count=False).hits
    }
    return [(scores.get(_address_key(address), 0.0), address) for _, address in page]


def _address_key(address: tantivy.DocAddress) -> tuple[int, int]:
    return address.segment_ord, address.doc


# --- snippets ----------------------------------------------------------------------


class _Highlighter:
    """Snippets for one search: tantivy picks and marks fragments, we escape them."""

    def __init__(
        self,
        searcher: tantivy.Searcher,
        schema: tantivy.Schema,
        matched: tantivy.Query,
        compiled: str,
    ) -> None:
        terms, prefixes = terms_of(compiled)
        marked = _with_prefix_terms(searcher, schema, matched, prefixes)
        self._text = tantivy.SnippetGenerator.create(searcher, marked, schema, "text")
        self._text.set_max_num_chars(SNIPPET_BYTES)
        self._name = tantivy.SnippetGenerator.create(searcher, marked, schema, "name")
        self._needles = _needles(terms | prefixes)

    def snippets(self, document: tantivy.Document) -> list[str]:
        """Up to MAX_SNIPPETS fragments of the text, else the name if it matched."""
        text = str(document.get_first("text") or "").encode()
        fragments = _fragments(self._text, text, self._needles)
        if fragments:
            return fragments
        name = str(document.get_first("name") or "").encode()
        snippet = self._name.snippet_from_doc(document)
        if not snippet.highlighted():
            return []
        return [_render(snippet, name, snippet.fragment_range().start)]


def _with_prefix_terms(
    searcher: tantivy.Searcher,
    schema: tantivy.Schema,
    matched: tantivy.Query,
    prefixes: set[str],
) -> tantivy.Query:
    # Prefixes match through regexes, which give the snippet generator no terms to
    # mark; add the prefixes' commonest expansions (marking only, not matching).
    expansions = [
        tantivy.Query.term_query(schema, field, term)
        for prefix in sorted(prefixes)
        for field in SEARCHED_FIELDS
        for term, _ in searcher.terms_with_prefix(field, prefix, limit=HIGHLIGHT_EXPANSIONS)
    ]
    if not expansions:
        return matched
    clauses = [(tantivy.Occur.Should, q) for q in [matched, *expansions]]
    return tantivy.Query.boolean_query(clauses)


def _needles(terms: set[str]) -> tuple[bytes, ...]:
    """What to look for in lower-cased ASCII text wherever a query term can match."""
    return tuple(term.encode() for term in sorted(terms))


def _fragments(
    generator: tantivy.SnippetGenerator, text: bytes, needles: tuple[bytes, ...]
) -> list[str]:
    """The best fragments of `text`, most matches first, never overlapping.

    tantivy gives only the single best fragment of a text, so the text is cut into
    cells of two fragments' length and each cell is asked for its best. Only the
    first SNIPPET_SCAN_BYTES are read, which bounds the cost of a huge text.
    """
    end = _boundary(text, SNIPPET_SCAN_BYTES)
    found: list[tuple[int, int, tantivy.Snippet]] = []
    for cell in _cells_to_read(text, end, needles):
        start, stop = _cell(text, cell, end)
        stretch = tantivy.Document()
        stretch.add_text("text", text[start:stop].decode())
        snippet = generator.snippet_from_doc(stretch)
        marks = len(snippet.highlighted())
        if marks:
            found.append((-marks, start + snippet.fragment_range().start, snippet))
    best = sorted(found, key=lambda candidate: candidate[:2])[:MAX_SNIPPETS]
    return [_render(snippet, text, start) for _, start, snippet in best]


def _cells_to_read(text: bytes, end: int, needles: tuple[bytes, ...]) -> Iterable[int]:
    """The cells that can hold a match.

    Snippet generation holds the GIL, so it is spared cells that cannot match.
    For ASCII text the analyser only splits and lower-cases, so a cell where no
    query term occurs in the lower-cased bytes has nothing to mark; other text is
    read whole.
    """
    if not needles or not text.isascii():
        return range(-(-end // _CELL_BYTES))
    lowered = text[:end].lower()
    cells: set[int] = set()
    for needle in needles:
        found = lowered.find(needle)
        while found >= 0:
            cell = found // _CELL_BYTES
            if found >= _boundary(text, (cell + 1) * _CELL_BYTES):
                cell += 1
            cells.add(cell)
            found = lowered.find(needle, _cell(text, cell, end)[1])
    return sorted(cells)


def _cell(text: bytes, cell: int, end: int) -> tuple[int, int]:
    start = _boundary(text, cell * _CELL_BYTES)
    return min(start, end), min(_boundary(text, (cell + 1) * _CELL_BYTES), end)


def _boundary(text: bytes, position: int) -> int:
    """Where to cut near `position`: the last space or newline, else between characters."""
    if position >= len(text):
        return len(text)
    if position <= 0:
        return 0
    window = position - _CELL_BYTES // 2
    space = max(text.rfind(b" ", window, position), text.rfind(b"\n", window, position))
    if space > 0:
        return space
    while text[position] & 0xC0 == 0x80:  # a UTF-8 continuation byte
        position -= 1
    return position


def _render(snippet: tantivy.Snippet, text: bytes, start: int) -> str:
    """The fragment as HTML: its own markup escaped, only the matches in <mark>.

    tantivy's ranges are byte offsets into the UTF-8 fragment.
    """
    fragment = snippet.fragment().encode()
    parts = [_edge(text[:start]).lstrip()]
    cursor = 0
    for mark in sorted(snippet.highlighted(), key=lambda mark: mark.start):
        if mark.start < cursor:
            continue
        parts.append(_escaped(fragment[cursor : mark.start]))
        parts.append("<mark>" + _escaped(fragment[mark.start : mark.end]) + "</mark>")
        cursor = mark.end
    parts.append(_escaped(fragment[cursor:]))
    parts.append(_edge(text[start + len(fragment) :]).rstrip())
    return "".join(parts)


def _edge(rest: bytes) -> str:
    """What stands for the text beyond a fragment: an ellipsis, or its few symbols."""
    if len(rest) > _EDGE_BYTES or _WORD.search(rest.decode()):
        return "…"
    return _escaped(rest)


def _escaped(raw: bytes) -> str:
    return html.escape(raw.decode(), quote=True)
