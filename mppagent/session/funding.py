"""Putting money into channels: ``open`` and ``topUp``, write-ahead.

A funding plan (from the session backend) may start with transactions the
client sends itself (an exact ``approve``); its main transaction is handed to
the server, which broadcasts it. Every one is recorded as a pending operation
before it leaves the process, and its outcome is committed in the same store
transaction as the channel change it implies.
"""

from __future__ import annotations

import contextlib

from mppagent import failpoints
from mppagent.errors import ChainError, PolicyViolation, StoreError
from mppagent.logging import get_logger
from mppagent.session.context import SessionContext, terms_of, with_fees
from mppagent.session.gate import Authorization
from mppagent.session.lifecycle import Event
from mppagent.session.pool import Checkout
from mppagent.session.recovery import Recovery, check_state_matches
from mppagent.session.signing import sign_voucher
from mppagent.session.store import ChannelRecord, Operation, OperationKind, OperationState
from mppagent.tempo.backend import PriorSender
from mppagent.tempo.chain import ContractReverted, SignedTransaction
from mppagent.tempo.schemas import MethodDetails, OpenPayload, TopUpPayload

__all__ = ["Funding"]

log = get_logger("mppagent.channels")


class Funding:
    """Opens and tops up channels."""

    def __init__(self, ctx: SessionContext, recovery: Recovery) -> None:
        self.ctx = ctx
        self.recovery = recovery

    async def open_payload(
        self, checkout: Checkout, initial: Authorization
    ) -> tuple[OpenPayload, Operation]:
        """Approve if needed, sign ``open`` and the gate-authorized initial voucher.

        The transaction is recorded (pending) before this returns; the caller
        hands it to the server and then calls :meth:`confirm_open` or
        :meth:`settle_open`.
        """
        ctx = self.ctx
        record = checkout.record
        terms = with_fees(terms_of(record), checkout.offer.request.method_details)
        await ctx.begin_funding(record.channel_id, record.scope.chain_id)
        try:
            plan = checkout.plan or await ctx.backend_for(record).plan_open(
                ctx.wallet, terms, record.deposit, self._prior_sender(record)
            )
        except BaseException:
            ctx.end_funding(record.channel_id)
            # No open transaction was recorded for this salt, so the channel can never
            # exist on chain: mark it failed rather than leave an ``opening`` record
            # that counts against ``max_channels_per_scope`` forever.
            with contextlib.suppress(StoreError):
                ctx.store.apply(record.channel_id, Event.OPEN_FAILED)
            raise
        op = ctx.record_tx(record, OperationKind.OPEN, record.deposit, plan.main)
        voucher = sign_voucher(ctx, record, initial)
        payload = ctx.backend_for(record).open_payload(
            terms, record.channel_id, plan.main, voucher.cumulative_amount, voucher.signature
        )
        log.info("channel.open.signed", channel=record.channel_id, deposit=record.deposit)
        failpoints.hit("open.recorded")
        return payload, op

    async def confirm_open(self, record: ChannelRecord, op: Operation) -> ChannelRecord:
        """After the server accepted ``open``: check the chain and mark the channel open."""
        self.ctx.end_funding(record.channel_id)
        state = await self.recovery.read(record)
        check_state_matches(self.ctx, record, state)
        failpoints.hit("open.confirmed_on_chain")
        updated = self.ctx.store.finish_operation(
            op.op_id,
            OperationState.CONFIRMED,
            event=Event.OPENED,
            deposit=state.deposit,
            settled=state.settled,
        )
        assert updated is not None
        log.info("channel.open.confirmed", channel=record.channel_id, deposit=state.deposit)
        return updated

    async def settle_open(
        self, record: ChannelRecord, op: Operation, reason: str
    ) -> ChannelRecord | None:
        """The server answered ``open`` with an error: find out whether it opened anyway.

        Returns the now-open record (lease kept) when the channel exists on
        chain -- e.g. the server broadcast it and then asked for a bigger
        voucher -- or ``None`` (record failed, lease released) when it does not.
        """
        ctx = self.ctx
        ctx.chain.forget_nonce(ctx.payer)
        ctx.end_funding(record.channel_id)
        try:
            state = await self.recovery.read(record)
        except ChainError:
            log.warning("channel.open.unknown", channel=record.channel_id, reason=reason)
            ctx.store.release(record.channel_id, ctx.owner)
            return None
        if state.exists:
            check_state_matches(ctx, record, state)
            return ctx.store.finish_operation(
                op.op_id,
                OperationState.CONFIRMED,
                reason,
                event=Event.OPENED,
                deposit=state.deposit,
                settled=state.settled,
            )
        ctx.store.finish_operation(op.op_id, OperationState.FAILED, reason, event=Event.OPEN_FAILED)
        ctx.store.release(record.channel_id, ctx.owner)
        return None

    async def top_up_payload(
        self, record: ChannelRecord, amount: int, details: MethodDetails | None
    ) -> tuple[TopUpPayload, Operation]:
        """Approve if needed and sign ``topUp`` (recorded pending before returning).

        ``details`` are the ``methodDetails`` of the challenge the top-up answers:
        its fee is paid as that challenge asks, as the open's was.
        """
        ctx = self.ctx
        terms = with_fees(terms_of(record), details)
        if record.deposit + amount > ctx.policy.max_deposit:
            raise PolicyViolation(
                "max_deposit",
                f"topping up {amount} would bring the deposit to {record.deposit + amount}, "
                f"above the cap {ctx.policy.max_deposit}",
            )
        await ctx.begin_funding(record.channel_id, record.scope.chain_id)
        try:
            plan = await ctx.backend_for(record).plan_top_up(
                ctx.wallet, terms, record.channel_id, amount, self._prior_sender(record)
            )
        except BaseException:
            ctx.end_funding(record.channel_id)
            raise
        op = ctx.record_tx(record, OperationKind.TOP_UP, amount, plan.main)
        failpoints.hit("topup.recorded")
        payload = ctx.backend_for(record).top_up_payload(
            terms, record.channel_id, plan.main, amount
        )
        return payload, op

    async def confirm_top_up(self, record: ChannelRecord, op: Operation) -> ChannelRecord:
        """After the server accepted ``topUp``: read the new deposit from the chain."""
        self.ctx.end_funding(record.channel_id)
        state = await self.recovery.read(record)
        expected = record.deposit + op.amount
        if state.deposit < expected and self.recovery.is_sponsored(op):
            # The server co-signs and broadcasts sponsored bytes: wait for their effect.
            landed = await self.recovery.await_sponsored(record, op, expected)
            if landed is None:
                self.ctx.store.finish_operation(
                    op.op_id, OperationState.FAILED, "sponsored top-up expired unbroadcast"
                )
                raise ChainError(
                    f"the server accepted a top-up of channel {record.channel_id} but never "
                    "broadcast it before it expired; nothing was added"
                )
            state = landed
        elif state.deposit < expected:
            # The server said yes but the chain disagrees: make sure our bytes are mined.
            await self.recovery.rebroadcast(op)
            state = await self.recovery.read(record)
        failpoints.hit("topup.confirmed_on_chain")
        updated = self.ctx.store.finish_operation(
            op.op_id, OperationState.CONFIRMED, deposit=state.deposit, settled=state.settled
        )
        assert updated is not None
        return updated

    def _prior_sender(self, record: ChannelRecord) -> PriorSender:
        """Record, send and confirm a transaction the client itself must mine first."""
        ctx = self.ctx

        async def send(kind: str, tx: SignedTransaction) -> None:
            op = ctx.record_tx(record, OperationKind(kind), 0, tx)
            try:
                await ctx.chain.send_and_wait(tx, context=kind)
            except ContractReverted as exc:
                ctx.store.finish_operation(op.op_id, OperationState.FAILED, exc.error_name)
                ctx.chain.forget_nonce(ctx.payer)
                raise
            ctx.store.finish_operation(op.op_id, OperationState.CONFIRMED)

        return send
