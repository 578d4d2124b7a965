"""SyncAgent: the blocking API, run in a worker thread while the devserver runs on the test loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mppagent import ChannelStatus, PaymentEvent, PolicyViolation, SpendPolicy, SqliteChannelStore
from mppagent.devchain import DevAccount, DevChain
from mppagent.devserver import RunningServer
from mppagent.sync import SyncAgent
from mppagent.transport.sse import SSEParser

from .conftest import CHAT, PRICE, expected_answer

T = TypeVar("T")

MESSAGES = [{"role": "user", "content": "Tell me about payment channels."}]


def body(tokens: int, *, stream: bool = True) -> dict[str, Any]:
    return {"model": "mpp-fake-1", "messages": MESSAGES, "stream": stream, "max_tokens": tokens}


@pytest.fixture
def new_agent(chain: DevChain, payer: DevAccount, tmp_path: Path) -> Callable[..., SyncAgent]:
    def make(**kwargs: Any) -> SyncAgent:
        kwargs.setdefault("store", SqliteChannelStore(tmp_path / "sync.db"))
        return SyncAgent(private_key=payer.private_key, rpc_url=chain.rpc_url, **kwargs)

    return make


async def off_loop(fn: Callable[[], T]) -> T:
    """Blocking code must not run on the test loop: the devserver lives there."""
    return await asyncio.to_thread(fn)


async def test_request_stream_and_close_channel(
    server: RunningServer, new_agent: Callable[..., SyncAgent]
) -> None:
    url = server.url + CHAT
    events: list[PaymentEvent] = []
    threads: set[str] = set()

    def observe(event: PaymentEvent) -> None:
        events.append(event)
        threads.add(threading.current_thread().name)

    def run() -> tuple[Any, ...]:
        with new_agent(observer=observe) as agent:
            response = agent.request("POST", url, json=body(20, stream=False))
            datas = [e.data for e in agent.stream("POST", url, json=body(120))]
            (record,) = agent.channels.list()
            closed = agent.channels.close(record.channel_id)
            final = agent.channels.get(record.channel_id)
        return response, datas, record, closed, final, agent.closed

    response, datas, record, closed, final, was_closed = await off_loop(run)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == expected_answer(body(20)).content
    assert len(datas) == 120 + 3  # role, tokens, finish, [DONE]
    assert datas[-1] == "[DONE]"
    assert record.spent == 140 * PRICE
    assert (closed.paid, closed.refunded) == (140 * PRICE, record.deposit - 140 * PRICE)
    assert final.status == ChannelStatus.CLOSED
    assert was_closed
    assert threads == {"mppagent-sync-agent"}  # observers run on the agent's thread
    assert [e.amount for e in events if e.kind == "final_receipt"] == [140 * PRICE]


async def test_closing_a_stream_early_releases_the_channel(
    server: RunningServer, new_agent: Callable[..., SyncAgent]
) -> None:
    url = server.url + CHAT
    events: list[PaymentEvent] = []

    def run() -> tuple[list[str], list[str], int]:
        with new_agent(observer=events.append) as agent:
            stream = agent.stream("POST", url, json=body(2000))
            first = [next(stream).data for _ in range(5)]
            stream.close()  # mid-stream: the pump stops, the response closes
            # The lease is free again: the next stream reuses the same channel.
            second = [e.data for e in agent.stream("POST", url, json=body(10))]
            return first, second, len(agent.channels.list())

    first, second, channels = await off_loop(run)
    assert len(first) == 5
    assert len(second) == 10 + 3
    assert channels == 1
    assert len([e for e in events if e.kind == "open"]) == 1


async def test_errors_keep_their_type_across_the_thread(
    server: RunningServer, new_agent: Callable[..., SyncAgent]
) -> None:
    url = server.url + CHAT

    def run() -> list[BaseException]:
        caught: list[BaseException] = []
        with new_agent(policy=SpendPolicy(max_price={"llm_token": 1})) as agent:
            with pytest.raises(PolicyViolation, match="exceeds the limit 1") as request_info:
                agent.request("POST", url, json=body(5, stream=False))
            caught.append(request_info.value)
            with pytest.raises(PolicyViolation) as stream_info:
                next(iter(agent.stream("POST", url, json=body(5))))
            caught.append(stream_info.value)
            with (
                agent.http_client() as client,
                pytest.raises(PolicyViolation) as client_info,
            ):
                client.post(url, json=body(5))
            caught.append(client_info.value)
        return caught

    caught = await off_loop(run)
    assert [type(e) for e in caught] == [PolicyViolation] * 3
    assert {e.rule for e in caught if isinstance(e, PolicyViolation)} == {"max_price"}


async def test_http_client_streams_the_body_chunk_by_chunk_without_payment_events(
    server: RunningServer, new_agent: Callable[..., SyncAgent]
) -> None:
    url = server.url + CHAT

    def run() -> tuple[list[bytes], bytes, bool]:
        with new_agent() as agent:
            client = agent.http_client()
            with client.stream("POST", url, json=body(400)) as response:
                assert response.status_code == 200
                chunks = list(response.iter_raw())
            plain = client.post(url, json=body(3, stream=False)).content
            client.close()  # closing the client leaves the agent usable
            again = agent.request("POST", url, json=body(1, stream=False))
            return chunks, plain, again.status_code == 200

    chunks, plain, usable = await off_loop(run)
    assert len(chunks) > 1
    parser = SSEParser()
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    assert {e.event for e in events} == {"message"}  # payment-* events were taken out
    assert len(events) == 400 + 3
    assert events[-1].data == "[DONE]"
    assert b'"content":' in plain
    assert usable


async def test_misuse_is_reported_not_deadlocked(
    server: RunningServer, new_agent: Callable[..., SyncAgent]
) -> None:
    url = server.url + CHAT
    from_observer: list[BaseException] = []

    def run() -> None:
        agent: SyncAgent | None = None

        def observe(_event: PaymentEvent) -> None:
            assert agent is not None
            try:
                agent.channels.sync()
            except RuntimeError as exc:
                from_observer.append(exc)

        agent = new_agent(observer=observe)
        agent.request("POST", url, json=body(2, stream=False))
        agent.close()
        agent.close()  # idempotent
        with pytest.raises(RuntimeError, match="this SyncAgent is closed"):
            agent.request("POST", url, json=body(2, stream=False))

    await off_loop(run)
    assert from_observer
    assert "would deadlock" in str(from_observer[0])
