"""Session protocol v2: the TIP-1034 channel reserve as a :class:`SessionBackend`.

What differs from v1, and why it lives here:

* The channel id depends on the opening transaction (``expiringNonceHash``), so
  :meth:`V2Backend.new_channel` signs the open up front: one ``0x76`` transaction
  with an expiring nonce whose only call is ``open(...)`` -- no ``approve``, the
  reserve has implicit approval on TIP-20 tokens -- and derives the hash from its
  signing payload (for a sponsored open: the placeholder form the sender signed).
* Every post-open action names the channel by its full descriptor, which is
  stored with the channel's record (``ChannelTerms.descriptor``, JSON) and sent in
  every payload.
* The reserve deletes a channel's state when it closes; a closed channel is
  recognised by its ``ChannelClosed`` log and read back as finalized, with what
  it paid, so the session layer sees the same thing as with v1's escrow.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from mppagent.errors import ChainError
from mppagent.tempo.artifacts import load_artifact
from mppagent.tempo.backend import (
    ChannelTerms,
    ClosedAmounts,
    FundingPlan,
    NewChannel,
    PriorSender,
    build_open_payload,
)
from mppagent.tempo.chain import ChainClient, SignedTransaction, Wallet
from mppagent.tempo.escrow import ChannelState
from mppagent.tempo.hexutil import ZERO_ADDRESS, checksum_address, normalize_address
from mppagent.tempo.schemas import ClosePayload, OpenPayload, TopUpPayload, VoucherPayload
from mppagent.tempo.tempo_chain import (
    TEMPO_CHAIN_IDS,
    OutgoingTempoTransaction,
    chain_now,
    for_server,
    sign_calls,
)
from mppagent.tempo.tempotx import Call, decode_tempo_transaction
from mppagent.tempo.v2.calls import (
    CHANNEL_CLOSED_TOPIC,
    decode_channel_closed,
    decode_channel_state,
    encode_get_channel_state,
    encode_open,
    encode_request_close,
    encode_top_up,
    encode_withdraw,
)
from mppagent.tempo.v2.channel_id import compute_channel_id, expiring_nonce_hash
from mppagent.tempo.v2.constants import CLOSE_GRACE_PERIOD, RESERVE_ADDRESS
from mppagent.tempo.v2.descriptor import ChannelDescriptor
from mppagent.tempo.v2.local_reserve import ARTIFACT_NAME
from mppagent.tempo.v2.voucher import sign_voucher
from mppagent.tempo.voucher import VoucherSigner

__all__ = ["V2Backend", "descriptor_of"]


_VALID_AFTER_JITTER = 1 << 20
"""Range of the random ``validAfter`` offset a top-up gets (seconds in the past)."""


def descriptor_of(terms: ChannelTerms) -> ChannelDescriptor:
    """The stored descriptor of a v2 channel (a record without one cannot be acted on)."""
    if terms.descriptor is None:
        raise ChainError("this v2 channel has no stored descriptor; it cannot be used or closed")
    return ChannelDescriptor.from_wire(json.loads(terms.descriptor))


class V2Backend:
    """v2 sessions over one chain client; the reserve is where the challenge says."""

    protocol = "v2"
    initial_units = 1  # mppx's server: "voucher amount is less than request amount"

    def __init__(self, chain: ChainClient) -> None:
        self.chain = chain

    # -- opening and funding ------------------------------------------------------------------

    async def new_channel(self, wallet: Wallet, terms: ChannelTerms, deposit: int) -> NewChannel:
        """Sign the open now: its ``expiringNonceHash`` is part of the channel id."""
        call = Call(
            terms.escrow,
            encode_open(
                terms.payee,
                terms.operator,
                terms.token,
                deposit,
                terms.salt,
                terms.authorized_signer,
            ),
        )
        tx = await self._sign(wallet, terms, [call])
        descriptor = ChannelDescriptor(
            payer=terms.payer,
            payee=terms.payee,
            operator=terms.operator,
            token=terms.token,
            salt=terms.salt,
            authorized_signer=terms.authorized_signer,
            expiring_nonce_hash=open_nonce_hash(tx),
        )
        return NewChannel(
            channel_id=compute_channel_id(descriptor, terms.escrow, terms.chain_id),
            descriptor=json.dumps(descriptor.to_wire(), sort_keys=True),
            plan=FundingPlan(main=tx),
        )

    async def plan_open(
        self, wallet: Wallet, terms: ChannelTerms, deposit: int, prior: PriorSender
    ) -> FundingPlan:
        """Never needed: :meth:`new_channel` signs the open (a resent open reuses its bytes)."""
        del wallet, terms, deposit, prior
        raise ChainError("a v2 open is signed with its channel id (new_channel), not later")

    async def plan_top_up(
        self,
        wallet: Wallet,
        terms: ChannelTerms,
        channel_id: str,
        amount: int,
        prior: PriorSender,
    ) -> FundingPlan:
        """``[topUp(descriptor, amount)]`` with a random ``validAfter`` (hash entropy).

        Two top-ups of one amount signed in the same second would otherwise be
        the same expiring-nonce transaction, and the chain would run only one.
        """
        del channel_id, prior
        call = Call(terms.escrow, encode_top_up(descriptor_of(terms), amount))
        now = await chain_now(self.chain)
        valid_after = max(0, now - 60 - secrets.randbelow(_VALID_AFTER_JITTER))
        return FundingPlan(main=await self._sign(wallet, terms, [call], valid_after=valid_after))

    async def _sign(
        self,
        wallet: Wallet,
        terms: ChannelTerms,
        calls: Sequence[Call],
        *,
        valid_after: int | None = None,
    ) -> OutgoingTempoTransaction:
        return await sign_calls(
            self.chain,
            wallet,
            calls,
            fee_token=terms.fee_token or terms.token,
            sponsored=terms.fee_payer,
            valid_after=valid_after,
        )

    async def check_contract(self, escrow: str) -> bool:
        """The canonical reserve: the precompile on Tempo chains, else our local reserve there."""
        if normalize_address(escrow) != RESERVE_ADDRESS:
            return False
        if await self.chain.chain_id() in TEMPO_CHAIN_IDS:  # the T5 precompile
            return True
        code = await self.chain.get_code(escrow)
        return load_artifact(ARTIFACT_NAME).matches_runtime(code)

    # -- vouchers and payloads ----------------------------------------------------------------

    def sign_voucher(
        self, signer: VoucherSigner, channel_id: str, amount: int, escrow: str, chain_id: int
    ) -> str:
        """Domain ``TIP20 Channel Reserve`` v1, ``Voucher(bytes32, uint96)``, canonical r‖s‖v."""
        return sign_voucher(signer, channel_id, amount, escrow, chain_id)

    def open_payload(
        self, terms: ChannelTerms, channel_id: str, tx: SignedTransaction, amount: int, sig: str
    ) -> OpenPayload:
        """``open`` with the transaction, the initial voucher and the descriptor."""
        descriptor = descriptor_of(terms).to_wire()
        return build_open_payload(terms, channel_id, tx, amount, sig, descriptor=descriptor)

    def top_up_payload(
        self, terms: ChannelTerms, channel_id: str, tx: SignedTransaction, amount: int
    ) -> TopUpPayload:
        """``topUp`` with the transaction and the descriptor."""
        return TopUpPayload(
            channel_id=channel_id,
            transaction=for_server(tx),
            additional_deposit=amount,
            descriptor=descriptor_of(terms).to_wire(),
        )

    def voucher_payload(
        self, terms: ChannelTerms, channel_id: str, amount: int, sig: str
    ) -> VoucherPayload:
        """``voucher`` with the descriptor."""
        return VoucherPayload(
            channel_id=channel_id,
            cumulative_amount=amount,
            signature=sig,
            descriptor=descriptor_of(terms).to_wire(),
        )

    def close_payload(
        self, terms: ChannelTerms, channel_id: str, amount: int, sig: str
    ) -> ClosePayload:
        """``close`` with the final voucher and the descriptor."""
        return ClosePayload(
            channel_id=channel_id,
            cumulative_amount=amount,
            signature=sig,
            descriptor=descriptor_of(terms).to_wire(),
        )

    # -- reading the chain -------------------------------------------------------------------

    async def read_channel(
        self, terms: ChannelTerms, channel_id: str, *, opened_tx: str | None = None
    ) -> ChannelState:
        """``getChannelState``; a zero state is either closed (its log says) or never opened."""
        descriptor = descriptor_of(terms)
        output = await self.chain.call(
            terms.escrow, encode_get_channel_state(channel_id), context="getChannelState"
        )
        state = decode_channel_state(output)
        if state.exists:
            return _state(
                channel_id,
                descriptor,
                state.deposit,
                state.settled,
                False,
                state.close_requested_at,
            )
        closed = await self._closed_log(terms.escrow, channel_id, opened_tx)
        if closed is None:
            return _state(channel_id, None, 0, 0, False, 0)
        return _state(channel_id, descriptor, closed.paid + closed.refunded, closed.paid, True, 0)

    async def final_settled(
        self, escrow: str, channel_id: str, *, opened_tx: str | None = None
    ) -> int | None:
        """What the reserve's ``ChannelClosed`` log says the payee got (``None``: no close)."""
        closed = await self._closed_log(escrow, channel_id, opened_tx)
        return None if closed is None else closed.paid

    async def _closed_log(
        self, reserve: str, channel_id: str, opened_tx: str | None
    ) -> ClosedAmounts | None:
        """The channel's ``ChannelClosed`` log, searched from its open's block on."""
        from_block = await self.chain.mined_in(opened_tx)
        logs = await self.chain.request(
            "eth_getLogs",
            [
                {
                    "address": checksum_address(reserve),
                    "topics": [CHANNEL_CLOSED_TOPIC, channel_id],
                    "fromBlock": hex(from_block),
                    "toBlock": "latest",
                }
            ],
        )
        for log in logs or []:
            closed = _closed_in(reserve, channel_id, log)
            if closed is not None:
                return closed
        return None

    async def close_grace_period(self, escrow: str) -> int:
        """900 s, fixed by TIP-1034."""
        del escrow
        return CLOSE_GRACE_PERIOD

    async def sign_request_close(
        self, wallet: Wallet, terms: ChannelTerms, channel_id: str
    ) -> SignedTransaction:
        """``[requestClose(descriptor)]`` as an expiring-nonce ``0x76`` (payer pays its fee)."""
        del channel_id
        call = Call(terms.escrow, encode_request_close(descriptor_of(terms)))
        return await self._sign(wallet, replace(terms, fee_payer=False), [call])

    async def sign_withdraw(
        self, wallet: Wallet, terms: ChannelTerms, channel_id: str
    ) -> SignedTransaction:
        """``[withdraw(descriptor)]`` as an expiring-nonce ``0x76`` (payer pays its fee)."""
        del channel_id
        call = Call(terms.escrow, encode_withdraw(descriptor_of(terms)))
        return await self._sign(wallet, replace(terms, fee_payer=False), [call])

    def closed_amounts(
        self, escrow: str, channel_id: str, receipt: dict[str, Any]
    ) -> ClosedAmounts | None:
        """The reserve's ``ChannelClosed`` payout and refund for ``channel_id``."""
        for log in receipt.get("logs", []):
            closed = _closed_in(escrow, channel_id, log)
            if closed is not None:
                return closed
        return None


