"""Session protocol v1 on the server: the ``TempoStreamChannel`` escrow.

Opens and top-ups arrive as an ordinary signed transaction calling the escrow
(plain EVM chains) or a Tempo ``0x76`` batching ``approve`` + the escrow call;
both are reduced to the one call :func:`~mppagent.tempo.payer_calls.expect_payer_calls`
allows. Vouchers are redeemable in any of the encodings the escrow accepts, so
64-byte EIP-2098 signatures are expanded to 65-byte r‖s‖v (v = 27/28) and
high-s ones refused (see :func:`~mppagent.tempo.voucher.redeemable_signature`).

v1's ``close`` pays the payee the redeemed voucher's amount -- there is no
separate capture figure -- so :meth:`V1ServerBackend.close` redeems the cheapest
voucher it holds at or above ``spent`` and reports what it paid beyond ``spent``
as a refund the payee owes the payer.
"""

from __future__ import annotations

from typing import Any, Literal

from mppagent.devserver.backend import (
    CheckedOpen,
    ClosedChannel,
    LaterPayload,
    require_signer,
)
from mppagent.devserver.payer_tx import PayerTransaction, read_payer_transaction
from mppagent.devserver.state import ServerChannel
from mppagent.devserver.terms import PayeeTerms, refused
from mppagent.protocol import (
    JSON,
    InvalidSignatureProblem,
    VerificationFailedProblem,
)
from mppagent.tempo.chain import ContractReverted
from mppagent.tempo.channel_id import compute_channel_id
from mppagent.tempo.escrow import ChannelState, Escrow, EscrowCall
from mppagent.tempo.payer_calls import expect_payer_calls
from mppagent.tempo.schemas import OpenPayload, TopUpPayload
from mppagent.tempo.transactions import InvalidTransaction
from mppagent.tempo.voucher import InvalidSignature, recover_voucher_signer, redeemable_signature

__all__ = ["V1ServerBackend"]


