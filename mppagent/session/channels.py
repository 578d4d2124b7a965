"""The channel lifecycle behind one facade: pool, funding, recovery, closing.

:class:`ChannelManager` is what the transport and the agent talk to. It
owns nothing itself: each job lives in its own module (leases in
:mod:`~mppagent.session.pool`, deposits in :mod:`~mppagent.session.funding`,
the chain's word in :mod:`~mppagent.session.recovery`, closes in
:mod:`~mppagent.session.closing`), all built from one
:class:`~mppagent.session.context.SessionContext`, and every voucher goes
through :mod:`~mppagent.session.signing` with a gate authorization.
"""

from __future__ import annotations

from collections.abc import Sequence

from mppagent.session.closing import (
    CloseNotReady,
    CloseResult,
    CloseSender,
    Closing,
    ForcedCloseResult,
)
from mppagent.session.context import SessionContext, terms_of
from mppagent.session.funding import Funding
from mppagent.session.gate import Authorization
from mppagent.session.policy import Offer, SpendPolicy
from mppagent.session.pool import ChannelPool, Checkout, scope_of
from mppagent.session.recovery import Recovery
from mppagent.session.signing import sign_voucher
from mppagent.session.snapshots import Rehydration
from mppagent.session.store import ChannelRecord, ChannelStore, Operation, Scope, new_owner_id
from mppagent.tempo.backend import SessionBackend
from mppagent.tempo.chain import ChainClient, Wallet
from mppagent.tempo.escrow import Escrow
from mppagent.tempo.hexutil import normalize_address
from mppagent.tempo.schemas import MethodDetails, OpenPayload, TopUpPayload, VoucherPayload
from mppagent.tempo.v1 import V1Backend
from mppagent.tempo.v2.snapshot import SessionSnapshot

__all__ = [
    "ChannelManager",
    "Checkout",
    "CloseNotReady",
    "CloseResult",
    "ForcedCloseResult",
]


