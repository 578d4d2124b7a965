"""Learning from a v2 server's session snapshot -- only what it proves.

A v2 server may tell a client the state of a channel it holds
(``methodDetails.sessionSnapshot`` in a challenge, the ``Payment-Session-Snapshot``
header on a bootstrap answer). An agent whose store was lost or restored from
an old copy learns from it what it no longer knows: that the channel exists, its
descriptor, the highest voucher it signed, what the server accepted and spent.

Nothing is taken on the server's word. A snapshot is used only when
:func:`~mppagent.tempo.v2.snapshot.check_snapshot` (channel id from the
descriptor on this reserve and chain, our payer, the challenge's payee and
token, a voucher for the channel signed by the channel's signer, ordered
amounts) and :func:`~mppagent.tempo.v2.snapshot.verify_snapshot_on_chain`
(deposit, settlement and close request as the reserve has them) both pass.
Then:

* ``signed`` rises only to the snapshot's voucher -- a valid signature of ours,
  so a fact -- never to a server number (``requiredCumulative`` is ignored);
* ``accepted`` and ``spent`` rise like a receipt's, never fall; ``spent`` can
  never exceed that voucher, which the server holds anyway;
* deposit and settlement come from the chain;
* a channel the store does not know is adopted only if this agent can sign its
  vouchers (the payer key, directly or as the authorized signer): a lost
  delegate key cannot be recovered from a snapshot.

A snapshot that does not prove itself raises
:class:`~mppagent.tempo.v2.snapshot.InvalidSnapshot` and changes nothing; the
transport logs it and carries on with its own state.
"""

from __future__ import annotations

import json

from mppagent.logging import get_logger
from mppagent.session.context import SessionContext
from mppagent.session.policy import Offer
from mppagent.session.pool import scope_of
from mppagent.session.store import ChannelRecord, ChannelStatus
from mppagent.tempo.hexutil import ZERO_ADDRESS, normalize_address
from mppagent.tempo.v2.backend import V2Backend
from mppagent.tempo.v2.snapshot import (
    InvalidSnapshot,
    SessionSnapshot,
    check_snapshot,
    verify_snapshot_on_chain,
)

__all__ = ["Rehydration"]

log = get_logger("mppagent.channels")


class Rehydration:
    """Verifies session snapshots and lets the proven ones update the store."""

    def __init__(self, ctx: SessionContext) -> None:
        self.ctx = ctx

    async def rehydrate(
        self, snapshot: SessionSnapshot, offer: Offer, url: str
    ) -> ChannelRecord | None:
        """Learn from ``snapshot`` (met while paying ``offer``) once it proves itself.

        Returns the updated or adopted record, or ``None`` when the snapshot
        teaches nothing new or names a channel this agent no longer pays on
        (closing, closed, suspect...: reconciliation decides those). Raises
        :class:`InvalidSnapshot` (nothing changed) when it does not prove itself.
        """
        if offer.protocol != "v2":
            raise InvalidSnapshot("session snapshots exist only in session protocol v2")
        record = self.ctx.store.get(snapshot.channel_id)
        if record is not None and (
            record.status != ChannelStatus.OPEN or _nothing_new(record, snapshot)
        ):
            return None
        request = offer.request
        check_snapshot(
            snapshot,
            payer=self.ctx.payer,
            reserve=request.escrow,
            chain_id=request.chain_id,
            payee=request.recipient,
            token=request.currency,
            require_voucher=True,
        )
        signer = snapshot.descriptor.authorized_signer
        if record is not None and record.authorized_signer != signer:
            raise InvalidSnapshot("session snapshot names another signer than our record")
        if record is None and signer not in (ZERO_ADDRESS, normalize_address(self.ctx.payer)):
            raise InvalidSnapshot(
                "session snapshot's channel is signed for by a delegate key this agent "
                "does not hold; it cannot be adopted"
            )
        backend = self.ctx.backend("v2")
        if not isinstance(backend, V2Backend):
            raise InvalidSnapshot("no v2 backend to read the reserve with")
        state = await verify_snapshot_on_chain(backend, snapshot)
        if state.close_requested_at:
            raise InvalidSnapshot("session snapshot's channel has a close pending on chain")
        voucher = snapshot.highest_voucher
        assert voucher is not None  # required above
        adopt = None
        if record is None:
            adopt = _adoption(self.ctx, snapshot, offer, url, state.deposit, state.settled)
        else:
            self.ctx.store.update(record.channel_id, deposit=state.deposit, settled=state.settled)
        learned = self.ctx.store.learn_voucher(
            snapshot.channel_id,
            voucher.cumulative_amount,
            voucher.signature,
            accepted=snapshot.accepted_cumulative,
            spent=snapshot.spent,
            adopt=adopt,
        )
        log.info(
            "snapshot.rehydrated",
            channel=learned.channel_id,
            adopted=adopt is not None,
            signed=learned.signed,
            accepted=learned.accepted,
            spent=learned.spent,
            deposit=learned.deposit,
        )
        return learned


def _adoption(
    ctx: SessionContext,
    snapshot: SessionSnapshot,
    offer: Offer,
    url: str,
    deposit: int,
    settled: int,
) -> ChannelRecord:
    """The record of a channel of ours the store had lost: open, in the offer's scope."""
    descriptor = snapshot.descriptor
    return ChannelRecord(
        channel_id=snapshot.channel_id,
        scope=scope_of(offer),
        payer=ctx.payer,
        authorized_signer=descriptor.authorized_signer,
        salt=descriptor.salt,
        deposit=deposit,
        settled=settled,
        status=ChannelStatus.OPEN,
        url=url,
        realm=offer.challenge.realm,
        unit_type=offer.unit_type,
        unit_price=offer.price,
        protocol="v2",
        descriptor=json.dumps(descriptor.to_wire(), sort_keys=True),
    )


def _nothing_new(record: ChannelRecord, snapshot: SessionSnapshot) -> bool:
    """Whether the snapshot claims nothing beyond what the record already holds."""
    voucher = snapshot.highest_voucher
    return (
        (voucher is None or voucher.cumulative_amount <= record.signed)
        and snapshot.accepted_cumulative <= record.accepted
        and snapshot.spent <= record.spent
    )
