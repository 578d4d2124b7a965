"""Our agent paying the reference server over session v2 (the TIP-1034 reserve), end to end.

The Tempo devchain carries the local reserve at the canonical address; the server
(``start_v2_server``) names it in its challenges with ``sessionProtocol: "v2"``, and
the agent answers in v2: one ``0x76`` ``[open(...)]`` (no approve), descriptors in
every payload, ``uint96`` vouchers, a close that the reserve settles by capturing
exactly what was delivered.
"""

from __future__ import annotations

import pytest

from mppagent import PaymentEvent
from mppagent.devchain import DevAccount, DevChain
from mppagent.session.store import OperationKind, OperationState
from mppagent.tempo.tempotx import decode_tempo_transaction
from mppagent.tempo.v2 import RESERVE_ADDRESS
from mppagent.tempo.v2.backend import V2Backend
from mppagent.tempo.v2.calls import SELECTORS
from tests.support import CHAT, AgentFactory, ServerFactory, chat_body, fresh_block, token_balances

PRICE = 25
FEE_BOUND = 100_000  # pathUSD base units: far above what a few T4 transactions cost


@pytest.fixture
async def chain(tempo_chain: DevChain) -> DevChain:
    """The agent (``make_agent``) pays from the Tempo devchain's accounts."""
    await fresh_block(tempo_chain)
    return tempo_chain


@pytest.mark.parametrize("sponsored", [False, True], ids=["payer-fees", "sponsored"])
async def test_agent_pays_a_v2_server_open_vouchers_top_up_close(
    chain: DevChain,
    start_v2_server: ServerFactory,
    make_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
    sponsored: bool,
) -> None:
    # A 60-token deposit forces a top-up during a 150-token stream.
    server = await start_v2_server(
        suggested_deposit=60 * PRICE, lookahead_tokens=50, sponsor_fees=sponsored
    )
    events: list[PaymentEvent] = []
    agent = await make_agent(events=events)
    payer_before, payee_before = await token_balances(chain, payer.address, payee.address)

    texts = [e.data async for e in agent.stream("POST", server.url + CHAT, json=chat_body(150))]
    assert texts[-1] == "[DONE]"
    (record,) = agent.channels.list()
    assert record.scope.escrow == RESERVE_ADDRESS
    assert record.spent == 150 * PRICE
    assert [e.kind for e in events].count("voucher") >= 5

    # One 0x76 per funding, each with exactly one call to the reserve (no approve).
    fundings = agent.store.operations(kind=OperationKind.OPEN) + agent.store.operations(
        kind=OperationKind.TOP_UP
    )
    assert len(fundings) >= 2
    for op in fundings:
        assert op.state == OperationState.CONFIRMED
        assert op.payload is not None
        (call,) = decode_tempo_transaction(op.payload).tx.calls
        assert call.to == RESERVE_ADDRESS
        assert call.data[:4] in (SELECTORS["open"], SELECTORS["topUp"])

    result = await agent.channels.close(record.channel_id)
    assert result.paid == 150 * PRICE
    assert result.refunded == result.deposit - result.paid
    client = chain.client()
    try:
        # The reserve's own ChannelClosed log: exactly what was delivered.
        paid = await V2Backend(client).final_settled(RESERVE_ADDRESS, record.channel_id)
    finally:
        await client.close()
    assert paid == 150 * PRICE
    books = await server.app.state.devserver.payee()
    row = books.state.get(record.channel_id)
    assert row is not None
    assert (row.finalized, row.spent, row.refund_owed) == (True, 150 * PRICE, 0)

    payer_after, payee_after = await token_balances(chain, payer.address, payee.address)
    payer_fees = payer_before - payer_after - 150 * PRICE
    payee_fees = 150 * PRICE - (payee_after - payee_before)
    (opened,) = agent.store.operations(kind=OperationKind.OPEN)
    top_ups = agent.store.operations(kind=OperationKind.TOP_UP)
    assert top_ups
    # Sponsored: the open and every top-up go out in the hand-over form and the server
    # pays their fees; the payer pays none at all.
    for op in [opened, *top_ups]:
        assert op.payload is not None
        assert decode_tempo_transaction(op.payload).tx.sponsored is sponsored
    if sponsored:
        assert payer_fees == 0
    else:
        assert 0 < payer_fees < FEE_BOUND
    assert 0 < payee_fees < FEE_BOUND  # the close, at least, is the payee's
