"""The paid-exchange state machine: typed events in, decisions out, no I/O.

One :class:`PaidExchange` follows one paid HTTP request on one channel. The
transport feeds it what happened through :meth:`PaidExchange.handle` --
application events delivered, receipts, voucher demands, ``402`` problems,
and the effects of its own decisions -- and executes what it decides (sign and
send a voucher, top up first). Its state is read-only from outside, so every
rule about money lives here and in the gate, and unit tests drive it by hand,
h11-style.

Every amount it decides to sign comes from the
:class:`~mppagent.session.gate.PaymentGate` as an authorization; the meter
says how many units an honest server may bill for what was delivered.

Receipts are judged against the store's baseline, not the server's numbers:

* a receipt must be ``tempo``/``session``/``success``, name a challenge used in
  this request and our channel, and keep ``spent <= acceptedCumulative <=
  highest signed``; its ``spent`` may not exceed what the delivered units (plus
  the look-ahead in flight, plus anything signed before the request) allow;
* a receipt read late over another connection (an earlier snapshot) is fine,
  but within a request the final ``spent`` may not fall below a ``spent``
  already verified in it, whatever challenge it names;
* ``spent`` below the stored baseline (a server that lost its books) and a
  final bill below what was delivered are under-billing: the payer's gain,
  logged and reported, never an alarm;
* a server that keeps contradicting itself (demanding less than it already
  accepted) gets a typed error after a few tries rather than endless resends.
"""

from __future__ import annotations

from dataclasses import dataclass

from mppagent.errors import PolicyViolation, ServerMisbehaviour
from mppagent.llm.meters import Meter
from mppagent.logging import get_logger
from mppagent.session.gate import Authorization, PaymentGate, Purpose
from mppagent.session.policy import SpendPolicy
from mppagent.tempo.schemas import NeedVoucher, SessionReceipt
from mppagent.transport.sse import SSEEvent

__all__ = [
    "ChallengeRenewed",
    "DeliveredEvent",
    "DepositChanged",
    "NeedVoucherSeen",
    "PaidExchange",
    "ProblemSeen",
    "ReceiptSeen",
    "SignVoucher",
    "TopUp",
    "VoucherSigned",
]

log = get_logger("mppagent.engine")

MAX_CONTRADICTIONS = 3
"""Self-contradictory demands (required at or below accepted) tolerated in a row."""


# -- events in ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveredEvent:
    """An application SSE event reached the application."""

    event: SSEEvent


@dataclass(frozen=True)
class ReceiptSeen:
    """A receipt arrived (header, voucher answer, or the stream's final event)."""

    receipt: SessionReceipt
    challenge_id: str | None = None
    final: bool = False


@dataclass(frozen=True)
class NeedVoucherSeen:
    """A ``payment-need-voucher`` event."""

    need: NeedVoucher


@dataclass(frozen=True)
class ProblemSeen:
    """A ``402`` problem asking for more: ``kind`` is its short type name."""

    kind: str
    required_top_up: int | None = None
    min_delta: int | None = None


@dataclass(frozen=True)
class VoucherSigned:
    """The store recorded a voucher for ``amount`` (effect of a decision)."""

    amount: int


@dataclass(frozen=True)
class DepositChanged:
    """A top-up was confirmed on chain."""

    deposit: int


@dataclass(frozen=True)
class ChallengeRenewed:
    """The server replaced an expired challenge; its receipts may name this id."""

    challenge_id: str


Event = (
    DeliveredEvent
    | ReceiptSeen
    | NeedVoucherSeen
    | ProblemSeen
    | VoucherSigned
    | DepositChanged
    | ChallengeRenewed
)

# -- decisions out -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignVoucher:
    """Sign (or, if ``resend``, send again) the voucher ``auth`` allows."""

    auth: Authorization
    resend: bool = False

    @property
    def amount(self) -> int:
        """The cumulative amount."""
        return self.auth.amount


