"""The paying agent on the Tempo devchain (anvil T4): one ``0x76`` per open and top-up.

The module rebinds the ``chain`` fixture to the Tempo devchain, so the shared
``start_server``/``make_agent`` fixtures run the reference server and the agent
there. pathUSD is both the session currency and the fee token, so balances
move by what was paid *plus* fees: settlement is checked to the base unit
through the escrow's events, and fees are bounded.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from mppagent import ChannelStatus, PaymentEvent
from mppagent.devchain import DevAccount, DevChain
from mppagent.session.store import OperationKind, OperationState
from mppagent.tempo.escrow import Escrow
from mppagent.tempo.tempotx import decode_tempo_transaction
from tests.agent.test_crash import spawn
from tests.support import CHAT, AgentFactory, ServerFactory, chat_body, token_balances

PRICE = 25
FEE_BOUND = 100_000  # pathUSD base units (0.1 pathUSD): far above what a few T4 txs cost


@pytest.fixture
def chain(tempo_chain: DevChain) -> DevChain:
    return tempo_chain


async def test_open_vouchers_top_up_close_on_tempo(
    chain: DevChain,
    start_server: ServerFactory,
    make_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
) -> None:
    # A 60-token deposit forces a top-up during a 150-token stream.
    server = await start_server(suggested_deposit=60 * PRICE, lookahead_tokens=50)
    events: list[PaymentEvent] = []
    agent = await make_agent(events=events)
    payer_before, payee_before = await token_balances(chain, payer.address, payee.address)

    texts = [e.data async for e in agent.stream("POST", server.url + CHAT, json=chat_body(150))]
    assert texts[-1] == "[DONE]"
    (record,) = agent.channels.list()
    assert record.spent == 150 * PRICE
    assert [e.kind for e in events].count("voucher") >= 5

    # One 0x76 per funding, approve batched in: no separate approve transaction.
    assert not agent.store.operations(kind=OperationKind.APPROVE)
    fundings = agent.store.operations(kind=OperationKind.OPEN) + agent.store.operations(
        kind=OperationKind.TOP_UP
    )
    assert len(fundings) >= 2
    for op in fundings:
        assert op.state == OperationState.CONFIRMED
        assert op.payload is not None
        decoded = decode_tempo_transaction(op.payload)
        assert len(decoded.tx.calls) == 2
        assert decoded.tx.fee_token == chain.token  # fees in the channel's currency

    result = await agent.channels.close(record.channel_id)
    assert result.paid == 150 * PRICE
    assert result.refunded == result.deposit - result.paid
    client = chain.client()
    try:
        closed = await Escrow(client, chain.escrow).closed_event(record.channel_id)
    finally:
        await client.close()
    assert closed is not None
    assert int(closed.values["settledToPayee"]) == 150 * PRICE
    payer_after, payee_after = await token_balances(chain, payer.address, payee.address)
    payer_fees = payer_before - payer_after - 150 * PRICE
    payee_fees = 150 * PRICE - (payee_after - payee_before)
    assert 0 < payer_fees < FEE_BOUND
    assert 0 <= payee_fees < FEE_BOUND


async def test_a_sponsoring_server_pays_the_fee_of_the_open_and_every_top_up(
    chain: DevChain,
    start_server: ServerFactory,
    make_agent: AgentFactory,
    payer: DevAccount,
) -> None:
    """``feePayer: true``: every funding is handed over for the server to co-sign.

    The payer's balance falls by exactly what was delivered: no fee for the open,
    none for the top-ups (before, top-ups always paid their own fee).
    """
    server = await start_server(
        suggested_deposit=60 * PRICE, lookahead_tokens=50, sponsor_fees=True
    )
    agent = await make_agent()
    (payer_before,) = await token_balances(chain, payer.address)

    texts = [e.data async for e in agent.stream("POST", server.url + CHAT, json=chat_body(150))]
    assert texts[-1] == "[DONE]"
    (record,) = agent.channels.list()
    fundings = agent.store.operations(kind=OperationKind.OPEN) + agent.store.operations(
        kind=OperationKind.TOP_UP
    )
    assert len(fundings) >= 2
    for op in fundings:
        assert op.state == OperationState.CONFIRMED
        assert op.payload is not None
        assert decode_tempo_transaction(op.payload).awaiting_fee_payer
    result = await agent.channels.close(record.channel_id)
    assert result.paid == 150 * PRICE
    (payer_after,) = await token_balances(chain, payer.address)
    assert payer_before - payer_after == 150 * PRICE


async def _crashed_at_open(
    chain: DevChain, start_server: ServerFactory, payer: DevAccount, tmp_path: Path
) -> tuple[str, Path]:
    """A server, and a store left by an agent killed after recording its 0x76 open."""
    url, store = (await start_server()).url + CHAT, tmp_path / "crash.db"
    child = await spawn(chain, payer, url, store, "20", "1", failpoint="open.recorded")
    out, err = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode == -signal.SIGKILL, (out, err.decode()[-2000:])
    return url, store


@pytest.mark.slow
async def test_pending_tempo_open_is_resent_with_the_same_bytes(
    chain: DevChain,
    start_server: ServerFactory,
    make_agent: AgentFactory,
    payer: DevAccount,
    tmp_path: Path,
) -> None:
    """Killed after recording its 0x76 open: the restarted agent sends those very bytes."""
    _, store = await _crashed_at_open(chain, start_server, payer, tmp_path)
    agent = await make_agent(store_path=store)  # start() recovers pending operations
    (op,) = agent.store.operations(kind=OperationKind.OPEN)
    assert op.state == OperationState.CONFIRMED
    client = chain.client()
    try:
        assert await client.get_receipt(op.tx_hash or "") is not None
    finally:
        await client.close()
    (record,) = agent.channels.list()
    assert record.status == ChannelStatus.OPEN


@pytest.mark.slow
async def test_expired_tempo_open_fails_without_signing_anew(
    chain: DevChain,
    start_server: ServerFactory,
    make_agent: AgentFactory,
    payer: DevAccount,
    tmp_path: Path,
) -> None:
    """Past its validBefore the recorded open can never land: failed, checked on chain."""
    url, store = await _crashed_at_open(chain, start_server, payer, tmp_path)
    client = chain.client()
    try:
        await chain.increase_time(120)  # past validBefore (the fixture resets the clock)
        agent = await make_agent(store_path=store)
        (op,) = agent.store.operations(kind=OperationKind.OPEN)
        assert (op.state, op.detail) == (OperationState.FAILED, "expired")
        assert await client.get_receipt(op.tx_hash or "") is None
        (record,) = agent.channels.list(include_closed=True)
        assert record.status == ChannelStatus.FAILED
        state = await Escrow(client, chain.escrow).get_channel(record.channel_id)
        assert not state.exists
        # A new payment opens a fresh channel (a new transaction, a new salt).
        async for _ in agent.stream("POST", url, json=chat_body(10)):
            pass
        opened = [r for r in agent.channels.list() if r.status == ChannelStatus.OPEN]
        assert len(opened) == 1
        assert opened[0].channel_id != record.channel_id
    finally:
        await client.close()
