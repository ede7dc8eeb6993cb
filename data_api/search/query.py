"""The keyword-search query language (spec/entries.md, "Keyword search").

Users write words (all must match), upper-case `AND` / `OR` / `NOT`, parentheses,
`"quoted phrases"` and `word*` prefixes. This module checks that grammar, reports
errors at a position in the user's string, and rewrites the query into tantivy's
own query syntax, which tantivy then parses, matches and ranks: we own the grammar
and its error messages, tantivy owns matching. Every user word is emitted as a
quoted, escaped term, so nothing a user types can reach tantivy's field, range,
boost or fuzzy syntax. It also owns the text analysis both sides share (the
folding analyzer and the fields a query searches), because a query must be cut
into terms exactly the way the indexed text was.

Precedence, tightest first: `NOT`, `AND`, `OR`, then juxtaposition (which means
"all of these"), so `revenue forecast OR budget` is `revenue AND (forecast OR
budget)` — the same reading tantivy gives its own syntax.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import tantivy

MAX_QUERY_LENGTH = 500
MIN_PREFIX_CHARS = 2
MAX_NESTING = 20
# The name is part of the index schema: change it whenever the analysis changes,
# and every stored index stops matching the schema and is rebuilt.
ANALYZER_NAME = "quarry_fold_v1"
SEARCHED_FIELDS = ("name", "text")
_KEYWORDS = {"AND": "and", "OR": "or", "NOT": "not"}
_TRAILING_ALNUM = re.compile(r"[^\W_]+$")


class QuerySyntaxError(ValueError):
    """A query that does not follow the language; `position` is a 0-based index."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


