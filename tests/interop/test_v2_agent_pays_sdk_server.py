"""Interop, direction 2: our agent pays the reference SDK's own v2 session server.

The server (``node/v2_session_server.mjs``) is ``mppx/server``'s ``Mppx.create`` with
``tempo.session`` and SSE, on the Tempo devchain with the local reserve behind the
JSON-RPC front. It bills one unit per SSE ``data:`` event; the agent runs with its
default meter (per token, with the event count as a floor), so a billing the gate
or the receipt checks disliked would raise ``ServerMisbehaviour`` and fail the test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mppagent import Agent, ChannelStatus, PaymentEvent, SpendPolicy, SqliteChannelStore
from mppagent.devchain import DevChain
from mppagent.session.store import OperationKind
from mppagent.tempo.v2.constants import RESERVE_ADDRESS
from tests.interop.sdk_server import sdk_v2_server
from tests.support import fresh_block, token_balances

PRICE = 10  # base units per SSE data event ("0.00001" at 6 decimals)
TOKENS = 60
LOOKAHEAD = 3


@pytest.fixture(params=[False, True], ids=["payer-pays-fees", "server-sponsors"])
def sdk_server(tempo_chain: DevChain, request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    """The SDK server on 127.0.0.1, paid to the devchain's second account; its URL.

    ``server-sponsors``: the challenge sets ``feePayer`` and the server co-signs the
    open the agent hands over (the ``0x78`` form) and pays its fee.
    """
    with sdk_v2_server(
        tempo_chain,
        tempo_chain.accounts[1],
        amount="0.00001",
        suggested_deposit="0.01",
        tokens=TOKENS,
        fee_payer=request.param,
    ) as url:
        yield url, bool(request.param)


async def test_agent_streams_from_the_sdk_v2_server_and_closes(
    tempo_chain: DevChain, sdk_server: tuple[str, bool], tmp_path: Path
) -> None:
    url, sponsored = sdk_server
    payer = tempo_chain.accounts[0]
    payee = tempo_chain.accounts[1]
    await fresh_block(tempo_chain)
    events: list[PaymentEvent] = []
    agent = Agent(
        private_key=payer.private_key,
        rpc_url=tempo_chain.rpc_url,
        policy=SpendPolicy(max_price={"token": PRICE}, lookahead_units=LOOKAHEAD),
        store=SqliteChannelStore(tmp_path / "agent.db"),
        observer=events.append,
    )
    (balance_before,) = await token_balances(tempo_chain, payer.address)
    try:
        body = {"model": "fake", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        data = [e.data async for e in agent.stream("POST", url, json=body)]
        assert len(data) == TOKENS
        assert json.loads(data[0])["choices"][0]["delta"]["content"] == "w0 "

        (record,) = agent.channels.list()
        assert record.protocol == "v2"
        assert record.scope.escrow == RESERVE_ADDRESS
        assert record.scope.payee == payee.address.lower()
        assert record.status == ChannelStatus.OPEN
        assert record.spent == TOKENS * PRICE
        # Each voucher covered at most what was delivered plus the look-ahead.
        assert TOKENS * PRICE <= record.signed <= (TOKENS + LOOKAHEAD) * PRICE
        vouchers = [e for e in events if e.kind == "voucher"]
        assert len(vouchers) >= 5
        assert [v.amount for v in vouchers] == sorted(v.amount for v in vouchers)
        final = [e for e in events if e.kind == "final_receipt"]
        assert [(f.amount, f.detail["units"]) for f in final] == [(TOKENS * PRICE, TOKENS)]
        history = [op.amount for op in agent.store.operations(kind=OperationKind.VOUCHER)]
        assert history == sorted(set(history))

        # The close goes through the SDK server, which closes on chain; the agent checks
        # the reserve's ChannelClosed event: paid exactly what was delivered, rest refunded.
        result = await agent.channels.close(record.channel_id)
        assert result.paid == TOKENS * PRICE
        assert result.refunded == record.deposit - TOKENS * PRICE
        closed = agent.channels.get(record.channel_id)
        assert closed.status == ChannelStatus.CLOSED
        # The reserve forgot the channel; reconciling reads it back as closed, not missing.
        synced = await agent.manager.reconcile(record.channel_id)
        assert synced.status == ChannelStatus.CLOSED
        assert synced.settled == TOKENS * PRICE
        (balance_after,) = await token_balances(tempo_chain, payer.address)
        if sponsored:  # the server paid the open's fee: the payer paid exactly the tokens
            assert balance_before - balance_after == TOKENS * PRICE
        else:  # the payer paid the open's fee (pathUSD is the fee token too)
            assert balance_before - balance_after > TOKENS * PRICE
    finally:
        await agent.aclose()
