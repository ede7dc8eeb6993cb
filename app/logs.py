"""Logging set-up: readable text in development, one JSON object per line with
`QUARRY_LOG_FORMAT=json`, the request id on every record, and secrets scrubbed.

Code never logs bodies, headers or query strings; as a second line of defence
the `SecretScrubber` filter masks anything shaped like a JWT, a Quarry API key,
a bearer/api-key header value or a `password=` pair before a record is written.
No record opts out: not even the development outbox logs a link.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from app.kit import current_request_id
from app.settings import LogFormat, Settings

_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"), "[jwt redacted]"),
    (re.compile(r"qk_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{10,}"), "[api key redacted]"),
    (re.compile(r"(?i)\b(bearer|api-key)\s+[^\s,;]+"), r"\1 [redacted]"),
    (re.compile(r"(?i)\b(password|secret|token|key)=(?!\[)[^\s&,;]+"), r"\1=[redacted]"),
    (re.compile(r"(?<=://)[^:/\s@]+:[^@\s]+(?=@)"), "[credentials redacted]"),
]


def scrub(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


class SecretScrubber(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s")

    def formatException(self, ei: object) -> str:
        return scrub(super().formatException(ei))  # type: ignore[arg-type]


def configure_logging(settings: Settings) -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("quarry")
    handler.setFormatter(
        JsonFormatter() if settings.log_format is LogFormat.json else TextFormatter()
    )
    handler.addFilter(RequestIdFilter())
    handler.addFilter(SecretScrubber())

    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "quarry":
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # uvicorn's access log prints query strings (which may hold tokens); ours does not.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("pymongo").setLevel(logging.WARNING)
