"""A `multipart/form-data` body read as it arrives, part by part (RFC 7578).

Starlette's form parser spools every file to a temporary file before the handler
runs, so a handler cannot refuse a file at the byte where it passes a limit, nor
write it on to its store while it arrives. `read_multipart` yields the parts as
events instead: `Field` (a small text field, whole), `FileStart`, `FileData`
(the bytes that just arrived) and `FileEnd`. The streaming parser is
python-multipart's, the one Starlette itself uses.

Limits: a text field is at most `max_field_bytes` (422 beyond), a part's headers
are bounded by the parser, at most `max_parts` parts. A malformed body is a 400;
a body that is not multipart at all is the caller's 415 to raise.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import unquote

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app.errors import ErrorCode, QuarryError


class MalformedMultipart(QuarryError):
    status_code = 400
    error_code = ErrorCode.BAD_REQUEST
    message = "The multipart body is malformed."


class MultipartLimit(QuarryError):
    status_code = 422
    error_code = ErrorCode.VALIDATION_ERROR


@dataclass(frozen=True)
class Field:
    name: str
    value: str


@dataclass(frozen=True)
class FileStart:
    name: str
    filename: str
    declared_type: str


@dataclass(frozen=True)
class FileData:
    data: bytes


@dataclass(frozen=True)
class FileEnd:
    pass


Event = Field | FileStart | FileData | FileEnd


def multipart_boundary(content_type: str | None) -> bytes | None:
    """The boundary of a `multipart/form-data` content type, else None."""
    if not content_type:
        return None
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return None
    return options.get(b"boundary") or None


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


_EXTENDED_FILENAME = re.compile(rb"""(?:^|;)\s*filename\*\s*=\s*([^;]*)""", re.IGNORECASE)
#: What browsers percent-encode in a multipart filename (WHATWG HTML, "multipart/
#: form-data encoding algorithm"): only these, so only these are decoded.
_BROWSER_ESCAPES = {"%22": '"', "%0D": "\r", "%0A": "\n", "%0d": "\r", "%0a": "\n"}


def _filename(header: bytes, options: dict[bytes, bytes]) -> str | None:
    """`filename*` (RFC 5987; the parser behind `options` drops it) wins over
    `filename`, which browsers send as raw UTF-8 with `"`, CR, LF percent-encoded."""
    extended = _EXTENDED_FILENAME.search(header)
    if extended:
        text = _decode(extended.group(1).strip().strip(b'"'))
        charset, _, rest = text.partition("'")
        _, _, encoded = rest.partition("'")
        try:
            return unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            pass
    plain = options.get(b"filename")
    if plain is None:
        return None
    name = _decode(plain)
    for escaped, character in _BROWSER_ESCAPES.items():
        name = name.replace(escaped, character)
    return name


@dataclass
class _State:
    events: list[Event] = field(default_factory=list)
    header_name: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, bytes] = field(default_factory=dict)
    field_name: str | None = None
    field_value: bytearray = field(default_factory=bytearray)
    in_file: bool = False
    parts: int = 0
    ended: bool = False


class _Collector:
    """python-multipart's callbacks, turned into events."""

    def __init__(self, *, max_field_bytes: int, max_parts: int) -> None:
        self.state = _State()
        self.max_field_bytes = max_field_bytes
        self.max_parts = max_parts

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def end(self) -> None:
        self.state.ended = True

    def part_begin(self) -> None:
        s = self.state
        s.parts += 1
        if s.parts > self.max_parts:
            raise MultipartLimit(f"At most {self.max_parts} parts per request.")
        s.headers, s.field_name, s.in_file = {}, None, False
        s.field_value = bytearray()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.state.header_name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.state.header_value += data[start:end]

    def header_end(self) -> None:
        s = self.state
        s.headers[bytes(s.header_name).decode("latin-1").lower()] = bytes(s.header_value)
        s.header_name, s.header_value = bytearray(), bytearray()

    def headers_finished(self) -> None:
        s = self.state
        header = s.headers.get("content-disposition", b"")
        disposition, options = parse_options_header(header)
        if disposition != b"form-data" or b"name" not in options:
            raise MalformedMultipart("A part has no Content-Disposition: form-data name.")
        name = _decode(options[b"name"])
        filename = _filename(header, options)
        if filename is None:
            s.field_name = name
            return
        s.in_file = True
        declared = _decode(s.headers.get("content-type", b"application/octet-stream"))
        s.events.append(FileStart(name=name, filename=filename, declared_type=declared))

    def part_data(self, data: bytes, start: int, end: int) -> None:
        s = self.state
        if s.in_file:
            s.events.append(FileData(bytes(data[start:end])))
            return
        s.field_value += data[start:end]
        if len(s.field_value) > self.max_field_bytes:
            raise MultipartLimit(
                f"The field {s.field_name!r} is longer than {self.max_field_bytes} bytes."
            )

    def part_end(self) -> None:
        s = self.state
        if s.in_file:
            s.events.append(FileEnd())
        elif s.field_name is not None:
            s.events.append(Field(s.field_name, _decode(bytes(s.field_value))))

    def take(self) -> list[Event]:
        events, self.state.events = self.state.events, []
        return _coalesced(events)


def _coalesced(events: list[Event]) -> list[Event]:
    """Neighbouring `FileData` events of one network read joined into one."""
    out: list[Event] = []
    pending: list[bytes] = []
    for event in events:
        if isinstance(event, FileData):
            pending.append(event.data)
            continue
        if pending:
            out.append(FileData(b"".join(pending)))
            pending = []
        out.append(event)
    if pending:
        out.append(FileData(b"".join(pending)))
    return out


async def read_multipart(
    request: Request, boundary: bytes, *, max_field_bytes: int = 1 << 20, max_parts: int = 10_000
) -> AsyncIterator[Event]:
    """The body's parts as events, as the bytes arrive. Raises MalformedMultipart,
    MultipartLimit; a client that goes away raises Starlette's ClientDisconnect."""
    collector = _Collector(max_field_bytes=max_field_bytes, max_parts=max_parts)
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    received = False
    async for chunk in request.stream():
        if not chunk:
            continue
        received = True
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise MalformedMultipart() from exc
        for event in collector.take():
            yield event
    try:
        parser.finalize()
    except MultipartParseError as exc:
        raise MalformedMultipart() from exc
    if not received or not collector.state.ended:
        raise MalformedMultipart("The multipart body ends before its closing boundary.")
    for event in collector.take():
        yield event
