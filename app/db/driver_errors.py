"""What a driver error means: a duplicate key (and on which index), a server going
away, an outcome the client cannot know, a capability the engine lacks.

MongoDB and the embedded engine (FerretDB on PostgreSQL or SQLite) word the same
failures differently; these checks read both, so services can ask "was this a
duplicate key?" without knowing which engine answered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

#: Server answers that mean "the database is going away or changing hands", not a bug.
TRANSIENT_SERVER_CODES = {6, 7, 89, 91, 189, 10107, 11600, 11602, 13435, 13436}


def outcome_unknown(exc: PyMongoError) -> bool:
    """Whether a failed operation may still have been, or still be being, carried out:
    the connection failed (or timed out) while the server may have been working, or
    the server went away mid-operation."""
    if isinstance(exc, ConnectionFailure):
        return True
    return isinstance(exc, OperationFailure) and is_transient(exc)


def is_transient(exc: OperationFailure) -> bool:
    """The server is going away or busy: a shutdown code, the embedded engine's answer
    to an operation still running when it stops (InternalError "context canceled"),
    or its SQLite backend's write lock held by another write (SQLITE_BUSY)."""
    if exc.code in TRANSIENT_SERVER_CODES:
        return True
    text = str(exc)
    return exc.code == 1 and ("context canceled" in text or "SQLITE_BUSY" in text)


#: Server error codes that mean a duplicate key (MongoDB's; the embedded engine also
#: answers some with InternalError naming the SQLite UNIQUE constraint or
#: PostgreSQL's unique_violation, SQLSTATE 23505).
DUPLICATE_KEY_CODES = {11000, 11001}
NOT_IMPLEMENTED_CODE = 238
#: The index named in a duplicate-key message: MongoDB's `index: NAME dup key`,
#: FerretDB-on-SQLite's `UNIQUE constraint failed: index 'TABLE_NAME'` and
#: FerretDB-on-PostgreSQL's `violates unique constraint "TABLE_NAME_HASH_idx"`.
_DUPLICATE_INDEX = re.compile(
    r"index: (\S+) dup key|UNIQUE constraint failed: index '([^']+)'"
    r'|violates unique constraint "([^"]+)"'
)


def is_too_many_parameters(exc: OperationFailure) -> bool:
    """The embedded engine deletes matched documents in one SQL statement with a bound
    parameter per document: SQLite refuses more than 32,766, PostgreSQL's protocol
    more than 65,535, and nothing is deleted."""
    text = str(exc)
    return "too many SQL variables" in text or "extended protocol limited to" in text


def is_duplicate_key_message(code: object, message: str) -> bool:
    return (
        code in DUPLICATE_KEY_CODES or "UNIQUE constraint" in message or "SQLSTATE 23505" in message
    )


def is_duplicate_key(exc: OperationFailure) -> bool:
    return is_duplicate_key_message(exc.code, str(exc))


def duplicate_index(message: str, index_names: Iterable[str]) -> str | None:
    """Which of `index_names` a duplicate-key message names (the longest that fits:
    the engines decorate index names with table names and hashes)."""
    match = _DUPLICATE_INDEX.search(message)
    if match is None:
        return None
    raw = next(group for group in match.groups() if group)
    fitting = [
        name
        for name in index_names
        if raw == name or raw.endswith("_" + name) or f"_{name}_" in raw
    ]
    return max(fitting, key=len, default=None)


def engine_message(exc: OperationFailure) -> str:
    """The server's own one-line message, without the driver's "full error" dump."""
    details = exc.details or {}
    message = str(details.get("errmsg") or exc).split(", full error:")[0].strip()
    return message[:300]
