"""The OpenAI wire format: requests parse like OpenAI's, and everything we emit parses
with the real ``openai`` SDK (its models, and its client over a mock transport)."""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import httpx2
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from mppagent.devserver.fakemodel import (
    IMAGE_PART_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    FakeModel,
    Token,
)
from mppagent.devserver.wire import (
    MAX_TOKENS_CAP,
    MODELS,
    MODELS_CREATED,
    PLAIN,
    SSE_DONE,
    ChunkWriter,
    Flavour,
    GenerationPlan,
    ImagePart,
    Usage,
    WireError,
    completion_body,
    error_body,
    flavour_for,
    model_list,
    parse_chat_request,
    parse_chat_request_json,
    sse,
)

USER = [{"role": "user", "content": "Say hello"}]
CREATED = 1_700_000_000


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "mpp-fake-1", "messages": USER, **fields}


def wire_error(payload: object) -> WireError:
    with pytest.raises(WireError) as info:
        parse_chat_request(payload)
    return info.value


# ----------------------------------------------------------------------- requests


def test_minimal_request() -> None:
    req = parse_chat_request(body())
    assert req.model == "mpp-fake-1"
    assert req.stream is False
    assert req.include_usage is False
    assert req.requested_max_tokens is None
    assert req.vendor_fields() == {}
    assert req.flavour is PLAIN
    assert req.prompt_tokens() == MESSAGE_OVERHEAD_TOKENS + 2
    assert req.prompt_text() == "user: Say hello"


