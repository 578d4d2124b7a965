"""The real ``openai`` SDK paying through an agent: devserver on uvicorn, anvil chain."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, cast

import openai
import pytest

from mppagent import Agent, PaymentEvent, PolicyViolation, SpendPolicy, SqliteChannelStore
from mppagent.devchain import DevAccount, DevChain
from mppagent.devserver import RunningServer
from mppagent.errors import ConfigError
from mppagent.llm import load_profiles
from mppagent.openai import async_client, client, http_client, sync_http_client
from mppagent.sync import SyncAgent

from .conftest import API_KEY, PRICE, AgentFactory, ServerFactory, expected_answer

MESSAGES: list[Any] = [{"role": "user", "content": "Tell me about payment channels."}]
PAYMENT_WORDS = ("payment", "receipt", "voucher", "channelid", "challenge")


def request_body(tokens: int, **extra: Any) -> dict[str, Any]:
    return {"model": "mpp-fake-1", "messages": MESSAGES, "max_tokens": tokens, **extra}


def keys(value: Any) -> set[str]:
    """Every key at any depth of a JSON-like value."""
    if isinstance(value, dict):
        return set(value).union(*(keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys(v) for v in value))
    return set()


def assert_no_payment_data(obj: Any) -> None:
    """Only OpenAI's fields, plus the devserver's ``mpp_debug`` reflection, reach the SDK.

    (Checked on keys: the fake model's vocabulary itself has words like "voucher".)
    """
    assert set(obj.model_extra or {}) <= {"mpp_debug"}
    assert obj.model_dump().get("mpp_debug", {"vendor_fields": {}}) == {"vendor_fields": {}}
    found = [k for k in keys(obj.model_dump()) if any(w in k.lower() for w in PAYMENT_WORDS)]
    assert found == []


async def unpaid(bearer_server: RunningServer, tokens: int, *, stream: bool) -> str:
    """The same request answered for free by a bearer-key server (the SDK's own httpx2)."""
    async with openai.AsyncOpenAI(base_url=bearer_server.url + "/v1", api_key=API_KEY) as free:
        if not stream:
            completion = await free.chat.completions.create(**request_body(tokens))
            return completion.choices[0].message.content or ""
        parts: list[str] = []
        async for chunk in await free.chat.completions.create(**request_body(tokens), stream=True):
            parts.extend(c.delta.content or "" for c in chunk.choices)
        return "".join(parts)


async def test_async_sdk_non_streaming_is_paid_transparently(
    server: RunningServer, bearer_server: RunningServer, make_agent: AgentFactory
) -> None:
    events: list[PaymentEvent] = []
    agent = await make_agent(events=events)
    sdk = openai.AsyncOpenAI(
        base_url=server.url + "/v1", api_key="unused", http_client=cast(Any, http_client(agent))
    )
    completion = await sdk.chat.completions.create(**request_body(30))

    expected = expected_answer(request_body(30))
    assert completion.choices[0].message.content == expected.content
    assert completion.choices[0].message.content == await unpaid(bearer_server, 30, stream=False)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 30
    assert_no_payment_data(completion)
    (record,) = agent.channels.list()
    assert (record.spent, record.signed) == (30 * PRICE, 30 * PRICE)
    # The open's zero voucher cannot pay 30 tokens: the server asks (insufficient
    # balance) and the agent signs exactly the price of the answer.
    assert [e.kind for e in events] == ["challenge", "open", "voucher", "receipt"]
    assert events[2].amount == 30 * PRICE

    # Closing the SDK client must not close the agent: it keeps paying for others.
    await sdk.close()
    assert not agent.http.is_closed
    again = openai.AsyncOpenAI(
        base_url=server.url + "/v1", api_key="unused", http_client=cast(Any, http_client(agent))
    )
    await again.chat.completions.create(**request_body(10))
    (record,) = agent.channels.list()
    assert record.spent == 40 * PRICE


async def test_async_sdk_stream_is_paid_and_sees_no_payment_events(
    server: RunningServer, bearer_server: RunningServer, make_agent: AgentFactory
) -> None:
    events: list[PaymentEvent] = []
    agent = await make_agent(events=events)
    async with async_client(agent, base_url=server.url + "/v1") as sdk:
        stream = await sdk.chat.completions.create(
            **request_body(300), stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]

    # role chunk + one per token + finish chunk + usage chunk; nothing else reached the SDK
    assert len(chunks) == 300 + 3
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    for chunk in chunks:
        assert_no_payment_data(chunk)
    text = "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices)
    assert text == expected_answer(request_body(300)).content
    assert text == await unpaid(bearer_server, 300, stream=True)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 300

    # The final receipt was verified before the SDK saw the end of the stream.
    (record,) = agent.channels.list()
    assert record.spent == 300 * PRICE
    assert [e.amount for e in events if e.kind == "final_receipt"] == [300 * PRICE]
    assert [e for e in events if e.kind == "voucher"]  # paid mid-stream, beyond the deposit ask


async def test_placeholder_key_is_not_sent_to_a_server_that_takes_keys_or_payment(
    start_server: ServerFactory, make_agent: AgentFactory
) -> None:
    server = await start_server(auth_mode="either", api_keys=(API_KEY,))
    agent = await make_agent()
    url = server.url + "/v1"
    with_key = openai.AsyncOpenAI(
        base_url=url,
        api_key="unused",
        http_client=cast(Any, http_client(agent, send_api_key=True)),
        max_retries=0,
    )
    with pytest.raises(openai.AuthenticationError, match="Incorrect API key provided"):
        await with_key.chat.completions.create(**request_body(5))
    assert agent.channels.list() == []

    paying = openai.AsyncOpenAI(
        base_url=url, api_key="unused", http_client=cast(Any, http_client(agent))
    )
    completion = await paying.chat.completions.create(**request_body(5))
    assert completion.choices[0].message.content == expected_answer(request_body(5)).content
    (record,) = agent.channels.list()
    assert record.spent == 5 * PRICE


async def test_agent_errors_pass_through_the_sdk_with_their_type(
    server: RunningServer, make_agent: AgentFactory
) -> None:
    agent = await make_agent(policy=SpendPolicy(max_price={"llm_token": PRICE - 1}))
    sdk = async_client(agent, base_url=server.url + "/v1")
    with pytest.raises(PolicyViolation, match=r"max_price: price 25 per llm_token exceeds"):
        await sdk.chat.completions.create(**request_body(5))
    assert agent.channels.list() == []


async def test_async_client_from_profile(
    server: RunningServer, make_agent: AgentFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await make_agent()
    local = load_profiles({"local": {"base_url": server.url + "/v1"}})["local"]
    sdk = async_client(agent, profile=local)
    assert str(sdk.base_url) == server.url + "/v1/"
    assert sdk.api_key == "mppagent-pays-with-mpp"
    completion = await sdk.chat.completions.create(**request_body(8))
    assert completion.choices[0].message.content == expected_answer(request_body(8)).content

    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="'openrouter' needs an API key: set OPENROUTER_API_KEY"):
        async_client(agent, profile="openrouter")
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        async_client(agent, profile="nope")
    with pytest.raises(ConfigError, match="needs a base_url or a provider profile"):
        async_client(agent)


def test_missing_openai_sdk_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # makes "import openai" fail
    with pytest.raises(ConfigError, match=r'pip install "mppagent\[openai\]"'):
        async_client(cast(Agent, object()), base_url="http://x/v1")
    with pytest.raises(ConfigError, match=r'pip install "mppagent\[openai\]"'):
        client(cast(SyncAgent, object()), base_url="http://x/v1")


async def test_sync_sdk_with_sync_agent(
    chain: DevChain,
    server: RunningServer,
    bearer_server: RunningServer,
    payer: DevAccount,
    tmp_path: Path,
) -> None:
    events: list[PaymentEvent] = []

    def run() -> tuple[Any, list[Any], list[Any], bool]:
        with SyncAgent(
            private_key=payer.private_key,
            rpc_url=chain.rpc_url,
            store=SqliteChannelStore(tmp_path / "sync.db"),
            observer=events.append,
        ) as agent:
            sdk = openai.OpenAI(
                base_url=server.url + "/v1",
                api_key="unused",
                http_client=cast(Any, sync_http_client(agent)),
            )
            completion = sdk.chat.completions.create(**request_body(20))
            chunks = list(sdk.chat.completions.create(**request_body(250), stream=True))
            sdk.close()
            records = agent.channels.list()
            # The convenience builder, on the same (still open) agent.
            with client(agent, base_url=server.url + "/v1") as again:
                again.chat.completions.create(**request_body(1))
            return completion, chunks, records, agent.closed

    completion, chunks, records, closed = await asyncio.to_thread(run)
    assert not closed
    assert completion.choices[0].message.content == expected_answer(request_body(20)).content
    assert completion.choices[0].message.content == await unpaid(bearer_server, 20, stream=False)
    assert len(chunks) == 250 + 2
    for chunk in chunks:
        assert_no_payment_data(chunk)
    text = "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices)
    assert text == expected_answer(request_body(250)).content
    assert text == await unpaid(bearer_server, 250, stream=True)
    (record,) = records
    assert record.spent == 270 * PRICE
    # Receipts report the channel's cumulative spend: 20 tokens, then 250 streamed.
    assert [e.amount for e in events if e.kind == "final_receipt"] == [270 * PRICE]
    assert len([e for e in events if e.kind == "open"]) == 1
