"""The limits every regular expression a client sends goes through, however it
is spelled: a filter's `$regex` (+ `$options`), an Extended JSON
`{"$regularExpression": {"pattern", "options"}}` value (in a filter, inside
`$in`/`$nin`/`$all`, on a dotted path or an untyped field, in a document), and the
`regex` of `$regexMatch`/`$regexFind`/`$regexFindAll` in a pipeline.

The engine evaluates patterns for every tenant on one server, so a pattern is
refused when it is longer than `MAX_REGEX` characters, uses options other than
`imsx`, or nests quantifiers (`(a+)+`, `(a*)*`, `(\\w+\\s?)*`), the cheap-to-spot
shape of catastrophic backtracking, which takes exponential time on a
non-matching input.
"""

from __future__ import annotations

import re

MAX_REGEX = 512
REGEX_OPTIONS = frozenset("imsx")
_QUANTIFIER = r"(?:[+*]|\{\d+,\d*\})"
#: A group that holds a quantifier, itself quantified.
_NESTED_QUANTIFIER = re.compile(
    r"\((?:[^()\\]|\\.)*" + _QUANTIFIER + r"(?:[^()\\]|\\.)*\)" + _QUANTIFIER
)


def regex_problem(pattern: object, options: object = "") -> str | None:
    """Why this pattern is refused, or None."""
    if not isinstance(pattern, str):
        return "needs a string pattern"
    if len(pattern) > MAX_REGEX:
        return f"is longer than {MAX_REGEX} characters"
    if not isinstance(options, str) or set(options) - REGEX_OPTIONS:
        return "takes only the options i, m, s and x"
    if _NESTED_QUANTIFIER.search(pattern):
        return "nests quantifiers (like (a+)+), which can take exponential time"
    return None
