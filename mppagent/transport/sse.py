"""An incremental Server-Sent Events parser that keeps each event's raw bytes.

Payment events (``payment-need-voucher``, ``payment-receipt``) travel inside
the application's own SSE stream. The paying transport must take them out and
pass everything else on *unchanged*, whatever SDK reads the stream next, and
however the bytes were split into network chunks. So this parser:

* follows the WHATWG event-stream rules (``\\r\\n``, ``\\n`` or ``\\r`` line
  ends, ``event``/``data``/``id``/``retry`` fields, ``:`` comments, a blank
  line dispatches, multi-line data joined with ``\\n``);
* returns, with every event, the exact bytes it was made of, so the caller
  can forward or drop whole blocks;
* produces the same events for any chunking of the same bytes (property-
  tested at every split point);
* refuses events larger than ``max_event_bytes`` with :class:`EventTooLarge`
  instead of buffering a hostile server's endless line.
"""

from __future__ import annotations

from dataclasses import dataclass

from mppagent.errors import ProtocolError

__all__ = ["EventTooLarge", "SSEEvent", "SSEParser"]

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024


class EventTooLarge(ProtocolError):
    """An SSE event (or a single line) exceeded the parser's size limit."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. ``raw`` holds its bytes including the blank line."""

    event: str
    data: str
    id: str | None
    retry: int | None
    raw: bytes

    @property
    def is_message(self) -> bool:
        """True for application events (anything not a comment-only block)."""
        return bool(self.data) or self.event != "message"


class SSEParser:
    """Feed bytes, get complete events. Not thread-safe; one per stream."""

    __slots__ = (
        "_buffer",
        "_data",
        "_event",
        "_has_fields",
        "_id",
        "_max",
        "_raw",
        "_raw_size",
        "_retry",
    )

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buffer = b""  # bytes of an unfinished line (or one ending in a lone "\r")
        self._raw: list[bytes] = []  # raw bytes of the event being assembled
        self._raw_size = 0
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None
        self._has_fields = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume ``chunk``; return the events it completed (possibly none)."""
        events: list[SSEEvent] = []
        if not chunk:
            return events
        data = self._buffer + chunk if self._buffer else chunk
        self._buffer = b""
        start = 0
        length = len(data)
        while start < length:
            nl = data.find(b"\n", start)
            cr = data.find(b"\r", start, nl if nl != -1 else length)
            if cr != -1:
                if cr + 1 == length:
                    # "\r" at the very end: wait to see whether "\n" follows, so a
                    # "\r\n" split across chunks is one line end, not two.
                    self._keep(data[start:])
                    return events
                end = cr
                stop = cr + 2 if data[cr + 1] == 0x0A else cr + 1
            elif nl != -1:
                end, stop = nl, nl + 1
            else:
                self._keep(data[start:])
                return events
            self._append_raw(data[start:stop])
            event = self._line(data[start:end])
            if event is not None:
                events.append(event)
            start = stop
        return events

    def _keep(self, rest: bytes) -> None:
        if self._raw_size + len(rest) > self._max:
            raise EventTooLarge(f"SSE event exceeds {self._max} bytes")
        self._buffer = rest

    def close(self) -> tuple[list[SSEEvent], bytes]:
        """End of stream: events completed by a final lone ``\r``, and leftover raw bytes.

        The leftover is an unterminated event, which the spec discards; its
        bytes are returned so a forwarding caller can pass them on unchanged.
        """
        events: list[SSEEvent] = []
        if self._buffer.endswith(b"\r"):
            line, self._buffer = self._buffer, b""
            self._append_raw(line)
            event = self._line(line[:-1])
            if event is not None:
                events.append(event)
        tail = b"".join(self._raw) + self._buffer
        self._raw, self._raw_size, self._buffer = [], 0, b""
        self._reset_fields()
        return events, tail

    # -- internals -------------------------------------------------------------

    def _append_raw(self, piece: bytes) -> None:
        self._raw.append(piece)
        self._raw_size += len(piece)
        if self._raw_size > self._max:
            raise EventTooLarge(f"SSE event exceeds {self._max} bytes")

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line[:1] == b":":
            return None
        text = line.decode("utf-8", errors="replace")
        name, sep, value = text.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_fields = True
        elif name == "event":
            self._event = value
            self._has_fields = True
        elif name == "id":
            if "\x00" not in value:
                self._id = value
            self._has_fields = True
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
            self._has_fields = True
        return None

    def _dispatch(self) -> SSEEvent | None:
        raw = b"".join(self._raw)
        self._raw, self._raw_size = [], 0
        if not self._has_fields:
            # A blank line after only comments (or nothing): no event, but its
            # bytes still belong to the stream and must be forwarded.
            self._reset_fields()
            return SSEEvent(event="", data="", id=None, retry=None, raw=raw)
        event = SSEEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self._id,
            retry=self._retry,
            raw=raw,
        )
        self._reset_fields()
        return event

    def _reset_fields(self) -> None:
        self._event = ""
        self._data = []
        self._retry = None
        self._has_fields = False
        # ``id`` persists across events per the spec (last event id), but each
        # SSEEvent reports only the id set within its own block.
        self._id = None
