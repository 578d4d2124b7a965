"""The SSE splitter: WHATWG rules, exact raw bytes, and independence from chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mppagent.transport.sse import EventTooLarge, SSEEvent, SSEParser

STREAM = (
    b": keep-alive\n\n"
    b'data: {"a": 1}\n\n'
    b'event: payment-need-voucher\r\ndata: {"x":"1"}\r\n\r\n'
    b"id: 7\nretry: 1500\ndata: line one\ndata: line two\n\n"
    b"event: payment-receipt\rdata: {}\r\r"
    b"data: [DONE]\n\n"
)


def parse_all(chunks: list[bytes]) -> tuple[list[SSEEvent], bytes]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    last, tail = parser.close()
    return events + last, tail


def test_fields_and_raw_bytes() -> None:
    events, tail = parse_all([STREAM])
    assert tail == b""
    kinds = [(e.event, e.data) for e in events]
    assert kinds == [
        ("", ""),  # the comment block: no event, but its bytes are kept
        ("message", '{"a": 1}'),
        ("payment-need-voucher", '{"x":"1"}'),
        ("message", "line one\nline two"),
        ("payment-receipt", "{}"),
        ("message", "[DONE]"),
    ]
    assert events[3].id == "7"
    assert events[3].retry == 1500
    assert b"".join(e.raw for e in events) == STREAM


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    events, tail = parse_all(chunks)
    reference, _ = parse_all([STREAM])
    assert events == reference
    assert tail == b""


def test_every_single_split_point() -> None:
    reference, _ = parse_all([STREAM])
    for cut in range(len(STREAM) + 1):
        events, _ = parse_all([STREAM[:cut], STREAM[cut:]])
        assert events == reference, cut


def test_unterminated_tail_is_returned_not_dispatched() -> None:
    events, tail = parse_all([b"data: done\n\ndata: half"])
    assert [e.data for e in events] == ["done"]
    assert tail == b"data: half"


def test_oversized_event_is_refused() -> None:
    parser = SSEParser(max_event_bytes=1024)
    with pytest.raises(EventTooLarge):
        parser.feed(b"data: " + b"x" * 2000)
    parser = SSEParser(max_event_bytes=1024)
    many_lines = b"".join(b"data: " + b"y" * 30 + b"\n" for _ in range(100))
    with pytest.raises(EventTooLarge):
        parser.feed(many_lines)


def test_field_without_space_and_unknown_fields() -> None:
    events, _ = parse_all([b"data:nospace\nfoo: bar\n\n"])
    assert events[0].data == "nospace"


def test_absurd_retry_values_are_ignored_not_fatal() -> None:
    # Found by benchmarks/fuzz.py: int() refuses more than 4300 digits (ValueError).
    events, tail = parse_all(
        [b"retry: " + b"9" * 5000 + b"\ndata: x\n\n", b"retry: 0000000000000000001500\n\n"]
    )
    assert tail == b""
    assert [(e.data, e.retry) for e in events] == [("x", None), ("", 1500)]
    events, _ = parse_all([b"retry: " + b"9" * 19 + b"\n\nretry: " + b"9" * 18 + b"\n\n"])
    assert [e.retry for e in events] == [None, 10**18 - 1]


def test_an_event_ended_by_a_trailing_cr_leaves_the_size_count_with_the_next_byte() -> None:
    # "\r" at a chunk's end might start a CRLF; the next chunk, even without a line end,
    # settles it and dispatches the event, so it no longer counts toward the next one's size.
    parser = SSEParser(max_event_bytes=8)
    assert parser.feed(b"id: 7\n\r") == []
    (first,) = parser.feed(b"aaaaaa")
    assert (first.id, first.raw) == ("7", b"id: 7\n\r")
    (second,) = parser.feed(b"\n\n")
    assert second.raw == b"aaaaaa\n\n"
