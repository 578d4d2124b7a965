"""The Tempo layer against the real escrow on a real anvil chain.

Every test runs inside an ``evm_snapshot``/``evm_revert`` pair (the ``chain`` fixture), so each
starts from the same state: token and escrow deployed, accounts funded with exactly
``FUNDED`` base units, the escrow holding nothing. Balances are checked to the base unit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode

from mppagent.devchain import DevAccount, DevChain
from mppagent.tempo.chain import (
    ChainClient,
    ChainUnavailable,
    ContractReverted,
    SignedTransaction,
    TransactionFailed,
)
from mppagent.tempo.channel_id import compute_channel_id, random_salt
from mppagent.tempo.escrow import (
    ChannelState,
    Escrow,
    EscrowEvent,
    Token,
    decode_payer_call,
    encode_open,
    encode_top_up,
)
from mppagent.tempo.hexutil import ZERO_ADDRESS, keccak
from mppagent.tempo.transactions import InvalidTransaction, decode_signed_transaction
from mppagent.tempo.voucher import VoucherSigner, sign_voucher, voucher_digest

pytestmark = pytest.mark.chain

FUNDED = 1_000_000_000  # tests/conftest.py: 1000 tokens of 6 decimals per account
GRACE = 900
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass
class Parties:
    """One payer, one payee and a stranger on the shared devchain, with typed contract access."""

    chain: DevChain
    client: ChainClient
    escrow: Escrow
    token: Token
    payer: DevAccount
    payee: DevAccount
    stranger: DevAccount

    @property
    def payer_addr(self) -> str:
        return self.payer.address.lower()

    @property
    def payee_addr(self) -> str:
        return self.payee.address.lower()

    def voucher(self, channel_id: str, amount: int, key: str | None = None) -> str:
        return sign_voucher(
            key or self.payer.private_key,
            channel_id,
            amount,
            self.chain.escrow,
            self.chain.chain_id,
        )

    async def send(self, tx: SignedTransaction) -> dict[str, Any]:
        return await self.client.send_and_wait(tx)

    async def balances(self) -> tuple[int, int, int]:
        """(payer, payee, escrow) token balances."""
        return (
            await self.token.balance_of(self.payer.address),
            await self.token.balance_of(self.payee.address),
            await self.token.balance_of(self.chain.escrow),
        )

    async def approve(self, amount: int, account: DevAccount | None = None) -> None:
        account = account or self.payer
        await self.send(await self.token.sign_approve(account.wallet(), self.chain.escrow, amount))

    async def open(
        self, deposit: int, *, signer: str = ZERO_ADDRESS, approve: bool = True
    ) -> tuple[str, dict[str, Any]]:
        """Approve exactly ``deposit`` and open a channel; returns (channel id, receipt)."""
        if approve:
            await self.approve(deposit)
        salt = random_salt()
        channel_id = compute_channel_id(
            self.payer.address,
            self.payee.address,
            self.chain.token,
            salt,
            signer,
            self.chain.escrow,
            self.chain.chain_id,
        )
        tx = await self.escrow.sign_open(
            self.payer.wallet(),
            payee=self.payee.address,
            token=self.chain.token,
            deposit=deposit,
            salt=salt,
            authorized_signer=signer,
        )
        receipt = await self.send(tx)
        return channel_id, receipt

    async def settle(self, channel_id: str, amount: int, key: str | None = None) -> dict[str, Any]:
        signature = self.voucher(channel_id, amount, key)
        tx = await self.escrow.sign_settle(self.payee.wallet(), channel_id, amount, signature)
        return await self.send(tx)


@pytest.fixture
async def client(chain: DevChain) -> AsyncIterator[ChainClient]:
    c = chain.client()
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def p(chain: DevChain, client: ChainClient) -> Parties:
    parties = Parties(
        chain=chain,
        client=client,
        escrow=chain.escrow_client(client),
        token=Token(client, chain.token),
        payer=chain.accounts[0],
        payee=chain.accounts[1],
        stranger=chain.accounts[2],
    )
    # Every test starts from the same funded state (the snapshot/revert fixture works).
    assert await parties.balances() == (FUNDED, FUNDED, 0)
    return parties


def only(events: list[EscrowEvent], *names: str) -> list[EscrowEvent]:
    assert [e.name for e in events] == list(names)
    return events


# -- off-chain computations equal the contract's -----------------------------------------


async def test_channel_id_matches_contract(p: Parties) -> None:
    delegate = VoucherSigner.generate().address
    for signer in (ZERO_ADDRESS, delegate, p.payer.address):
        for salt in (random_salt(), "0x" + "00" * 32, "0x" + "ff" * 32):
            ours = compute_channel_id(
                p.payer.address,
                p.payee.address,
                p.chain.token,
                salt,
                signer,
                p.chain.escrow,
                p.chain.chain_id,
            )
            theirs = await p.escrow.compute_channel_id_onchain(
                p.payer.address, p.payee.address, p.chain.token, salt, signer
            )
            assert ours == theirs
            assert ours == ours.lower()
            assert len(ours) == 66
    # Salt, payer/payee order and chain id all change the id.
    salt = random_salt()
    base = compute_channel_id(
        p.payer_addr, p.payee_addr, p.chain.token, salt, ZERO_ADDRESS, p.chain.escrow, 31337
    )
    assert base != compute_channel_id(
        p.payee_addr, p.payer_addr, p.chain.token, salt, ZERO_ADDRESS, p.chain.escrow, 31337
    )
    assert base != compute_channel_id(
        p.payer_addr, p.payee_addr, p.chain.token, salt, ZERO_ADDRESS, p.chain.escrow, 1
    )
    assert random_salt() != random_salt()


async def test_voucher_digest_matches_contract(p: Parties) -> None:
    channel_id = random_salt()
    for amount in (0, 1, 123_456_789, 2**64, 2**128 - 1):
        ours = voucher_digest(channel_id, amount, p.chain.escrow, p.chain.chain_id)
        assert ours == await p.escrow.voucher_digest_onchain(channel_id, amount)
    assert await p.escrow.close_grace_period() == GRACE


# -- the cooperative lifecycle, to the base unit ----------------------------------------------


async def test_full_lifecycle_exact_balances(p: Parties) -> None:
    deposit, top_up = 300_000, 50_000
    v1, v2, v3 = 120_001, 250_000, 333_333

    await p.approve(deposit + top_up)
    assert await p.token.allowance(p.payer.address, p.chain.escrow) == deposit + top_up

    # open
    channel_id, receipt = await p.open(deposit, approve=False)
    (opened,) = only(p.escrow.events(receipt), "ChannelOpened")
    salt = str(opened.values["salt"])
    assert opened == EscrowEvent(
        name="ChannelOpened",
        channel_id=channel_id,
        payer=p.payer_addr,
        payee=p.payee_addr,
        values={
            "token": p.chain.token,
            "authorizedSigner": ZERO_ADDRESS,
            "salt": salt,
            "deposit": deposit,
        },
    )
    # The event's salt is the one the id was derived from.
    assert channel_id == compute_channel_id(
        p.payer_addr, p.payee_addr, p.chain.token, salt, ZERO_ADDRESS, p.chain.escrow, 31337
    )
    assert await p.balances() == (FUNDED - deposit, FUNDED, deposit)
    assert await p.token.allowance(p.payer.address, p.chain.escrow) == top_up
    state = await p.escrow.get_channel(channel_id)
    assert state == ChannelState(
        channel_id=channel_id,
        payer=p.payer_addr,
        payee=p.payee_addr,
        token=p.chain.token,
        authorized_signer=ZERO_ADDRESS,
        deposit=deposit,
        settled=0,
        close_requested_at=0,
        finalized=False,
    )
    assert state.exists
    assert state.expected_signer == p.payer_addr
    assert state.unsettled == deposit

    assert await p.escrow.closed_event(channel_id) is None  # open: not closed yet

    # settle v1
    (settled,) = only(p.escrow.events(await p.settle(channel_id, v1)), "Settled")
    assert settled.values == {"cumulativeAmount": v1, "deltaPaid": v1, "newSettled": v1}
    assert (settled.channel_id, settled.payer, settled.payee) == (
        channel_id,
        p.payer_addr,
        p.payee_addr,
    )
    assert await p.balances() == (FUNDED - deposit, FUNDED + v1, deposit - v1)
    state = await p.escrow.get_channel(channel_id)
    assert (state.deposit, state.settled, state.unsettled) == (deposit, v1, deposit - v1)

    # topUp
    tx = await p.escrow.sign_top_up(p.payer.wallet(), channel_id, top_up)
    (topped,) = only(p.escrow.events(await p.send(tx)), "TopUp")
    assert topped.values == {"additionalDeposit": top_up, "newDeposit": deposit + top_up}
    assert await p.balances() == (
        FUNDED - deposit - top_up,
        FUNDED + v1,
        deposit + top_up - v1,
    )
    assert await p.token.allowance(p.payer.address, p.chain.escrow) == 0
    assert (await p.escrow.get_channel(channel_id)).deposit == deposit + top_up

    # settle v2
    (settled,) = only(p.escrow.events(await p.settle(channel_id, v2)), "Settled")
    assert settled.values == {"cumulativeAmount": v2, "deltaPaid": v2 - v1, "newSettled": v2}
    assert await p.balances() == (FUNDED - deposit - top_up, FUNDED + v2, deposit + top_up - v2)

    # close v3: the payee gets v3 - v2, the payer the rest of the deposit back. Like the
    # deployed escrow, close emits only ChannelClosed (no Settled) and clears the record.
    signature = p.voucher(channel_id, v3)
    tx = await p.escrow.sign_close(p.payee.wallet(), channel_id, v3, signature)
    (closed,) = only(p.escrow.events(await p.send(tx)), "ChannelClosed")
    assert closed.values == {"settledToPayee": v3, "refundedToPayer": deposit + top_up - v3}
    assert await p.balances() == (FUNDED - v3, FUNDED + v3, 0)
    state = await p.escrow.get_channel(channel_id)
    assert state == ChannelState(
        channel_id=channel_id,
        payer=ZERO_ADDRESS,
        payee=ZERO_ADDRESS,
        token=ZERO_ADDRESS,
        authorized_signer=ZERO_ADDRESS,
        deposit=0,
        settled=0,
        close_requested_at=0,
        finalized=True,
    )
    assert not state.exists  # wiped: only ``finalized`` tells it from an unknown id
    assert state.cleared
    # The amounts survive only in the event, which a client can find again by channel id.
    assert await p.escrow.closed_event(channel_id) == closed
    assert await p.escrow.closed_event(random_salt()) is None

    # A finalized channel accepts nothing more, not even a higher voucher.
    with pytest.raises(ContractReverted) as info:
        await p.escrow.sign_settle(
            p.payee.wallet(), channel_id, v3 + 1, p.voucher(channel_id, v3 + 1)
        )
    assert info.value.error_name == "ChannelFinalized"
    assert await p.balances() == (FUNDED - v3, FUNDED + v3, 0)


async def test_close_with_settled_amount_needs_no_signature(p: Parties) -> None:
    """close(cumulative == settled) moves nothing to the payee and refunds the rest."""
    deposit, v1 = 10_000, 4_000
    channel_id, _ = await p.open(deposit)
    await p.settle(channel_id, v1)
    tx = await p.escrow.sign_close(p.payee.wallet(), channel_id, v1, "0x")
    (closed,) = only(p.escrow.events(await p.send(tx)), "ChannelClosed")
    # settledToPayee is the channel's final total, not this transaction's transfer.
    assert closed.values == {"settledToPayee": v1, "refundedToPayer": deposit - v1}
    assert await p.balances() == (FUNDED - v1, FUNDED + v1, 0)


async def test_reopening_a_used_salt_reverts(p: Parties) -> None:
    await p.approve(2_000)
    salt = random_salt()
    wallet = p.payer.wallet()
    tx = await p.escrow.sign_open(
        wallet, payee=p.payee.address, token=p.chain.token, deposit=1_000, salt=salt
    )
    await p.send(tx)
    with pytest.raises(ContractReverted) as info:
        await p.escrow.sign_open(
            wallet, payee=p.payee.address, token=p.chain.token, deposit=1_000, salt=salt
        )
    assert info.value.error_name == "ChannelAlreadyExists"
    assert await p.balances() == (FUNDED - 1_000, FUNDED, 1_000)


# -- forced close ---------------------------------------------------------------------


async def test_forced_close_refunds_deposit_minus_settled(p: Parties) -> None:
    deposit, settled_amount = 500_000, 123_457
    channel_id, _ = await p.open(deposit)
    await p.settle(channel_id, settled_amount)
    wallet = p.payer.wallet()

    # withdraw without a request is not ready either
    with pytest.raises(ContractReverted) as info:
        await p.escrow.sign_withdraw(wallet, channel_id)
    assert info.value.error_name == "CloseNotReady"

    receipt = await p.send(await p.escrow.sign_request_close(wallet, channel_id))
    block = await p.client.w3.eth.get_block(receipt["blockNumber"])
    requested_at = int(block["timestamp"])
    (requested,) = only(p.escrow.events(receipt), "CloseRequested")
    assert requested.values == {"closeGraceEnd": requested_at + GRACE}
    assert (await p.escrow.get_channel(channel_id)).close_requested_at == requested_at

    with pytest.raises(ContractReverted) as info:
        await p.escrow.sign_withdraw(wallet, channel_id)
    assert info.value.error_name == "CloseNotReady"
    # A second request is a no-op: no event, and the first grace end stands.
    await p.chain.increase_time(60)
    receipt = await p.send(await p.escrow.sign_request_close(wallet, channel_id))
    assert p.escrow.events(receipt) == []
    assert (await p.escrow.get_channel(channel_id)).close_requested_at == requested_at

    await p.chain.increase_time(GRACE // 2 - 60)
    with pytest.raises(ContractReverted) as info:
        await p.escrow.sign_withdraw(wallet, channel_id)
    assert info.value.error_name == "CloseNotReady"

    await p.chain.increase_time(GRACE // 2)
    assert await p.client.block_timestamp() >= requested_at + GRACE
    receipt = await p.send(await p.escrow.sign_withdraw(wallet, channel_id))
    expired, closed = only(p.escrow.events(receipt), "ChannelExpired", "ChannelClosed")
    assert (expired.channel_id, expired.payer, expired.payee, dict(expired.values)) == (
        channel_id,
        p.payer_addr,
        p.payee_addr,
        {},
    )
    assert closed.values == {
        "settledToPayee": settled_amount,
        "refundedToPayer": deposit - settled_amount,
    }
    assert await p.balances() == (FUNDED - settled_amount, FUNDED + settled_amount, 0)
    state = await p.escrow.get_channel(channel_id)
    assert state.finalized
    assert state.cleared
    assert await p.escrow.closed_event(channel_id) == closed

    with pytest.raises(ContractReverted) as info:
        await p.escrow.sign_withdraw(wallet, channel_id)
    assert info.value.error_name == "ChannelFinalized"


async def test_payee_may_settle_during_grace_period(p: Parties) -> None:
    deposit = 10_000
    channel_id, _ = await p.open(deposit)
    await p.send(await p.escrow.sign_request_close(p.payer.wallet(), channel_id))
    await p.settle(channel_id, 2_500)
    await p.chain.increase_time(GRACE)
    await p.send(await p.escrow.sign_withdraw(p.payer.wallet(), channel_id))
    assert await p.balances() == (FUNDED - 2_500, FUNDED + 2_500, 0)


async def test_top_up_cancels_close_request(p: Parties) -> None:
    deposit, top_up = 20_000, 5_000
    channel_id, _ = await p.open(deposit)
    wallet = p.payer.wallet()
    await p.send(await p.escrow.sign_request_close(wallet, channel_id))
    assert (await p.escrow.get_channel(channel_id)).close_requested_at > 0

    await p.approve(top_up)
    receipt = await p.send(await p.escrow.sign_top_up(wallet, channel_id, top_up))
    cancelled, topped = only(p.escrow.events(receipt), "CloseRequestCancelled", "TopUp")
    assert topped.values == {"additionalDeposit": top_up, "newDeposit": deposit + top_up}
    assert (cancelled.channel_id, cancelled.payer, cancelled.payee, dict(cancelled.values)) == (
        channel_id,
        p.payer_addr,
        p.payee_addr,
        {},
    )
    state = await p.escrow.get_channel(channel_id)
    assert (state.close_requested_at, state.deposit, state.finalized) == (
        0,
        deposit + top_up,
        False,
    )

    # The old grace period no longer counts: withdraw is not ready even after it ran out...
    await p.chain.increase_time(GRACE)
    with pytest.raises(ContractReverted) as info:
        await p.escrow.sign_withdraw(wallet, channel_id)
    assert info.value.error_name == "CloseNotReady"
    # ...and a new request starts a fresh one.
    await p.send(await p.escrow.sign_request_close(wallet, channel_id))
    assert (await p.escrow.get_channel(channel_id)).close_requested_at > 0
    assert await p.balances() == (FUNDED - deposit - top_up, FUNDED, deposit + top_up)


# -- who may call what ------------------------------------------------------------------


async def test_roles_enforced(p: Parties) -> None:
    channel_id, _ = await p.open(10_000)
    payee, payer, stranger = p.payee.wallet(), p.payer.wallet(), p.stranger.wallet()
    await p.approve(1_000, p.payee)
    voucher = p.voucher(channel_id, 100)

    for wallet in (payee, stranger):
        for call in (
            p.escrow.sign_top_up(wallet, channel_id, 1_000),
            p.escrow.sign_request_close(wallet, channel_id),
            p.escrow.sign_withdraw(wallet, channel_id),
        ):
            with pytest.raises(ContractReverted) as info:
                await call
            assert info.value.error_name == "NotPayer"
            assert info.value.args_decoded == ()

    for wallet in (payer, stranger):
        for call in (
            p.escrow.sign_settle(wallet, channel_id, 100, voucher),
            p.escrow.sign_close(wallet, channel_id, 100, voucher),
        ):
            with pytest.raises(ContractReverted) as info:
                await call
            assert info.value.error_name == "NotPayee"

    # None of that moved anything or changed the channel.
    assert await p.balances() == (FUNDED - 10_000, FUNDED, 10_000)
    state = await p.escrow.get_channel(channel_id)
    assert (state.settled, state.close_requested_at, state.finalized) == (0, 0, False)


async def test_unknown_channel(p: Parties) -> None:
    missing = random_salt()
    state = await p.escrow.get_channel(missing)
    assert not state.exists
    assert (state.payer, state.deposit, state.settled, state.finalized) == (
        ZERO_ADDRESS,
        0,
        0,
        False,
    )
    with pytest.raises(ContractReverted) as info:
        await p.escrow.sign_settle(p.payee.wallet(), missing, 1, p.voucher(missing, 1))
    assert info.value.error_name == "ChannelNotFound"


# -- voucher checks on chain ------------------------------------------------------------


async def test_bad_vouchers_rejected_on_chain(p: Parties) -> None:
    deposit = 10_000
    channel_id, _ = await p.open(deposit)
    wallet = p.payee.wallet()

    async def settle_error(amount: int, signature: str) -> str:
        with pytest.raises(ContractReverted) as info:
            await p.escrow.sign_settle(wallet, channel_id, amount, signature)
        assert info.value.context == "settle"
        return info.value.error_name

    # signed by a stranger
    stranger_sig = p.voucher(channel_id, 100, key=p.stranger.private_key)
    assert await settle_error(100, stranger_sig) == "InvalidSignature"
    # signed for another amount, escrow or chain
    assert await settle_error(101, p.voucher(channel_id, 100)) == "InvalidSignature"
    other_escrow = sign_voucher(p.payer.private_key, channel_id, 100, "0x" + "11" * 20, 31337)
    assert await settle_error(100, other_escrow) == "InvalidSignature"
    other_chain = sign_voucher(p.payer.private_key, channel_id, 100, p.chain.escrow, 1)
    assert await settle_error(100, other_chain) == "InvalidSignature"
    # high-s twin of a valid signature
    good = p.voucher(channel_id, 100)
    raw = bytes.fromhex(good[2:])
    r, s, v = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
    twin = "0x" + r.hex() + (N - s).to_bytes(32, "big").hex() + format(55 - v, "02x")
    assert await settle_error(100, twin) == "InvalidSignature"
    # garbage lengths
    assert await settle_error(100, good[:-2] + "1d") == "InvalidSignature"
    assert await settle_error(100, "0x" + "00" * 65) == "InvalidSignature"
    # amounts
    assert await settle_error(deposit + 1, p.voucher(channel_id, deposit + 1)) == (
        "AmountExceedsDeposit"
    )
    assert await settle_error(0, p.voucher(channel_id, 0)) == "AmountNotIncreasing"

    # The EIP-2098 compact form of our signature settles.
    compact = "0x" + r.hex() + ((v - 27) << 255 | s).to_bytes(32, "big").hex()
    await p.send(await p.escrow.sign_settle(wallet, channel_id, 100, compact))
    # Equal and lower cumulative amounts do not advance.
    assert await settle_error(100, good) == "AmountNotIncreasing"
    assert await settle_error(99, p.voucher(channel_id, 99)) == "AmountNotIncreasing"
    await p.settle(channel_id, deposit)  # the whole deposit is fine
    assert await p.balances() == (FUNDED - deposit, FUNDED + deposit, 0)
    with pytest.raises(ContractReverted) as info:
        await p.escrow.sign_close(
            wallet, channel_id, deposit + 1, p.voucher(channel_id, deposit + 1)
        )
    assert info.value.error_name == "AmountExceedsDeposit"


async def test_delegated_signer(p: Parties) -> None:
    delegate = VoucherSigner.generate()
    channel_id, receipt = await p.open(10_000, signer=delegate.address)
    (opened,) = only(p.escrow.events(receipt), "ChannelOpened")
    assert opened.channel_id == channel_id
    assert opened.values["authorizedSigner"] == delegate.address.lower()
    state = await p.escrow.get_channel(channel_id)
    assert state.authorized_signer == state.expected_signer == delegate.address.lower()

    # The payer's own voucher is refused once a delegate is set.
    with pytest.raises(ContractReverted) as info:
        await p.escrow.sign_settle(p.payee.wallet(), channel_id, 700, p.voucher(channel_id, 700))
    assert info.value.error_name == "InvalidSignature"

    signature = delegate.sign(channel_id, 700, p.chain.escrow, p.chain.chain_id)
    await p.send(await p.escrow.sign_settle(p.payee.wallet(), channel_id, 700, signature))
    close_sig = delegate.sign(channel_id, 900, p.chain.escrow, p.chain.chain_id)
    tx = await p.escrow.sign_close(p.payee.wallet(), channel_id, 900, close_sig)
    (closed,) = only(p.escrow.events(await p.send(tx)), "ChannelClosed")
    assert closed.values == {"settledToPayee": 900, "refundedToPayer": 9_100}
    assert await p.balances() == (FUNDED - 900, FUNDED + 900, 0)


# -- calldata and signed transactions ----------------------------------------------------


async def test_decode_payer_call_roundtrip(p: Parties) -> None:
    salt = random_salt()
    signer = VoucherSigner.generate().address
    data = encode_open(p.payee.address, p.chain.token.upper().replace("0X", "0x"), 77, salt, signer)
    call = decode_payer_call(data)
    assert call is not None
    assert call.function == "open"
    assert call.args == {
        "payee": p.payee_addr,
        "token": p.chain.token,
        "deposit": 77,
        "salt": salt,
        "authorizedSigner": signer.lower(),
    }
    channel_id = random_salt()
    # topUp takes a uint256 in the deployed ABI: even amounts above uint128 round-trip (the
    # contract refuses them with DepositOverflow; the server compares them with the payload).
    for amount in (1, 2**128 - 1, 2**128, 2**256 - 1):
        top_up = encode_top_up(channel_id, amount)
        assert top_up[:4] == keccak(b"topUp(bytes32,uint256)")[:4]
        call = decode_payer_call(top_up)
        assert call is not None
        assert (call.function, dict(call.args)) == (
            "topUp",
            {"channelId": channel_id, "additionalDeposit": amount},
        )
    # Anything else is not a payer call.
    settle = keccak(b"settle(bytes32,uint128,bytes)")[:4] + abi_encode(
        ["bytes32", "uint128", "bytes"], [b"\x01" * 32, 1, b"\x02" * 65]
    )
    for other in (b"", b"\x00" * 3, data[:4], data[:40], settle, b"\xde\xad\xbe\xef" + data[4:]):
        assert decode_payer_call(other) is None


async def test_decode_signed_transaction_matches_mined(p: Parties) -> None:
    deposit = 3_000
    await p.approve(deposit)
    salt = random_salt()
    tx = await p.escrow.sign_open(
        p.payer.wallet(), payee=p.payee.address, token=p.chain.token, deposit=deposit, salt=salt
    )
    nonce_before = await p.client.transaction_count(p.payer.address)
    decoded = decode_signed_transaction(tx.raw)
    assert decoded.sender == p.payer_addr == tx.sender
    assert decoded.to == p.chain.escrow
    assert decoded.data == encode_open(p.payee_addr, p.chain.token, deposit, salt, ZERO_ADDRESS)
    assert decoded.value == 0
    assert decoded.nonce == tx.nonce == nonce_before
    assert decoded.chain_id == p.chain.chain_id == 31337
    assert decoded.hash == tx.hash
    call = decode_payer_call(decoded.data)
    assert call is not None
    assert call.args["deposit"] == deposit

    receipt = await p.send(tx)
    assert "0x" + bytes(receipt["transactionHash"]).hex() == decoded.hash
    mined = await p.client.w3.eth.get_transaction(decoded.hash)  # type: ignore[arg-type]
    assert str(mined["from"]).lower() == decoded.sender
    assert int(mined["nonce"]) == decoded.nonce

    for bad in ("", "0x", "0xzz", tx.raw[2:], tx.raw[:-2], "0x02" + "00" * 50):
        with pytest.raises(InvalidTransaction):
            decode_signed_transaction(bad)


async def test_send_same_bytes_twice_is_harmless(p: Parties) -> None:
    deposit = 5_000
    await p.approve(deposit)
    tx = await p.escrow.sign_open(
        p.payer.wallet(),
        payee=p.payee.address,
        token=p.chain.token,
        deposit=deposit,
        salt=random_salt(),
    )
    assert await p.client.send(tx) == tx.hash
    assert await p.client.send(tx) == tx.hash  # anvil automines: now "nonce too low" but mined
    receipt = await p.client.wait(tx.hash)
    assert int(receipt["status"]) == 1
    assert await p.client.send(tx) == tx.hash
    nonce = await p.client.transaction_count(p.payer.address)
    assert nonce == tx.nonce + 1
    assert await p.balances() == (FUNDED - deposit, FUNDED, deposit)

    # A different transaction that reuses a spent nonce is refused, not treated as a resend.
    stale = await p.client.sign_call(
        p.payer.wallet(),
        p.chain.token,
        encode_top_up(random_salt(), 1),
        context="stale",
        gas=100_000,
        nonce=tx.nonce,
    )
    with pytest.raises(TransactionFailed):
        await p.client.send(stale)


async def test_send_before_mining_twice(p: Parties) -> None:
    """With automine off, the second send of pending bytes is 'already known' and harmless."""
    await p.chain.rpc("evm_setAutomine", [False])
    try:
        tx = await p.token.sign_approve(p.payer.wallet(), p.chain.escrow, 42)
        assert await p.client.send(tx) == tx.hash
        assert await p.client.send(tx) == tx.hash
        assert await p.client.get_receipt(tx.hash) is None
        await p.chain.rpc("evm_mine")
    finally:
        await p.chain.rpc("evm_setAutomine", [True])
    assert int((await p.client.wait(tx.hash))["status"]) == 1
    assert await p.token.allowance(p.payer.address, p.chain.escrow) == 42


async def test_mined_revert_is_named(p: Parties) -> None:
    channel_id, _ = await p.open(1_000)
    # The payee tops up: estimation would refuse, so give gas and let it be mined.
    tx = await p.escrow.sign_top_up(p.payee.wallet(), channel_id, 1, gas=200_000)
    assert await p.client.send(tx) == tx.hash
    receipt = None
    for _ in range(100):  # the node may answer the send before the receipt is visible
        receipt = await p.client.get_receipt(tx.hash)
        if receipt is not None:
            break
        await asyncio.sleep(0.05)
    assert receipt is not None
    assert int(receipt["status"]) == 0
    with pytest.raises(ContractReverted) as info:
        await p.client.wait(tx.hash, context="topUp")
    assert info.value.error_name == "NotPayer"
    assert info.value.context == "topUp"
    assert "NotPayer" in str(info.value)

    # An open without allowance, mined: the token's own error comes back.
    tx = await p.escrow.sign_open(
        p.payer.wallet(),
        payee=p.payee.address,
        token=p.chain.token,
        deposit=7,
        salt=random_salt(),
        gas=300_000,
    )
    with pytest.raises(ContractReverted) as info:
        await p.client.send_and_wait(tx)
    assert info.value.error_name == "ERC20InsufficientAllowance"
    assert info.value.args_decoded == (p.chain.escrow, 0, 7)
    assert await p.balances() == (FUNDED - 1_000, FUNDED, 1_000)


async def test_open_without_enough_allowance_or_balance(p: Parties) -> None:
    deposit = 10_000
    await p.approve(deposit - 1)
    wallet = p.payer.wallet()
    with pytest.raises(ContractReverted) as info:
        await p.escrow.sign_open(
            wallet, payee=p.payee.address, token=p.chain.token, deposit=deposit, salt=random_salt()
        )
    # OpenZeppelin's ERC20InsufficientAllowance(spender, allowance, needed), decoded.
    assert info.value.error_name == "ERC20InsufficientAllowance"
    assert info.value.args_decoded == (p.chain.escrow, deposit - 1, deposit)
    assert info.value.context == "open"

    await p.approve(FUNDED + 1)
    with pytest.raises(ContractReverted) as info:
        await p.escrow.sign_open(
            wallet,
            payee=p.payee.address,
            token=p.chain.token,
            deposit=FUNDED + 1,
            salt=random_salt(),
        )
    assert info.value.error_name == "ERC20InsufficientBalance"
    assert info.value.args_decoded == (p.payer_addr, FUNDED, FUNDED + 1)

    # Zero or oversized deposits never reach the chain.
    for bad in (0, -1, 2**128):
        with pytest.raises(ValueError, match="deposit"):
            await p.escrow.sign_open(
                wallet, payee=p.payee.address, token=p.chain.token, deposit=bad, salt=random_salt()
            )
    assert await p.balances() == (FUNDED, FUNDED, 0)


async def test_token_errors_named_without_a_token_object(chain: DevChain) -> None:
    """A client that only ever built an ``Escrow`` still gets the token's revert by name."""
    client = chain.client()
    try:
        escrow = Escrow(client, chain.escrow)
        payer, payee = chain.accounts[4], chain.accounts[5]
        with pytest.raises(ContractReverted) as info:
            await escrow.sign_open(
                payer.wallet(),
                payee=payee.address,
                token=chain.token,
                deposit=1_000,
                salt=random_salt(),
            )
        assert info.value.error_name == "ERC20InsufficientAllowance"
        assert info.value.args_decoded == (chain.escrow, 0, 1_000)
    finally:
        await client.close()


