"""Domain exceptions of datasets, tags, shares and items (`spec/datasets.md`)."""

from __future__ import annotations

from app.errors import ErrorCode, QuarryError


class DatasetNotFound(QuarryError):
    """No such dataset, or the caller has no level on it (existence is never revealed)."""

    status_code = 404
    error_code = ErrorCode.DATASET_NOT_FOUND
    message = "Dataset not found."


class InsufficientPermission(QuarryError):
    status_code = 403
    error_code = ErrorCode.INSUFFICIENT_PERMISSION

    def __init__(self, needed: str) -> None:
        super().__init__(f"This needs the {needed} permission on the dataset.")
        self.needed = needed


class NoValidEntries(QuarryError):
    status_code = 400
    error_code = ErrorCode.NO_VALID_ENTRIES
    message = "None of the entry ids names an entry you can read."


class NotInSource(QuarryError):
    status_code = 400
    error_code = ErrorCode.NOT_IN_SOURCE

    def __init__(self, ids: list[str]) -> None:
        super().__init__(
            f"{len(ids)} entry id(s) are not items of the source dataset.",
            details=[{"loc": ["entry_ids"], "msg": i, "type": "not_in_source"} for i in ids],
        )


class TagNotFound(QuarryError):
    status_code = 404
    error_code = ErrorCode.TAG_NOT_FOUND
    message = "Tag not found."


class TagExists(QuarryError):
    status_code = 409
    error_code = ErrorCode.TAG_EXISTS
    message = "A tag with this name exists."


class InvalidTagSecret(QuarryError):
    """Wrong or missing secret of a private tag — or no such tag: the same answer."""

    status_code = 403
    error_code = ErrorCode.INVALID_TAG_SECRET
    message = "The tag does not exist or the secret is wrong."


class ShareExists(QuarryError):
    status_code = 409
    error_code = ErrorCode.SHARE_EXISTS
    message = "This user already has access to the dataset through a share or as its owner."


class ShareNotFound(QuarryError):
    status_code = 404
    error_code = ErrorCode.SHARE_NOT_FOUND
    message = "Share not found."


class UserNotFound(QuarryError):
    status_code = 404
    error_code = ErrorCode.USER_NOT_FOUND
    message = "No user with this id or email."


class DatasetValidationError(QuarryError):
    """A well-formed request the rules refuse (expiry out of range, nothing to change)."""

    status_code = 422
    error_code = ErrorCode.VALIDATION_ERROR

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(msg, details=[{"loc": loc, "msg": msg, "type": "value_error"}])


class PlatformAdminOnly(QuarryError):
    status_code = 403
    error_code = ErrorCode.INSUFFICIENT_PERMISSION
    message = "Only platform administrators may do this."


class FilterRequired(QuarryError):
    status_code = 400
    error_code = ErrorCode.FILTER_REQUIRED
    message = "Give at least one metadata filter, e.g. ?year=2024."