def open_nonce_hash(tx: OutgoingTempoTransaction) -> str:
    """``expiringNonceHash`` of a signed open, from the payload its sender signed."""
    signed = decode_tempo_transaction(tx.raw)
    return expiring_nonce_hash(signed.tx.signing_payload(), signed.sender)


def _hex_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return bytes.fromhex(str(value).removeprefix("0x"))


def _closed_in(reserve: str, channel_id: str, log: Mapping[str, Any]) -> ClosedAmounts | None:
    if normalize_address(str(log.get("address", ""))) != normalize_address(reserve):
        return None
    topics = [_hex_bytes(t) for t in log.get("topics", [])]
    event = decode_channel_closed(topics, _hex_bytes(log.get("data", b"")))
    if event is None or event.channel_id != channel_id.lower():
        return None
    return ClosedAmounts(paid=event.paid, refunded=event.refunded)


def _state(
    channel_id: str,
    descriptor: ChannelDescriptor | None,
    deposit: int,
    settled: int,
    finalized: bool,
    close_requested_at: int,
) -> ChannelState:
    """A :class:`ChannelState` (``payer`` zero -- not existing -- without a descriptor)."""
    return ChannelState(
        channel_id=channel_id,
        payer=descriptor.payer if descriptor else ZERO_ADDRESS,
        payee=descriptor.payee if descriptor else ZERO_ADDRESS,
        token=descriptor.token if descriptor else ZERO_ADDRESS,
        authorized_signer=descriptor.authorized_signer if descriptor else ZERO_ADDRESS,
        deposit=deposit,
        settled=settled,
        close_requested_at=close_requested_at,
        finalized=finalized,
    )
