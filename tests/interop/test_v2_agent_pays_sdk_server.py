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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mppagent import Agent, ChannelStatus, PaymentEvent, SpendPolicy, SqliteChannelStore
from mppagent.devchain import DevChain
from mppagent.session.store import OperationKind
from mppagent.tempo.hexutil import checksum_address
from mppagent.tempo.v2.constants import RESERVE_ADDRESS
from tests.interop.sdk_server import sdk_v2_server
from tests.support import fee_transfers, fresh_block, token_balances

PRICE = 10  # base units per SSE data event ("0.00001" at 6 decimals)
TOKENS = 60
LOOKAHEAD = 3
SMALL_DEPOSIT = 200  # 20 events' worth: a 60-event stream needs at least two top-ups


@contextmanager
def _sdk_server(
    tempo_chain: DevChain, *, fee_payer: bool = False, hints: bool = False
) -> Iterator[str]:
    """The SDK server on 127.0.0.1, paid to the devchain's second account; its URL."""
    with sdk_v2_server(
        tempo_chain,
        tempo_chain.accounts[1],
        amount="0.00001",
        suggested_deposit="0.01",
        tokens=TOKENS,
        fee_payer=fee_payer,
        hints=hints,
    ) as url:
        yield url


@pytest.fixture(params=[False, True], ids=["payer-pays-fees", "server-sponsors"])
def sdk_server(tempo_chain: DevChain, request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    """The SDK server; ``server-sponsors``: the challenge sets ``feePayer`` and the
    server co-signs what the agent hands over (the ``0x78`` form) and pays its fee.
    """
    with _sdk_server(tempo_chain, fee_payer=request.param) as url:
        yield url, bool(request.param)


def _agent(chain: DevChain, store: Path, events: list[PaymentEvent], **policy: Any) -> Agent:
    """The payer's agent with the default meter, its own store, reporting to ``events``."""
    return Agent(
        private_key=chain.accounts[0].private_key,
        rpc_url=chain.rpc_url,
        policy=SpendPolicy(max_price={"token": PRICE}, lookahead_units=LOOKAHEAD, **policy),
        store=SqliteChannelStore(store),
        observer=events.append,
    )


async def test_agent_streams_from_the_sdk_v2_server_and_closes(
    tempo_chain: DevChain, sdk_server: tuple[str, bool], tmp_path: Path
) -> None:
    url, sponsored = sdk_server
    payer = tempo_chain.accounts[0]
    payee = tempo_chain.accounts[1]
    await fresh_block(tempo_chain)
    events: list[PaymentEvent] = []
    agent = _agent(tempo_chain, tmp_path / "agent.db", events)
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


async def test_top_ups_pay_their_fee_as_the_challenge_asks(
    tempo_chain: DevChain, sdk_server: tuple[str, bool], tmp_path: Path
) -> None:
    """Open and every top-up pay their fee as the challenge says: payer, or server-sponsored.

    Who paid is read from each transaction's own fee transfer on chain (the
    reserve's logs for the channel name the transactions), and the payer's
    balance must fall by exactly the deposit plus the fees it paid itself.
    """
    url, sponsored = sdk_server
    payer = tempo_chain.accounts[0]
    payee = tempo_chain.accounts[1]
    await fresh_block(tempo_chain)
    events: list[PaymentEvent] = []
    agent = _agent(tempo_chain, tmp_path / "agent.db", events, default_deposit=SMALL_DEPOSIT)
    (balance_before,) = await token_balances(tempo_chain, payer.address)
    client = tempo_chain.client()
    try:
        body = {"model": "fake", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        data = [e.data async for e in agent.stream("POST", url, json=body)]
        assert len(data) == TOKENS
        (record,) = agent.channels.list()
        assert record.spent == TOKENS * PRICE
        top_ups = [e for e in events if e.kind == "top_up"]
        assert len(top_ups) >= 2
        assert record.deposit == SMALL_DEPOSIT + sum(e.amount for e in top_ups)

        logs = await client.request(
            "eth_getLogs",
            [
                {
                    "address": checksum_address(RESERVE_ADDRESS),
                    "topics": [None, record.channel_id],
                    "fromBlock": "0x0",
                    "toBlock": "latest",
                }
            ],
        )
        hashes = list(dict.fromkeys(str(log["transactionHash"]) for log in logs))
        assert len(hashes) == 1 + len(top_ups)  # the open, then each top-up
        fee_payer = (payee if sponsored else payer).address.lower()
        payer_fees = 0
        for tx_hash in hashes:
            receipt = await client.get_receipt(tx_hash)
            assert receipt is not None
            paid = fee_transfers(receipt)
            assert list(paid) == [fee_payer], (tx_hash, paid)
            assert paid[fee_payer] > 0
            payer_fees += paid.get(payer.address.lower(), 0)
        (balance_after,) = await token_balances(tempo_chain, payer.address)
        assert balance_before - balance_after == record.deposit + payer_fees
        assert (payer_fees == 0) == sponsored
    finally:
        await client.close()
        await agent.aclose()


async def test_a_lost_store_is_rehydrated_by_bootstrap_and_a_stale_one_by_its_hint(
    tempo_chain: DevChain, tmp_path: Path
) -> None:
    """The SDK server with its ``bootstrap`` HEAD and a ``resolveChannelId``.

    Agent A opens and streams. Agent B has the same key and an empty store (the
    store was lost): its HEAD bootstrap proves the payer, gets the channel's
    snapshot, verifies it on the reserve and pays on the same channel -- no second
    open. Then A, whose store is now stale (it never saw B's vouchers), sends its
    ``Payment-Session`` hint; the challenge carries the snapshot, and A learns
    B's voucher (its own key's) instead of signing below what the server holds.
    """
    await fresh_block(tempo_chain)
    body = {"model": "fake", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    a_events: list[PaymentEvent] = []
    b_events: list[PaymentEvent] = []

    with _sdk_server(tempo_chain, hints=True) as url:
        a = _agent(tempo_chain, tmp_path / "a.db", a_events)
        b = _agent(tempo_chain, tmp_path / "b.db", b_events)
        try:
            assert len([e async for e in a.stream("POST", url, json=body)]) == TOKENS
            (opened,) = a.channels.list()
            assert opened.spent == TOKENS * PRICE

            assert len([e async for e in b.stream("POST", url, json=body)]) == TOKENS
            (adopted,) = b.channels.list()
            assert adopted.channel_id == opened.channel_id  # the same channel, not a new one
            assert [e.kind for e in b_events if e.kind.startswith("snapshot")] == ["snapshot"]
            (learned,) = [e for e in b_events if e.kind == "snapshot"]
            assert learned.detail["source"] == "bootstrap"
            assert learned.amount == opened.signed  # A's voucher, proven by its signature
            assert "open" not in [e.kind for e in b_events]
            assert adopted.spent == 2 * TOKENS * PRICE
            assert adopted.deposit == opened.deposit

            stale = a.channels.get(opened.channel_id)
            assert stale.signed < adopted.signed
            assert len([e async for e in a.stream("POST", url, json=body)]) == TOKENS
            hinted = [e for e in a_events if e.kind == "snapshot"]
            assert [e.detail["source"] for e in hinted] == ["challenge"]
            assert hinted[0].amount == adopted.signed
            final = a.channels.get(opened.channel_id)
            assert final.spent == 3 * TOKENS * PRICE
            assert [e.kind for e in a_events].count("open") == 1

            result = await a.channels.close(opened.channel_id)
            assert result.paid == 3 * TOKENS * PRICE
        finally:
            await a.aclose()
            await b.aclose()
