"""Signing vouchers: only what the gate authorized, recorded before it is returned.

The store signs inside one IMMEDIATE transaction and never signs a cumulative
amount at or below one already recorded; the rolling daily budget is checked
there too, so processes sharing the store cannot overrun it together.
"""

from __future__ import annotations

from mppagent import failpoints
from mppagent.errors import PolicyViolation
from mppagent.session.context import SessionContext
from mppagent.session.gate import Authorization, Purpose
from mppagent.session.store import ChannelRecord, OperationKind, SignedVoucher

__all__ = ["sign_close_voucher", "sign_voucher"]


def _check(record: ChannelRecord, auth: Authorization, *, close: bool) -> None:
    if not auth.valid or auth.channel_id != record.channel_id.lower():
        raise PolicyViolation("gate", f"no gate authorization for channel {record.channel_id}")
    if (auth.purpose == Purpose.CLOSE) != close:
        raise PolicyViolation("gate", f"a {auth.purpose} authorization cannot sign this voucher")


def sign_voucher(ctx: SessionContext, record: ChannelRecord, auth: Authorization) -> SignedVoucher:
    """Record-then-return a running voucher for ``auth.amount`` (or the higher one recorded)."""
    _check(record, auth, close=False)
    signer = ctx.signer_for(record)
    scope = record.scope
    backend = ctx.backend_for(record)
    # Without a daily budget there is nothing to check, and the store need not sum
    # every voucher of the last 24 hours (a scan that grows with each one signed).
    check = ctx.policy.check_daily_budget if ctx.policy.budget_per_day is not None else None
    return ctx.store.sign_voucher(
        record.channel_id,
        auth.amount,
        lambda value: backend.sign_voucher(
            signer, record.channel_id, value, scope.escrow, scope.chain_id
        ),
        check=check,
        acknowledged=auth.acknowledged,
    )


def sign_close_voucher(ctx: SessionContext, record: ChannelRecord, auth: Authorization) -> str:
    """Sign the final voucher the payee closes with, after recording it as an operation.

    The close amount is what the verified receipts say was spent (never below
    what is settled on chain), which may be less than the highest running
    voucher: the payee cannot capture unused look-ahead.
    """
    _check(record, auth, close=True)
    scope = record.scope
    signature = ctx.backend_for(record).sign_voucher(
        ctx.signer_for(record), record.channel_id, auth.amount, scope.escrow, scope.chain_id
    )
    ctx.store.begin_operation(
        record.channel_id, OperationKind.CLOSE, auth.amount, payload=signature
    )
    failpoints.hit("close.recorded")
    return signature
