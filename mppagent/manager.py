"""Channel lifecycle for the paying agent: open, reuse, top up, reconcile, force-close.

:class:`ChannelManager` is where the store, the chain and the policy meet.
It never talks HTTP (the transport does); it decides which channel a payment
uses, signs what has to be signed -- always recording it in the store first --
and checks the chain afterwards.

Write-ahead, concretely: a signed ``open``/``topUp``/``approve`` transaction is
committed as a pending :class:`~mppagent.session.store.Operation` before it is
sent or handed to the server; :meth:`ChannelManager.recover` later resolves
every pending operation against the chain, rebroadcasting the *same bytes*
when their outcome is unknown. Vouchers go through
:meth:`~mppagent.session.store.SqliteChannelStore.sign_voucher`, which commits
them before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from mppagent import failpoints
from mppagent.errors import ChainError, ConfigError, PolicyViolation, StoreError
from mppagent.logging import get_logger
from mppagent.session.policy import Offer, SpendPolicy
from mppagent.session.store import (
    ChannelRecord,
    ChannelStatus,
    ChannelStore,
    Operation,
    OperationKind,
    OperationState,
    Scope,
    SignedVoucher,
    lease_is_live,
    new_owner_id,
)
from mppagent.tempo.artifacts import load_artifact
from mppagent.tempo.chain import ChainClient, ContractReverted, SignedTransaction, Wallet
from mppagent.tempo.channel_id import compute_channel_id, random_salt
from mppagent.tempo.escrow import ChannelState, Escrow, Token
from mppagent.tempo.hexutil import ZERO_ADDRESS, normalize_address
from mppagent.tempo.schemas import OpenPayload, TopUpPayload, VoucherPayload
from mppagent.tempo.voucher import VoucherSigner

__all__ = ["ChannelManager", "Checkout", "CloseNotReady", "ForcedCloseResult"]

log = get_logger("mppagent.channels")


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
class Checkout:
    """A channel leased for one payment. ``is_new``: it still has to be opened."""

    record: ChannelRecord
    is_new: bool
    offer: Offer


@dataclass(frozen=True)
class ForcedCloseResult:
    """Outcome of ``request_close``/``withdraw``."""

    channel_id: str
    tx_hash: str
    refunded: int = 0


class ChannelManager:
    """Owns the agent's channels: one instance per wallet and store."""

    def __init__(
        self,
        *,
        wallet: Wallet,
        chain: ChainClient,
        store: ChannelStore,
        policy: SpendPolicy,
        delegate_signer: bool = False,
        lease_ttl: float = 300.0,
        pool_wait: float = 30.0,
        withdraw_margin: int = 60,
    ) -> None:
        self.wallet = wallet
        self.payer = normalize_address(wallet.address)
        self.chain = chain
        self.store = store
        self.policy = policy
        self.delegate_signer = delegate_signer
        self.lease_ttl = lease_ttl
        self.pool_wait = pool_wait
        self.withdraw_margin = withdraw_margin
        self.owner = new_owner_id()
        self._escrows: dict[str, Escrow] = {}
        self._funding_locks: dict[str, asyncio.Lock] = {}
        self._trusted_escrows: set[str] = set()
        self._funding_held: dict[str, asyncio.Lock] = {}
        self._signers: dict[str, VoucherSigner] = {}
        self._main_signer = VoucherSigner(wallet.private_key_hex)

    def __repr__(self) -> str:
        return f"ChannelManager(payer={self.payer!r}, store={self.store!r})"

    # -- helpers -------------------------------------------------------------------------

    def escrow(self, address: str) -> Escrow:
        """The :class:`Escrow` client for ``address`` (one per deployment)."""
        key = normalize_address(address)
        if key not in self._escrows:
            self._escrows[key] = Escrow(self.chain, key)
        return self._escrows[key]

    def signer_for(self, record: ChannelRecord) -> VoucherSigner:
        """The key that signs this channel's vouchers (delegate or main key)."""
        if record.signer_key is None:
            return self._main_signer
        cached = self._signers.get(record.channel_id)
        if cached is None:
            cached = VoucherSigner(record.signer_key)
            self._signers[record.channel_id] = cached
        return cached

    @staticmethod
    def scope_of(offer: Offer) -> Scope:
        """The scope (payee, token, escrow, chain) an offer pays into."""
        request = offer.request
        return Scope(request.recipient, request.currency, request.escrow, request.chain_id)

    # -- checkout --------------------------------------------------------------------------

    async def checkout(self, offer: Offer, url: str) -> Checkout:
        """Lease a channel for ``offer``: an idle open one with room, else a new one."""
        chain_id = await self.chain.chain_id()
        if offer.request.chain_id != chain_id:
            raise ConfigError(
                f"the server asks for payment on chain {offer.request.chain_id}, but the "
                f"configured RPC serves chain {chain_id}"
            )
        scope = self.scope_of(offer)
        deadline = time.monotonic() + self.pool_wait
        settled_stale = False
        while True:
            record = self.store.acquire(
                scope, self.owner, ttl=self.lease_ttl, min_remaining=offer.price
            )
            if record is not None:
                return Checkout(record=record, is_new=False, offer=offer)
            if not settled_stale:
                settled_stale = True
                if await self._settle_stale_opens(scope):
                    continue  # an earlier open turned out to be on chain: use it
            await self._check_escrow(scope.escrow)
            fresh = self._new_record(offer, scope, url)
            if self.store.reserve(
                fresh, self.owner, ttl=self.lease_ttl, cap=self.policy.max_channels_per_scope
            ):
                record = self.store.get(fresh.channel_id)
                assert record is not None
                return Checkout(record=record, is_new=True, offer=offer)
            if time.monotonic() > deadline:
                raise PolicyViolation(
                    "max_channels_per_scope",
                    f"all {self.policy.max_channels_per_scope} channels to {scope.payee} are "
                    f"busy or drained (waited {self.pool_wait:.0f}s)",
                )
            await asyncio.sleep(0.05)

    async def _check_escrow(self, escrow: str) -> None:
        """Fund only an escrow we can vouch for: allow-listed, or our own v1 code on chain.

        A server names the escrow in its challenge; a contract that merely looks
        like one could keep the deposit. Checked once per address and process.
        """
        policy = self.policy
        if escrow in self._trusted_escrows or policy.trust_unknown_escrows:
            return
        if policy.allowed_escrows is None or escrow not in policy.allowed_escrows:
            code = await self.chain.get_code(escrow)
            if not load_artifact("TempoStreamChannel").matches_runtime(code):
                raise PolicyViolation(
                    "allowed_escrows",
                    f"escrow {escrow} does not run the TempoStreamChannel v1 code this agent "
                    "knows; add it to allowed_escrows if you trust it",
                )
        self._trusted_escrows.add(escrow)

    async def _settle_stale_opens(self, scope: Scope) -> bool:
        """Resolve opens an earlier request left pending (e.g. the RPC failed mid-open).

        Only records no live stream holds are touched; their recorded transaction is
        resent with the same bytes, as on :meth:`recover`. True if one is now open.
        """
        opened = False
        for record in self.store.channels(scope, [ChannelStatus.OPENING]):
            if lease_is_live(record.lease_owner, record.lease_until):
                continue  # being opened right now
            pending = self.store.operations(
                record.channel_id, kind=OperationKind.OPEN, state=OperationState.PENDING
            )
            for op in pending:
                await self._settle_pending_tx(op)
            if pending and (await self.reconcile(record.channel_id)).status == ChannelStatus.OPEN:
                opened = True
        return opened

    def _new_record(self, offer: Offer, scope: Scope, url: str) -> ChannelRecord:
        deposit = self.policy.initial_deposit(offer)
        salt = random_salt()
        signer_key: str | None = None
        authorized = ZERO_ADDRESS
        if self.delegate_signer:
            delegate = VoucherSigner.generate()
            signer_key = delegate.private_key_hex
            authorized = normalize_address(delegate.address)
        channel_id = compute_channel_id(
            self.payer, scope.payee, scope.token, salt, authorized, scope.escrow, scope.chain_id
        )
        return ChannelRecord(
            channel_id=channel_id,
            scope=scope,
            payer=self.payer,
            authorized_signer=authorized,
            salt=salt,
            deposit=deposit,
            status=ChannelStatus.OPENING,
            signer_key=signer_key,
            url=url,
            realm=offer.challenge.realm,
            unit_type=offer.unit_type,
            unit_price=offer.price,
        )

    def release(self, record: ChannelRecord) -> None:
        """Return the lease on ``record`` (and a funding lock it may still hold)."""
        self._end_funding(record.channel_id)
        self.store.release(record.channel_id, self.owner)

    async def _begin_funding(self, record: ChannelRecord) -> None:
        """Serialise approve-and-sign for one token and escrow until the server answers.

        Allowances are exact, and the signed ``open``/``topUp`` is broadcast by the
        server later: without this, two concurrent opens would approve the same
        allowance twice over and one would revert, and a second transaction could
        be stuck behind the first one's unbroadcast nonce.
        """
        key = f"{record.scope.token}:{record.scope.escrow}"
        lock = self._funding_locks.setdefault(key, asyncio.Lock())
        await lock.acquire()
        self._funding_held[record.channel_id] = lock

    def _end_funding(self, channel_id: str) -> None:
        lock = self._funding_held.pop(channel_id, None)
        if lock is not None and lock.locked():
            lock.release()

    def renew(self, record: ChannelRecord) -> None:
        """Keep the lease alive during a long stream."""
        self.store.renew(record.channel_id, self.owner, ttl=self.lease_ttl)

    # -- open ------------------------------------------------------------------------------------

    async def open_payload(self, checkout: Checkout) -> tuple[OpenPayload, Operation]:
        """Approve if needed, sign the ``open`` transaction and the initial voucher.

        The transaction is recorded (pending) before this returns; the caller
        hands it to the server and then calls :meth:`confirm_open` or
        :meth:`abandon_open`.
        """
        record = checkout.record
        escrow = self.escrow(record.scope.escrow)
        await self._begin_funding(record)
        try:
            await self._ensure_allowance(record, record.deposit)
            tx = await escrow.sign_open(
                self.wallet,
                payee=record.scope.payee,
                token=record.scope.token,
                deposit=record.deposit,
                salt=record.salt,
                authorized_signer=record.authorized_signer,
            )
        except BaseException:
            self._end_funding(record.channel_id)
            # No open transaction was signed for this salt, so the channel can never
            # exist on chain: mark it failed rather than leave an ``opening`` record
            # that counts against ``max_channels_per_scope`` forever.
            with contextlib.suppress(StoreError):
                self.store.update(record.channel_id, status=ChannelStatus.FAILED)
            raise
        op = self._record_tx(record, OperationKind.OPEN, record.deposit, tx)
        voucher = self.sign_voucher(record, 0)
        payload = OpenPayload(
            channel_id=record.channel_id,
            transaction=tx.raw,
            authorized_signer=(
                None if record.authorized_signer == ZERO_ADDRESS else record.authorized_signer
            ),
            cumulative_amount=voucher.cumulative_amount,
            signature=voucher.signature,
        )
        log.info("channel.open.signed", channel=record.channel_id, deposit=record.deposit)
        failpoints.hit("open.recorded")
        return payload, op

    async def confirm_open(self, record: ChannelRecord, op: Operation) -> ChannelRecord:
        """After the server accepted ``open``: check the chain and mark the channel open."""
        self._end_funding(record.channel_id)
        state = await self.escrow(record.scope.escrow).get_channel(record.channel_id)
        self._check_state_matches(record, state)
        self.store.finish_operation(op.op_id, OperationState.CONFIRMED)
        updated = self.store.update(
            record.channel_id,
            status=ChannelStatus.OPEN,
            deposit=state.deposit,
            settled=state.settled,
        )
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
        self.chain.forget_nonce(self.payer)
        self._end_funding(record.channel_id)
        try:
            state = await self.escrow(record.scope.escrow).get_channel(record.channel_id)
        except ChainError:
            log.warning("channel.open.unknown", channel=record.channel_id, reason=reason)
            self.release(record)
            return None
        if state.exists:
            self._check_state_matches(record, state)
            self.store.finish_operation(op.op_id, OperationState.CONFIRMED, reason)
            return self.store.update(
                record.channel_id,
                status=ChannelStatus.OPEN,
                deposit=state.deposit,
                settled=state.settled,
            )
        self.store.finish_operation(op.op_id, OperationState.FAILED, reason)
        self.store.update(record.channel_id, status=ChannelStatus.FAILED)
        self.release(record)
        return None

    # -- vouchers ------------------------------------------------------------------------------

    def sign_voucher(self, record: ChannelRecord, amount: int) -> SignedVoucher:
        """Record-then-return a voucher for ``amount`` (or the higher one already recorded)."""
        signer = self.signer_for(record)
        scope = record.scope
        # Without a daily budget there is nothing to check, and the store need not sum
        # every voucher of the last 24 hours (a scan that grows with each one signed).
        check = self.policy.check_daily_budget if self.policy.budget_per_day is not None else None
        return self.store.sign_voucher(
            record.channel_id,
            amount,
            lambda value: signer.sign(record.channel_id, value, scope.escrow, scope.chain_id),
            check=check,
        )

    def voucher_payload(self, record: ChannelRecord, amount: int) -> VoucherPayload:
        """A ``voucher`` payload for ``amount`` (signed and recorded first)."""
        voucher = self.sign_voucher(record, amount)
        return VoucherPayload(
            channel_id=record.channel_id,
            cumulative_amount=voucher.cumulative_amount,
            signature=voucher.signature,
        )

    def sign_close_voucher(self, record: ChannelRecord, amount: int) -> str:
        """Sign the final voucher the payee closes with, after recording it as an operation.

        The close amount is what the verified receipts say was spent (never
        below what is already settled on chain), which may be less than the
        highest running voucher: the escrow pays the payee exactly this amount
        and refunds the rest, so the payee cannot capture unused look-ahead.
        """
        if amount > record.signed:
            raise PolicyViolation(
                "close_amount",
                f"close amount {amount} exceeds the highest voucher signed ({record.signed})",
            )
        signer = self.signer_for(record)
        signature = signer.sign(
            record.channel_id, amount, record.scope.escrow, record.scope.chain_id
        )
        self.store.begin_operation(
            record.channel_id, OperationKind.CLOSE, amount, payload=signature
        )
        failpoints.hit("close.recorded")
        return signature

    # -- top-ups ----------------------------------------------------------------------------------

    async def top_up_payload(
        self, record: ChannelRecord, amount: int
    ) -> tuple[TopUpPayload, Operation]:
        """Approve if needed and sign ``topUp`` (recorded pending before returning)."""
        if record.deposit + amount > self.policy.max_deposit:
            raise PolicyViolation(
                "max_deposit",
                f"topping up {amount} would bring the deposit to {record.deposit + amount}, "
                f"above the cap {self.policy.max_deposit}",
            )
        await self._begin_funding(record)
        try:
            await self._ensure_allowance(record, amount)
            tx = await self.escrow(record.scope.escrow).sign_top_up(
                self.wallet, record.channel_id, amount
            )
        except BaseException:
            self._end_funding(record.channel_id)
            raise
        op = self._record_tx(record, OperationKind.TOP_UP, amount, tx)
        failpoints.hit("topup.recorded")
        payload = TopUpPayload(
            channel_id=record.channel_id, transaction=tx.raw, additional_deposit=amount
        )
        return payload, op

    async def confirm_top_up(self, record: ChannelRecord, op: Operation) -> ChannelRecord:
        """After the server accepted ``topUp``: read the new deposit from the chain."""
        self._end_funding(record.channel_id)
        state = await self.escrow(record.scope.escrow).get_channel(record.channel_id)
        if state.deposit < record.deposit + op.amount:
            # The server said yes but the chain disagrees: make sure our bytes are mined.
            await self._rebroadcast(op)
            state = await self.escrow(record.scope.escrow).get_channel(record.channel_id)
        self.store.finish_operation(op.op_id, OperationState.CONFIRMED)
        return self.store.update(record.channel_id, deposit=state.deposit, settled=state.settled)

    # -- chain reconciliation --------------------------------------------------------------------

    async def reconcile(self, channel_id: str) -> ChannelRecord:
        """Bring one record in line with the chain (deposit, settlement, closure)."""
        record = self._require(channel_id)
        state = await self.escrow(record.scope.escrow).get_channel(record.channel_id)
        changes: dict[str, object] = {}
        if state.cleared:
            # Finalized and wiped on chain: the final amount survives only in the event.
            if record.status != ChannelStatus.CLOSED:
                closed = await self.escrow(record.scope.escrow).closed_event(record.channel_id)
                if closed is not None:
                    changes["settled"] = int(closed.values["settledToPayee"])
                changes["status"] = ChannelStatus.CLOSED
        elif state.exists:
            changes.update(deposit=state.deposit, settled=state.settled)
            if state.finalized:
                changes["status"] = ChannelStatus.CLOSED
            elif state.close_requested_at:
                changes["status"] = ChannelStatus.CLOSE_REQUESTED
            elif record.status in (ChannelStatus.OPENING, ChannelStatus.FAILED):
                changes["status"] = ChannelStatus.OPEN
        elif record.status == ChannelStatus.OPEN:
            # The chain does not know a channel we thought open (reorg or wrong RPC).
            changes["status"] = ChannelStatus.FAILED
        elif record.status == ChannelStatus.OPENING and not self._open_may_land(record):
            # Its open transaction failed (or was never signed): it can never exist, and
            # an ``opening`` record would count against max_channels_per_scope forever.
            changes["status"] = ChannelStatus.FAILED
        return self.store.update(record.channel_id, **changes) if changes else record

    def _open_may_land(self, record: ChannelRecord) -> bool:
        """Whether an ``opening`` channel may still appear on chain."""
        if lease_is_live(record.lease_owner, record.lease_until):
            return True  # a stream is opening it right now
        pending = self.store.operations(
            record.channel_id, kind=OperationKind.OPEN, state=OperationState.PENDING
        )
        return bool(pending)

    async def recover(self) -> list[ChannelRecord]:
        """Resolve every pending operation after a crash; then reconcile touched channels.

        A pending transaction whose outcome is unknown is rebroadcast with the
        same bytes (harmless if it was already mined); a pending close is
        checked against the chain. Nothing is ever re-signed here.
        """
        touched: dict[str, None] = {}
        for op in self.store.operations(state=OperationState.PENDING):
            touched[op.channel_id] = None
            if op.kind in (
                OperationKind.APPROVE,
                OperationKind.OPEN,
                OperationKind.TOP_UP,
                OperationKind.REQUEST_CLOSE,
                OperationKind.WITHDRAW,
            ):
                await self._settle_pending_tx(op)
            elif op.kind == OperationKind.CLOSE:
                record = self.store.get(op.channel_id)
                if record is not None:
                    state = await self.escrow(record.scope.escrow).get_channel(op.channel_id)
                    if state.finalized:
                        self.store.finish_operation(op.op_id, OperationState.CONFIRMED)
                    else:
                        # The server never closed with it; a later close signs afresh.
                        self.store.finish_operation(
                            op.op_id, OperationState.FAILED, "not closed on chain"
                        )
                        if record.status == ChannelStatus.CLOSING:
                            self.store.update(op.channel_id, status=ChannelStatus.OPEN)
        return [
            await self.reconcile(channel_id)
            for channel_id in touched
            if self.store.get(channel_id) is not None
        ]

    async def _settle_pending_tx(self, op: Operation) -> None:
        if not op.tx_hash or not op.payload:
            self.store.finish_operation(op.op_id, OperationState.FAILED, "no transaction recorded")
            return
        try:
            await self._rebroadcast(op)
        except ContractReverted as exc:
            self.store.finish_operation(op.op_id, OperationState.FAILED, exc.error_name)
            return
        except ChainError as exc:
            if await self.chain.get_receipt(op.tx_hash) is None:
                log.warning("operation.unresolved", op=op.op_id, kind=str(op.kind), error=str(exc))
                if "nonce too low" in str(exc).lower():
                    self.store.finish_operation(op.op_id, OperationState.FAILED, "superseded")
                return
        self.store.finish_operation(op.op_id, OperationState.CONFIRMED)

    async def _rebroadcast(self, op: Operation) -> None:
        assert op.payload is not None
        assert op.tx_hash is not None
        record = self.store.get(op.channel_id)
        sender = record.payer if record else self.payer
        tx = SignedTransaction(raw=op.payload, hash=op.tx_hash, nonce=op.nonce or 0, sender=sender)
        await self.chain.send_and_wait(tx, context=f"{op.kind} (resent)")

    # -- forced close -----------------------------------------------------------------------------

    async def request_close(self, channel_id: str) -> ForcedCloseResult:
        """Start a forced close on chain (the server stops accepting vouchers)."""
        record = self._require(channel_id)
        escrow = self.escrow(record.scope.escrow)
        tx = await escrow.sign_request_close(self.wallet, record.channel_id)
        op = self._record_tx(record, OperationKind.REQUEST_CLOSE, 0, tx)
        await self._send_recorded(op, tx)
        self.store.update(record.channel_id, status=ChannelStatus.CLOSE_REQUESTED)
        return ForcedCloseResult(record.channel_id, tx.hash)

    async def withdraw(self, channel_id: str) -> ForcedCloseResult:
        """Finish a forced close: refund everything unsettled, once the grace period passed."""
        record = self._require(channel_id)
        escrow = self.escrow(record.scope.escrow)
        state = await escrow.get_channel(record.channel_id)
        if state.finalized:
            self.store.update(record.channel_id, status=ChannelStatus.CLOSED)
            raise ChainError(f"channel {channel_id} is already closed")
        if not state.close_requested_at:
            raise ChainError(f"channel {channel_id} has no close request; call request_close first")
        grace = await escrow.close_grace_period()
        now = await self.chain.block_timestamp()
        ready_at = state.close_requested_at + grace + self.withdraw_margin
        if now < ready_at:
            raise CloseNotReady(channel_id, ready_at - now)
        tx = await escrow.sign_withdraw(self.wallet, record.channel_id)
        op = self._record_tx(record, OperationKind.WITHDRAW, state.deposit - state.settled, tx)
        receipt = await self._send_recorded(op, tx)
        refunded = sum(
            int(e.values["refundedToPayer"])
            for e in escrow.events(receipt)
            if e.name == "ChannelClosed" and e.channel_id == record.channel_id
        )
        self.store.update(record.channel_id, status=ChannelStatus.CLOSED, settled=state.settled)
        return ForcedCloseResult(record.channel_id, tx.hash, refunded)

    # -- internals --------------------------------------------------------------------------------

    def _require(self, channel_id: str) -> ChannelRecord:
        record = self.store.get(channel_id)
        if record is None:
            raise StoreError(f"channel {channel_id} is not in the store")
        return record

    def _record_tx(
        self, record: ChannelRecord, kind: OperationKind, amount: int, tx: SignedTransaction
    ) -> Operation:
        return self.store.begin_operation(
            record.channel_id, kind, amount, payload=tx.raw, tx_hash=tx.hash, nonce=tx.nonce
        )

    async def _send_recorded(self, op: Operation, tx: SignedTransaction) -> dict[str, object]:
        try:
            receipt = await self.chain.send_and_wait(tx, context=str(op.kind))
        except ContractReverted as exc:
            self.store.finish_operation(op.op_id, OperationState.FAILED, exc.error_name)
            self.chain.forget_nonce(self.payer)
            raise
        self.store.finish_operation(op.op_id, OperationState.CONFIRMED)
        return receipt

    async def _ensure_allowance(self, record: ChannelRecord, amount: int) -> None:
        """Approve the escrow for exactly ``amount`` unless the allowance covers it already.

        Exact approvals, never "infinite" ones: an escrow we have not audited
        can pull no more than the deposit we decided to make.
        """
        token = Token(self.chain, record.scope.token)
        escrow = record.scope.escrow
        if await token.allowance(self.payer, escrow) >= amount:
            return
        balance = await token.balance_of(self.payer)
        if balance < amount:
            raise ChainError(
                f"wallet {self.wallet.address} holds {balance} of token {record.scope.token}, "
                f"needs {amount} for this deposit"
            )
        tx = await token.sign_approve(self.wallet, escrow, amount)
        op = self._record_tx(record, OperationKind.APPROVE, amount, tx)
        await self._send_recorded(op, tx)

    def _check_state_matches(self, record: ChannelRecord, state: ChannelState) -> None:
        if not state.exists:
            raise ChainError(
                f"the server accepted channel {record.channel_id}, but it is not on chain"
            )
        if (
            state.payer != self.payer
            or state.payee != record.scope.payee
            or state.token != record.scope.token
            or state.authorized_signer != record.authorized_signer
        ):
            raise ChainError(f"channel {record.channel_id} on chain does not match what we signed")
        if state.finalized:
            raise ChainError(f"channel {record.channel_id} is already finalized on chain")