def test_multimodal_parts_are_accepted() -> None:
    content = [
        {"type": "text", "text": "look at all of these", "cache_control": {"type": "ephemeral"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "low"}},
        {"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}},
        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
    ]
    req = parse_chat_request(body(messages=[{"role": "user", "content": content}]))
    parts = req.messages[0].content
    assert isinstance(parts, list)
    assert [p.type for p in parts] == ["text", "image_url", "video_url", "input_audio"]
    assert isinstance(parts[1], ImagePart)
    assert parts[1].image_url.detail == "low"
    # Unknown keys inside parts (Anthropic-via-OpenRouter cache_control) survive.
    assert req.messages_json()[0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert req.prompt_tokens() == MESSAGE_OVERHEAD_TOKENS + 5 + IMAGE_PART_TOKENS + 256 + 64


def test_vendor_fields_are_accepted_and_reflected() -> None:
    vendor = {
        "vision_config": {"max_frames": 8},
        "routing_strategy": "cheapest",
        "plugins": [{"id": "web"}],
        "reasoning": {"effort": "high", "exclude": False},
        "max_input_price_per_million": "0.50",
        "allow_external": True,
        "timeout_ms": 30_000,
        "something_nobody_documented": [1, 2],
    }
    standard = {"tools": [], "response_format": {"type": "text"}, "reasoning_effort": "low"}
    req = parse_chat_request(body(**vendor, **standard, temperature=0.2, seed=4))
    assert req.vendor_fields() == vendor
    assert req.temperature == 0.2
    assert req.seed == 4


def test_options_are_read() -> None:
    req = parse_chat_request(
        body(stream=True, stream_options={"include_usage": True}, max_tokens=50, stop=["\n"])
    )
    assert req.stream is True
    assert req.include_usage is True
    assert req.requested_max_tokens == 50
    both = parse_chat_request(body(max_tokens=50, max_completion_tokens=70))
    assert both.requested_max_tokens == 70


def test_plan_follows_the_limit_and_flavour() -> None:
    assert parse_chat_request(body()).plan() == GenerationPlan(256, 0, "stop")
    assert parse_chat_request(body()).plan(default_max_tokens=9) == GenerationPlan(9, 0, "stop")
    assert parse_chat_request(body(max_tokens=40)).plan() == GenerationPlan(40, 0, "length")
    thinking = parse_chat_request(body(model="mpp-fake-thinking", max_completion_tokens=41))
    assert thinking.plan() == GenerationPlan(41, 10, "length")
    with pytest.raises(ValueError, match="default_max_tokens"):
        parse_chat_request(body()).plan(default_max_tokens=0)


@pytest.mark.parametrize(
    ("payload", "message", "param", "code"),
    [
        (
            {"messages": USER},
            "Missing required parameter: 'model'.",
            "model",
            "missing_required_parameter",
        ),
        (
            {"model": "mpp-fake-1"},
            "Missing required parameter: 'messages'.",
            "messages",
            "missing_required_parameter",
        ),
        (
            body(messages=[]),
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
            "empty_array",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "pdf", "pdf": {}}]}]),
            "Invalid value: 'pdf'. Supported values are: "
            "'text', 'image_url', 'video_url', 'input_audio'.",
            "messages[0].content[0].type",
            "invalid_value",
        ),
        (
            body(messages=[{"role": "user", "content": [{"text": "untyped"}]}]),
            "Missing required parameter: 'messages[0].content[0].type'.",
            "messages[0].content[0].type",
            "missing_required_parameter",
        ),
        (
            body(
                messages=[
                    {"role": "user", "content": "fine"},
                    {"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
                ]
            ),
            "Missing required parameter: 'messages[1].content[0].image_url.url'.",
            "messages[1].content[0].image_url.url",
            "missing_required_parameter",
        ),
        (
            body(messages=[{"role": "user", "content": 7}]),
            "Invalid type for 'messages[0].content': expected one of a string or an array, "
            "but got an integer instead.",
            "messages[0].content",
            "invalid_type",
        ),
        (
            body(messages=[{"role": "user", "content": ["bare"]}]),
            "Invalid type for 'messages[0].content[0]': expected an object, "
            "but got a string instead.",
            "messages[0].content[0]",
            "invalid_type",
        ),
        (
            body(messages=[{"role": "robot", "content": "x"}]),
            "Invalid value: 'robot'. Supported values are: "
            "'system', 'developer', 'user', 'assistant', 'tool' or 'function'.",
            "messages[0].role",
            "invalid_value",
        ),
        (
            body(max_tokens=MAX_TOKENS_CAP + 1),
            "Invalid 'max_tokens': integer above maximum value. Expected a value <= 100000, "
            "but got 100001 instead.",
            "max_tokens",
            "integer_above_max_value",
        ),
        (
            body(max_completion_tokens=0),
            "Invalid 'max_completion_tokens': integer below minimum value. "
            "Expected a value >= 1, but got 0 instead.",
            "max_completion_tokens",
            "integer_below_min_value",
        ),
        (
            body(max_tokens="5"),
            "Invalid type for 'max_tokens': expected an integer, but got a string instead.",
            "max_tokens",
            "invalid_type",
        ),
        (
            body(stream=1),
            "Invalid type for 'stream': expected a boolean, but got an integer instead.",
            "stream",
            "invalid_type",
        ),
        (
            body(temperature=2.5),
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2.0, "
            "but got 2.5 instead.",
            "temperature",
            "decimal_above_max_value",
        ),
        (
            body(n=3),
            "Invalid 'n': integer above maximum value. Expected a value <= 1, but got 3 instead.",
            "n",
            "integer_above_max_value",
        ),
        (
            body(model=""),
            "Invalid 'model': string too short. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            "model",
            "string_too_short",
        ),
        (
            body(stream_options={"include_usage": "yes"}),
            "Invalid type for 'stream_options.include_usage': expected a boolean, "
            "but got a string instead.",
            "stream_options.include_usage",
            "invalid_type",
        ),
        (
            ["not", "an", "object"],
            "The request body must be a JSON object, but got an array instead.",
            None,
            "invalid_type",
        ),
    ],
)
def test_bad_requests_get_one_clear_error(
    payload: object, message: str, param: str | None, code: str
) -> None:
    err = wire_error(payload)
    assert err.message == message
    assert str(err) == message
    assert err.param == param
    assert err.code == code
    assert err.status == 400
    assert err.body() == {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }


def test_bad_json_is_a_wire_error() -> None:
    with pytest.raises(WireError) as info:
        parse_chat_request_json(b"{not json")
    assert info.value.code == "invalid_json"
    assert parse_chat_request_json(json.dumps(body()).encode()).model == "mpp-fake-1"


def test_error_body_shape() -> None:
    assert error_body("no") == {
        "error": {"message": "no", "type": "invalid_request_error", "param": None, "code": None}
    }
    assert error_body("pay", type="payment_required", param="x", code="c") == {
        "error": {"message": "pay", "type": "payment_required", "param": "x", "code": "c"}
    }


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "x", 3])},
        optional={"content": _json | st.lists(st.dictionaries(st.just("type"), _json))},
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(
    payload=_json
    | st.fixed_dictionaries(
        {},
        optional={
            "model": _json | st.just("mpp-fake-1"),
            "messages": _json | _messages,
            "max_tokens": _json,
            "stream_options": _json,
        },
    )
)
def test_any_json_either_parses_or_is_a_wire_error(payload: object) -> None:
    error: WireError | None = None
    try:
        req = parse_chat_request(payload)
    except WireError as err:
        error = err
    else:
        assert req.prompt_tokens() >= MESSAGE_OVERHEAD_TOKENS
    if error is not None:
        assert error.message
        assert error.param is None or error.param.strip()


