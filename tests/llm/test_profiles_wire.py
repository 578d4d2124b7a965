"""Each provider profile's distinctive wire feature, against the devserver flavour imitating it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from mppagent import Agent
from mppagent.devserver import RunningServer
from mppagent.errors import ConfigError
from mppagent.llm import (
    ChatDelta,
    ProviderError,
    ProviderProfile,
    build_chat_request,
    load_profiles,
    parse_chunk,
)
from mppagent.openai import async_client

from .conftest import API_KEY, PRICE, AgentFactory, expected_answer

PROMPT = "What does a payment channel settle?"


def pointed_at(server: RunningServer, name: str) -> ProviderProfile:
    """The built-in profile ``name`` with its base URL overridden, as a user config would."""
    return load_profiles({name: {"base_url": server.url + "/v1"}})[name]


def merge(deltas: list[ChatDelta]) -> tuple[str, str, list[dict[str, Any]], list[str]]:
    content = "".join(d.content for d in deltas)
    reasoning = "".join(d.reasoning for d in deltas)
    usages = [d.usage for d in deltas if d.usage is not None]
    finishes = [d.finish_reason for d in deltas if d.finish_reason is not None]
    return content, reasoning, usages, finishes


async def paid_stream(
    agent: Agent, profile: ProviderProfile, body: dict[str, Any]
) -> tuple[dict[str, Any], list[ChatDelta]]:
    """Stream through the paying agent; return the first chunk and the parsed deltas."""
    datas = [
        event.data
        async for event in agent.stream(
            "POST", profile.chat_url, json=body, headers=profile.request_headers({})
        )
    ]
    assert datas[-1] == "[DONE]"
    deltas = [d for d in map(parse_chunk, datas) if d is not None]
    return json.loads(datas[0]), deltas


class Recorder(httpx.AsyncBaseTransport):
    """Real HTTP, with every request kept for inspection of what went on the wire."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize(
    ("name", "has_reasoning"),
    [("perceptron", True), ("perceptron-mk1", True), ("local", False)],
)
async def test_mpp_profiles_pay_and_parse_reasoning_content_and_usage(
    server: RunningServer,
    make_agent: AgentFactory,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    has_reasoning: bool,
) -> None:
    monkeypatch.delenv("PERCEPTRON_API_KEY", raising=False)  # "either": no key, so it pays
    profile = pointed_at(server, name)
    params: dict[str, Any] = {}
    if name == "perceptron-mk1":
        params["vision_config"] = {"max_frames": 8}
    body = build_chat_request(prompt=PROMPT, profile=profile, params=params, max_tokens=40)
    assert body["model"] == profile.default_model
    assert body["stream_options"] == {"include_usage": True}
    agent = await make_agent()

    first, deltas = await paid_stream(agent, profile, body)

    expected = expected_answer(body)
    content, reasoning, usages, finishes = merge(deltas)
    assert (content, reasoning) == (expected.content, expected.reasoning)
    assert bool(reasoning) is has_reasoning
    assert usages == [expected.usage]  # asked for with stream_options.include_usage
    assert finishes == ["length"]
    assert first["mpp_debug"] == {"vendor_fields": params}
    (record,) = agent.channels.list()
    assert record.spent == 40 * PRICE


async def test_without_include_usage_the_same_flavour_sends_no_usage(
    server: RunningServer, make_agent: AgentFactory
) -> None:
    # The control for the test above: usage really depends on the profile asking for it.
    profile = pointed_at(server, "perceptron-mk1").model_copy(update={"include_usage": False})
    body = build_chat_request(prompt=PROMPT, profile=profile, max_tokens=12)
    assert "stream_options" not in body
    _, deltas = await paid_stream(await make_agent(), profile, body)
    assert merge(deltas)[2] == []


