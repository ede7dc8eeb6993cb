"""Name rules of conventions.md: database and collection names, field names.

Database and collection names match `^[A-Za-z][A-Za-z0-9_]{0,62}$` and do not
start with `system` (MongoDB reserves `system.*`); anything else is 422
`INVALID_NAME` saying the rule. Field names (in schemas and in documents, at any
depth) are non-empty, at most 255 characters, contain no `.` and no NUL and do
not start with `$` — which also keeps operators out of stored documents.
"""

from __future__ import annotations

import re

from app.errors import ErrorCode, QuarryError

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
NAME_RULE = (
    "a letter followed by up to 62 letters, digits or underscores, not starting with 'system'"
)
MAX_FIELD_NAME = 255


class InvalidName(QuarryError):
    status_code = 422
    error_code = ErrorCode.INVALID_NAME


def name_problem(value: object) -> str | None:
    """Why `value` is not a database/collection name, or None when it is one."""
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        return f"must be {NAME_RULE}"
    if value.lower().startswith("system"):
        return "must not start with 'system'"
    return None


def check_name(value: str, *, kind: str) -> str:
    """Return `value` or raise `InvalidName` (`kind`: "database" or "collection")."""
    problem = name_problem(value)
    if problem is not None:
        raise InvalidName(
            f"Invalid {kind} name {value!r}: a {kind} name {problem}.",
            details=[{"loc": [kind], "msg": problem, "type": "invalid_name"}],
        )
    return value


def field_name_problem(key: str) -> str | None:
    """Why `key` cannot be a document or schema field name, or None."""
    if not key:
        return "field names must not be empty"
    if len(key) > MAX_FIELD_NAME:
        return f"field names are at most {MAX_FIELD_NAME} characters"
    if key[0] == "$":
        return "field names must not start with '$'"
    if "." in key:
        return "field names must not contain '.'"
    if "\x00" in key:
        return "field names must not contain NUL"
    return None
