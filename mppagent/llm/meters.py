"""Meters: the most units an honest LLM server may bill for what it delivered.

The agent signs a voucher only up to ``baseline + (meter bound + look-ahead) x price``.
The meter supplies that bound. It must never be *below* what an honest server bills
(a false alarm refuses an honest server and marks its channel suspect), and should be
as close above it as the evidence allows (the gap is what a dishonest server can take).
Servers bill in different units, so there is one meter kind per billing style:

``event``
    One unit per SSE ``data:`` event, ``[DONE]`` excluded, role-only and usage-only
    chunks included. This is how the reference SDK (``mppx``) meters any stream it
    serves or proxies: its SSE transport re-reads the upstream body with
    ``iterateData(..., {skip: d => d === '[DONE]'})`` and charges one ``tickCost`` per
    yielded value, and one tick is already charged when the request's credential is
    verified (the first value uses it), so even an empty stream costs one unit.
    Exact: exposure 0 beyond that first unit.
``chunk``
    One unit per chunk that carries text (``content``, ``reasoning_content``,
    ``reasoning``, ``refusal``, a tool call's ``name`` or ``arguments``): the project's
    reference server, and any server that streams one token per chunk. Exact: exposure 0.
``token``
    Per token, for servers that pack several tokens into one chunk. Nothing in the
    stream says how many tokens a chunk held, so the bound comes from the delivered
    *text*: every token of a byte-level BPE vocabulary (GPT/o-series, Llama 3, Qwen,
    DeepSeek, Mistral's Tekken) decodes to at least one UTF-8 byte, so the UTF-8
    length of the delivered text is a hard upper bound on the tokens that produced
    it, whatever the tokenizer. A few tokens decode to no text at all (the end-of-
    sequence token, a reasoning model's ``<think>``/``</think>`` markers, the
    markers and JSON scaffolding around a tool call); ``response_slack`` and
    ``tool_call_slack`` allow for them. ``usage.completion_tokens`` on the final
    chunk can only *tighten* the bound (``min``): a server that reports its usage
    honestly is held to it, one that inflates it gains nothing beyond the text.
``request``
    One unit per request (``unitType: "request"``, billed once by ``mppx``).

**Measured** (``benchmarks/meters.py``; table in ``benchmarks/README.md``) on prose in
English, German, Chinese, Japanese, Russian and Arabic, emoji, real Python and JSON, and
honest oddities (hex, base64, spelled-out letters, punctuation), with five real
tokenizers (cl100k, o200k, Llama 3, Qwen 3, DeepSeek V4). Tokens per UTF-8 byte: English
0.22, German 0.22-0.29, Chinese 0.20-0.38, Japanese 0.22-0.35, Russian 0.14-0.24, Arabic
0.18-0.40, emoji 0.28-0.60, Python 0.25-0.26, pretty JSON 0.26-0.27, compact JSON
0.43-0.50, and up to 0.87 for hex (Qwen 3 splits digits), 0.74 for base64; never above 1
(225 honest chunked streams, every bound held). So the byte bound lets a dishonest server
claim at most bytes/tokens times the true count: 4.6x for English prose, 3.5-4.5x German,
2.6-4.9x Chinese, 2.9-4.5x Japanese, 4.3-6.9x Russian, 2.5-5.5x Arabic, 1.7-3.5x emoji,
about 4x code and pretty JSON, 2x compact JSON, 1.2-1.7x hex and base64 -- until an
honest ``usage`` report brings it down to the true count. A statistical ratio (say 0.5
tokens per byte) would be tighter, but an honest server sending hex, identifiers or
spelled-out letters exceeds it, so it would raise false alarms; ``bytes_per_token`` > 1
makes that trade for a profile that knows its server's tokenizer and text.

**Defaults** (:func:`default_spec`): ``llm_token`` (and other token unit types) use
``token`` with ``event_floor`` -- the bound is the larger of the byte bound and the
event count, so one default pays the reference server (a text chunk holds >= 1 byte),
``mppx`` servers and proxies (per event) and servers packing tokens (per token)
without a false alarm. ``request`` uses ``request``; any other unit type ``event``.
The prompt allowance (``bills_prompt``) is off unless a profile or policy says the
server bills input: it adds the same byte bound over the request's messages, plus
``message_overhead`` per message (chat-template markers) and ``media_part_tokens``
per image, audio or video part.

The meter runs for every event of every paid stream, so :meth:`Meter.observe` does a
few substring tests and at most one regex scan per event, and :attr:`Meter.bound` is
O(1): ``observe`` plus ``bound`` cost about as much as the transport's old chunk
counter for ``event``, 1.5-2x that for ``chunk`` and about 3x for ``token`` (a few
microseconds; figures in ``benchmarks/README.md``).
Pure: no I/O, no clocks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypeAlias

from mppagent.transport.sse import SSEEvent

__all__ = [
    "TOKEN_UNIT_TYPES",
    "ChunkMeter",
    "EventMeter",
    "Meter",
    "MeterKind",
    "MeterSpec",
    "RequestMeter",
    "TokenMeter",
    "default_spec",
    "is_data_event",
    "make_meter",
    "prompt_allowance",
    "text_chunk",
]

MeterKind: TypeAlias = Literal["event", "chunk", "token", "request"]

TOKEN_UNIT_TYPES: Final = frozenset(
    {"llm_token", "llm_tokens", "token", "tokens", "output_token", "completion_token"}
)
"""``unitType`` values that mean "tokens" (the drafts name ``llm_token``; peers vary)."""

_DONE: Final = "[DONE]"
_APP_EVENT_NAMES: Final = frozenset({"message", ""})
_PAYMENT_EVENT: Final = "payment-"
# A text field with a non-empty string value, found in the raw bytes without parsing.
_TEXT_FIELD = re.compile(
    rb'"(?:content|reasoning_content|reasoning|refusal|name|arguments|text)"\s*:\s*"(?!")'
)


class Meter(Protocol):
    """Counts what a paid stream delivered, and bounds what an honest server may bill."""

    def observe(self, event: SSEEvent) -> None:
        """Account for one application SSE event delivered to the app."""
        ...

    @property
    def delivered(self) -> int:
        """Best estimate of the units delivered so far (for display and receipts)."""
        ...

    @property
    def bound(self) -> int:
        """Most units an honest server may bill for everything observed so far.

        Includes the prompt allowance when the spec grants one. Never decreases
        except when a usage report tightens a ``token`` bound.
        """
        ...

    def final_usage(self) -> int | None:
        """``usage.completion_tokens`` seen on a chunk, if any (the last one reported)."""
        ...


@dataclass(frozen=True)
class MeterSpec:
    """How to meter one server: the kind, and the allowances it needs.

    ``request_units``: units a server bills when it accepts the request, before
    any event (``mppx`` charges one tick up front). ``event_floor`` (``token``
    only): also allow one unit per data event, so per-event servers pass a token
    meter. ``bytes_per_token``: the ``token`` text bound is
    ``ceil(bytes / bytes_per_token)``; 1 is the hard bound. ``response_slack``
    and ``tool_call_slack``: tokens billed without text (end-of-sequence,
    reasoning markers; tool-call scaffolding per call). ``bills_prompt``: the
    server bills the prompt too (up front); then ``message_overhead`` tokens per
    message and ``media_part_tokens`` per media part are allowed beyond the text.
    """

    kind: MeterKind
    bills_prompt: bool = False
    request_units: int = 1
    event_floor: bool = False
    bytes_per_token: int = 1
    response_slack: int = 4
    tool_call_slack: int = 16
    message_overhead: int = 8
    media_part_tokens: int = 2_000

    def __post_init__(self) -> None:
        if self.kind not in ("event", "chunk", "token", "request"):
            raise ValueError(f"unknown meter kind {self.kind!r}")
        if self.bytes_per_token < 1:
            raise ValueError(f"bytes_per_token must be >= 1, got {self.bytes_per_token}")
        for name in (
            "request_units",
            "response_slack",
            "tool_call_slack",
            "message_overhead",
            "media_part_tokens",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def default_spec(unit_type: str | None) -> MeterSpec:
    """The meter for a challenge's ``unitType`` when no profile says otherwise.

    Token unit types get the ``token`` meter with the event floor: it pays the
    reference server, ``mppx`` servers and token-packing servers alike.
    """
    if unit_type is not None and unit_type.lower() in TOKEN_UNIT_TYPES:
        return MeterSpec(kind="token", event_floor=True)
    if unit_type == "request":
        return MeterSpec(kind="request")
    return MeterSpec(kind="event")


def make_meter(spec: MeterSpec, unit_type: str | None, request_body: bytes) -> Meter:
    """A fresh meter for one paid request (``request_body`` bounds a billed prompt)."""
    prompt = prompt_allowance(request_body, spec) if spec.bills_prompt else None
    meter: Meter
    if spec.kind == "event":
        meter = EventMeter(spec, prompt, unit_type)
    elif spec.kind == "chunk":
        meter = ChunkMeter(spec, prompt, unit_type)
    elif spec.kind == "token":
        meter = TokenMeter(spec, prompt, unit_type)
    else:
        meter = RequestMeter(spec, prompt, unit_type)
    return meter


# -- per-event primitives ---------------------------------------------------------------------


def is_data_event(event: SSEEvent) -> bool:
    """An event with data other than ``[DONE]``, whatever its name (what ``mppx`` bills).

    Payment events are the transport's, not the application's; they never count.
    """
    data = event.data
    return bool(data) and data != _DONE and not event.event.startswith(_PAYMENT_EVENT)


def text_chunk(event: SSEEvent) -> bool:
    """A data event carrying a non-empty text field (one token at a one-token-per-chunk server).

    A byte-level search rather than a JSON parse: this runs for every token. A
    server could add a stray text field to pass a chunk as text, but that earns
    it one unit per event it sends -- what a visible one-character chunk earns.
    """
    return event.event in _APP_EVENT_NAMES and _TEXT_FIELD.search(event.raw) is not None


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# -- meters -------------------------------------------------------------------------------------


class _Base:
    """What every kind shares: the spec, the prompt allowance, the data-event count."""

    __slots__ = ("_events", "_min_units", "_prompt", "spec", "unit_type")

    def __init__(self, spec: MeterSpec, prompt: int | None, unit_type: str | None) -> None:
        self.spec = spec
        self.unit_type = unit_type
        self._prompt = prompt or 0
        self._events = 0
        self._min_units = spec.request_units

    def final_usage(self) -> int | None:
        """Only the ``token`` meter reads usage."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(unit_type={self.unit_type!r}, events={self._events})"


