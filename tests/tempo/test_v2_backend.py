"""V2Backend against the local reserve on the Tempo devchain (through the JSON-RPC front)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mppagent.devchain import DevChain
from mppagent.errors import ChainError
from mppagent.session.channels import ChannelManager
from mppagent.session.policy import SpendPolicy
from mppagent.session.store import (
    ChannelRecord,
    ChannelStatus,
    MemoryChannelStore,
    OperationKind,
    OperationState,
    Scope,
)
from mppagent.tempo.channel_id import random_salt
from mppagent.tempo.hexutil import ZERO_ADDRESS, checksum_address
from mppagent.tempo.tempo_chain import send_tempo
from mppagent.tempo.v1 import V1Backend
from mppagent.tempo.v2 import RESERVE_ADDRESS, calls
from mppagent.tempo.v2.backend import V2Backend
from tests.support import fresh_block, v2_terms


async def test_open_top_up_forced_close_and_the_closed_channel_reads_finalized(
    tempo_chain: DevChain,
) -> None:
    payer, payee = tempo_chain.accounts[:2]
    await fresh_block(tempo_chain)
    client = tempo_chain.client()
    try:
        backend = V2Backend(client)
        assert await backend.check_contract(RESERVE_ADDRESS)
        assert not await backend.check_contract(tempo_chain.escrow)  # the v1 escrow
        terms = v2_terms(tempo_chain, payer, payee)
        new = await backend.new_channel(payer.wallet(), terms, 1_000_000)
        assert new.plan is not None
        terms = replace(terms, descriptor=new.descriptor)
        never = await backend.read_channel(terms, new.channel_id)
        assert not never.exists  # signed, not sent

        await send_tempo(client, new.plan.main)
        state = await backend.read_channel(terms, new.channel_id)
        assert (state.exists, state.deposit, state.payer) == (True, 1_000_000, terms.payer)

        first = await backend.plan_top_up(payer.wallet(), terms, new.channel_id, 500, _no_prior)
        second = await backend.plan_top_up(payer.wallet(), terms, new.channel_id, 500, _no_prior)
        assert first.main.hash != second.main.hash  # random validAfter: two top-ups, not one
        await send_tempo(client, first.main)
        await send_tempo(client, second.main)
        assert (await backend.read_channel(terms, new.channel_id)).deposit == 1_001_000

        await send_tempo(client, await backend.sign_request_close(payer.wallet(), terms, "x"))
        assert (await backend.read_channel(terms, new.channel_id)).close_requested_at > 0
        assert await backend.close_grace_period(RESERVE_ADDRESS) == 900
        await tempo_chain.increase_time(901)
        receipt = await send_tempo(client, await backend.sign_withdraw(payer.wallet(), terms, "x"))
        closed = backend.closed_amounts(RESERVE_ADDRESS, new.channel_id, receipt)
        assert closed is not None
        assert (closed.paid, closed.refunded) == (0, 1_001_000)

        # The reserve deleted the channel; its ChannelClosed log says it was closed.
        final = await backend.read_channel(terms, new.channel_id)
        assert (final.exists, final.finalized, final.deposit, final.settled) == (
            True,
            True,
            1_001_000,
            0,
        )

        # Given the open's hash, the log search starts at the open's block, not genesis.
        searched: list[str] = []
        request = client.request

        async def recording(method: str, params: list[Any]) -> Any:
            if method == "eth_getLogs":
                searched.append(params[0]["fromBlock"])
            return await request(method, params)

        client.request = recording  # type: ignore[method-assign]
        opened_in = await client.mined_in(new.plan.main.hash)
        assert opened_in > 0
        again = await backend.read_channel(terms, new.channel_id, opened_tx=new.plan.main.hash)
        assert again == final
        paid = await backend.final_settled(
            RESERVE_ADDRESS, new.channel_id, opened_tx=new.plan.main.hash
        )
        assert paid == 0
        assert await backend.final_settled(RESERVE_ADDRESS, new.channel_id) == 0
        assert searched == [hex(opened_in), hex(opened_in), "0x0"]
    finally:
        await client.close()


async def test_front_estimates_and_calls_a_0x76_request_by_running_its_calls(
    tempo_chain: DevChain,
) -> None:
    payer, payee = tempo_chain.accounts[:2]
    await fresh_block(tempo_chain)
    open_data = calls.encode_open(
        payee.address, ZERO_ADDRESS, tempo_chain.token, 10**6, random_salt(), ZERO_ADDRESS
    )
    request = {
        "from": checksum_address(payer.address),
        "calls": [{"to": RESERVE_ADDRESS, "data": "0x" + open_data.hex(), "value": "0x0"}],
    }
    # eth_call returns open's result (a channel id), as the precompile would.
    result = await tempo_chain.rpc("eth_call", [request, "latest"])
    assert len(bytes.fromhex(str(result)[2:])) == 32
    gas = int(str(await tempo_chain.rpc("eth_estimateGas", [request])), 16)
    assert gas > 100_000
    # A failing call is a revert with the reserve's error, not a flat figure.
    bad = {**request, "calls": [{**request["calls"][0], "data": "0x" + open_data[:-32].hex()}]}
    with pytest.raises(ChainError, match="revert"):
        await tempo_chain.rpc("eth_estimateGas", [bad])


async def _no_prior(kind: str, tx: object) -> None:
    raise AssertionError(f"a v2 top-up sends nothing first ({kind})")


@pytest.mark.parametrize("expired", [False, True])
async def test_recovery_resends_a_pending_open_while_valid_and_fails_it_once_expired(
    tempo_chain: DevChain, expired: bool
) -> None:
    payer, payee = tempo_chain.accounts[:2]
    await fresh_block(tempo_chain)
    client = tempo_chain.client()
    store = MemoryChannelStore()
    try:
        backend = V2Backend(client)
        manager = ChannelManager(
            wallet=payer.wallet(),
            chain=client,
            store=store,
            policy=SpendPolicy(),
            backends=[V1Backend(client), backend],
        )
        terms = v2_terms(tempo_chain, payer, payee)
        new = await backend.new_channel(payer.wallet(), terms, 5_000)
        assert new.plan is not None
        store.insert(
            ChannelRecord(
                channel_id=new.channel_id,
                scope=Scope(terms.payee, terms.token, RESERVE_ADDRESS, tempo_chain.chain_id),
                payer=terms.payer,
                authorized_signer=ZERO_ADDRESS,
                salt=terms.salt,
                deposit=5_000,
                status=ChannelStatus.OPENING,
                protocol="v2",
                descriptor=new.descriptor,
            )
        )
        tx = new.plan.main
        store.begin_operation(
            new.channel_id, OperationKind.OPEN, 5_000, payload=tx.raw, tx_hash=tx.hash, nonce=0
        )
        if expired:
            await tempo_chain.increase_time(60)  # past validBefore: these bytes can never land
        (record,) = await manager.recover()
        (op,) = store.operations(new.channel_id)
        if expired:
            assert (op.state, record.status) == (OperationState.FAILED, ChannelStatus.FAILED)
            assert await client.get_receipt(tx.hash) is None
        else:
            assert (op.state, record.status) == (OperationState.CONFIRMED, ChannelStatus.OPEN)
            assert record.deposit == 5_000
    finally:
        await client.close()