# ----------------------------------------------------------------------- flavours


def test_model_registry() -> None:
    assert set(MODELS) >= {
        "mpp-fake-1",
        "mpp-fake-thinking",
        "mpp-fake-reasoning-details",
        "mpp-fake-usage",
        "perceptron-mk1",
        "moonshotai/kimi-k2.6",
        "openrouter/auto",
    }
    assert MODELS["mpp-fake-1"] == Flavour()
    assert MODELS["mpp-fake-thinking"].reasoning_style == "reasoning_content"
    assert MODELS["mpp-fake-reasoning-details"].reasoning_style == "reasoning_details"
    assert MODELS["mpp-fake-usage"] == Flavour(usage="always")
    assert MODELS["perceptron-mk1"].reasoning_style == "reasoning_content"
    assert MODELS["perceptron-mk1"].usage == "on_request"
    assert MODELS["moonshotai/kimi-k2.6"].reasoning_style == "reasoning_content"
    assert MODELS["openrouter/auto"].reasoning_style == "reasoning_details"
    assert flavour_for("gpt-nonexistent") is PLAIN
    assert flavour_for("openrouter/auto") is MODELS["openrouter/auto"]


def test_reasoning_share_is_exact_integer_arithmetic() -> None:
    f = Flavour(reasoning_style="reasoning_content", reasoning_share=Fraction(1, 3))
    assert [f.reasoning_tokens(n) for n in (0, 1, 2, 3, 100, 100_000)] == [0, 0, 0, 1, 33, 33_333]
    assert PLAIN.reasoning_tokens(100) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reasoning_style": "reasoning_content"},
        {"reasoning_share": Fraction(1, 2)},
        {"reasoning_style": "reasoning_content", "reasoning_share": Fraction(1)},
        {"reasoning_style": "reasoning_content", "reasoning_share": Fraction(-1, 2)},
    ],
)
def test_inconsistent_flavours_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="reasoning"):
        Flavour(**kwargs)


def test_model_list_parses_as_sdk_models() -> None:
    listing = model_list()
    assert listing["object"] == "list"
    models = [Model.model_validate(m) for m in listing["data"]]
    assert [m.id for m in models] == list(MODELS)
    assert {m.created for m in models} == {MODELS_CREATED}
    assert {m.object for m in models} == {"model"}
    assert next(m for m in models if m.id == "openrouter/auto").owned_by == "openrouter"


# ------------------------------------------------------------------------- chunks


def build_stream(
    model: str,
    *,
    include_usage: bool,
    max_tokens: int = 12,
    prompt_tokens: int = 9,
    vendor_fields: dict[str, object] | None = None,
) -> tuple[list[dict[str, Any]], list[Token]]:
    flavour = flavour_for(model)
    tokens = list(
        FakeModel().generate(
            "prompt", max_tokens=max_tokens, reasoning_tokens=flavour.reasoning_tokens(max_tokens)
        )
    )
    writer = ChunkWriter(
        "chatcmpl-test",
        model,
        CREATED,
        flavour,
        include_usage=include_usage,
        vendor_fields=vendor_fields,
    )
    chunks = [writer.role_chunk()]
    chunks += [writer.token_chunk(t) for t in tokens]
    chunks += writer.final_chunks("length", writer.usage_so_far(prompt_tokens))
    return chunks, tokens


def reasoning_of(delta: Any, style: str | None) -> str | None:
    """Read reasoning text the way a client using the SDK must: from extra attributes."""
    extra = delta.model_extra or {}
    if style == "reasoning_content":
        assert getattr(delta, "reasoning_content", None) == extra.get("reasoning_content")
        value = extra.get("reasoning_content")
        return value if isinstance(value, str) else None
    if style == "reasoning_details":
        text = extra.get("reasoning")
        if text is None:
            return None
        assert extra["reasoning_details"] == [
            {"type": "reasoning.text", "text": text, "format": "unknown", "index": 0}
        ]
        assert isinstance(text, str)
        return text
    assert "reasoning_content" not in extra
    assert "reasoning" not in extra
    return None


