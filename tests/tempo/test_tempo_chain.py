"""Tempo transactions on the Tempo devchain (anvil --network tempo --hardfork T4).

Real chain, real escrow, real pathUSD: one 0x76 transaction approves and opens
(or tops up) atomically with its fee paid in pathUSD; expiring nonces let one
account send twice without a counter; a fee payer sponsors a sender who holds
nothing but the deposit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from mppagent.devchain import DevAccount, DevChain
from mppagent.tempo.chain import ChainClient, ContractReverted, TransactionFailed
from mppagent.tempo.channel_id import compute_channel_id, random_salt
from mppagent.tempo.escrow import (
    Escrow,
    Token,
    encode_approve,
    encode_open,
    encode_transfer,
)
from mppagent.tempo.hexutil import ZERO_ADDRESS
from mppagent.tempo.payer_calls import expect_payer_calls
from mppagent.tempo.tempo_chain import (
    PATH_USD,
    TxOutcome,
    chain_now,
    estimate_calls_gas,
    outcome,
    send_tempo,
    sign_calls,
    sponsor,
)
from mppagent.tempo.tempotx import EXPIRING_NONCE_KEY, Call, decode_tempo_transaction
from tests.interop.driver import run_node
from tests.support import fee_transfers as _fee_transfers

pytestmark = pytest.mark.chain

DEPOSIT = 2_000_000
FUNDED = 1_000 * 10**6


@pytest.fixture
async def client(tempo_chain: DevChain) -> AsyncIterator[ChainClient]:
    c = tempo_chain.client()
    try:
        yield c
    finally:
        await c.close()


async def _native(chain: DevChain, address: str) -> int:
    return int(await chain.rpc("eth_getBalance", [address, "latest"]), 16)


def _fee(receipt: dict[str, Any]) -> int:
    """The fee in pathUSD base units (6 decimals) for gas priced in 18-decimal units."""
    return -(-int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"]) // 10**12)


async def test_devchain_in_tempo_mode(tempo_chain: DevChain, client: ChainClient) -> None:
    assert tempo_chain.network == "tempo"
    assert tempo_chain.token == PATH_USD
    assert tempo_chain.fee_token == PATH_USD
    assert len(await client.get_code(tempo_chain.escrow)) > 200
    token = Token(client, PATH_USD)
    for account in tempo_chain.accounts:
        assert await token.balance_of(account.address) == FUNDED
        assert await _native(tempo_chain, account.address) > 0
    described = tempo_chain.describe()
    assert described["currency"] == described["fee_token"] == PATH_USD
    assert described["escrow"] == tempo_chain.escrow
    assert described["accounts"][0]["private_key"] == tempo_chain.accounts[0].private_key
    assert tempo_chain.env(tempo_chain.accounts[0])["MPPAGENT_FEE_TOKEN"] == PATH_USD


async def test_funding_twice_alike_is_two_transfers(tempo_chain: DevChain) -> None:
    """Funding one account twice with the same amount adds up (two transfers)."""
    client = tempo_chain.client()
    try:
        account = tempo_chain.accounts[3]
        await tempo_chain.fund(account.address, tokens=5)
        await tempo_chain.fund(account.address, tokens=5)
        assert await Token(client, PATH_USD).balance_of(account.address) == FUNDED + 10
    finally:
        await client.close()


async def test_one_tempo_transaction_approves_and_opens(
    tempo_chain: DevChain, client: ChainClient
) -> None:
    payee, payer = tempo_chain.accounts[0], tempo_chain.accounts[1]
    escrow = Escrow(client, tempo_chain.escrow)
    token = Token(client, PATH_USD)
    native_before = await _native(tempo_chain, payer.address)
    salt = random_salt()

    tx = await escrow.sign_open_tempo(
        payer.wallet(), payee=payee.address, token=PATH_USD, deposit=DEPOSIT, salt=salt
    )
    # Write-ahead: what a caller records before sending.
    assert tx.raw.startswith("0x76")
    assert tx.nonce_key == EXPIRING_NONCE_KEY
    assert tx.valid_before is not None
    assert tx.valid_before - await chain_now(client) <= 25
    decoded = decode_tempo_transaction(tx.raw)
    assert [c.to for c in decoded.tx.calls] == [PATH_USD, tempo_chain.escrow]
    assert decoded.tx.fee_token == PATH_USD

    receipt = await send_tempo(client, tx, context="open")
    assert int(receipt["type"]) == 0x76
    assert [e.name for e in escrow.events(receipt)] == ["ChannelOpened"]
    # Gas was estimated from the calls: enough, and not wildly more (anvil's simulation
    # charges the open more than the batch costs, so the margin is generous).
    assert int(receipt["gasUsed"]) <= decoded.tx.gas < 3 * int(receipt["gasUsed"])

    channel_id = compute_channel_id(
        payer.address,
        payee.address,
        PATH_USD,
        salt,
        ZERO_ADDRESS,
        tempo_chain.escrow,
        tempo_chain.chain_id,
    )
    state = await escrow.get_channel(channel_id)
    assert (state.payer, state.payee, state.token) == (
        payer.address.lower(),
        payee.address.lower(),
        PATH_USD,
    )
    assert state.deposit == DEPOSIT
    # The fee was paid in pathUSD by the sender, not in the native coin.
    fee = _fee(receipt)
    assert fee > 0
    assert _fee_transfers(receipt) == {payer.address.lower(): fee}
    assert await token.balance_of(payer.address) in (
        FUNDED - DEPOSIT - fee,
        FUNDED - DEPOSIT - fee - 1,
    )
    assert await _native(tempo_chain, payer.address) == native_before
    assert await token.allowance(payer.address, tempo_chain.escrow) == 0

    # Resending the same bytes is harmless, and the outcome is known.
    assert await client.send(tx) == tx.hash
    assert await outcome(client, tx) is TxOutcome.MINED

    top_up = await escrow.sign_top_up_tempo(payer.wallet(), channel_id, 500_000, token=PATH_USD)
    receipt = await send_tempo(client, top_up, context="topUp")
    assert [e.name for e in escrow.events(receipt)] == ["TopUp"]
    assert (await escrow.get_channel(channel_id)).deposit == DEPOSIT + 500_000


async def test_expiring_nonces_twice_from_one_account_both_land(
    tempo_chain: DevChain, client: ChainClient
) -> None:
    sender, receiver = tempo_chain.accounts[2], tempo_chain.accounts[3]
    token = Token(client, PATH_USD)
    # Identical calls signed in the same second would be the same transaction (replay
    # protection is by hash): two different payments differ in their calls.
    first = await sign_calls(
        client, sender.wallet(), [Call(PATH_USD, encode_transfer(receiver.address, 1_000))]
    )
    second = await sign_calls(
        client, sender.wallet(), [Call(PATH_USD, encode_transfer(receiver.address, 1_001))]
    )
    assert first.nonce == second.nonce == 0
    # Both in flight at once, then both mined.
    await client.send(first)
    await client.send(second)
    for tx in (first, second):
        receipt = await client.wait(tx.hash)
        assert int(receipt["status"]) == 1
    assert await token.balance_of(receiver.address) == FUNDED + 2_001


async def test_sponsored_open_fee_payer_pays(tempo_chain: DevChain, client: ChainClient) -> None:
    """A payer holding exactly the deposit (and no native coin) opens; the sponsor pays the fee."""
    payee, sponsor_account = tempo_chain.accounts[0], tempo_chain.accounts[4]
    payer = DevAccount.generate()
    await tempo_chain.fund(payer.address, eth=0, tokens=DEPOSIT)
    escrow = Escrow(client, tempo_chain.escrow)
    token = Token(client, PATH_USD)
    sponsor_before = await token.balance_of(sponsor_account.address)

    signed = await escrow.sign_open_tempo(
        payer.wallet(),
        payee=payee.address,
        token=PATH_USD,
        deposit=DEPOSIT,
        salt=random_salt(),
        sponsored=True,
    )
    assert signed.awaiting_fee_payer
    with pytest.raises(ValueError, match="co-signed"):
        await send_tempo(client, signed)
    with pytest.raises(ValueError, match="fee payer"):
        await outcome(client, signed)
    assert signed.handover is not None
    assert signed.handover.startswith("0x78")  # the form the reference SDK hands over

    final = sponsor(signed.handover, sponsor_account.wallet(), PATH_USD)
    assert not final.awaiting_fee_payer
    # The 0x76 placeholder form carries the same commitment: the same final bytes.
    assert sponsor(signed.raw, sponsor_account.wallet(), PATH_USD).raw == final.raw
    receipt = await send_tempo(client, final, context="sponsored open")
    assert [e.name for e in escrow.events(receipt)] == ["ChannelOpened"]
    assert str(receipt["from"]).lower() == payer.address.lower()
    assert await token.balance_of(payer.address) == 0
    fee = _fee(receipt)
    assert fee > 0
    assert sponsor_before - await token.balance_of(sponsor_account.address) == fee
    assert _fee_transfers(receipt) == {sponsor_account.address.lower(): fee}


async def test_gas_comes_from_simulating_the_calls(
    tempo_chain: DevChain, client: ChainClient
) -> None:
    payee, payer = tempo_chain.accounts[0], tempo_chain.accounts[1]
    open_call = Call(
        tempo_chain.escrow,
        encode_open(payee.address, PATH_USD, DEPOSIT, random_salt(), ZERO_ADDRESS),
    )
    # Without the approve the open reverts in simulation: named, before anything is signed.
    with pytest.raises(ContractReverted):
        await estimate_calls_gas(client, payer.address, [open_call])
    bad_payee = Call(
        tempo_chain.escrow,
        encode_open(ZERO_ADDRESS, PATH_USD, DEPOSIT, random_salt(), ZERO_ADDRESS),
    )
    Escrow(client, tempo_chain.escrow)  # teaches the client the escrow's errors
    with pytest.raises(ContractReverted) as caught:
        await estimate_calls_gas(client, payer.address, [bad_payee])
    assert caught.value.error_name == "InvalidPayee"


async def test_a_reverted_tempo_transaction_is_named(
    tempo_chain: DevChain, client: ChainClient
) -> None:
    payer = tempo_chain.accounts[1]
    escrow = Escrow(client, tempo_chain.escrow)
    tx = await escrow.sign_top_up_tempo(
        payer.wallet(), "0x" + "42" * 32, 1_000, token=PATH_USD, gas=2_000_000
    )
    with pytest.raises(ContractReverted) as caught:
        await send_tempo(client, tx, context="topUp")
    assert caught.value.error_name == "ChannelNotFound"

    # Too little gas: the calls would succeed, so it is named OutOfGas (T4's receipt
    # reports less gas used than the limit, so the receipt alone cannot tell).
    starved = await escrow.sign_open_tempo(
        payer.wallet(),
        payee=tempo_chain.accounts[0].address,
        token=PATH_USD,
        deposit=DEPOSIT,
        salt=random_salt(),
        gas=600_000,
    )
    with pytest.raises(ContractReverted) as caught:
        await send_tempo(client, starved, context="open")
    assert caught.value.error_name == "OutOfGas"
    assert caught.value.args_decoded[0] == 600_000


async def test_an_expired_transaction_never_lands(
    tempo_chain: DevChain, client: ChainClient
) -> None:
    sender, receiver = tempo_chain.accounts[2], tempo_chain.accounts[3]
    calls = [Call(PATH_USD, encode_transfer(receiver.address, 1))]
    tx = await sign_calls(client, sender.wallet(), calls, window=5)
    assert await outcome(client, tx) is TxOutcome.PENDING
    await tempo_chain.increase_time(30)
    now = await chain_now(client)
    assert tx.expired(now)
    assert not tx.sendable(now)
    assert await outcome(client, tx) is TxOutcome.EXPIRED
    with pytest.raises(TransactionFailed):
        await client.send(tx)


async def test_eip1559_still_works_on_the_tempo_chain(
    tempo_chain: DevChain, client: ChainClient
) -> None:
    """The old two-transaction path (approve, open) keeps working; fees come out of pathUSD."""
    payee, payer = tempo_chain.accounts[0], tempo_chain.accounts[5]
    escrow = Escrow(client, tempo_chain.escrow)
    token = Token(client, PATH_USD)
    approve = await token.sign_approve(payer.wallet(), tempo_chain.escrow, DEPOSIT)
    await client.send_and_wait(approve, context="approve")
    opened = await escrow.sign_open(
        payer.wallet(), payee=payee.address, token=PATH_USD, deposit=DEPOSIT, salt=random_salt()
    )
    receipt = await client.send_and_wait(opened, context="open")
    assert [e.name for e in escrow.events(receipt)] == ["ChannelOpened"]
    assert await token.balance_of(payer.address) < FUNDED - DEPOSIT


@pytest.mark.parametrize("nonce_key", [7])
async def test_two_dimensional_nonces(
    tempo_chain: DevChain, client: ChainClient, nonce_key: int
) -> None:
    sender, receiver = tempo_chain.accounts[2], tempo_chain.accounts[3]
    calls = [Call(PATH_USD, encode_transfer(receiver.address, 5))]
    for nonce in (0, 1):
        tx = await sign_calls(client, sender.wallet(), calls, nonce_key=nonce_key, nonce=nonce)
        assert tx.valid_before is None
        assert not tx.expired(2**40)
        receipt = await send_tempo(client, tx)
        assert int(receipt["status"]) == 1


# -- transactions the reference SDK signs (viem, as mppx's legacy session client does) ----


async def _sdk_open(
    chain: DevChain, payer: DevAccount, payee: DevAccount, *, sponsored: bool
) -> dict[str, Any]:
    return run_node(
        "tempo_sdk_open.mjs",
        {
            "rpcUrl": chain.rpc_url,
            "chainId": chain.chain_id,
            "privateKey": payer.private_key,
            "escrow": chain.escrow,
            "payee": payee.address,
            "currency": chain.token,
            "deposit": str(DEPOSIT),
            "salt": random_salt(),
            "sponsored": sponsored,
        },
    )


async def test_decodes_the_sdk_open_and_the_chain_accepts_our_fee_payer_signature(
    tempo_chain: DevChain, client: ChainClient
) -> None:
    """The SDK's open decodes to exactly approve + open; sponsored, our co-signature is valid.

    The SDK takes its gas from viem's ``eth_fillTransaction``, which the devchain's
    front answers by running the calls (anvil alone gives a flat figure too small for
    an open at T4), so the sponsored open lands: the chain accepted the sender's and
    our fee payer's signatures, the channel holds the deposit, the sponsor paid the fee.
    """
    payee, payer, sponsor_account = (tempo_chain.accounts[i] for i in (0, 1, 4))
    plain = await _sdk_open(tempo_chain, payer, payee, sponsored=False)
    decoded = decode_tempo_transaction(plain["transaction"])
    assert decoded.sender == plain["from"] == payer.address.lower()
    assert decoded.tx.fee_token == PATH_USD
    assert decoded.tx.nonce_key == EXPIRING_NONCE_KEY
    assert decoded.tx.valid_before is not None
    assert decoded.tx.valid_before - await chain_now(client) <= 25
    assert decoded.tx.gas == int(plain["gas"])
    (approve, _) = decoded.tx.calls
    assert approve == Call(PATH_USD, encode_approve(tempo_chain.escrow, DEPOSIT))
    call = expect_payer_calls(
        decoded.tx.calls, action="open", escrow=tempo_chain.escrow, currency=PATH_USD
    )
    assert call.args["payee"] == payee.address.lower()
    assert call.args["deposit"] == DEPOSIT

    handover = await _sdk_open(tempo_chain, payer, payee, sponsored=True)
    assert handover["transaction"].startswith("0x78")
    pending = decode_tempo_transaction(handover["transaction"])
    assert pending.awaiting_fee_payer
    assert pending.tx.fee_token is None  # the sender does not commit to a fee token
    final = sponsor(handover["transaction"], sponsor_account.wallet(), PATH_USD)
    receipt = await send_tempo(client, final, context="sdk open")
    opened = [
        e for e in Escrow(client, tempo_chain.escrow).events(receipt) if e.name == "ChannelOpened"
    ]
    assert [int(e.values["deposit"]) for e in opened] == [DEPOSIT]
    paid = _fee_transfers(receipt)
    assert list(paid) == [sponsor_account.address.lower()]
    assert paid[sponsor_account.address.lower()] == _fee(receipt)