def build_analyzer() -> tantivy.TextAnalyzer:
    """Split on non-alphanumerics, drop huge tokens, lower-case, strip accents."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .build()
    )


_ANALYZER = build_analyzer()


def analyze(text: str) -> list[str]:
    """The terms `text` is indexed and searched as."""
    return _ANALYZER.analyze(text)


# --- lexing -----------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # word, prefix, phrase, and, or, not, open, close
    text: str
    position: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
        elif char in "()":
            tokens.append(_Token("open" if char == "(" else "close", char, index))
            index += 1
        elif char == '"':
            token, index = _phrase(text, index)
            tokens.append(token)
        else:
            token, index = _word(text, index)
            tokens.append(token)
    return tokens


def _phrase(text: str, start: int) -> tuple[_Token, int]:
    end = text.find('"', start + 1)
    if end < 0:
        raise QuerySyntaxError(f"unterminated quote starting at position {start}", start)
    content = text[start + 1 : end]
    if not content.strip():
        raise QuerySyntaxError(f"empty phrase at position {start}", start)
    return _Token("phrase", content, start), end + 1


def _word(text: str, start: int) -> tuple[_Token, int]:
    end = start
    while end < len(text) and not text[end].isspace() and text[end] not in '()"':
        end += 1
    word = text[start:end]
    if word in _KEYWORDS:
        return _Token(_KEYWORDS[word], word, start), end
    star = word.find("*")
    if star < 0:
        return _Token("word", word, start), end
    if star != len(word) - 1:
        raise QuerySyntaxError(
            f"* at position {start + star} is only allowed at the end of a word", start + star
        )
    stem = word[:-1]
    trailing = _TRAILING_ALNUM.search(stem)
    if trailing is None or len(trailing.group()) < MIN_PREFIX_CHARS:
        raise QuerySyntaxError(
            f"a prefix needs at least {MIN_PREFIX_CHARS} letters or digits before * "
            f"at position {start + star}",
            start + star,
        )
    return _Token("prefix", stem, start), end


# --- parsing ----------------------------------------------------------------


@dataclass(frozen=True)
class _Term:
    text: str
    prefix: bool
    position: int


@dataclass(frozen=True)
class _Not:
    operand: _Node
    position: int


@dataclass(frozen=True)
class _All:
    items: tuple[_Node, ...]
    position: int


@dataclass(frozen=True)
class _Any:
    alternatives: tuple[_Node, ...]
    position: int


_Node = _Term | _Not | _All | _Any
_BINARY = {"and", "or"}


class _Parser:
    """Recursive descent over the tokens; it only builds the tree and reports errors."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._next = 0
        self._depth = 0

    def parse(self) -> _Node:
        node = self._sequence()
        stray = self._peek()
        if stray is not None:
            raise _unbalanced(stray.position)
        return node

    def _peek(self) -> _Token | None:
        return self._tokens[self._next] if self._next < len(self._tokens) else None

    def _take(self) -> _Token:
        token = self._tokens[self._next]
        self._next += 1
        return token

    def _sequence(self) -> _Node:
        position = self._tokens[self._next].position
        items: list[_Node] = []
        while (token := self._peek()) is not None and token.kind != "close":
            items.append(self._disjunction())
        if not items:  # only a ")" can end a sequence before it starts
            raise _unbalanced(position)
        return items[0] if len(items) == 1 else _All(tuple(items), position)

    def _disjunction(self) -> _Node:
        first = self._conjunction()
        alternatives = [first]
        while (token := self._peek()) is not None and token.kind == "or":
            self._operator_with_right_side()
            alternatives.append(self._conjunction())
        if len(alternatives) == 1:
            return first
        return _Any(tuple(alternatives), first.position)

    def _conjunction(self) -> _Node:
        first = self._unary()
        items = [first]
        while (token := self._peek()) is not None and token.kind == "and":
            self._operator_with_right_side()
            items.append(self._unary())
        return first if len(items) == 1 else _All(tuple(items), first.position)

    def _operator_with_right_side(self) -> None:
        operator = self._take()
        following = self._peek()
        if following is None or following.kind in _BINARY or following.kind == "close":
            raise _needs_both_sides(operator)

    def _unary(self) -> _Node:
        token = self._peek()
        if token is not None and token.kind in _BINARY:
            raise _needs_both_sides(token)
        if token is not None and token.kind == "not":
            self._take()
            following = self._peek()
            if following is None or following.kind in {"and", "or", "not", "close"}:
                raise QuerySyntaxError(
                    f"NOT at position {token.position} needs a term after it", token.position
                )
            return _Not(self._primary(), token.position)
        return self._primary()

    def _primary(self) -> _Node:
        token = self._take()
        if token.kind == "open":
            return self._group(token)
        return _Term(token.text, token.kind == "prefix", token.position)

    def _group(self, opening: _Token) -> _Node:
        following = self._peek()
        if following is None:
            raise _unbalanced(opening.position)
        if following.kind == "close":
            raise QuerySyntaxError(
                f"empty parentheses at position {opening.position}", opening.position
            )
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise QuerySyntaxError(
                f"parentheses nested more than {MAX_NESTING} deep at position {opening.position}",
                opening.position,
            )
        inner = self._sequence()
        self._depth -= 1
        if self._peek() is None:
            raise _unbalanced(opening.position)
        self._take()
        return inner


def _unbalanced(position: int) -> QuerySyntaxError:
    return QuerySyntaxError(f"unbalanced parenthesis at position {position}", position)


def _needs_both_sides(operator: _Token) -> QuerySyntaxError:
    return QuerySyntaxError(
        f"{operator.text} at position {operator.position} needs a term on both sides",
        operator.position,
    )


# --- checking what a query can match ---------------------------------------


class _Reach(Enum):
    """What a part of the query does to the result set."""

    MATCHES = "matches"  # has a term that must or may match
    EXCLUDES = "excludes"  # only removes documents
    NOTHING = "nothing"  # only terms without letters or digits, which tantivy drops


def _reach(node: _Node) -> _Reach:
    """Classify a part; raise where a part would only exclude, which cannot rank."""
    if isinstance(node, _Term):
        return _Reach.MATCHES if analyze(node.text) else _Reach.NOTHING
    if isinstance(node, _Not):
        return _Reach.NOTHING if _reach(node.operand) is _Reach.NOTHING else _Reach.EXCLUDES
    if isinstance(node, _All):
        reaches = [_reach(item) for item in node.items]
        if _Reach.MATCHES in reaches:
            return _Reach.MATCHES
        if _Reach.EXCLUDES in reaches:
            raise _only_excluding(node.position)
        return _Reach.NOTHING
    reaches = [_reach(alternative) for alternative in node.alternatives]
    for alternative, reach in zip(node.alternatives, reaches, strict=True):
        if reach is _Reach.EXCLUDES:
            raise _only_excluding(alternative.position)
    return _Reach.MATCHES if _Reach.MATCHES in reaches else _Reach.NOTHING