@pytest.mark.parametrize("model", [*MODELS, "some-unknown-model"])
@pytest.mark.parametrize("include_usage", [False, True])
def test_every_flavour_streams_sdk_parseable_chunks(model: str, include_usage: bool) -> None:
    flavour = flavour_for(model)
    chunks, tokens = build_stream(model, include_usage=include_usage)
    parsed = [ChatCompletionChunk.model_validate(json.loads(sse(c)[6:])) for c in chunks]

    assert {(p.id, p.model, p.created, p.object) for p in parsed} == {
        ("chatcmpl-test", model, CREATED, "chat.completion.chunk")
    }
    role = parsed[0]
    assert role.choices[0].delta.role == "assistant"
    assert role.choices[0].delta.content == ""

    content = ""
    reasoning = ""
    token_chunks = parsed[1 : 1 + len(tokens)]
    for chunk, token in zip(token_chunks, tokens, strict=True):
        assert len(chunk.choices) == 1
        assert chunk.choices[0].finish_reason is None
        delta = chunk.choices[0].delta
        got_reasoning = reasoning_of(delta, flavour.reasoning_style)
        if token.kind == "content":
            assert delta.content == token.text
            assert got_reasoning is None
            content += delta.content
        else:
            assert not delta.content
            assert got_reasoning == token.text
            reasoning += got_reasoning
    assert content == "".join(t.text for t in tokens if t.kind == "content")
    assert reasoning == "".join(t.text for t in tokens if t.kind == "reasoning")
    n_reasoning = flavour.reasoning_tokens(12)
    assert sum(t.kind == "reasoning" for t in tokens) == n_reasoning
    assert (n_reasoning > 0) == (flavour.reasoning_style is not None)

    expected_usage = {
        "prompt_tokens": 9,
        "completion_tokens": 12,
        "total_tokens": 21,
        "completion_tokens_details": {"reasoning_tokens": n_reasoning},
    }
    tail = parsed[1 + len(tokens) :]
    finish = tail[0]
    assert finish.choices[0].finish_reason == "length"
    assert finish.choices[0].delta.content is None
    if flavour.usage == "always":
        assert len(tail) == 1
        assert finish.usage is not None
        assert finish.usage.model_dump(exclude_none=True) == expected_usage
    elif include_usage:
        assert len(tail) == 2
        assert finish.usage is None
        usage_chunk = tail[1]
        assert usage_chunk.choices == []
        assert usage_chunk.usage is not None
        assert usage_chunk.usage.completion_tokens_details is not None
        assert usage_chunk.usage.completion_tokens_details.reasoning_tokens == n_reasoning
        assert usage_chunk.usage.model_dump(exclude_none=True) == expected_usage
        # OpenAI's convention: a null usage on every chunk before the last.
        assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
    else:
        assert len(tail) == 1
        assert all("usage" not in c for c in chunks)


def test_debug_field_reflects_vendor_fields_and_the_sdk_ignores_it() -> None:
    vendor: dict[str, object] = {"plugins": [{"id": "web"}], "routing_strategy": "fastest"}
    chunks, _ = build_stream("mpp-fake-1", include_usage=False, vendor_fields=vendor)
    assert chunks[0]["mpp_debug"] == {"vendor_fields": vendor}
    assert all("mpp_debug" not in c for c in chunks[1:])
    parsed = ChatCompletionChunk.model_validate(chunks[0])
    assert parsed.model_extra == {"mpp_debug": {"vendor_fields": vendor}}
    assert parsed.choices[0].delta.role == "assistant"


def test_exact_chunk_bytes() -> None:
    writer = ChunkWriter("chatcmpl-1", "mpp-fake-thinking", CREATED, MODELS["mpp-fake-thinking"])
    assert sse(writer.token_chunk(Token("Hmm", "reasoning"))) == (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,'
        b'"model":"mpp-fake-thinking","choices":[{"index":0,"delta":'
        b'{"content":null,"reasoning_content":"Hmm"},"finish_reason":null}]}\n\n'
    )
    details = ChunkWriter("c", "openrouter/auto", 1, MODELS["openrouter/auto"])
    assert details.token_chunk(Token(" so", "reasoning"))["choices"][0]["delta"] == {
        "content": "",
        "reasoning": " so",
        "reasoning_details": [
            {"type": "reasoning.text", "text": " so", "format": "unknown", "index": 0}
        ],
    }
    assert details.finish_chunk("stop", Usage(1, 2, 1))["usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
        "completion_tokens_details": {"reasoning_tokens": 1},
    }
    assert SSE_DONE == b"data: [DONE]\n\n"
    # Non-ASCII and newlines are escaped: one event is always one line.
    assert sse({"t": "a\nb\u2028é"}) == b'data: {"t":"a\\nb\\u2028\\u00e9"}\n\n'


