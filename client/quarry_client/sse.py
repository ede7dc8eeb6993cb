"""A Server-Sent Events parser: lines in, events out, by the WHATWG rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).

Pure and flavour-independent: it does no I/O, so the async and the blocking
clients feed it the lines they read (`aiter_lines` / `iter_lines`).

    parser = SSEParser()
    for line in response.iter_lines():
        event = parser.feed(line)
        if event is not None:
            ...

The rules it follows: a line starting with `:` is a comment; `field: value` (one
space after the colon dropped) or a bare `field`; `data` lines are joined with
`\\n`; `event` names the event (`message` when absent); `id` sets the id buffer
(ignored when it contains NUL), which persists across events until another `id`
line changes it; each blank line makes the buffer the stream's last event id —
the one to send as `Last-Event-ID` when reconnecting (an `id` line whose event
was cut off by a dropped connection never becomes it); `retry` (ASCII digits only) sets
the reconnection time in milliseconds; other fields are ignored. A blank line
dispatches the event — or nothing when no `data` line came, as the standard says.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

BOM = "\ufeff"


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event."""

    #: The `event` field, `message` when none was given.
    event: str = "message"
    #: The `data` lines, joined with `\n`.
    data: str = ""
    #: The last event id when it was dispatched (None when no `id` was ever set).
    id: str | None = None
    #: The `retry` field given in this event's block, in milliseconds.
    retry: int | None = None

    def json(self) -> Any:
        """`data` decoded as JSON."""
        return json.loads(self.data)


class SSEParser:
    """Feed it the stream's lines (without their line endings); it returns an event
    on each blank line that completes one."""

    def __init__(self, *, last_event_id: str | None = None) -> None:
        #: The id of the last complete event block (what a reconnection resumes after).
        self.last_event_id = last_event_id
        self._id_buffer = last_event_id or ""
        #: The latest reconnection time the stream asked for (ms), any block.
        self.retry: int | None = None
        self._first = True
        self._reset()

    def _reset(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._block_retry: int | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line; the event it completes, if any."""
        if self._first:
            self._first = False
            line = line.removeprefix(BOM)
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        self._field(field, value)
        return None

    def feed_all(self, lines: Iterable[str]) -> list[ServerSentEvent]:
        """Take many lines; the events they complete, in order."""
        events = []
        for line in lines:
            event = self.feed(line)
            if event is not None:
                events.append(event)
        return events

    def _field(self, field: str, value: str) -> None:
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry = self._block_retry = int(value)

    def _dispatch(self) -> ServerSentEvent | None:
        self.last_event_id = self._id_buffer or None
        if not self._data:
            self._reset()
            return None
        event = ServerSentEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self.last_event_id or None,
            retry=self._block_retry,
        )
        self._reset()
        return event