async def test_mpp_router_sends_routing_defaults_and_pays(
    server: RunningServer, make_agent: AgentFactory
) -> None:
    profile = pointed_at(server, "mpp-router")
    body = build_chat_request(
        model="mpp-fake-usage",
        prompt=PROMPT,
        profile=profile,
        params={"max_input_price_per_million": 0.5, "allow_external": False},
        max_tokens=16,
    )
    assert body["stream"] is True  # the profile streams by default
    agent = await make_agent()
    first, deltas = await paid_stream(agent, profile, body)
    assert first["mpp_debug"] == {
        "vendor_fields": {
            "routing_strategy": "cheapest",
            "timeout_ms": 120_000,
            "max_input_price_per_million": 0.5,
            "allow_external": False,
        }
    }
    assert merge(deltas)[0] == expected_answer(body).content
    (record,) = agent.channels.list()
    assert record.spent == 16 * PRICE


async def test_openrouter_through_the_sdk_sends_key_headers_and_reads_reasoning_details(
    bearer_server: RunningServer, make_agent: AgentFactory
) -> None:
    recorder = Recorder()
    agent = await make_agent(transport=recorder)
    profile = pointed_at(bearer_server, "openrouter")
    sdk = async_client(agent, profile=profile, env={"OPENROUTER_API_KEY": API_KEY})
    stream = await sdk.chat.completions.create(
        model=profile.default_model,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=32,
        stream=True,
        extra_body={"reasoning": {"effort": "low"}},
    )
    chunks = [chunk async for chunk in stream]

    (request,) = recorder.requests
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["http-referer"] == "https://pypi.org/project/mppagent/"
    assert request.headers["x-title"] == "mppagent"
    sent = json.loads(request.content)
    assert sent["reasoning"] == {"effort": "low"}
    deltas = [parse_chunk(c.model_dump_json(exclude_unset=True)) for c in chunks]
    content, reasoning, usages, finishes = merge([d for d in deltas if d is not None])
    expected = expected_answer(sent)
    assert (content, reasoning) == (expected.content, expected.reasoning)
    assert reasoning  # from delta.reasoning / reasoning_details
    extras = [choice.delta.model_extra or {} for c in chunks for choice in c.choices]
    details = [d["text"] for extra in extras for d in extra.get("reasoning_details", [])]
    assert "".join(details) == expected.reasoning
    assert usages == [expected.usage]  # OpenRouter reports usage on every stream, unasked
    assert finishes == ["length"]
    reflected = {"vendor_fields": {"reasoning": {"effort": "low"}}}
    assert chunks[0].model_extra == {"mpp_debug": reflected}
    assert agent.channels.list() == []  # paid by key: no payment happened


async def test_ppq_sends_its_key_and_web_plugin_by_default(
    bearer_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = pointed_at(bearer_server, "ppq")
    body = build_chat_request(prompt=PROMPT, profile=profile, max_tokens=10)
    monkeypatch.delenv("PPQ_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="'ppq' needs an API key: set PPQ_API_KEY"):
        profile.request_headers()

    monkeypatch.setenv("PPQ_API_KEY", API_KEY)
    async with httpx.AsyncClient() as http:
        response = await http.post(profile.chat_url, json=body, headers=profile.request_headers())
        assert response.status_code == 200
        datas = [
            line.removeprefix("data: ")
            for line in response.text.split("\n\n")
            if line.startswith("data: ")
        ]
        deltas = [d for d in map(parse_chunk, datas) if d is not None]
        assert json.loads(datas[0])["mpp_debug"] == {"vendor_fields": {"plugins": [{"id": "web"}]}}
        assert json.loads(datas[0])["model"] == "gpt-4o"
        assert merge(deltas)[0] == expected_answer(body).content
        assert merge(deltas)[2] == []  # plain flavour, usage not asked for

        monkeypatch.setenv("PPQ_API_KEY", "sk-wrong")
        refused = await http.post(profile.chat_url, json=body, headers=profile.request_headers())
    error = ProviderError.from_response(refused.status_code, refused.content, profile)
    assert str(error) == (
        "401 Unauthorized from ppq: check PPQ_API_KEY (provider said: Incorrect API key provided.)"
    )
