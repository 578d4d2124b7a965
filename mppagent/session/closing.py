"""Taking money out of channels: the cooperative close, and the forced close.

Cooperative: sign a final voucher for the verified ``spent`` (never the
look-ahead), hand it to the server, and check on chain that the payee got
exactly that and the payer the rest. Forced (when the server will not close):
``requestClose``, wait out the escrow's grace period, ``withdraw``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mppagent import failpoints
from mppagent.errors import ChainError, ConfigError, ServerMisbehaviour, StoreError
from mppagent.protocol import VerificationFailedProblem
from mppagent.session.context import SessionContext, terms_of
from mppagent.session.gate import PaymentGate
from mppagent.session.lifecycle import Event
from mppagent.session.policy import Offer
from mppagent.session.recovery import Recovery
from mppagent.session.signing import sign_close_voucher
from mppagent.session.store import (
    ChannelRecord,
    ChannelStatus,
    OperationKind,
    OperationState,
    lease_is_live,
)
from mppagent.tempo.chain import ContractReverted, SignedTransaction
from mppagent.tempo.schemas import ClosePayload, SessionReceipt

__all__ = ["CloseNotReady", "CloseResult", "CloseSender", "Closing", "ForcedCloseResult"]

DONE = (ChannelStatus.CLOSED, ChannelStatus.FAILED)


class CloseNotReady(ChainError):
    """``withdraw`` was asked for before the escrow's grace period ended."""

    def __init__(self, channel_id: str, seconds_left: int) -> None:
        minutes, seconds = divmod(seconds_left, 60)
        super().__init__(
            f"channel {channel_id} can be withdrawn in {minutes}m{seconds:02d}s "
            "(the escrow's close grace period has not passed)"
        )
        self.seconds_left = seconds_left


@dataclass(frozen=True)
class ForcedCloseResult:
    """Outcome of ``request_close``/``withdraw``."""

    channel_id: str
    tx_hash: str
    refunded: int = 0


@dataclass(frozen=True)
class CloseResult:
    """A verified cooperative close: amounts in base units, checked on chain."""

    channel_id: str
    deposit: int
    paid: int
    refunded: int
    tx_hash: str


class CloseSender(Protocol):
    """The HTTP side of a cooperative close (the transport implements it)."""

    async def offer_for(self, record: ChannelRecord) -> Offer:
        """A fresh challenge from the channel's server, for the same scope."""
        ...

    async def send_close(
        self, url: str, offer: Offer, payload: ClosePayload
    ) -> SessionReceipt | None:
        """Deliver the close credential; the server's receipt, if any."""
        ...