# -- an unreachable node -----------------------------------------------------------------


async def test_unreachable_rpc_raises_chain_unavailable() -> None:
    client = ChainClient("http://127.0.0.1:1", timeout=1.0)
    tx = SignedTransaction(raw="0x02", hash="0x" + "00" * 32, nonce=0, sender=ZERO_ADDRESS)
    try:
        for attempt in (client.chain_id, client.block_timestamp, lambda: client.send(tx)):
            started = time.monotonic()
            with pytest.raises(ChainUnavailable) as info:
                await attempt()
            # Connection refused: no retry loop, no waiting for the timeout.
            assert time.monotonic() - started < 0.5
            assert "http://127.0.0.1:1 unavailable" in str(info.value)
    finally:
        await client.close()


async def test_silent_rpc_times_out_as_chain_unavailable() -> None:
    """A node that accepts the connection but never answers: ChainUnavailable after ``timeout``."""
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = ChainClient(f"http://127.0.0.1:{port}", timeout=0.3)
    tx = SignedTransaction(raw="0x02", hash="0x" + "00" * 32, nonce=0, sender=ZERO_ADDRESS)
    try:
        for attempt in (client.chain_id, lambda: client.send(tx)):
            started = time.monotonic()
            with pytest.raises(ChainUnavailable) as info:
                await attempt()
            elapsed = time.monotonic() - started
            assert 0.25 <= elapsed < 0.9  # one timeout, not five plus backoff
            assert "TimeoutError" in str(info.value)
    finally:
        release.set()
        await client.close()
        server.close()
        await server.wait_closed()
