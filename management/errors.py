"""Domain exceptions of logical databases, collections, import and export."""

from __future__ import annotations

from typing import Any

from app.errors import ErrorCode, QuarryError


class DatabaseNotFound(QuarryError):
    status_code = 404
    error_code = ErrorCode.DATABASE_NOT_FOUND

    def __init__(self, database_id: str) -> None:
        super().__init__(f"Database {database_id} not found.")


class DatabaseExists(QuarryError):
    status_code = 409
    error_code = ErrorCode.DATABASE_EXISTS

    def __init__(self, name: str) -> None:
        super().__init__(f"You already have a database named '{name}'.")


class DatabaseBusy(QuarryError):
    status_code = 409
    error_code = ErrorCode.DATABASE_BUSY
    message = "Another change to this database's collections is in progress; retry shortly."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class CollectionNotFound(QuarryError):
    status_code = 404
    error_code = ErrorCode.COLLECTION_NOT_FOUND

    def __init__(self, names: list[str]) -> None:
        quoted = ", ".join(f"'{name}'" for name in names)
        noun = "Collection" if len(names) == 1 else "Collections"
        super().__init__(
            f"{noun} {quoted} not found in this database.",
            details=[
                {"loc": ["collection_name"], "msg": f"no collection '{name}'", "type": "not_found"}
                for name in names
            ],
        )


class CollectionExists(QuarryError):
    status_code = 409
    error_code = ErrorCode.COLLECTION_EXISTS

    def __init__(self, names: list[str]) -> None:
        quoted = ", ".join(f"'{name}'" for name in names)
        super().__init__(f"This database already has a collection named {quoted}.")


class ConfirmationMismatch(QuarryError):
    status_code = 400
    error_code = ErrorCode.CONFIRMATION_MISMATCH

    def __init__(self, name: str) -> None:
        super().__init__(
            f"The confirmation must equal the database name exactly ('{name}'); "
            "nothing was dropped."
        )


class SchemaInvalid(QuarryError):
    status_code = 422
    error_code = ErrorCode.VALIDATION_ERROR

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__("The field schema is invalid, see details.", details=details)


class UniqueIndexConflict(QuarryError):
    status_code = 409
    error_code = ErrorCode.DUPLICATE_KEY

    def __init__(self, field: str, *, index: str | None = None) -> None:
        self.field = field
        self.index = index
        named = f" (index '{index}')" if index is not None else ""
        super().__init__(
            f"Field '{field}'{named} cannot be made unique: existing documents share values of it.",
            details=[{"loc": ["fields", field], "msg": "duplicate values", "type": "duplicate"}],
        )

    def with_removed(self, removed: list[str]) -> UniqueIndexConflict:
        """The same conflict, where the indexes in the new one's way could not be made
        again (a duplicate was written while they were dropped): they are gone from
        the engine and from the stored schema, and the answer says so."""
        conflict = UniqueIndexConflict(self.field, index=self.index)
        names = ", ".join(repr(name) for name in removed)
        conflict.message = (
            f"{conflict.message} The index{'es' if len(removed) > 1 else ''} {names} it "
            "replaced could not be made again (documents share values of it now) and "
            "was removed from the schema."
        )
        conflict.details = [
            *(conflict.details or []),
            *(
                {
                    "loc": ["indexes", name],
                    "msg": "removed: documents written meanwhile share values of its keys",
                    "type": "index_removed",
                }
                for name in removed
            ),
        ]
        return conflict


class InvalidImportFile(QuarryError):
    error_code = ErrorCode.INVALID_IMPORT_FILE

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


class ImportRecordsInvalid(QuarryError):
    """`on_error=abort` and some records fail the schema: nothing was inserted."""

    status_code = 422
    error_code = ErrorCode.VALIDATION_ERROR

    def __init__(self, *, invalid: int, total: int, details: list[dict[str, Any]]) -> None:
        record = "record" if invalid == 1 else "records"
        super().__init__(
            f"{invalid} of {total} {record} failed validation; nothing was imported "
            f"(details list the first {len(details)}).",
            details=details,
        )


class ImportDuplicateKey(QuarryError):
    status_code = 409
    error_code = ErrorCode.DUPLICATE_KEY

    def __init__(self, *, index: int, reason: str) -> None:
        super().__init__(
            f"Record {index} has a duplicate key ({reason}); the import was rolled back.",
            details=[{"index": index, "loc": [index, "_id"], "msg": reason, "type": "duplicate"}],
        )


class ImportRejected(QuarryError):
    """The database refused a record the schema accepted (e.g. too large for it)."""

    status_code = 422
    error_code = ErrorCode.VALIDATION_ERROR

    def __init__(self, *, index: int, reason: str) -> None:
        super().__init__(
            f"Record {index} was refused by the database ({reason}); the import was rolled back.",
            details=[{"index": index, "loc": [index], "msg": reason, "type": "rejected"}],
        )


class NotAnIndexKey(QuarryError):
    """Violations are listed and converted for the key fields of indexes only."""

    status_code = 422
    error_code = ErrorCode.VALIDATION_ERROR

    def __init__(self, field: str, collection: str) -> None:
        super().__init__(
            f"Field '{field}' is not a key of an index of collection '{collection}'; "
            "violations are those of indexed fields' declared types.",
            details=[{"loc": ["field"], "msg": "not an index key", "type": "not_indexed"}],
        )