def test_writer_counts_what_it_rendered() -> None:
    writer = ChunkWriter("c", "mpp-fake-thinking", 1, MODELS["mpp-fake-thinking"])
    assert writer.sends_usage is False
    writer.token_chunk(Token("a", "reasoning"))
    writer.token_chunk(Token(" b", "content"))
    writer.token_chunk(Token(" c", "content"))
    assert writer.usage_so_far(5) == Usage(5, 3, 1)
    assert ChunkWriter("c", "m", 1, MODELS["mpp-fake-usage"]).sends_usage is True
    assert ChunkWriter("c", "m", 1, PLAIN, include_usage=True).sends_usage is True


def test_plain_flavour_cannot_carry_reasoning() -> None:
    writer = ChunkWriter("c", "mpp-fake-1", 1, PLAIN)
    with pytest.raises(ValueError, match="cannot carry reasoning"):
        writer.token_chunk(Token("x", "reasoning"))
    assert writer.completion_tokens == 0
    with pytest.raises(ValueError, match="cannot carry reasoning"):
        completion_body(
            "c", "mpp-fake-1", 1, [Token("x", "reasoning")], "stop", Usage(1, 1, 1), PLAIN
        )


def test_usage_invariants() -> None:
    assert Usage.of(4, [Token("a", "reasoning"), Token(" b", "content")]) == Usage(4, 2, 1)
    assert Usage(4, 2, 1).total_tokens == 6
    with pytest.raises(ValueError, match="exceed"):
        Usage(1, 1, 2)
    with pytest.raises(ValueError, match=">= 0"):
        Usage(-1, 0, 0)


# -------------------------------------------------------------------- non-streaming


@pytest.mark.parametrize("model", list(MODELS))
def test_completion_body_parses_as_sdk_chat_completion(model: str) -> None:
    flavour = flavour_for(model)
    tokens = list(
        FakeModel().generate("p", max_tokens=20, reasoning_tokens=flavour.reasoning_tokens(20))
    )
    usage = Usage.of(7, tokens)
    data = completion_body(
        "chatcmpl-x", model, CREATED, tokens, "length", usage, flavour, {"timeout_ms": 5}
    )
    completion = ChatCompletion.model_validate(json.loads(json.dumps(data)))
    assert completion.id == "chatcmpl-x"
    assert completion.object == "chat.completion"
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant"
    assert choice.message.content == "".join(t.text for t in tokens if t.kind == "content")
    reasoning = "".join(t.text for t in tokens if t.kind == "reasoning")
    extra = choice.message.model_extra or {}
    if flavour.reasoning_style == "reasoning_content":
        assert extra == {"reasoning_content": reasoning}
        assert len(reasoning.split()) == 5
    elif flavour.reasoning_style == "reasoning_details":
        assert extra == {
            "reasoning": reasoning,
            "reasoning_details": [
                {"type": "reasoning.text", "text": reasoning, "format": "unknown", "index": 0}
            ],
        }
    else:
        assert extra == {}
    assert completion.usage is not None
    assert completion.usage.total_tokens == 27
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == len(reasoning.split())
    assert completion.model_extra == {"mpp_debug": {"vendor_fields": {"timeout_ms": 5}}}


# ------------------------------------------------- the real SDK client, end to end