class Closing:
    """Cooperative and forced closes for one agent's channels."""

    def __init__(self, ctx: SessionContext, recovery: Recovery) -> None:
        self.ctx = ctx
        self.recovery = recovery

    # -- cooperative -----------------------------------------------------------------------

    async def close(self, channel_id: str, sender: CloseSender) -> CloseResult:
        """Close cooperatively: the server settles what was spent and refunds the rest."""
        ctx = self.ctx
        record = await self.recovery.reconcile(channel_id)
        if record.status in DONE:
            raise StoreError(f"channel {channel_id} is already {record.status}")
        if record.status != ChannelStatus.OPEN:
            raise StoreError(
                f"channel {channel_id} is {record.status}: close it by force "
                "(request-close, then withdraw after the grace period)"
            )
        if record.url is None:
            raise ConfigError(f"channel {channel_id} has no URL to send the close to")
        if record.lease_owner != ctx.owner and lease_is_live(
            record.lease_owner, record.lease_until
        ):
            raise StoreError(f"channel {channel_id} is in use by a stream; close it later")
        offer = await sender.offer_for(record)
        try:
            return await self._close(record, offer, sender)
        except BaseException:
            # Refused or failed: unless the chain says it is closed, it is still open.
            current = await self.recovery.reconcile(channel_id)
            if current.status == ChannelStatus.CLOSING:
                self._finish_closes(current, OperationState.FAILED, Event.CLOSE_ABANDONED)
            raise

    def _finish_closes(
        self, record: ChannelRecord, state: OperationState, event: Event, **changes: Any
    ) -> None:
        """Settle the pending close operations; the channel event commits with the last."""
        store = self.ctx.store
        pending = [
            op.op_id
            for op in store.operations(
                record.channel_id, kind=OperationKind.CLOSE, state=OperationState.PENDING
            )
        ]
        for op_id in pending[:-1]:
            store.finish_operation(op_id, state)
        if pending:
            store.finish_operation(pending[-1], state, event=event, **changes)
        else:
            store.apply(record.channel_id, event, **changes)

    async def _close(self, record: ChannelRecord, offer: Offer, sender: CloseSender) -> CloseResult:
        ctx = self.ctx
        assert record.url is not None
        amount = max(record.spent, record.settled)
        for _attempt in range(2):
            auth = PaymentGate.authorize_close(
                record.channel_id, amount, signed=record.signed, settled=record.settled
            )
            signature = sign_close_voucher(ctx, record, auth)
            ctx.store.apply(record.channel_id, Event.CLOSE_STARTED)
            payload = ctx.backend_for(record).close_payload(
                terms_of(record), record.channel_id, amount, signature
            )
            try:
                receipt = await sender.send_close(record.url, offer, payload)
            except VerificationFailedProblem as problem:
                required = problem.extras.get("requiredCloseAmount")
                if not isinstance(required, str) or not required.isdigit():
                    raise
                wanted = int(required)
                if not record.settled <= wanted <= record.signed or wanted == amount:
                    raise
                # The server counts more spent than our last receipt (e.g. a final receipt
                # lost to a dropped stream). Anything up to what we already signed is money
                # the server could settle anyway, so closing there costs nothing extra.
                amount = wanted
                continue
            failpoints.hit("close.sent")
            return await self._verify(record, amount, receipt)
        raise ServerMisbehaviour("close_amount", "the server keeps refusing the close amount")

    async def _verify(
        self, record: ChannelRecord, amount: int, receipt: SessionReceipt | None
    ) -> CloseResult:
        ctx = self.ctx
        if receipt is None or receipt.tx_hash is None:
            raise ServerMisbehaviour("close_receipt", "the close receipt carries no txHash")
        if receipt.channel_id != record.channel_id:
            raise ServerMisbehaviour("close_receipt", "the close receipt names another channel")
        tx_receipt = await ctx.chain.wait(receipt.tx_hash, context="close")
        closed = ctx.backend_for(record).closed_amounts(
            record.scope.escrow, record.channel_id, tx_receipt
        )
        if closed is None:
            raise ServerMisbehaviour("close_tx", f"{receipt.tx_hash} did not close our channel")
        state = await self.recovery.read(record)
        # The escrow wipes a closed channel (only ``finalized`` survives): then the deposit
        # to check the refund against is ours, kept in step with the chain at open/top-up.
        deposit = state.deposit if state.exists else record.deposit
        if (
            closed.paid != amount
            or closed.refunded != deposit - amount
            or not (state.finalized or not state.exists)
        ):
            raise ServerMisbehaviour(
                "close_amounts",
                f"close paid {closed.paid} and refunded {closed.refunded}; expected {amount} and "
                f"{deposit - amount}",
            )
        failpoints.hit("close.verified_on_chain")
        self._finish_closes(record, OperationState.CONFIRMED, Event.FINALIZED, settled=closed.paid)
        return CloseResult(
            record.channel_id, deposit, closed.paid, closed.refunded, receipt.tx_hash
        )

    # -- forced ------------------------------------------------------------------------------

    async def request_close(self, channel_id: str) -> ForcedCloseResult:
        """Start a forced close on chain (the server stops accepting vouchers)."""
        ctx = self.ctx
        record = self.recovery.require(channel_id)
        await ctx.begin_funding(record.channel_id, record.scope.chain_id)
        try:
            tx = await ctx.backend_for(record).sign_request_close(
                ctx.wallet, terms_of(record), record.channel_id
            )
            op = ctx.record_tx(record, OperationKind.REQUEST_CLOSE, 0, tx)
            await self._send(op.op_id, tx, event=Event.CLOSE_REQUESTED)
        finally:
            ctx.end_funding(record.channel_id)
        return ForcedCloseResult(record.channel_id, tx.hash)

    async def withdraw(self, channel_id: str) -> ForcedCloseResult:
        """Finish a forced close: refund everything unsettled, once the grace period passed."""
        ctx = self.ctx
        record = self.recovery.require(channel_id)
        state = await self.recovery.read(record)
        if state.finalized:
            ctx.store.apply(record.channel_id, Event.FINALIZED)
            raise ChainError(f"channel {channel_id} is already closed")
        if not state.close_requested_at:
            raise ChainError(f"channel {channel_id} has no close request; call request_close first")
        grace = await ctx.backend_for(record).close_grace_period(record.scope.escrow)
        now = await ctx.chain.block_timestamp()
        ready_at = state.close_requested_at + grace + ctx.withdraw_margin
        if now < ready_at:
            raise CloseNotReady(channel_id, ready_at - now)
        await ctx.begin_funding(record.channel_id, record.scope.chain_id)
        try:
            tx = await ctx.backend_for(record).sign_withdraw(
                ctx.wallet, terms_of(record), record.channel_id
            )
            op = ctx.record_tx(record, OperationKind.WITHDRAW, state.deposit - state.settled, tx)
            receipt = await self._send(op.op_id, tx, event=Event.FINALIZED, settled=state.settled)
        finally:
            ctx.end_funding(record.channel_id)
        closed = ctx.backend_for(record).closed_amounts(
            record.scope.escrow, record.channel_id, receipt
        )
        return ForcedCloseResult(record.channel_id, tx.hash, closed.refunded if closed else 0)

    async def _send(
        self, op_id: int, tx: SignedTransaction, *, event: Event, **changes: Any
    ) -> dict[str, object]:
        ctx = self.ctx
        try:
            receipt = await ctx.chain.send_and_wait(tx, context=str(event))
        except ContractReverted as exc:
            ctx.store.finish_operation(op_id, OperationState.FAILED, exc.error_name)
            ctx.chain.forget_nonce(ctx.payer)
            raise
        ctx.store.finish_operation(op_id, OperationState.CONFIRMED, event=event, **changes)
        return receipt
