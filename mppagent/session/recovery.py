"""Bringing the store in line with the chain: after a crash, on 410, on demand.

The chain is the source of truth for deposits, settlement and closure. A
pending operation of unknown outcome is resolved by resending its *same
bytes* (harmless if already mined) -- nothing is ever re-signed here. Records
left ``opening`` or ``closing`` with nothing pending (a crash between an
outcome and the status it implies, in a version that committed them apart)
are settled by reading the chain.
"""

from __future__ import annotations

import asyncio

from mppagent.errors import ChainError, StoreError
from mppagent.logging import get_logger
from mppagent.session.context import SessionContext, terms_of
from mppagent.session.lifecycle import Event
from mppagent.session.store import (
    ChannelRecord,
    ChannelStatus,
    Operation,
    OperationKind,
    OperationState,
    Scope,
    lease_is_live,
)
from mppagent.tempo.chain import ContractReverted, SignedTransaction
from mppagent.tempo.escrow import ChannelState
from mppagent.tempo.tempo_chain import (
    OutgoingTempoTransaction,
    TransactionExpired,
    TxOutcome,
    expiry_outcome,
    resend_recorded,
)
from mppagent.tempo.tempotx import decode_tempo_transaction, is_tempo_transaction
from mppagent.tempo.transactions import InvalidTransaction, transaction_bytes

__all__ = ["Recovery", "check_state_matches"]

log = get_logger("mppagent.channels")

_TX_KINDS = (
    OperationKind.APPROVE,
    OperationKind.OPEN,
    OperationKind.TOP_UP,
    OperationKind.REQUEST_CLOSE,
    OperationKind.WITHDRAW,
)


