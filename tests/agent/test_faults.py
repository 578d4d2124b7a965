"""Every fault the reference server can inject, met by the agent with the right typed error.

After each one, what the agent signed stays within what it was entitled to:
delivered units plus the policy's look-ahead, times the price.
"""

from __future__ import annotations

import pytest

from mppagent import (
    Agent,
    ChannelStatus,
    NetworkError,
    PaymentEvent,
    ServerMisbehaviour,
    SpendPolicy,
    StreamInterrupted,
)
from mppagent.devserver import RunningServer
from mppagent.protocol import ProtocolError, VerificationFailedProblem
from mppagent.session.store import OperationKind
from mppagent.transport.sse import EventTooLarge
from tests.support import CHAT, AgentFactory, ServerFactory, chat_body

PRICE = 25
LOOKAHEAD = 100
POLICY = SpendPolicy(lookahead_units=LOOKAHEAD)


async def run(agent: Agent, server: RunningServer, fault: str, tokens: int = 400) -> int:
    delivered = 0
    headers = {"x-mpp-fault": fault, "x-mpp-fault-after": "20"}
    async for _ in agent.stream("POST", server.url + CHAT, json=chat_body(tokens), headers=headers):
        delivered += 1
    return delivered


def assert_signed_within_entitlement(agent: Agent, delivered_tokens: int) -> None:
    for record in agent.channels.list():
        assert record.signed <= (delivered_tokens + LOOKAHEAD) * PRICE
        assert record.signed <= agent.policy.max_deposit
        assert record.lease_owner is None


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("overcharge", {"overcharge", "receipt_spent"}),
        ("ask-ahead", {"ask_ahead"}),
        ("wrong-channel", {"need_voucher_channel", "receipt_channel"}),
        ("wrong-challenge", {"receipt_challenge"}),
        ("price-change", {"ask_ahead", "receipt_units", "overcharge"}),
        ("endless-need-voucher", {"ask_ahead"}),
    ],
)
async def test_misbehaviour_stops_payment_and_marks_the_channel(
    server: RunningServer, make_agent: AgentFactory, fault: str, check: set[str]
) -> None:
    events: list[PaymentEvent] = []
    agent = await make_agent(policy=POLICY, events=events)
    with pytest.raises(ServerMisbehaviour) as info:
        await run(agent, server, fault)
    assert info.value.check in check
    (record,) = agent.channels.list()
    assert record.status == ChannelStatus.SUSPECT
    assert record.evidence is not None
    assert info.value.check in record.evidence
    final = [e for e in events if e.kind == "final_receipt"]
    assert not final  # the falsified final receipt was never accepted
    assert_signed_within_entitlement(agent, 400)


async def test_suspect_channel_is_never_paid_again(
    server: RunningServer, make_agent: AgentFactory
) -> None:
    agent = await make_agent(policy=POLICY)
    with pytest.raises(ServerMisbehaviour):
        await run(agent, server, "wrong-challenge")
    (bad,) = agent.channels.list()
    assert await run(agent, server, "", tokens=30) == 33
    channels = {r.channel_id: r for r in agent.channels.list()}
    assert len(channels) == 2
    assert channels[bad.channel_id].signed == bad.signed  # nothing more signed on it


async def test_dropped_connection(server: RunningServer, make_agent: AgentFactory) -> None:
    agent = await make_agent(policy=POLICY)
    with pytest.raises(StreamInterrupted):
        await run(agent, server, "drop")
    (record,) = agent.channels.list()
    assert record.status == ChannelStatus.OPEN  # not the server's fault we can prove
    assert record.lease_owner is None
    assert_signed_within_entitlement(agent, 400)


async def test_stalled_stream_times_out(server: RunningServer, make_agent: AgentFactory) -> None:
    agent = await make_agent(policy=POLICY, timeout=1.5)
    with pytest.raises(NetworkError):
        await run(agent, server, "stall")
    assert_signed_within_entitlement(agent, 400)


async def test_huge_event_is_refused(server: RunningServer, make_agent: AgentFactory) -> None:
    agent = await make_agent(policy=POLICY)
    with pytest.raises(EventTooLarge) as info:
        await run(agent, server, "huge-event")
    assert isinstance(info.value, ProtocolError)
    assert_signed_within_entitlement(agent, 400)


async def test_rejected_voucher_is_a_payment_error(
    server: RunningServer, make_agent: AgentFactory
) -> None:
    agent = await make_agent(policy=POLICY)
    with pytest.raises(VerificationFailedProblem):
        await run(agent, server, "reject-voucher", tokens=300)
    assert_signed_within_entitlement(agent, 300)


async def test_slow_voucher_still_completes(
    start_server: ServerFactory, make_agent: AgentFactory
) -> None:
    server = await start_server(slow_voucher_delay=0.3)
    events: list[PaymentEvent] = []
    agent = await make_agent(policy=POLICY, events=events)
    assert await run(agent, server, "slow-voucher", tokens=250) == 253
    stalls = [e.seconds for e in events if e.kind == "voucher" and not e.detail["proactive"]]
    assert stalls
    assert all(s >= 0.3 for s in stalls)


async def test_duplicate_demands_sign_nothing_twice(
    server: RunningServer, make_agent: AgentFactory
) -> None:
    events: list[PaymentEvent] = []
    agent = await make_agent(policy=POLICY, events=events)
    assert await run(agent, server, "duplicate-need-voucher", tokens=250) == 253
    (record,) = agent.channels.list()
    vouchers = [op.amount for op in agent.store.operations(kind=OperationKind.VOUCHER)]
    assert vouchers == sorted(set(vouchers))  # every duplicate demand was a resend
    assert vouchers[:3] == [0, 100 * PRICE, 200 * PRICE]
    assert record.spent == 250 * PRICE


async def test_voucher_deadline(start_server: ServerFactory, make_agent: AgentFactory) -> None:
    server = await start_server(slow_voucher_delay=5)
    agent = await make_agent(policy=POLICY, voucher_deadline=0.5)
    with pytest.raises(NetworkError, match="in time"):
        await run(agent, server, "slow-voucher", tokens=250)