@dataclass(frozen=True)
class TopUp:
    """Add ``amount`` to the deposit, then sign the voucher ``then`` allows."""

    amount: int
    then: Authorization

    @property
    def then_sign(self) -> int:
        """The cumulative amount to sign after the top-up."""
        return self.then.amount


Decision = SignVoucher | TopUp


class PaidExchange:
    """Tracks one paid request on one channel and judges everything the server says."""

    def __init__(
        self,
        *,
        policy: SpendPolicy,
        gate: PaymentGate,
        meter: Meter,
        challenge_id: str,
        deposit: int,
        signed: int,
        initial_deposit: int,
        unverified: bool = False,
    ) -> None:
        self._policy = policy
        self._gate = gate
        self._meter = meter
        self._challenges = {challenge_id}
        self._deposit = deposit
        self._signed = signed
        self._initial_deposit = initial_deposit
        self._verified_in_request = not unverified
        self._max_spent = gate.baseline
        self._final: SessionReceipt | None = None
        self._vouchers = 0
        self._contradictions = 0
        self._receipts = 0
        self._window: int | None = None
        self._steady = 0
        self.under_billed = 0

    # -- read-only state -------------------------------------------------------------------------

    @property
    def channel_id(self) -> str:
        """The channel this request pays on."""
        return self._gate.channel_id

    @property
    def gate(self) -> PaymentGate:
        """This request's gate."""
        return self._gate

    @property
    def signed(self) -> int:
        """The highest cumulative signed on the channel."""
        return self._signed

    @property
    def deposit(self) -> int:
        """The deposit verified on chain."""
        return self._deposit

    @property
    def delivered(self) -> int:
        """Units delivered, as the meter counts them."""
        return self._meter.delivered

    @property
    def bound(self) -> int:
        """The most units an honest server may bill for what was delivered."""
        return self._meter.bound

    @property
    def final(self) -> SessionReceipt | None:
        """The verified final receipt, once seen."""
        return self._final

    @property
    def vouchers_signed(self) -> int:
        """Vouchers newly signed in this request."""
        return self._vouchers

    @property
    def verified(self) -> bool:
        """Whether a receipt verified this request (or the channel was already verified)."""
        return self._verified_in_request

    @property
    def receipts_seen(self) -> int:
        """Receipts verified in this request (header, voucher answers, final)."""
        return self._receipts

    @property
    def billed(self) -> int | None:
        """What the final receipt bills this request (from the verified baseline)."""
        if self._final is None:
            return None
        return max(0, self._final.spent - self._gate.baseline)

    # -- the one entry point -------------------------------------------------------------------

    def handle(self, event: Event) -> Decision | None:
        """Take one event; return what to sign, if anything."""
        match event:
            case DeliveredEvent(event=sse):
                self._meter.observe(sse)
                return None
            case ReceiptSeen(receipt=receipt, challenge_id=cid, final=final):
                self._receipt(receipt, cid, final=final)
                return None
            case NeedVoucherSeen(need=need):
                return self._need(need)
            case ProblemSeen():
                return self._problem(event)
            case VoucherSigned(amount=amount):
                if amount > self._signed:
                    self._signed = amount
                    self._vouchers += 1
                return None
            case DepositChanged(deposit=deposit):
                self._deposit = max(self._deposit, deposit)
                return None
            case ChallengeRenewed(challenge_id=cid):
                self._challenges.add(cid)
                return None
        raise TypeError(f"unknown event {event!r}")  # pragma: no cover

    def initial_voucher(self, amount: int) -> Authorization:
        """Authorize the initial voucher of a new channel."""
        return self._gate.authorize(
            amount,
            purpose=Purpose.OPEN,
            bound_units=self.bound,
            delivered_units=self.delivered,
            signed=self._signed,
            deposit=self._deposit,
        )

    def pay_ahead(self) -> SignVoucher | None:
        """Pay the server's next window *before* it has to ask, when that is allowed.

        Once the server has asked twice in a row for the same window beyond the
        delivered units (its steady look-ahead), and less than a window is still
        prepaid, pay up to two windows ahead -- never past the gate's ceiling,
        never needing a top-up, never on a channel no receipt has verified.
        """
        window = self._window
        if (
            window is None
            or window <= 0
            or self._steady < 1
            or self._final is not None
            or not self._verified_in_request
        ):
            return None
        # The meter's (low) estimate of what was delivered, not its (high) bound: paying
        # ahead of an overestimate would pay ahead of nothing. The gate caps it either way.
        delivered_cost = self._gate.start + self.delivered * self._gate.price
        if self._signed - delivered_cost >= window:
            return None  # a full window is still prepaid
        target = min(delivered_cost + 2 * window, self._gate.ceiling(self.bound))
        if (target - self._signed) * 2 < window or target > self._deposit:
            return None  # too small to be worth a request, or needs a top-up
        try:
            auth = self._gate.authorize(
                target,
                purpose=Purpose.PAY_AHEAD,
                bound_units=self.bound,
                delivered_units=self.delivered,
                signed=self._signed,
                deposit=self._deposit,
            )
        except PolicyViolation:
            return None  # e.g. the request budget: wait for a real demand to refuse it
        return SignVoucher(auth)

    # -- receipts ------------------------------------------------------------------------------

    def _receipt(self, receipt: SessionReceipt, challenge_id: str | None, *, final: bool) -> None:
        if receipt.status != "success" or receipt.method != "tempo" or receipt.intent != "session":
            raise ServerMisbehaviour(
                "receipt_kind",
                f"receipt is {receipt.method}/{receipt.intent}/{receipt.status}, "
                "expected tempo/session/success",
            )
        known = self._challenges if challenge_id is None else {challenge_id}
        if receipt.challenge_id not in known:
            raise ServerMisbehaviour(
                "receipt_challenge",
                f"receipt names challenge {receipt.challenge_id!r}, not one this request used",
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
        if receipt.accepted_cumulative > self._signed:
            raise ServerMisbehaviour(
                "receipt_accepted",
                f"receipt acceptedCumulative {receipt.accepted_cumulative} exceeds the highest "
                f"voucher signed ({self._signed})",
            )
        tolerance = self._policy.unit_tolerance if final else self._policy.lookahead_units
        ceiling = self._gate.receipt_ceiling(self.bound + tolerance)
        if receipt.spent > ceiling:
            raise ServerMisbehaviour(
                "overcharge",
                f"spent {receipt.spent} is more than {self.bound} deliverable units at price "
                f"{self._gate.price} over the verified {self._gate.start} allow ({ceiling})",
            )
        if final and receipt.spent < self._max_spent and self._max_spent > self._gate.baseline:
            raise ServerMisbehaviour(
                "receipt_monotonic",
                f"the final receipt's spent {receipt.spent} is below the {self._max_spent} "
                "already verified in this request",
            )
        if receipt.spent < self._gate.baseline:
            self.under_billed = max(self.under_billed, self._gate.baseline - receipt.spent)
            log.warning(
                "receipt.books_behind",
                channel=self.channel_id,
                spent=receipt.spent,
                baseline=self._gate.baseline,
            )
        if final:
            self._final_checks(receipt)
        self._gate.credit_prepaid(receipt.spent, self.bound)
        self._max_spent = max(self._max_spent, receipt.spent)
        self._verified_in_request = True
        self._receipts += 1

    def _final_checks(self, receipt: SessionReceipt) -> None:
        allowed_units = self.bound + self._policy.unit_tolerance
        if receipt.units is not None and receipt.units > allowed_units:
            raise ServerMisbehaviour(
                "receipt_units",
                f"the final receipt bills {receipt.units} units, but only {self.bound} could "
                "have been delivered",
            )
        billed = receipt.spent - self._gate.baseline
        honest = self.bound * self._gate.price
        if billed < honest and receipt.units is not None and receipt.units < self.delivered:
            self.under_billed = max(
                self.under_billed, (self.delivered - receipt.units) * self._gate.price
            )
        self._final = receipt

    # -- demands -------------------------------------------------------------------------------

    def _need(self, need: NeedVoucher) -> Decision:
        if need.channel_id != self.channel_id:
            raise ServerMisbehaviour(
                "need_voucher_channel",
                f"need-voucher names channel {need.channel_id}, but this stream pays "
                f"{self.channel_id}",
            )
        required = need.required_cumulative
        if required <= need.accepted_cumulative:
            # The event contradicts itself: it asks for no more than it says it holds.
            # Once may be a glitch; a server that keeps doing it is stuck or hostile,
            # and answering it forever would run hot.
            self._contradictions += 1
            if self._contradictions > MAX_CONTRADICTIONS:
                raise ServerMisbehaviour(
                    "need_voucher_contradictory",
                    f"the server asked {self._contradictions} times in a row for cumulative "
                    f"{required}, no more than the {need.accepted_cumulative} it had accepted",
                )
        else:
            self._contradictions = 0
        if required <= self._signed:
            # Already authorised: a demand our pay-ahead overtook, a duplicate event or a
            # lost voucher. Resend what is signed; sign nothing new.
            return SignVoucher(self._resend(), resend=True)
        window = required - (self._gate.start + self.delivered * self._gate.price)
        self._steady = self._steady + 1 if window == self._window else 0
        self._window = window
        return self._sign_or_top_up(required, Purpose.DEMAND)

    def _problem(self, problem: ProblemSeen) -> Decision:
        gate = self._gate
        if problem.kind == "delta-too-small":
            delta = problem.min_delta or gate.min_delta or gate.price
            auth = gate.authorize_delta(
                delta,
                bound_units=self.bound,
                signed=self._signed,
                deposit=self._deposit,
                delivered_units=self.delivered,
            )
            return SignVoucher(auth)
        if problem.kind == "insufficient-balance":
            need = problem.required_top_up or gate.price
            return self._sign_or_top_up(self._signed + need, Purpose.PROBLEM)
        if problem.kind == "amount-exceeds-deposit":
            if self._signed <= self._deposit:
                # The chain shows the deposit covers the voucher: the server's view is
                # stale. Send the same voucher again; nothing new is signed or deposited.
                return SignVoucher(self._resend(), resend=True)
            return self._sign_or_top_up(self._signed, Purpose.PROBLEM, force_top_up=True)
        raise ValueError(f"no rule for problem {problem.kind!r}")

    def _sign_or_top_up(
        self, amount: int, purpose: Purpose, *, force_top_up: bool = False
    ) -> Decision:
        """Gate ``amount``; top up first when the verified deposit cannot cover it."""
        # The gate's bound and budgets first, with the deposit out of the way: a request
        # above the bound must be refused before anything (a top-up) is signed for it.
        ceiling_deposit = max(self._deposit, amount)
        auth = self._gate.authorize(
            amount,
            purpose=purpose,
            bound_units=self.bound,
            delivered_units=self.delivered,
            signed=self._signed,
            deposit=ceiling_deposit,
        )
        # The deposit we act on is the one we verified on chain, not the server's claim.
        if auth.amount > self._deposit or force_top_up:
            top_up = self._policy.top_up_amount(
                self._deposit, max(auth.amount, self._deposit + 1), self._initial_deposit
            )
            return TopUp(amount=top_up, then=auth)
        return SignVoucher(auth)

    def _resend(self) -> Authorization:
        return self._gate.authorize(
            self._signed,
            purpose=Purpose.DEMAND,
            bound_units=self.bound,
            delivered_units=self.delivered,
            signed=self._signed,
            deposit=self._deposit,
        )
