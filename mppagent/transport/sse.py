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

It works block by block: bytes wait in a buffer until a blank line completes
an event, then the whole block is parsed at once -- far fewer Python-level
steps per event than a line-at-a-time state machine, which matters on the
hot path of every paid token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mppagent.errors import ProtocolError

__all__ = ["EventTooLarge", "SSEEvent", "SSEParser"]

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024

# A line end is CRLF, LF, or a CR not followed by LF; an event ends at a blank
# line, i.e. two line ends in a row. A CR at the very end of the buffer is
# ambiguous (an LF may follow in the next chunk), so searches stop before it.
_EOL = rb"(?:\r\n|\r(?!\n)|\n)"
_BLANK_AFTER_LINE = re.compile(_EOL + _EOL)
_LEADING_EOL = re.compile(_EOL)
_SPLIT_LINES = re.compile(rb"\r\n|\r|\n")
_EOL_BYTES = (0x0A, 0x0D)
_MAX_RETRY_DIGITS = 18


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
        return bool(self.data) or self.event not in ("message", "")


_EMPTY_ID: str | None = None


class SSEParser:
    """Feed bytes, get complete events. Not thread-safe; one per stream.

    Linear in the input however it is chunked: bytes accumulate in a
    ``bytearray``, a chunk without any line-end byte is only appended, and the
    search for the end of an event resumes where the previous one stopped.
    """

    __slots__ = ("_buffer", "_max", "_scanned")

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already searched for an event end

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume ``chunk``; return the events it completed (possibly none)."""
        if not chunk:
            return []
        buffer = self._buffer
        # A buffer ending in "\r" holds an event whose end was ambiguous (an LF might
        # have followed); any next byte settles it, line end or not.
        pending_cr = buffer.endswith(b"\r")
        buffer += chunk
        events: list[SSEEvent] = []
        if pending_cr or b"\n" in chunk or b"\r" in chunk:
            pos = self._take_blocks(buffer, events, final=False, resume=self._scanned)
            if pos:
                del buffer[:pos]
            # Resume the next search a few bytes back: a line end split across
            # chunks ("\r" | "\n") must still be seen as one.
            self._scanned = max(len(buffer) - 3, 0)
        if len(buffer) > self._max:
            raise EventTooLarge(f"SSE event exceeds {self._max} bytes")
        return events

    def close(self) -> tuple[list[SSEEvent], bytes]:
        """End of stream: events completed by a final lone ``\\r``, and leftover raw bytes.

        The leftover is an unterminated event, which the spec discards; its
        bytes are returned so a forwarding caller can pass them on unchanged.
        """
        data, self._buffer, self._scanned = self._buffer, bytearray(), 0
        events: list[SSEEvent] = []
        pos = self._take_blocks(data, events, final=True, resume=0)
        return events, bytes(data[pos:])

    # -- internals -----------------------------------------------------------------------------

    def _take_blocks(
        self, data: bytearray, events: list[SSEEvent], *, final: bool, resume: int
    ) -> int:
        end = len(data) if final or not data.endswith(b"\r") else len(data) - 1
        pos = 0
        while pos < end:
            lead = _LEADING_EOL.match(data, pos, end) if data[pos] in _EOL_BYTES else None
            if lead is not None:
                # A blank line with no fields before it: nothing to dispatch, but its
                # bytes belong to the stream and are handed on as an empty event.
                events.append(SSEEvent("", "", None, None, bytes(data[pos : lead.end()])))
                pos = lead.end()
                continue
            blank = _BLANK_AFTER_LINE.search(data, max(pos, resume), end)
            resume = 0
            if blank is None:
                break
            stop = blank.end()
            if stop - pos > self._max:
                raise EventTooLarge(f"SSE event exceeds {self._max} bytes")
            events.append(_parse_block(bytes(data[pos : blank.start()]), bytes(data[pos:stop])))
            pos = stop
        return pos


def _parse_block(block: bytes, raw: bytes) -> SSEEvent:
    """Parse the lines of one complete event (without its terminating blank line)."""
    event_name = ""
    data_lines: list[str] = []
    event_id = _EMPTY_ID
    retry: int | None = None
    has_fields = False
    lines = _SPLIT_LINES.split(block) if b"\r" in block else block.split(b"\n")
    for line in lines:
        if not line or line[0] == 0x3A:  # empty, or a ":" comment
            continue
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data_lines.append(value.decode("utf-8", errors="replace"))
            has_fields = True
        elif name == b"event":
            event_name = value.decode("utf-8", errors="replace")
            has_fields = True
        elif name == b"id":
            if b"\x00" not in value:
                event_id = value.decode("utf-8", errors="replace")
            has_fields = True
        elif name == b"retry":
            # Beyond 18 digits it is no delay a client could use, and int() of more
            # than 4300 digits raises ValueError: such a field is ignored.
            if value.isdigit() and len(value.lstrip(b"0")) <= _MAX_RETRY_DIGITS:
                retry = int(value)
            has_fields = True
    if not has_fields:
        return SSEEvent("", "", None, None, raw)
    return SSEEvent(event_name or "message", "\n".join(data_lines), event_id, retry, raw)
