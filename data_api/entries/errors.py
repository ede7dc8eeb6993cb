"""Domain exceptions of entries and their downloads (`spec/entries.md`)."""

from __future__ import annotations

from app.errors import ErrorCode, QuarryError


class EntryNotFound(QuarryError):
    """No such entry, or the caller cannot read it (existence is never revealed)."""

    status_code = 404
    error_code = ErrorCode.ENTRY_NOT_FOUND
    message = "Entry not found."


class TextNotReady(QuarryError):
    status_code = 409
    error_code = ErrorCode.TEXT_NOT_READY
    message = "The entry's text is still being extracted; retry shortly."


class UnsupportedMediaType(QuarryError):
    status_code = 415
    error_code = ErrorCode.UNSUPPORTED_MEDIA_TYPE
    message = "Upload files as multipart/form-data."


class EntryTooLarge(QuarryError):
    status_code = 413
    error_code = ErrorCode.PAYLOAD_TOO_LARGE

    def __init__(self, limit: int) -> None:
        super().__init__(f"A file may be at most {limit} bytes (QUARRY_MAX_ENTRY_BYTES).")


class RangeNotSatisfiable(QuarryError):
    status_code = 416
    error_code = ErrorCode.RANGE_NOT_SATISFIABLE

    def __init__(self, size: int) -> None:
        super().__init__(
            f"The range is outside the file's {size} bytes.",
            headers={"Content-Range": f"bytes */{size}"},
        )


class EntryValidationError(QuarryError):
    status_code = 422
    error_code = ErrorCode.VALIDATION_ERROR

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(msg, details=[{"loc": loc, "msg": msg, "type": "value_error"}])


class UploadAbandoned(QuarryError):
    """The upload paused for longer than maintenance waits, which removed it."""

    status_code = 408
    error_code = ErrorCode.UPLOAD_STALLED
    message = "The upload stalled and was given up; send it again."