class V1ServerBackend:
    """v1 channels in the escrow at ``terms.contract``."""

    protocol: Literal["v1"] = "v1"

    def __init__(self, terms: PayeeTerms) -> None:
        self.terms = terms
        self.contract = terms.contract
        self.escrow = Escrow(terms.chain, terms.contract)

    def method_details(self) -> dict[str, JSON]:
        """Nothing: a challenge without ``sessionProtocol`` is v1."""
        return {}

    # -- funding -----------------------------------------------------------------------------

    def _funding(
        self, raw: str, action: Literal["open", "topUp"]
    ) -> tuple[EscrowCall, PayerTransaction]:
        terms = self.terms
        try:
            received = read_payer_transaction(raw)
            call = expect_payer_calls(
                received.calls, action=action, escrow=self.contract, currency=terms.token
            )
            tx = received.prepare(terms.fee_payer, terms.fee_token)
        except InvalidTransaction as exc:
            raise VerificationFailedProblem(str(exc)) from None
        terms.check_chain(tx, action)
        return call, tx

    def check_open(self, payload: OpenPayload, source: str | None) -> CheckedOpen:
        """The escrow's ``open`` for our payee and token; the id from its arguments."""
        del source
        call, tx = self._funding(payload.transaction, "open")
        terms = self.terms
        if call.args["payee"] != terms.payee:
            raise VerificationFailedProblem("the open transaction pays another payee")
        signer = str(call.args["authorizedSigner"])
        channel_id = compute_channel_id(
            tx.sender,
            terms.payee,
            terms.token,
            str(call.args["salt"]),
            signer,
            self.contract,
            terms.chain_id,
        )
        if channel_id != payload.channel_id:
            raise VerificationFailedProblem("channelId does not match the open transaction")
        if payload.authorized_signer is not None and payload.authorized_signer != signer:
            raise VerificationFailedProblem("authorizedSigner does not match the transaction")
        return CheckedOpen(channel_id, tx)

    def confirm_open(self, checked: CheckedOpen, receipt: dict[str, Any]) -> None:
        """Nothing beyond reading the channel back: the id fixes payer, payee and token."""
        del checked, receipt

    def channel_descriptor(self, payload: LaterPayload, source: str | None) -> str | None:
        """v1 channels have no descriptor (one sent anyway is ignored)."""
        del payload, source
        return None

    def check_top_up(self, payload: TopUpPayload, channel: ServerChannel) -> PayerTransaction:
        """The escrow's ``topUp`` of exactly ``additionalDeposit`` for this channel."""
        call, tx = self._funding(payload.transaction, "topUp")
        if call.args["channelId"] != channel.channel_id:
            raise VerificationFailedProblem("the topUp transaction is for another channel")
        if call.args["additionalDeposit"] != payload.additional_deposit:
            raise VerificationFailedProblem("additionalDeposit does not match the transaction")
        return tx

    def confirm_top_up(self, channel_id: str, amount: int, receipt: dict[str, Any]) -> None:
        """The escrow's ``TopUp`` event for this channel and amount."""
        topped = [
            e
            for e in self.escrow.events(receipt)
            if e.name == "TopUp" and e.channel_id == channel_id
        ]
        if not topped or int(topped[0].values["additionalDeposit"]) != amount:
            raise VerificationFailedProblem("the topUp transaction did not add that deposit")

    # -- state and vouchers ------------------------------------------------------------------

    async def read_state(self, channel_id: str, descriptor: str | None) -> ChannelState:
        """``getChannel`` (a finalized channel is wiped but flagged)."""
        del descriptor
        return await self.escrow.get_channel(channel_id)

    def redeemable(self, signature: str, channel_id: str, amount: int, signer: str) -> str:
        """Any encoding the escrow redeems, normalised to 65-byte r‖s‖v."""
        try:
            redeemable = redeemable_signature(signature)
            recovered = recover_voucher_signer(
                redeemable, channel_id, amount, self.contract, self.terms.chain_id
            )
        except InvalidSignature as exc:
            raise InvalidSignatureProblem(str(exc), extras={"channelId": channel_id}) from None
        require_signer(recovered, signer, channel_id)
        return redeemable

    def close_ceiling(self, accepted: int, deposit: int) -> int:
        """The highest accepted voucher: v1's close pays the redeemed voucher's amount."""
        del deposit
        return accepted

    # -- close -------------------------------------------------------------------------------

    async def close(
        self,
        channel: ServerChannel,
        state: ChannelState,
        spent: int,
        voucher: tuple[int, str],
    ) -> ClosedChannel:
        """Redeem the cheapest held voucher at or above ``spent``; owe back what it overpays."""
        redeem, signature = _cheapest_voucher(
            spent, state.settled, [voucher, (channel.accepted, channel.accepted_signature)]
        )
        terms = self.terms
        try:
            tx = await self.escrow.sign_close(terms.wallet, channel.channel_id, redeem, signature)
            await terms.chain.send_and_wait(tx, context="close")
        except ContractReverted as exc:
            raise refused("close", exc) from None
        return ClosedChannel(tx.hash, refund_owed=redeem - spent)


def _cheapest_voucher(
    spent: int, settled: int, held: list[tuple[int, str | None]]
) -> tuple[int, str]:
    """The close call that overpays least: ``(amount, signature)`` to pass to ``close``.

    ``spent >= settled``. When ``spent == settled`` a close at ``settled`` pays
    nothing more and needs no signature. Otherwise the lowest held voucher at or
    above ``spent`` (the caller guarantees the close voucher is one).
    """
    if spent == settled:
        return settled, "0x"
    usable = [(amount, sig) for amount, sig in held if sig is not None and amount >= spent]
    amount, signature = min(usable, key=lambda pair: pair[0])
    assert signature is not None
    return amount, signature
