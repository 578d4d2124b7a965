"""The payment gate: the one place a cumulative amount is allowed to be signed.

Whatever asks for money -- the open's initial voucher, a ``payment-need-voucher``
event, the agent's own pay-ahead, a ``402`` problem (``insufficient-balance``,
``delta-too-small``, ``amount-exceeds-deposit``), a top-up, the close -- the
amount passes :meth:`PaymentGate.authorize` before the store signs it, and the
store signs only an :class:`Authorization` the gate issued. The rule:

    amount <= baseline + (meter bound + look-ahead) x price

``baseline`` is the verified ``spent`` the store held when the request started
-- never a number the server sent during the request, with one exception that
costs nothing: what was signed *before* the request was already the server's
to take, so once a receipt shows that prepaid balance consumed ahead of this
request's deliveries (a process killed mid-stream, its last units unrecorded),
the bound builds on it (:meth:`PaymentGate.credit_prepaid`). The meter's bound
is the most units an honest server may bill for what was actually delivered
(see :mod:`mppagent.llm.meters`). On top of that the gate enforces the
per-request budget (what this request newly authorises), the deposit, and the
server's ``minVoucherDelta``. The rolling daily budget is checked by the store,
atomically with signing, across processes.

Amounts at or below what is already signed need no new signature: the store
returns the recorded voucher, so they always pass (a resend).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mppagent.errors import PolicyViolation, ServerMisbehaviour
from mppagent.session.policy import Offer, SpendPolicy

__all__ = ["Authorization", "PaymentGate", "Purpose", "preflight"]

_UINT96_MAX = (1 << 96) - 1


class Purpose(StrEnum):
    """Why a signature is wanted; server-driven purposes fail as misbehaviour."""

    OPEN = "open"  # the initial voucher of a new channel
    DEMAND = "demand"  # a payment-need-voucher event
    PAY_AHEAD = "pay_ahead"  # the agent pays the next window before it is asked
    PROBLEM = "problem"  # a 402 problem asking for a bigger voucher or deposit
    CLOSE = "close"  # the final voucher a cooperative close settles with


_SERVER_DRIVEN = frozenset({Purpose.DEMAND, Purpose.PROBLEM})

_ISSUED = object()


@dataclass(frozen=True)
class Authorization:
    """Permission to sign one cumulative ``amount`` on ``channel_id``; only the gate makes one."""

    channel_id: str
    amount: int
    purpose: Purpose
    acknowledged: int = 0  # what the agent's meter says was delivered (cumulative)
    _issuer: object = field(default=None, repr=False, compare=False)

    @property
    def valid(self) -> bool:
        """Whether the gate issued this authorization (not built by hand)."""
        return self._issuer is _ISSUED


class PaymentGate:
    """The gate for one request on one channel.

    ``baseline`` is the verified spent at request start, ``signed_at_start``
    the highest cumulative signed before it (prepaid balance is the gap
    between the two), ``price`` the unit price, ``min_delta`` the server's
    ``minVoucherDelta`` (0 if none).
    """

    def __init__(
        self,
        policy: SpendPolicy,
        *,
        channel_id: str,
        price: int,
        baseline: int,
        signed_at_start: int,
        min_delta: int = 0,
    ) -> None:
        self.policy = policy
        self.channel_id = channel_id.lower()
        self.price = price
        self.baseline = baseline
        self.signed_at_start = signed_at_start
        self.min_delta = min_delta
        self._prepaid_used = baseline

    @property
    def start(self) -> int:
        """What the request's allowance builds on: the baseline, or prepaid balance used."""
        return self._prepaid_used

    def credit_prepaid(self, spent: int, bound_units: int) -> None:
        """Build on prepaid balance a verified receipt shows consumed before this request.

        ``spent`` minus what this request can have delivered so far (``bound_units``)
        is what the server billed before it; up to ``signed_at_start`` that was
        signed already, so taking it as the start exposes nothing new.
        """
        before = min(spent - bound_units * self.price, self.signed_at_start)
        self._prepaid_used = max(self._prepaid_used, before)

    def ceiling(self, bound_units: int) -> int:
        """The most that may be signed once ``bound_units`` may honestly be billed."""
        return self.start + (bound_units + self.policy.lookahead_units) * self.price

    def receipt_ceiling(self, bound_units: int) -> int:
        """The most a receipt's ``spent`` may honestly say during this request.

        Besides the gate's own ceiling, what was already signed before the
        request may have been consumed without a receipt (an interrupted stream):
        the server can hold no more than that anyway.
        """
        return max(self.signed_at_start, self.ceiling(bound_units))

    def authorize(
        self,
        amount: int,
        *,
        purpose: Purpose,
        bound_units: int,
        signed: int,
        deposit: int,
        delivered_units: int = 0,
    ) -> Authorization:
        """Allow signing cumulative ``amount`` or raise a typed error naming the rule.

        ``signed`` is the highest cumulative already signed on the channel and
        ``deposit`` the deposit the voucher must fit (after a planned top-up);
        ``delivered_units`` (the meter's low estimate) is recorded with the voucher
        as what the agent acknowledges having received.
        """
        acknowledged = min(self.start + delivered_units * self.price, max(amount, signed))
        if amount > _UINT96_MAX:
            raise PolicyViolation("amount", f"cumulative {amount} does not fit the voucher type")
        if amount <= signed:
            return Authorization(self.channel_id, signed, purpose, acknowledged, _ISSUED)
        ceiling = self.ceiling(bound_units)
        if amount > ceiling:
            message = (
                f"{purpose} asks for cumulative {amount}, but {bound_units} deliverable units "
                f"plus a look-ahead of {self.policy.lookahead_units} at price {self.price} "
                f"over the verified {self.start} allow at most {ceiling}"
            )
            if purpose in _SERVER_DRIVEN:
                raise ServerMisbehaviour("ask_ahead", message)
            raise PolicyViolation("lookahead_units", message)
        self.check_budget(amount)
        if amount > deposit:
            raise PolicyViolation(
                "deposit", f"cumulative {amount} exceeds the channel's deposit {deposit}"
            )
        return Authorization(self.channel_id, amount, purpose, acknowledged, _ISSUED)

    def check_budget(self, amount: int) -> None:
        """Refuse when this request would newly authorise more than ``budget_per_request``."""
        self.policy.check_request_budget(amount - self.signed_at_start)

    def authorize_delta(
        self, delta: int, *, bound_units: int, signed: int, deposit: int, delivered_units: int = 0
    ) -> Authorization:
        """Answer ``delta-too-small``: ``signed + delta``, unless the delta itself is too big."""
        allowance = self.ceiling(bound_units) - signed
        if delta > max(allowance, 0):
            raise PolicyViolation(
                "min_voucher_delta",
                f"the server's minimum voucher increase {delta} is more than the "
                f"{max(allowance, 0)} the delivered units and look-ahead allow",
            )
        return self.authorize(
            signed + delta,
            purpose=Purpose.PROBLEM,
            bound_units=bound_units,
            signed=signed,
            deposit=deposit,
            delivered_units=delivered_units,
        )

    @staticmethod
    def authorize_close(
        channel_id: str, amount: int, *, signed: int, settled: int
    ) -> Authorization:
        """The close voucher: at least what is settled, never above what was signed."""
        if amount > signed:
            raise PolicyViolation(
                "close_amount",
                f"close amount {amount} exceeds the highest voucher signed ({signed})",
            )
        if amount < settled:
            raise PolicyViolation(
                "close_amount", f"close amount {amount} is below the settled {settled}"
            )
        return Authorization(channel_id.lower(), amount, Purpose.CLOSE, 0, _ISSUED)


def preflight(policy: SpendPolicy, offer: Offer, *, spent_last_day: int | None) -> None:
    """Refuse a request that cannot be paid at all, before any approval, deposit or open."""
    price = offer.price
    budget = policy.budget_per_request
    if budget is not None and budget < price:
        raise PolicyViolation(
            "budget_per_request",
            f"the per-request budget {budget} cannot pay one unit at price {price}",
        )
    min_delta = offer.request.method_details.min_voucher_delta or 0
    if budget is not None and min_delta > budget:
        raise PolicyViolation(
            "budget_per_request",
            f"the server's minimum voucher increase {min_delta} exceeds the per-request "
            f"budget {budget}",
        )
    if min_delta > policy.lookahead_units * price:
        raise PolicyViolation(
            "min_voucher_delta",
            f"the server's minimum voucher increase {min_delta} is more than the look-ahead "
            f"allows ({policy.lookahead_units} units at price {price}); raise lookahead_units "
            "to pay this server",
        )
    daily = policy.budget_per_day
    if daily is not None and spent_last_day is not None and daily - spent_last_day < price:
        raise PolicyViolation(
            "budget_per_day",
            f"{daily - spent_last_day} left of the daily budget {daily} cannot pay one unit "
            f"at price {price}",
        )