class EventMeter(_Base):
    """One unit per data event (``[DONE]`` excluded), at least ``request_units``."""

    __slots__ = ()

    def observe(self, event: SSEEvent) -> None:
        """Count ``event`` if it carries data."""
        if is_data_event(event):
            self._events += 1

    @property
    def delivered(self) -> int:
        """Data events delivered."""
        return self._events

    @property
    def bound(self) -> int:
        """``max(events, request_units)`` plus the prompt allowance."""
        return max(self._events, self._min_units) + self._prompt


class ChunkMeter(_Base):
    """One unit per text-carrying chunk (one token per chunk), at least ``request_units``."""

    __slots__ = ("_chunks",)

    def __init__(self, spec: MeterSpec, prompt: int | None, unit_type: str | None) -> None:
        super().__init__(spec, prompt, unit_type)
        self._chunks = 0

    def observe(self, event: SSEEvent) -> None:
        """Count ``event`` if it carries text."""
        if text_chunk(event):
            self._chunks += 1

    @property
    def delivered(self) -> int:
        """Text chunks delivered."""
        return self._chunks

    @property
    def bound(self) -> int:
        """``max(text chunks, request_units)`` plus the prompt allowance."""
        return max(self._chunks, self._min_units) + self._prompt


class RequestMeter(_Base):
    """One unit per request, whatever is streamed."""

    __slots__ = ()

    def observe(self, event: SSEEvent) -> None:
        """Events do not change a per-request bill."""

    @property
    def delivered(self) -> int:
        """The request itself."""
        return 1

    @property
    def bound(self) -> int:
        """``max(request_units, 1)`` plus the prompt allowance."""
        return max(self._min_units, 1) + self._prompt


