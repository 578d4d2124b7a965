"""The paying agent end to end: real anvil chain, real escrow, reference server over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mppagent import (
    ChannelStatus,
    CloseNotReady,
    PaymentEvent,
    PolicyViolation,
    SpendPolicy,
    SqliteChannelStore,
)
from mppagent.devchain import DevAccount, DevChain
from mppagent.devserver import RunningServer
from mppagent.session.store import OperationKind
from mppagent.tempo.escrow import Token
from tests.support import CHAT, AgentFactory, ServerFactory, chat_body, drain, token_balances

PRICE = 25


async def test_stream_1000_tokens_then_close_everything_agrees(
    chain: DevChain,
    server: RunningServer,
    make_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
) -> None:
    events: list[PaymentEvent] = []
    agent = await make_agent(events=events)
    payer_before, payee_before = await token_balances(chain, payer.address, payee.address)

    texts = [e.data async for e in agent.stream("POST", server.url + CHAT, json=chat_body(1000))]
    assert texts[-1] == "[DONE]"
    assert len(texts) == 1000 + 3  # role chunk, 1000 tokens, finish chunk, [DONE]

    vouchers = [e for e in events if e.kind == "voucher"]
    assert len(vouchers) >= 10
    assert [v.amount for v in vouchers] == sorted(v.amount for v in vouchers)
    final = [e for e in events if e.kind == "final_receipt"]
    assert [(f.amount, f.detail["units"], f.detail["billed"]) for f in final] == [
        (1000 * PRICE, 1000, 1000 * PRICE)
    ]
    assert final[0].detail["bound"] >= 1000  # the token meter's bound covers the bill

    (record,) = agent.channels.list()
    assert record.status == ChannelStatus.OPEN
    assert record.spent == 1000 * PRICE
    # Vouchers may run ahead of delivery by up to the policy's look-ahead (200 tokens),
    # paid proactively so the stream need not pause; the close settles what was spent.
    assert 1000 * PRICE <= record.accepted <= record.signed <= 1200 * PRICE
    history = [op.amount for op in agent.store.operations(kind=OperationKind.VOUCHER)]
    assert history == sorted(set(history))

    result = await agent.channels.close(record.channel_id)
    assert (result.paid, result.refunded) == (1000 * PRICE, record.deposit - 1000 * PRICE)
    payer_after, payee_after = await token_balances(chain, payer.address, payee.address)
    assert payee_after - payee_before == 1000 * PRICE
    assert payer_before - payer_after == 1000 * PRICE
    assert agent.channels.get(record.channel_id).status == ChannelStatus.CLOSED


async def test_non_streaming_request_pays_for_exactly_what_it_gets(
    server: RunningServer, make_agent: AgentFactory
) -> None:
    agent = await make_agent()
    response = await agent.request("POST", server.url + CHAT, json=chat_body(40, stream=False))
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] == 40
    (record,) = agent.channels.list()
    assert (record.spent, record.signed) == (40 * PRICE, 40 * PRICE)


async def test_channel_is_reused_by_a_second_agent_on_the_same_store(
    server: RunningServer, make_agent: AgentFactory, tmp_path: Path
) -> None:
    store = tmp_path / "shared.db"
    first = await make_agent(store_path=store)
    async for _ in first.stream("POST", server.url + CHAT, json=chat_body(150)):
        pass
    await first.aclose()
    events: list[PaymentEvent] = []
    second = await make_agent(store_path=store, events=events)
    async for _ in second.stream("POST", server.url + CHAT, json=chat_body(150)):
        pass
    assert not [e for e in events if e.kind == "open"]
    (record,) = second.channels.list()
    assert record.spent == 300 * PRICE
    assert 300 * PRICE <= record.signed <= 500 * PRICE


async def test_top_up_mid_stream(
    chain: DevChain, start_server: ServerFactory, make_agent: AgentFactory
) -> None:
    server = await start_server(suggested_deposit=60 * PRICE, lookahead_tokens=50)
    events: list[PaymentEvent] = []
    agent = await make_agent(events=events, policy=SpendPolicy(max_deposit=1_000 * PRICE))
    async for _ in agent.stream("POST", server.url + CHAT, json=chat_body(300)):
        pass
    top_ups = [e for e in events if e.kind == "top_up"]
    assert top_ups, "the deposit of 60 tokens cannot pay for 300 without a top-up"
    (record,) = agent.channels.list()
    client = chain.client()
    try:
        state = await agent.manager.escrow(chain.escrow).get_channel(record.channel_id)
    finally:
        await client.close()
    assert state.deposit == record.deposit == 60 * PRICE + sum(t.amount for t in top_ups)
    assert record.spent == 300 * PRICE
    assert record.signed <= record.deposit


async def test_gone_channel_is_retired_and_replaced_once(
    server: RunningServer, make_agent: AgentFactory
) -> None:
    agent = await make_agent()
    async for _ in agent.stream("POST", server.url + CHAT, json=chat_body(20)):
        pass
    (first,) = agent.channels.list()
    async for _ in agent.stream(
        "POST", server.url + CHAT, json=chat_body(20), headers={"x-mpp-fault": "gone"}
    ):
        pass
    channels = {r.channel_id: r for r in agent.channels.list()}
    assert len(channels) == 2
    assert channels[first.channel_id].status == ChannelStatus.GONE
    (second,) = [r for r in channels.values() if r.channel_id != first.channel_id]
    assert second.status == ChannelStatus.OPEN
    assert second.spent == 20 * PRICE


async def test_forced_close_waits_out_the_grace_period(
    chain: DevChain, server: RunningServer, make_agent: AgentFactory, payer: DevAccount
) -> None:
    agent = await make_agent()
    async for _ in agent.stream("POST", server.url + CHAT, json=chat_body(10)):
        pass
    (record,) = agent.channels.list()
    before = (await token_balances(chain, payer.address))[0]
    await agent.channels.request_close(record.channel_id)
    assert agent.channels.get(record.channel_id).status == ChannelStatus.CLOSE_REQUESTED
    with pytest.raises(CloseNotReady) as early:
        await agent.channels.withdraw(record.channel_id)
    assert 15 * 60 < early.value.seconds_left <= 16 * 60
    await chain.increase_time(16 * 60 + 1)
    result = await agent.channels.withdraw(record.channel_id)
    after = (await token_balances(chain, payer.address))[0]
    # Nothing was settled on chain yet, so the whole deposit comes back.
    assert result.refunded == after - before == record.deposit
    assert agent.channels.get(record.channel_id).status == ChannelStatus.CLOSED


async def test_parallel_streams_use_a_pool_of_channels(
    server: RunningServer, make_agent: AgentFactory
) -> None:
    agent = await make_agent(policy=SpendPolicy(max_channels_per_scope=3))

    async def one() -> int:
        count = 0
        async for _ in agent.stream("POST", server.url + CHAT, json=chat_body(200)):
            count += 1
        return count

    counts = await asyncio.gather(one(), one(), one())
    assert counts == [203, 203, 203]
    records = agent.channels.list()
    assert len(records) == 3
    assert sum(r.spent for r in records) == 600 * PRICE
    for record in records:
        amounts = [
            op.amount
            for op in agent.store.operations(record.channel_id, kind=OperationKind.VOUCHER)
        ]
        assert amounts == sorted(set(amounts))


async def test_delegated_signer(
    chain: DevChain, server: RunningServer, make_agent: AgentFactory
) -> None:
    agent = await make_agent(delegate_signer=True)
    async for _ in agent.stream("POST", server.url + CHAT, json=chat_body(120)):
        pass
    (record,) = agent.channels.list()
    state = await agent.manager.escrow(chain.escrow).get_channel(record.channel_id)
    assert state.authorized_signer == record.authorized_signer != agent.manager.payer
    assert record.signer_key is not None
    result = await agent.channels.close(record.channel_id)
    assert result.paid == 120 * PRICE


async def test_price_above_policy_pays_nothing(
    chain: DevChain, server: RunningServer, make_agent: AgentFactory, payer: DevAccount
) -> None:
    agent = await make_agent(policy=SpendPolicy(max_price={"llm_token": 10}))
    before = await token_balances(chain, payer.address)
    with pytest.raises(PolicyViolation) as info:
        await drain(agent, server.url + CHAT, 10)
    assert info.value.rule == "max_price"
    assert agent.channels.list() == []
    assert await token_balances(chain, payer.address) == before


async def test_payee_allowlist(server: RunningServer, make_agent: AgentFactory) -> None:
    agent = await make_agent(policy=SpendPolicy(allowed_payees=("0x" + "12" * 20,)))
    with pytest.raises(PolicyViolation) as info:
        await agent.request("POST", server.url + CHAT, json=chat_body(5, stream=False))
    assert info.value.rule == "allowed_payees"
    assert agent.channels.list() == []


async def test_request_budget_stops_the_stream_with_state_saved(
    server: RunningServer, make_agent: AgentFactory
) -> None:
    agent = await make_agent(policy=SpendPolicy(budget_per_request=150 * PRICE))
    with pytest.raises(PolicyViolation) as info:
        await drain(agent, server.url + CHAT, 400)
    assert info.value.rule == "budget_per_request"
    (record,) = agent.channels.list()
    assert record.signed <= 150 * PRICE
    assert record.lease_owner is None  # released


async def test_daily_budget_spans_requests(server: RunningServer, make_agent: AgentFactory) -> None:
    agent = await make_agent(policy=SpendPolicy(budget_per_day=250 * PRICE))
    async for _ in agent.stream("POST", server.url + CHAT, json=chat_body(200)):
        pass
    with pytest.raises(PolicyViolation) as info:
        await drain(agent, server.url + CHAT, 200)
    assert info.value.rule == "budget_per_day"
    (record,) = agent.channels.list()
    assert record.signed <= 250 * PRICE


async def test_store_survives_for_a_new_process_view(
    server: RunningServer, make_agent: AgentFactory, tmp_path: Path
) -> None:
    agent = await make_agent()
    async for _ in agent.stream("POST", server.url + CHAT, json=chat_body(30)):
        pass
    reopened = SqliteChannelStore(tmp_path / "agent.db")
    (record,) = reopened.channels()
    assert (record.signed, record.spent, record.status) == (30 * PRICE, 30 * PRICE, "open")


async def test_unknown_escrow_code_is_never_funded(
    chain: DevChain, start_server: ServerFactory, make_agent: AgentFactory, payer: DevAccount
) -> None:
    # A server that names some other contract (here: a token) as its "escrow".
    fake = chain.token
    server = await start_server(escrow=fake)
    agent = await make_agent()
    before = await token_balances(chain, payer.address)
    with pytest.raises(PolicyViolation) as info:
        await drain(agent, server.url + CHAT, 10)
    assert info.value.rule == "allowed_escrows"
    assert agent.channels.list() == []
    assert await token_balances(chain, payer.address) == before  # nothing approved or deposited
    client = chain.client()
    try:
        assert await Token(client, chain.token).allowance(payer.address, fake) == 0
    finally:
        await client.close()


async def test_escrow_code_recognised_at_any_address(chain: DevChain) -> None:
    from mppagent.tempo.artifacts import load_artifact
    from mppagent.tempo.chain import ChainClient

    client: ChainClient = chain.client()
    try:
        artifact = load_artifact("TempoStreamChannel")
        tx = await client.sign_deploy(chain.deployer.wallet(), artifact.bytecode, context="deploy")
        second = str((await client.send_and_wait(tx))["contractAddress"])
        for address in (chain.escrow, second):
            assert artifact.matches_runtime(await client.get_code(address))
        assert not artifact.matches_runtime(await client.get_code(chain.token))
        assert not artifact.matches_runtime(b"")
    finally:
        await client.close()
