"""The paid-exchange state machine: receipts and voucher demands in, decisions out.

One :class:`PaidExchange` follows one paid HTTP request on one channel, from
its first receipt to its last. It does no I/O: the transport feeds it what
the server said and what the application received, and executes what it
decides (sign and send a voucher, top up first, or stop). That keeps every
rule about money in one place that unit tests can drive by hand, h11-style.

The rules it enforces (beyond the static :class:`SpendPolicy` checks):

* a receipt must be ``tempo``/``session``/``success``, name the challenge and
  channel in use, keep ``spent <= acceptedCumulative <= highest signed <=
  deposit``, and never let ``spent`` or ``acceptedCumulative`` go down;
* a voucher demand (``payment-need-voucher``) must be for our channel and ask
  no more than ``spent at start + (units delivered + look-ahead) x price``;
  it must also fit the per-request budget (the daily budget is checked by the
  store, atomically with signing);
* the final receipt must bill ``units x price`` exactly, for no more units
  than were delivered (plus the policy's ``unit_tolerance``).

Violations by the server raise :class:`ServerMisbehaviour`; refusals by the
owner's policy raise :class:`PolicyViolation`. Both stop paying at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from mppagent.errors import ServerMisbehaviour
from mppagent.session.policy import SpendPolicy
from mppagent.tempo.schemas import NeedVoucher, SessionReceipt

__all__ = ["PaidExchange", "SignVoucher", "TopUp"]


@dataclass(frozen=True)
class SignVoucher:
    """Decision: sign (or resend, if not above ``signed``) a voucher for ``amount``."""

    amount: int
    resend: bool = False


@dataclass(frozen=True)
class TopUp:
    """Decision: add ``amount`` to the deposit, then sign a voucher for ``then_sign``."""

    amount: int
    then_sign: int


class PaidExchange:
    """Tracks one paid request on one channel and judges everything the server says.

    ``signed`` is the highest cumulative amount already signed on the channel
    (from the store), ``spent``/``accepted`` the last verified receipt values,
    ``deposit`` the on-chain deposit, ``price`` the unit price of the offer.
    """

    def __init__(
        self,
        *,
        policy: SpendPolicy,
        channel_id: str,
        challenge_id: str,
        price: int,
        deposit: int,
        signed: int,
        accepted: int,
        spent: int,
        initial_deposit: int,
    ) -> None:
        self.policy = policy
        self.channel_id = channel_id.lower()
        self.challenge_id = challenge_id
        self.price = price
        self.deposit = deposit
        self.signed = signed
        self.accepted = accepted
        self.spent = spent
        self.initial_deposit = initial_deposit
        self.signed_at_start = signed
        self.spent_at_start: int | None = None
        self.delivered = 0
        self.final: SessionReceipt | None = None
        self.vouchers_signed = 0
        self.demand_window: int | None = None
        self.steady_demands = 0

    # -- what the application received ---------------------------------------------

    def delivered_units(self, units: int) -> None:
        """Count units the application actually received (metered app events)."""
        self.delivered += units

    # -- receipts --------------------------------------------------------------------

    def check_receipt(self, receipt: SessionReceipt, *, challenge_id: str | None = None) -> None:
        """Verify any receipt for this exchange's channel and advance the known state."""
        expected_challenge = challenge_id or self.challenge_id
        if receipt.status != "success" or receipt.method != "tempo" or receipt.intent != "session":
            raise ServerMisbehaviour(
                "receipt_kind",
                f"receipt is {receipt.method}/{receipt.intent}/{receipt.status}, "
                "expected tempo/session/success",
            )
        if receipt.challenge_id != expected_challenge:
            raise ServerMisbehaviour(
                "receipt_challenge",
                f"receipt names challenge {receipt.challenge_id!r}, "
                f"expected {expected_challenge!r}",
            )
        if receipt.channel_id != self.channel_id or receipt.reference.lower() != self.channel_id:
            raise ServerMisbehaviour(
                "receipt_channel", f"receipt is for channel {receipt.channel_id}, not ours"
            )
        if receipt.spent > receipt.accepted_cumulative:
            raise ServerMisbehaviour(
                "receipt_spent",
                f"receipt spent {receipt.spent} exceeds acceptedCumulative "
                f"{receipt.accepted_cumulative}",
            )
        if receipt.accepted_cumulative > self.signed:
            raise ServerMisbehaviour(
                "receipt_accepted",
                f"receipt acceptedCumulative {receipt.accepted_cumulative} exceeds the highest "
                f"voucher signed ({self.signed})",
            )
        lower_spent = receipt.spent < self.spent
        lower_accepted = receipt.accepted_cumulative < self.accepted
        if lower_spent or lower_accepted:
            if receipt.spent > self.spent or receipt.accepted_cumulative > self.accepted:
                raise ServerMisbehaviour(
                    "receipt_monotonic",
                    f"receipt moved spent {self.spent}->{receipt.spent} and accepted "
                    f"{self.accepted}->{receipt.accepted_cumulative} in opposite directions",
                )
            # An earlier snapshot read late: a voucher's answer and the stream's own
            # receipts travel on different connections, so they can arrive out of
            # order. It is consistent in itself (checked above) and moves nothing.
            return
        if self.spent_at_start is None:
            self.spent_at_start = receipt.spent
        elif receipt.spent > self._spend_ceiling(self.policy.lookahead_units):
            raise ServerMisbehaviour(
                "overcharge",
                f"spent {receipt.spent} is more than {self.delivered} delivered units "
                f"(plus look-ahead) at price {self.price} allow",
            )
        self.spent = receipt.spent
        self.accepted = receipt.accepted_cumulative

    def check_final_receipt(self, receipt: SessionReceipt) -> None:
        """Verify the stream's closing receipt: exact billing for what was delivered."""
        start = self.spent if self.spent_at_start is None else self.spent_at_start
        self.check_receipt(receipt)
        billed = receipt.spent - start
        if receipt.units is not None and billed != receipt.units * self.price:
            raise ServerMisbehaviour(
                "receipt_units",
                f"receipt bills {billed} for {receipt.units} units at price {self.price} "
                f"(expected {receipt.units * self.price})",
            )
        allowed_units = self.delivered + self.policy.unit_tolerance
        if billed > allowed_units * self.price:
            raise ServerMisbehaviour(
                "overcharge",
                f"billed {billed} for this request, but only {self.delivered} units were "
                f"delivered at price {self.price}",
            )
        self.final = receipt

    # -- voucher demands ---------------------------------------------------------------

    def on_need_voucher(self, need: NeedVoucher) -> SignVoucher | TopUp:
        """Decide how to answer a ``payment-need-voucher`` event."""
        if need.channel_id != self.channel_id:
            raise ServerMisbehaviour(
                "need_voucher_channel",
                f"need-voucher names channel {need.channel_id}, but this stream pays "
                f"{self.channel_id}",
            )
        required = need.required_cumulative
        if required > self.signed:
            # How far past what was delivered the server asks to be paid: its window.
            window = required - self._delivered_cost()
            self.steady_demands = self.steady_demands + 1 if window == self.demand_window else 0
            self.demand_window = window
        if required <= self.signed:
            # Already authorised (duplicate event or a lost voucher): resend, sign nothing new.
            return SignVoucher(self.signed, resend=True)
        ceiling = self._spend_ceiling(self.policy.lookahead_units)
        if required > ceiling:
            raise ServerMisbehaviour(
                "ask_ahead",
                f"server asks for cumulative {required}, but {self.delivered} delivered units "
                f"plus a look-ahead of {self.policy.lookahead_units} at price {self.price} "
                f"allow at most {ceiling}",
            )
        self.policy.check_request_budget(required - self.signed_at_start)
        # The deposit we act on is the one we verified on chain, not the server's claim.
        if required > self.deposit:
            amount = self.policy.top_up_amount(self.deposit, required, self.initial_deposit)
            return TopUp(amount=amount, then_sign=required)
        return SignVoucher(required)

    def proactive_voucher(self) -> SignVoucher | None:
        """Pay the server's next window *before* it has to ask, when that is allowed.

        Once the server has asked twice in a row for the same window beyond
        the delivered units (its steady look-ahead), and less than a window is
        still prepaid, pay ahead now -- up to two windows, within the policy's
        look-ahead -- so the voucher arrives before the balance runs out and the
        stream does not pause. The
        same ceiling as for demands applies (delivered units plus the policy's
        look-ahead); nothing proactive needs a top-up or breaks a budget --
        those wait for a real demand.
        """
        window = self.demand_window
        if window is None or window <= 0 or self.steady_demands < 1 or self.final is not None:
            return None
        delivered_cost = self._delivered_cost()
        if self.signed - delivered_cost >= window:
            return None  # a full window is still prepaid
        # Stay up to two windows ahead (if the policy's look-ahead allows), so the
        # voucher has a whole window's worth of tokens to arrive in.
        ceiling = self._spend_ceiling(self.policy.lookahead_units)
        target = min(delivered_cost + 2 * window, ceiling)
        if (target - self.signed) * 2 < window or target > self.deposit:
            return None  # too small to be worth a request, or needs a top-up
        budget = self.policy.budget_per_request
        if budget is not None and target - self.signed_at_start > budget:
            return None
        return SignVoucher(target)

    def required_for_balance(self, required_top_up: int) -> SignVoucher | TopUp:
        """Answer an ``insufficient-balance`` problem (non-streaming requests)."""
        target = max(self.signed, self.accepted) + required_top_up
        self.policy.check_request_budget(target - self.signed_at_start)
        if target > self.deposit:
            amount = self.policy.top_up_amount(self.deposit, target, self.initial_deposit)
            return TopUp(amount=amount, then_sign=target)
        return SignVoucher(target)

    # -- effects reported back by the transport -----------------------------------------

    def voucher_signed(self, amount: int) -> None:
        """The store recorded a voucher for ``amount`` (never lowers ``signed``)."""
        if amount > self.signed:
            self.signed = amount
            self.vouchers_signed += 1

    def deposit_increased(self, new_deposit: int) -> None:
        """A top-up was confirmed on chain."""
        self.deposit = max(self.deposit, new_deposit)

    # -- internals -------------------------------------------------------------------------

    def _delivered_cost(self) -> int:
        start = self.spent if self.spent_at_start is None else self.spent_at_start
        return start + self.delivered * self.price

    def _spend_ceiling(self, ahead_units: int) -> int:
        start = self.spent if self.spent_at_start is None else self.spent_at_start
        return max(self.signed_at_start, start + (self.delivered + ahead_units) * self.price)