class TokenMeter(_Base):
    """Per token, bounded by the UTF-8 bytes of the delivered text (see the module doc).

    The text fields are found with one regex over the event's data rather than a JSON
    parse, which would cost several times more than everything else the agent does per
    event. What that gives up is nothing a dishonest server could use: a text field
    outside the delta counts as delivered text, and so would the same bytes sent as
    visible garbage -- either way the server must send a byte for every token it wants
    to bill. Missing an honest field would be the error, so every place a chat or
    completions stream puts generated text is matched: ``content``,
    ``reasoning_content``, ``reasoning``, ``refusal``, tool-call ``name`` and
    ``arguments``, and, in a stream without ``delta`` objects, ``text``.
    """

    __slots__ = (
        "_bytes",
        "_chunks",
        "_floor",
        "_per_token",
        "_prompt_usage",
        "_slack",
        "_tool_calls",
        "_usage",
        "_usage_at",
    )

    def __init__(self, spec: MeterSpec, prompt: int | None, unit_type: str | None) -> None:
        super().__init__(spec, prompt, unit_type)
        self._bytes = 0
        self._chunks = 0
        self._tool_calls = 0
        self._usage: int | None = None
        self._usage_at = -1  # text bytes when usage was last reported
        self._prompt_usage: int | None = None
        # Read on every bound: kept out of the frozen spec's attribute lookups.
        self._per_token = spec.bytes_per_token
        self._slack = spec.response_slack
        self._floor = spec.event_floor

    def observe(self, event: SSEEvent) -> None:
        """Add the text bytes (and any usage report) of ``event``."""
        if not is_data_event(event):
            return
        self._events += 1
        data = event.data
        # Chat: every text field is inside a delta, so the scan starts at the first one.
        delta = data.find('"delta"')
        literals = _CHAT_TEXT.findall(data, delta) if delta >= 0 else _ANY_TEXT.findall(data)
        if literals:
            size = 0
            for literal in literals:
                if literal.isascii() and "\\" not in literal:
                    size += len(literal)
                else:
                    size += _literal_bytes(literal)
            if size:
                self._bytes += size
                self._chunks += 1
            if '"tool_calls"' in data:
                self._tool_calls += len(_TOOL_NAME.findall(data))  # a call's first delta names it
        if '"usage"' in data:
            self._read_usage(data)

    def _read_usage(self, data: str) -> None:
        usage = _USAGE.search(data)
        if usage is None:
            return  # absent, or "usage": null on every chunk but the last
        body = data[usage.end() :]
        completion = _COMPLETION_TOKENS.search(body)
        if completion is not None:
            self._usage = int(completion.group(1))
            self._usage_at = self._bytes
        prompt = _PROMPT_TOKENS.search(body)
        if prompt is not None:
            self._prompt_usage = int(prompt.group(1))

    @property
    def text_bytes(self) -> int:
        """UTF-8 bytes of all text delivered so far."""
        return self._bytes

    @property
    def delivered(self) -> int:
        """The server's usage if reported, else a low estimate: one token per text chunk.

        Low on purpose: the agent pays ahead of this estimate (within the bound), and
        paying ahead of an overestimate would pay for nothing delivered. Exact for
        servers that stream one token per chunk.
        """
        if self._usage is not None and self._usage_at == self._bytes:
            return min(self._usage, self._text_bound())
        return self._chunks

    def _text_bound(self) -> int:
        bound = -(-self._bytes // self._per_token) + self._slack
        if self._tool_calls:
            bound += self._tool_calls * self.spec.tool_call_slack
        return bound

    @property
    def bound(self) -> int:
        """``max(min(text bound, usage), events if event_floor, request_units)`` + prompt."""
        completion = self._text_bound()
        usage = self._usage
        # A usage report tightens only while no text followed it: some servers send an early
        # "completion_tokens": 0, and holding later text to it would refuse an honest bill.
        if usage is not None and usage < completion and self._usage_at == self._bytes:
            completion = usage
        if self._floor and self._events > completion:
            completion = self._events
        completion = max(completion, self._min_units)
        prompt = self._prompt
        if self._prompt_usage is not None and self._prompt_usage < prompt:
            prompt = self._prompt_usage
        return completion + prompt

    def final_usage(self) -> int | None:
        """``usage.completion_tokens`` as last reported."""
        return self._usage


_STRING = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
_CHAT_TEXT = re.compile(
    r'"(?:content|reasoning_content|reasoning|refusal|name|arguments)"\s*:\s*' + _STRING
)
_ANY_TEXT = re.compile(
    r'"(?:content|reasoning_content|reasoning|refusal|name|arguments|text)"\s*:\s*' + _STRING
)
_TOOL_NAME = re.compile(r'"name"\s*:\s*"')
_USAGE = re.compile(r'"usage"\s*:\s*\{')
_COMPLETION_TOKENS = re.compile(r'"completion_tokens"\s*:\s*(\d{1,18})\b')
_PROMPT_TOKENS = re.compile(r'"prompt_tokens"\s*:\s*(\d{1,18})\b')


def _literal_bytes(literal: str) -> int:
    """UTF-8 bytes of the string a JSON string literal's body decodes to."""
    if "\\" not in literal:
        return _utf8_len(literal)
    try:
        text = json.loads('"' + literal + '"')
    except ValueError:
        return len(literal.encode("utf-8", "surrogatepass"))  # an escape never decodes longer
    return _utf8_len(text) if isinstance(text, str) else 0


# -- the prompt ----------------------------------------------------------------------------------

_MEDIA_PARTS: Final = frozenset({"image_url", "input_audio", "video_url", "image", "file"})


def prompt_allowance(request_body: bytes, spec: MeterSpec) -> int:
    """Most prompt tokens an honest server may bill for ``request_body`` (same byte bound).

    For a chat request: per message ``message_overhead`` plus the UTF-8 bytes of its
    text (string content, text parts, name, tool calls) and ``media_part_tokens`` per
    media part; plus the bytes of the tool and response-format definitions, which
    servers template into the prompt. A body that is not a JSON object is bounded by
    its length.
    """
    try:
        body = json.loads(request_body) if request_body else {}
    except ValueError:
        return _ceil_div(len(request_body), spec.bytes_per_token)
    if not isinstance(body, dict):
        return _ceil_div(len(request_body), spec.bytes_per_token)
    size = 0
    media = 0
    messages = body.get("messages")
    overhead = 0
    if isinstance(messages, list):
        overhead = spec.message_overhead * (len(messages) + 1)  # +1: the reply's own header
        for message in messages:
            if isinstance(message, dict):
                text_bytes, parts = _message_size(message)
                size += text_bytes
                media += parts
    prompt = body.get("prompt")  # legacy completions
    for text in _strings(prompt):
        size += _utf8_len(text)
    for key in ("tools", "functions", "response_format"):
        if body.get(key) is not None:
            size += len(json.dumps(body[key], separators=(",", ":"), ensure_ascii=False).encode())
    return _ceil_div(size, spec.bytes_per_token) + overhead + media * spec.media_part_tokens


def _message_size(message: Mapping[str, Any]) -> tuple[int, int]:
    """(text bytes, media parts) of one chat message."""
    size = 0
    media = 0
    content = message.get("content")
    if isinstance(content, str):
        size += _utf8_len(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") in _MEDIA_PARTS:
                media += 1
            for text in _strings(part.get("text")):
                size += _utf8_len(text)
    for key in ("name", "reasoning_content", "reasoning", "refusal"):
        value = message.get(key)
        if isinstance(value, str):
            size += _utf8_len(value)
    calls = message.get("tool_calls")
    if calls is not None:
        size += len(json.dumps(calls, separators=(",", ":"), ensure_ascii=False).encode())
    return size, media


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                yield item
