"""Which channel a payment uses: lease an idle open one, or reserve a new one.

A channel serves one stream at a time (the spec's concurrency model); parallel
streams to one payee use separate channels, at most
``policy.max_channels_per_scope`` of them. Leases live in the store, so
processes sharing it never stream on one channel at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from mppagent.errors import ConfigError, PolicyViolation
from mppagent.session.context import SessionContext
from mppagent.session.policy import Offer
from mppagent.session.recovery import Recovery
from mppagent.session.store import ChannelRecord, ChannelStatus, Scope
from mppagent.tempo.backend import ChannelTerms, FundingPlan, SessionBackend
from mppagent.tempo.channel_id import random_salt
from mppagent.tempo.hexutil import ZERO_ADDRESS, normalize_address
from mppagent.tempo.voucher import VoucherSigner

__all__ = ["ChannelPool", "Checkout", "scope_of"]


@dataclass(frozen=True)
class Checkout:
    """A channel leased for one payment. ``is_new``: it still has to be opened."""

    record: ChannelRecord
    is_new: bool
    offer: Offer
    plan: FundingPlan | None = None  # an open signed up front (see NewChannel)


def scope_of(offer: Offer) -> Scope:
    """The scope (payee, token, escrow, chain) an offer pays into."""
    request = offer.request
    return Scope(request.recipient, request.currency, request.escrow, request.chain_id)


class ChannelPool:
    """Leases channels to payments."""

    def __init__(self, ctx: SessionContext, recovery: Recovery) -> None:
        self.ctx = ctx
        self.recovery = recovery
        self._trusted: set[str] = set()

    async def checkout(self, offer: Offer, url: str) -> Checkout:
        """Lease a channel for ``offer``: an idle open one with room, else a new one."""
        ctx = self.ctx
        backend = ctx.backend(offer.protocol)  # refuse an unknown protocol before any chain call
        chain_id = await ctx.chain.chain_id()
        if offer.request.chain_id != chain_id:
            raise ConfigError(
                f"the server at {url} asks for payment on chain {offer.request.chain_id}, but "
                f"the configured RPC ({ctx.chain.rpc_url}) serves chain {chain_id}: point "
                "--rpc-url at the server's chain"
            )
        scope = scope_of(offer)
        deadline = time.monotonic() + ctx.pool_wait
        settled_stale = False
        while True:
            record = ctx.store.acquire(
                scope, ctx.owner, ttl=ctx.lease_ttl, min_remaining=offer.price
            )
            if record is not None:
                return Checkout(record=record, is_new=False, offer=offer)
            if not settled_stale:
                settled_stale = True
                if await self.recovery.settle_stale_opens(scope):
                    continue  # an earlier open turned out to be on chain: use it
            await self._check_escrow(backend, scope.escrow)
            fresh, plan = await self._new_record(backend, offer, scope, url)
            if ctx.store.reserve(
                fresh, ctx.owner, ttl=ctx.lease_ttl, cap=ctx.policy.max_channels_per_scope
            ):
                reserved = ctx.store.get(fresh.channel_id)
                assert reserved is not None
                return Checkout(record=reserved, is_new=True, offer=offer, plan=plan)
            if time.monotonic() > deadline:
                raise PolicyViolation(
                    "max_channels_per_scope",
                    f"all {ctx.policy.max_channels_per_scope} channels to {scope.payee} are "
                    f"busy or drained (waited {ctx.pool_wait:.0f}s)",
                )
            await asyncio.sleep(0.05)

    async def _check_escrow(self, backend: SessionBackend, escrow: str) -> None:
        """Fund only an escrow we can vouch for: allow-listed, or code this backend knows.

        A server names the escrow in its challenge; a contract that merely looks
        like one could keep the deposit. Checked once per address and process.
        """
        policy = self.ctx.policy
        if escrow in self._trusted or policy.trust_unknown_escrows:
            return
        listed = policy.allowed_escrows is not None and escrow in policy.allowed_escrows
        if not listed and not await backend.check_contract(escrow):
            raise PolicyViolation(
                "allowed_escrows",
                f"escrow {escrow} does not run the {backend.protocol} escrow code this "
                "agent knows; add it to allowed_escrows if you trust it",
            )
        self._trusted.add(escrow)

    async def _new_record(
        self, backend: SessionBackend, offer: Offer, scope: Scope, url: str
    ) -> tuple[ChannelRecord, FundingPlan | None]:
        ctx = self.ctx
        deposit = ctx.policy.initial_deposit(offer)
        salt = random_salt()
        signer_key: str | None = None
        authorized = ZERO_ADDRESS
        if ctx.delegate_signer:
            delegate = VoucherSigner.generate()
            signer_key = delegate.private_key_hex
            authorized = normalize_address(delegate.address)
        terms = ChannelTerms(
            payer=ctx.payer,
            payee=scope.payee,
            token=scope.token,
            escrow=scope.escrow,
            chain_id=scope.chain_id,
            salt=salt,
            authorized_signer=authorized,
            operator=offer.request.method_details.operator or ZERO_ADDRESS,
            fee_token=offer.request.method_details.fee_token,
        )
        new = await backend.new_channel(ctx.wallet, terms, deposit)
        record = ChannelRecord(
            channel_id=new.channel_id,
            scope=scope,
            payer=ctx.payer,
            authorized_signer=authorized,
            salt=salt,
            deposit=deposit,
            status=ChannelStatus.OPENING,
            signer_key=signer_key,
            url=url,
            realm=offer.challenge.realm,
            unit_type=offer.unit_type,
            unit_price=offer.price,
            protocol=backend.protocol,
            descriptor=new.descriptor,
        )
        return record, new.plan

    def release(self, record: ChannelRecord) -> None:
        """Return the lease on ``record`` (and the signing lock it may still hold)."""
        self.ctx.end_funding(record.channel_id)
        self.ctx.store.release(record.channel_id, self.ctx.owner)

    def renew(self, record: ChannelRecord) -> None:
        """Keep the lease alive during a long stream."""
        self.ctx.store.renew(record.channel_id, self.ctx.owner, ttl=self.ctx.lease_ttl)