class Recovery:
    """Reconciliation and crash recovery for one agent's channels."""

    def __init__(self, ctx: SessionContext) -> None:
        self.ctx = ctx

    def require(self, channel_id: str) -> ChannelRecord:
        """The record of ``channel_id``, or a :class:`StoreError` naming it."""
        record = self.ctx.store.get(channel_id)
        if record is None:
            raise StoreError(f"channel {channel_id} is not in the store")
        return record

    async def read(self, record: ChannelRecord) -> ChannelState:
        """The channel as the chain has it."""
        return await self.ctx.backend_for(record).read_channel(
            terms_of(record), record.channel_id, opened_tx=self._opened_tx(record)
        )

    def _opened_tx(self, record: ChannelRecord) -> str | None:
        """The hash of the open this store saw confirmed: close logs are searched from it."""
        confirmed = self.ctx.store.operations(
            record.channel_id, kind=OperationKind.OPEN, state=OperationState.CONFIRMED
        )
        return next((op.tx_hash for op in confirmed if op.tx_hash), None)

    async def reconcile(self, channel_id: str) -> ChannelRecord:
        """Bring one record in line with the chain (deposit, settlement, closure)."""
        record = self.require(channel_id)
        state = await self.read(record)
        event = self._event_for(record, state)
        changes: dict[str, object] = {}
        if state.exists:
            changes.update(deposit=state.deposit, settled=state.settled)
        elif state.cleared and record.status != ChannelStatus.CLOSED:
            changes["settled"] = await self._final_settled(record)
        if event is not None:
            return self.ctx.store.apply(record.channel_id, event, **changes)
        return self.ctx.store.update(record.channel_id, **changes) if changes else record

    async def _final_settled(self, record: ChannelRecord) -> int:
        """What a wiped (finalized) channel paid: only its close event says."""
        backend = self.ctx.backend_for(record)
        settled = await backend.final_settled(
            record.scope.escrow, record.channel_id, opened_tx=self._opened_tx(record)
        )
        return record.settled if settled is None else settled

    def _event_for(self, record: ChannelRecord, state: ChannelState) -> Event | None:
        status = record.status
        if state.cleared:
            return None if status == ChannelStatus.CLOSED else Event.FINALIZED
        if state.exists:
            if state.finalized:
                return Event.FINALIZED
            if state.close_requested_at:
                return Event.CLOSE_REQUESTED
            if status in (ChannelStatus.OPENING, ChannelStatus.FAILED):
                return Event.OPENED
            if status == ChannelStatus.CLOSE_REQUESTED:
                return Event.CLOSE_CANCELLED  # a top-up cancelled the request
            if status == ChannelStatus.CLOSING and not self._pending(record, OperationKind.CLOSE):
                return Event.CLOSE_ABANDONED  # the close never reached the chain
            return None
        if status == ChannelStatus.OPEN:
            # The chain does not know a channel we thought open (reorg or wrong RPC).
            return Event.MISSING_ON_CHAIN
        if status == ChannelStatus.OPENING and not self._open_may_land(record):
            # Its open transaction failed (or was never signed): it can never exist, and
            # an ``opening`` record would count against max_channels_per_scope forever.
            return Event.OPEN_FAILED
        return None

    def _pending(self, record: ChannelRecord, kind: OperationKind) -> list[Operation]:
        return self.ctx.store.operations(record.channel_id, kind=kind, state=OperationState.PENDING)

    def _open_may_land(self, record: ChannelRecord) -> bool:
        """Whether an ``opening`` channel may still appear on chain."""
        if lease_is_live(record.lease_owner, record.lease_until):
            return True  # a stream is opening it right now
        return bool(self._pending(record, OperationKind.OPEN))

    async def recover(self) -> list[ChannelRecord]:
        """Resolve every pending operation, then settle half-finished records.

        A pending transaction whose outcome is unknown is rebroadcast with the
        same bytes; a pending close is checked against the chain. Records
        ``opening``/``closing`` that no live stream holds are reconciled even
        with nothing pending.
        """
        store = self.ctx.store
        touched: dict[str, None] = {}
        for op in store.operations(state=OperationState.PENDING):
            touched[op.channel_id] = None
            if op.kind in _TX_KINDS:
                await self.settle_pending_tx(op)
            elif op.kind == OperationKind.CLOSE:
                await self._settle_pending_close(op)
        for record in store.channels(statuses=[ChannelStatus.OPENING, ChannelStatus.CLOSING]):
            if not lease_is_live(record.lease_owner, record.lease_until):
                touched[record.channel_id] = None
        return [
            await self.reconcile(channel_id)
            for channel_id in touched
            if store.get(channel_id) is not None
        ]

    async def _settle_pending_close(self, op: Operation) -> None:
        record = self.ctx.store.get(op.channel_id)
        if record is None:
            return
        state = await self.read(record)
        if state.finalized:
            settled = state.settled if state.exists else await self._final_settled(record)
            self.ctx.store.finish_operation(
                op.op_id, OperationState.CONFIRMED, event=Event.FINALIZED, settled=settled
            )
        elif record.status == ChannelStatus.CLOSING:
            # The server never closed with it; a later close signs afresh.
            self.ctx.store.finish_operation(
                op.op_id, OperationState.FAILED, "not closed on chain", event=Event.CLOSE_ABANDONED
            )
        else:
            self.ctx.store.finish_operation(op.op_id, OperationState.FAILED, "not closed on chain")

    async def settle_stale_opens(self, scope: Scope) -> bool:
        """Resolve opens an earlier request left pending (e.g. the RPC failed mid-open).

        Only records no live stream holds are touched; their recorded transaction is
        resent with the same bytes, as on :meth:`recover`. True if one is now open.
        """
        opened = False
        for record in self.ctx.store.channels(scope, [ChannelStatus.OPENING]):
            if lease_is_live(record.lease_owner, record.lease_until):
                continue  # being opened right now
            for op in self._pending(record, OperationKind.OPEN):
                await self.settle_pending_tx(op)
            if (await self.reconcile(record.channel_id)).status == ChannelStatus.OPEN:
                opened = True
        return opened

    async def settle_pending_tx(self, op: Operation) -> None:
        """Resend a recorded transaction and record its outcome."""
        store = self.ctx.store
        if not op.tx_hash or not op.payload:
            store.finish_operation(op.op_id, OperationState.FAILED, "no transaction recorded")
            return
        expiring = self._expiring(op)
        if expiring is not None:
            # A Tempo transaction with a validity window: resend only while it can land.
            # Sponsored bytes are the server's to broadcast: only their expiry settles them.
            result = await expiry_outcome(self.ctx.chain, expiring)
            if result == TxOutcome.EXPIRED:
                store.finish_operation(op.op_id, OperationState.FAILED, "expired")
                return
            if result == TxOutcome.MINED:
                receipt = await self.ctx.chain.get_receipt(expiring.hash)
                if receipt is not None and int(receipt.get("status", 1)) == 0:
                    store.finish_operation(op.op_id, OperationState.FAILED, "reverted")
                else:
                    store.finish_operation(op.op_id, OperationState.CONFIRMED)
                return
            if expiring.awaiting_fee_payer:
                return  # still valid; the chain will tell (reconcile) or it expires
        try:
            await self.rebroadcast(op)
        except TransactionExpired:
            store.finish_operation(op.op_id, OperationState.FAILED, "expired")
            return
        except ContractReverted as exc:
            store.finish_operation(op.op_id, OperationState.FAILED, exc.error_name)
            return
        except ChainError as exc:
            if await self.ctx.chain.get_receipt(op.tx_hash) is None:
                log.warning("operation.unresolved", op=op.op_id, kind=str(op.kind), error=str(exc))
                if "nonce too low" in str(exc).lower():
                    store.finish_operation(op.op_id, OperationState.FAILED, "superseded")
                return
        store.finish_operation(op.op_id, OperationState.CONFIRMED)

    @staticmethod
    def _expiring(op: Operation) -> OutgoingTempoTransaction | None:
        """The recorded bytes as a Tempo transaction with ``validBefore``, if they are one."""
        assert op.payload is not None
        try:
            if not is_tempo_transaction(transaction_bytes(op.payload)):
                return None
            signed = decode_tempo_transaction(op.payload)
        except InvalidTransaction:
            return None
        tx = OutgoingTempoTransaction.of(signed)
        return tx if tx.valid_before is not None else None

    async def await_sponsored(
        self, record: ChannelRecord, op: Operation, deposit: int, *, poll: float = 0.5
    ) -> ChannelState | None:
        """Wait for a sponsored transaction's effect (``deposit`` reached) until it expires.

        Sponsored bytes are the server's to co-sign and broadcast (under a hash
        of its own), so they cannot be resent: only the channel shows whether
        they landed. ``None`` if they expired without the deposit growing --
        nothing is re-signed here. Bounded by the transaction's ``validBefore``.
        """
        expiring = self._expiring(op)
        if expiring is None or not expiring.awaiting_fee_payer:
            raise ValueError("not a sponsored transaction with a validity window")
        while True:
            state = await self.read(record)
            if state.deposit >= deposit:
                return state
            if await expiry_outcome(self.ctx.chain, expiring) == TxOutcome.EXPIRED:
                state = await self.read(record)  # it may have landed in the last block
                return state if state.deposit >= deposit else None
            await asyncio.sleep(poll)

    def is_sponsored(self, op: Operation) -> bool:
        """Whether ``op`` recorded sponsored bytes awaiting the server's co-signature."""
        expiring = self._expiring(op) if op.payload else None
        return expiring is not None and expiring.awaiting_fee_payer

    async def rebroadcast(self, op: Operation) -> None:
        """Send the recorded bytes of ``op`` again and wait for them to be mined.

        A Tempo transaction with an expiring nonce is resent only while its
        ``validBefore`` holds; after that the chain decides (mined, or
        :class:`TransactionExpired` -- the operation failed, nothing re-signed).
        """
        assert op.payload is not None
        assert op.tx_hash is not None
        if is_tempo_transaction(transaction_bytes(op.payload)):
            tempo_tx = OutgoingTempoTransaction.of(decode_tempo_transaction(op.payload))
            await resend_recorded(self.ctx.chain, tempo_tx, context=f"{op.kind} (resent)")
            return
        record = self.ctx.store.get(op.channel_id)
        sender = record.payer if record else self.ctx.payer
        tx = SignedTransaction(raw=op.payload, hash=op.tx_hash, nonce=op.nonce or 0, sender=sender)
        await self.ctx.chain.send_and_wait(tx, context=f"{op.kind} (resent)")


def check_state_matches(ctx: SessionContext, record: ChannelRecord, state: ChannelState) -> None:
    """The channel on chain is the one we signed for, and still usable."""
    if not state.exists:
        raise ChainError(f"the server accepted channel {record.channel_id}, but it is not on chain")
    if (
        state.payer != ctx.payer
        or state.payee != record.scope.payee
        or state.token != record.scope.token
        or state.authorized_signer != record.authorized_signer
    ):
        raise ChainError(f"channel {record.channel_id} on chain does not match what we signed")
    if state.finalized:
        raise ChainError(f"channel {record.channel_id} is already finalized on chain")