def _handler(request: httpx2.Request) -> httpx2.Response:
    """A minimal stand-in for the lead's routing, using only this module's pieces."""
    try:
        req = parse_chat_request_json(request.content)
    except WireError as err:
        return httpx2.Response(err.status, json=err.body())
    plan = req.plan(default_max_tokens=10)
    tokens = list(
        FakeModel().generate(
            req.prompt_text(), max_tokens=plan.max_tokens, reasoning_tokens=plan.reasoning_tokens
        )
    )
    usage = Usage.of(req.prompt_tokens(), tokens)
    if not req.stream:
        return httpx2.Response(
            200,
            json=completion_body(
                "chatcmpl-e2e",
                req.model,
                CREATED,
                tokens,
                plan.finish_reason,
                usage,
                req.flavour,
                req.vendor_fields(),
            ),
        )
    writer = ChunkWriter(
        "chatcmpl-e2e",
        req.model,
        CREATED,
        req.flavour,
        include_usage=req.include_usage,
        vendor_fields=req.vendor_fields(),
    )
    events = [sse(writer.role_chunk())]
    events += [sse(writer.token_chunk(t)) for t in tokens]
    events += [sse(c) for c in writer.final_chunks(plan.finish_reason, usage)]
    events.append(SSE_DONE)
    return httpx2.Response(
        200, content=b"".join(events), headers={"content-type": "text/event-stream"}
    )


@pytest.fixture
def client() -> openai.OpenAI:
    return openai.OpenAI(
        api_key="unused",
        base_url="http://devserver.test/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(_handler)),
        max_retries=0,
    )


def _expected(model: str, max_tokens: int) -> tuple[str, str]:
    prompt = "user: Say hello"
    reasoning = flavour_for(model).reasoning_tokens(max_tokens)
    tokens = list(FakeModel().generate(prompt, max_tokens=max_tokens, reasoning_tokens=reasoning))
    return (
        "".join(t.text for t in tokens if t.kind == "content"),
        "".join(t.text for t in tokens if t.kind == "reasoning"),
    )


@pytest.mark.parametrize("model", ["mpp-fake-1", "perceptron-mk1", "openrouter/auto"])
def test_sdk_client_streams_and_sees_usage(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
        max_completion_tokens=16,
        extra_body={"plugins": [{"id": "web"}]},
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expected_content, expected_reasoning = _expected(model, 16)
    assert content == expected_content
    usages = [c.usage for c in chunks if c.usage is not None]
    assert len(usages) == 1
    assert (usages[0].prompt_tokens, usages[0].completion_tokens) == (
        MESSAGE_OVERHEAD_TOKENS + 2,
        16,
    )
    assert (chunks[0].model_extra or {})["mpp_debug"] == {
        "vendor_fields": {"plugins": [{"id": "web"}]}
    }
    if expected_reasoning:
        assert len(expected_reasoning.split()) == 4


def test_sdk_stream_helper_accumulates_reasoning_content(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="mpp-fake-thinking",
        messages=[{"role": "user", "content": "Say hello"}],
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    expected_content, expected_reasoning = _expected("mpp-fake-thinking", 10)
    message = final.choices[0].message
    assert message.content == expected_content
    assert (message.model_extra or {})["reasoning_content"] == expected_reasoning
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None
    assert final.usage.completion_tokens == 10


def test_sdk_stream_helper_refuses_length_finishes(client: openai.OpenAI) -> None:
    # Worth knowing: the fake model always uses a client-named limit in full, so it
    # finishes with "length", and the SDK's .stream() helper raises on that.
    with (
        pytest.raises(openai.LengthFinishReasonError),
        client.chat.completions.stream(
            model="mpp-fake-1", messages=[{"role": "user", "content": "Say hello"}], max_tokens=3
        ) as stream,
    ):
        stream.get_final_completion()


def test_sdk_client_non_streaming(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="moonshotai/kimi-k2.6", messages=[{"role": "user", "content": "Say hello"}]
    )
    expected_content, expected_reasoning = _expected("moonshotai/kimi-k2.6", 10)
    assert completion.choices[0].message.content == expected_content
    assert (completion.choices[0].message.model_extra or {}) == {
        "reasoning_content": expected_reasoning
    }
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 10


def test_sdk_client_raises_our_errors_as_bad_request(client: openai.OpenAI) -> None:
    unknown_part: Any = [{"role": "user", "content": [{"type": "pdf"}]}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="mpp-fake-1",
            messages=unknown_part,
        )
    assert info.value.status_code == 400
    assert info.value.param == "messages[0].content[0].type"
    assert info.value.code == "invalid_value"
    assert info.value.type == "invalid_request_error"


def test_deeply_nested_request_body_is_refused_not_fatal() -> None:
    from mppagent.devserver.wire import WireError, parse_chat_request_json

    with pytest.raises(WireError) as info:
        parse_chat_request_json(b'{"model": "m", "messages": ' + b"[" * 200_000)
    assert info.value.code == "invalid_json"