def _only_excluding(position: int) -> QuerySyntaxError:
    message = "a query needs at least one term that is not excluded by NOT"
    if position > 0:
        message += f" (the part at position {position} has none)"
    return QuerySyntaxError(message, position)


# --- emitting tantivy syntax ------------------------------------------------


def _emit(node: _Node) -> str | None:
    """tantivy syntax for a part, or None for a part tantivy would drop anyway."""
    if isinstance(node, _Term):
        return _emit_term(node)
    if isinstance(node, _All):
        return _joined([_emit_required(item) for item in node.items], " ")
    if isinstance(node, _Any):
        return _joined([_emit(alternative) for alternative in node.alternatives], " OR ")
    raise AssertionError("NOT outside a conjunction is rejected by _reach")


def _emit_required(node: _Node) -> str | None:
    # Explicit +/- occurs, so the meaning does not depend on the parser's defaults.
    if isinstance(node, _Not):
        operand = _emit(node.operand)
        return None if operand is None else "-" + operand
    emitted = _emit(node)
    return None if emitted is None else "+" + emitted


def _joined(parts: list[str | None], separator: str) -> str | None:
    kept = [part for part in parts if part is not None]
    return "(" + separator.join(kept) + ")" if kept else None


def _emit_term(term: _Term) -> str | None:
    terms = analyze(term.text)
    if not terms:
        return None
    if not term.prefix:
        return _quoted(term.text)
    if len(terms) > 1:
        # tantivy's phrase prefix: the earlier terms exactly, the last as a prefix.
        return _quoted(term.text) + "*"
    # tantivy's phrase prefix needs two terms, so a single-word prefix is a regex
    # on the analysed term, one per searched field (regexes cannot use defaults).
    pattern = _regex_literal(terms[0]) + ".*"
    return "(" + " OR ".join(f"{field}:/{pattern}/" for field in SEARCHED_FIELDS) + ")"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _regex_literal(term: str) -> str:
    # Folding can turn a symbol such as "⑴" into "(1)": escape ASCII punctuation.
    return "".join("\\" + char if char.isascii() and not char.isalnum() else char for char in term)


# --- public -------------------------------------------------------------------


def compile_query(text: str) -> str:
    """Check a user query and rewrite it into tantivy query syntax.

    Raises QuerySyntaxError (with the position in `text`) when the query is
    empty, too long, or does not follow the grammar.
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(f"query longer than {MAX_QUERY_LENGTH} characters", MAX_QUERY_LENGTH)
    tokens = _tokenize(text)
    if not tokens:
        raise QuerySyntaxError("empty query", 0)
    tree = _Parser(tokens).parse()
    reach = _reach(tree)
    if reach is _Reach.EXCLUDES:
        raise _only_excluding(0)
    compiled = _emit(tree)
    if reach is _Reach.NOTHING or compiled is None:
        raise QuerySyntaxError("the query has no letters or digits to search for", 0)
    return compiled


def terms_of(compiled: str) -> tuple[set[str], set[str]]:
    """The analysed terms and the term prefixes a compiled query mentions, for snippets.

    Read from tantivy's own parse of the compiled query, so a phrase that merely
    contains `*` or `/` is not mistaken for a prefix.
    """
    terms: set[str] = set()
    prefixes: set[str] = set()
    for term, is_prefix in _terms_in(tantivy.parse_query(compiled)):
        (prefixes if is_prefix else terms).add(term)
    return terms, prefixes


def _terms_in(ast: Any) -> Iterator[tuple[str, bool]]:
    if isinstance(ast, list | tuple):
        for part in ast:
            yield from _terms_in(part)
    elif isinstance(ast, dict):
        if ast.get("type") == "regex":
            yield ast["pattern"].removesuffix(".*").replace("\\", ""), True
        elif ast.get("type") == "literal":
            terms = analyze(ast["phrase"])
            for position, term in enumerate(terms):
                yield term, bool(ast.get("prefix")) and position == len(terms) - 1
        else:
            for value in ast.values():
                yield from _terms_in(value)
