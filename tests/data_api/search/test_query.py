"""The keyword-search query language: grammar, error positions, and the tantivy text it emits."""

from __future__ import annotations

from typing import Any

import pytest
import tantivy

from data_api.search.query import QuerySyntaxError, compile_query, terms_of


def leaves(ast: Any) -> list[dict[str, Any]]:
    """Every leaf of tantivy's parse of a compiled query."""
    if isinstance(ast, list | tuple):
        return [leaf for part in ast for leaf in leaves(part)]
    if isinstance(ast, dict):
        if ast.get("type") in {"bool", "boost"} or "clauses" in ast:
            return [leaf for value in ast.values() for leaf in leaves(value)]
        return [ast]
    return []


def syntax_error(text: str) -> QuerySyntaxError:
    with pytest.raises(QuerySyntaxError) as caught:
        compile_query(text)
    return caught.value


def test_words_become_required_quoted_terms() -> None:
    assert compile_query("revenue forecast") == '(+"revenue" +"forecast")'


def test_a_single_word_is_one_quoted_term() -> None:
    assert compile_query("revenue") == '"revenue"'


def test_lower_case_keywords_are_plain_words() -> None:
    assert compile_query("rock and roll or not") == '(+"rock" +"and" +"roll" +"or" +"not")'


def test_or_binds_tighter_than_juxtaposition() -> None:
    assert compile_query("revenue forecast OR budget") == '(+"revenue" +("forecast" OR "budget"))'


def test_and_binds_tighter_than_or() -> None:
    assert compile_query("big AND bad OR wolf") == '((+"big" +"bad") OR "wolf")'


def test_not_excludes_inside_the_conjunction() -> None:
    assert compile_query("revenue NOT cafe") == '(+"revenue" -"cafe")'


def test_parenthesised_not_is_lifted_into_the_conjunction() -> None:
    assert compile_query("revenue (NOT cafe)") == '(+"revenue" -"cafe")'


def test_not_applies_to_a_group() -> None:
    assert compile_query("NOT (a OR b) c") == '(-("a" OR "b") +"c")'


def test_a_phrase_stays_one_quoted_phrase() -> None:
    assert compile_query('"big bad" wolf') == '(+"big bad" +"wolf")'


def test_keywords_inside_a_phrase_are_text() -> None:
    assert compile_query('"rock AND roll"') == '"rock AND roll"'


@pytest.mark.parametrize(
    "text",
    [
        "size:[0 TO 99]",
        "entry_id:x",
        "text:foo",
        "name:secret^10",
        "fuzzy~2",
        "+must -mustnot",
        "{a TO b}",
        "a:b e-mail",
        "IN [x y]",
    ],
)
def test_tantivy_syntax_in_words_reaches_tantivy_only_as_text(text: str) -> None:
    found = leaves(tantivy.parse_query(compile_query(text)))
    assert found
    for leaf in found:
        assert leaf["type"] == "literal"
        assert leaf["field_name"] is None
        assert leaf["prefix"] is False


def test_backslashes_and_quotes_are_escaped() -> None:
    (leaf,) = leaves(tantivy.parse_query(compile_query("C:\\temp\\")))
    assert leaf["phrase"] == "C:\\temp\\"


def test_single_word_prefix_becomes_a_regex_on_each_searched_field() -> None:
    assert compile_query("Forec*") == "(name:/forec.*/ OR text:/forec.*/)"


def test_prefix_is_folded_like_the_indexed_text() -> None:
    assert compile_query("CAFÉ*") == "(name:/cafe.*/ OR text:/cafe.*/)"


def test_prefix_of_several_terms_becomes_a_phrase_prefix() -> None:
    assert compile_query("e-mai*") == '"e-mai"*'


def test_terms_of_separates_terms_and_prefixes() -> None:
    terms, prefixes = terms_of(compile_query('forec* e-mai* "Plain Café" NOT other'))
    assert terms == {"e", "plain", "cafe", "other"}
    assert prefixes == {"forec", "mai"}


def test_terms_of_ignores_phrases_that_look_like_regexes() -> None:
    assert terms_of(compile_query('"/forec.*/ x*"')) == ({"forec", "x"}, set())


def test_words_without_letters_or_digits_are_dropped() -> None:
    assert compile_query("revenue & costs") == '(+"revenue" +"costs")'


def test_query_of_500_characters_is_accepted() -> None:
    text = ("ab " * 167)[:500]
    assert compile_query(text) == "(" + " ".join(['+"ab"'] * 167) + ")"


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 0, "empty query"),
        ("   ", 0, "empty query"),
        ("a" * 501, 500, "query longer than 500 characters"),
        ("(revenue", 0, "unbalanced parenthesis at position 0"),
        ("revenue)", 7, "unbalanced parenthesis at position 7"),
        (")", 0, "unbalanced parenthesis at position 0"),
        ("(a (b)", 0, "unbalanced parenthesis at position 0"),
        ("()", 0, "empty parentheses at position 0"),
        ('big "bad wolf', 4, "unterminated quote starting at position 4"),
        ('a "" b', 2, "empty phrase at position 2"),
        ("revenue AND", 8, "AND at position 8 needs a term on both sides"),
        ("AND revenue", 0, "AND at position 0 needs a term on both sides"),
        ("a OR AND b", 2, "OR at position 2 needs a term on both sides"),
        ("(a OR) b", 3, "OR at position 3 needs a term on both sides"),
        ("revenue NOT", 8, "NOT at position 8 needs a term after it"),
        ("a NOT NOT b", 2, "NOT at position 2 needs a term after it"),
        ("NOT revenue", 0, "a query needs at least one term that is not excluded by NOT"),
        ("NOT a NOT b", 0, "a query needs at least one term that is not excluded by NOT"),
        ("a OR NOT b", 5, "not excluded by NOT (the part at position 5 has none)"),
        ("a AND (b OR NOT c)", 12, "not excluded by NOT (the part at position 12 has none)"),
        ("!!! &&", 0, "the query has no letters or digits to search for"),
        ("f*", 1, "a prefix needs at least 2 letters or digits before * at position 1"),
        ("ab-c*", 4, "a prefix needs at least 2 letters or digits before * at position 4"),
        ("*", 0, "a prefix needs at least 2 letters or digits before * at position 0"),
        ("fo*o", 2, "* at position 2 is only allowed at the end of a word"),
        ("(" * 21 + "a" + ")" * 21, 20, "parentheses nested more than 20 deep at position 20"),
    ],
)
def test_syntax_errors_say_where(text: str, position: int, message: str) -> None:
    error = syntax_error(text)
    assert error.position == position
    assert message in error.message
    assert str(error) == error.message


def test_syntax_error_is_a_value_error() -> None:
    assert isinstance(syntax_error("(a"), ValueError)