class ChannelManager:
    """Owns the agent's channels: one instance per wallet and store."""

    def __init__(
        self,
        *,
        wallet: Wallet,
        chain: ChainClient,
        store: ChannelStore,
        policy: SpendPolicy,
        backends: Sequence[SessionBackend] | None = None,
        delegate_signer: bool = False,
        lease_ttl: float = 300.0,
        pool_wait: float = 30.0,
        withdraw_margin: int = 60,
    ) -> None:
        self.ctx = SessionContext(
            wallet=wallet,
            payer=normalize_address(wallet.address),
            chain=chain,
            store=store,
            policy=policy,
            backends={b.protocol: b for b in (backends or [V1Backend(chain)])},
            owner=new_owner_id(),
            lease_ttl=lease_ttl,
            pool_wait=pool_wait,
            withdraw_margin=withdraw_margin,
            delegate_signer=delegate_signer,
        )
        self.recovery = Recovery(self.ctx)
        self.pool = ChannelPool(self.ctx, self.recovery)
        self.funding = Funding(self.ctx, self.recovery)
        self.closing = Closing(self.ctx, self.recovery)
        self.rehydration = Rehydration(self.ctx)

    def __repr__(self) -> str:
        return f"ChannelManager(payer={self.payer!r}, store={self.store!r})"

    # -- shared collaborators (read-only views) -----------------------------------------------

    @property
    def wallet(self) -> Wallet:
        """The paying wallet."""
        return self.ctx.wallet

    @property
    def payer(self) -> str:
        """The payer address (lowercase)."""
        return self.ctx.payer

    @property
    def chain(self) -> ChainClient:
        """The chain client."""
        return self.ctx.chain

    @property
    def store(self) -> ChannelStore:
        """The channel store."""
        return self.ctx.store

    @property
    def policy(self) -> SpendPolicy:
        """The owner's spending policy."""
        return self.ctx.policy

    @property
    def owner(self) -> str:
        """This manager's lease owner id."""
        return self.ctx.owner

    @property
    def lease_ttl(self) -> float:
        """Seconds a lease lasts without renewal."""
        return self.ctx.lease_ttl

    @property
    def withdraw_margin(self) -> int:
        """Seconds added to the escrow's grace period before withdrawing."""
        return self.ctx.withdraw_margin

    def escrow(self, address: str) -> Escrow:
        """The v1 :class:`Escrow` client for ``address`` (v1 backends only)."""
        backend = self.ctx.backends.get("v1")
        if not isinstance(backend, V1Backend):
            raise TypeError("escrow() is a v1 helper")
        return backend.escrow(address)

    @staticmethod
    def scope_of(offer: Offer) -> Scope:
        """The scope (payee, token, escrow, chain) an offer pays into."""
        return scope_of(offer)

    # -- delegation ------------------------------------------------------------------------------

    async def checkout(self, offer: Offer, url: str) -> Checkout:
        """Lease a channel for ``offer`` (see :meth:`ChannelPool.checkout`)."""
        return await self.pool.checkout(offer, url)

    def release(self, record: ChannelRecord) -> None:
        """Return a lease."""
        self.pool.release(record)

    def renew(self, record: ChannelRecord) -> None:
        """Keep a lease alive."""
        self.pool.renew(record)

    def initial_amount(self, offer: Offer) -> int:
        """What a new channel's open voucher should pay (its protocol says how many units)."""
        return self.ctx.backend(offer.protocol).initial_units * offer.price

    async def open_payload(
        self, checkout: Checkout, initial: Authorization
    ) -> tuple[OpenPayload, Operation]:
        """Sign and record ``open`` plus its initial voucher."""
        return await self.funding.open_payload(checkout, initial)

    async def confirm_open(self, record: ChannelRecord, op: Operation) -> ChannelRecord:
        """Confirm an accepted ``open`` on chain."""
        return await self.funding.confirm_open(record, op)

    async def settle_open(
        self, record: ChannelRecord, op: Operation, reason: str
    ) -> ChannelRecord | None:
        """Find out whether a refused ``open`` landed anyway."""
        return await self.funding.settle_open(record, op, reason)

    async def top_up_payload(
        self, record: ChannelRecord, amount: int, details: MethodDetails | None = None
    ) -> tuple[TopUpPayload, Operation]:
        """Sign and record ``topUp``, paying its fee as ``details`` (the challenge's) ask."""
        return await self.funding.top_up_payload(record, amount, details)

    async def confirm_top_up(self, record: ChannelRecord, op: Operation) -> ChannelRecord:
        """Confirm an accepted ``topUp`` on chain."""
        return await self.funding.confirm_top_up(record, op)

    def voucher_payload(self, record: ChannelRecord, auth: Authorization) -> VoucherPayload:
        """A ``voucher`` payload for a gate-authorized amount (signed and recorded first)."""
        voucher = sign_voucher(self.ctx, record, auth)
        return self.ctx.backend_for(record).voucher_payload(
            terms_of(record), record.channel_id, voucher.cumulative_amount, voucher.signature
        )

    async def rehydrate(
        self, snapshot: SessionSnapshot, offer: Offer, url: str
    ) -> ChannelRecord | None:
        """Learn from a v2 session snapshot once it proves itself (see :mod:`.snapshots`).

        Raises :class:`~mppagent.tempo.v2.snapshot.InvalidSnapshot`, changing
        nothing, when it does not.
        """
        return await self.rehydration.rehydrate(snapshot, offer, url)

    async def reconcile(self, channel_id: str) -> ChannelRecord:
        """Bring one record in line with the chain."""
        return await self.recovery.reconcile(channel_id)

    async def recover(self) -> list[ChannelRecord]:
        """Resolve what a crash left pending."""
        return await self.recovery.recover()

    async def close(self, channel_id: str, sender: CloseSender) -> CloseResult:
        """Close cooperatively through ``sender``."""
        return await self.closing.close(channel_id, sender)

    async def request_close(self, channel_id: str) -> ForcedCloseResult:
        """Start a forced close."""
        return await self.closing.request_close(channel_id)

    async def withdraw(self, channel_id: str) -> ForcedCloseResult:
        """Finish a forced close."""
        return await self.closing.withdraw(channel_id)
