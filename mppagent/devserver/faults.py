"""Named behaviours the reference server can switch on: hostile faults and honest billing flavours.

Both kinds are switched on for a whole server (``DevServerConfig.faults`` /
``DevServerConfig.billing``; ``mppagent serve --fault NAME``) or -- when the server
runs in test mode -- per request, with the header ``X-Mpp-Fault: name[, name...]``
or ``X-Mpp-Billing: name[, name...]`` on the paid request. ``X-Mpp-Fault-After: N``
sets after how many delivered tokens the stream faults start (default 5). A
stream's faults and flavours also govern the voucher requests answered while it runs.

**Faults** make the server misbehave, to test that a client refuses to be cheated:

============================  ==========================================================
fault                         what the server does
============================  ==========================================================
overcharge                    receipts claim more ``spent`` than was delivered
ask-ahead                     ``requiredCumulative`` far beyond the tokens delivered
wrong-channel                 need-voucher events and the final receipt name another channel
wrong-challenge               receipts carry another ``challengeId``
price-change                  charges twice the advertised price per token
drop                          cuts the connection mid-stream (no final receipt)
slow-voucher                  accepts each voucher only after ``slow_voucher_delay`` seconds
reject-voucher                refuses every voucher with ``verification-failed``
duplicate-need-voucher        sends every need-voucher event twice
gone                          answers ``410 channel-not-found`` for a channel it knows
endless-need-voucher          keeps demanding vouchers without delivering tokens
stall                         stops sending bytes mid-stream and keeps the connection open
huge-event                    sends one SSE line of ``huge_event_bytes`` (8 MiB by default)
huge-top-up                   answers a paid request ``402 insufficient-balance`` with a huge
                              ``requiredTopUp``, before any token
huge-min-delta                answers every voucher raising the cumulative ``402
                              delta-too-small`` with a huge ``minVoucherDelta``
huge-deposit-demand           answers every voucher raising the cumulative ``402
                              amount-exceeds-deposit`` asking a huge top-up
lookahead-as-spent            books all the client paid ahead as spent before any token (the
                              stream's first receipt shows it), then bills tokens on top
voucher-402-loop              answers every voucher delivery ``402 challenge-not-found``
contradictory-need-voucher    keeps sending need-voucher events whose ``requiredCumulative``
                              is below ``acceptedCumulative``, without delivering
spent-regress                 receipts report a ``spent`` below the channel's previous spent,
                              under another ``challengeId``
no-receipt                    a paid response with no receipt at all (no header, no event)
============================  ==========================================================

**Billing flavours** are honest ways real servers bill that a client must pay without a
false alarm:

============================  ==========================================================
flavour                       what the server does
============================  ==========================================================
packed-tokens                 ``tokens_per_chunk`` tokens per SSE chunk, billed per token,
                              with accurate ``usage.completion_tokens`` on the last chunk
prompt-up-front               bills ``prompt_tokens x price`` before the first token,
                              asking a voucher for it if the balance does not cover it
receipt-event-only            no ``Payment-Receipt`` header on the stream: the final
                              ``payment-receipt`` event is the only receipt
late-voucher-receipt          answers a voucher only ``late_receipt_delay`` seconds after
                              accepting it, when the stream has already resumed
prepaid-carry-over            serves a new request from balance accepted earlier without
                              asking, and sends its first receipt only at the end
per-event                     one unit per SSE data event like ``mppx``: role-only, text,
                              finish and usage-only chunks (``[DONE]`` excluded)
books-lost                    forgets a channel's books before each request, as after a
                              restart without its database: ``accepted`` and ``spent``
                              restart from ``settled``
============================  ==========================================================
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, TypeVar

from mppagent.protocol import (
    JSON,
    AmountExceedsDepositProblem,
    ChallengeNotFoundProblem,
    DeltaTooSmallProblem,
    ProblemError,
)

__all__ = [
    "BILLING_HEADER",
    "FAULT_AFTER_HEADER",
    "FAULT_HEADER",
    "HUGE_AMOUNT",
    "REGRESSED_CHALLENGE_ID",
    "Billing",
    "Fault",
    "parse_billing",
    "parse_faults",
    "regress_receipt",
    "voucher_fault",
]

FAULT_HEADER = "x-mpp-fault"
FAULT_AFTER_HEADER = "x-mpp-fault-after"
BILLING_HEADER = "x-mpp-billing"

HUGE_AMOUNT: Final = 10**24
"""What the "huge" faults ask for: 10^18 whole tokens, far above any deposit yet a valid uint96."""
REGRESSED_CHALLENGE_ID: Final = "fault-regressed-challenge"


class Fault(StrEnum):
    """One injectable misbehaviour (see the module docstring for what each does)."""

    OVERCHARGE = "overcharge"
    ASK_AHEAD = "ask-ahead"
    WRONG_CHANNEL = "wrong-channel"
    WRONG_CHALLENGE = "wrong-challenge"
    PRICE_CHANGE = "price-change"
    DROP = "drop"
    SLOW_VOUCHER = "slow-voucher"
    REJECT_VOUCHER = "reject-voucher"
    DUPLICATE_NEED_VOUCHER = "duplicate-need-voucher"
    GONE = "gone"
    ENDLESS_NEED_VOUCHER = "endless-need-voucher"
    STALL = "stall"
    HUGE_EVENT = "huge-event"
    HUGE_TOP_UP = "huge-top-up"
    """Simulates a server that, before delivering anything, claims the channel needs a top-up
    far larger than any request could cost -- bait for a client that tops up (and then signs)
    whatever a ``402`` asks."""
    HUGE_MIN_DELTA = "huge-min-delta"
    """Simulates a server whose ``minVoucherDelta`` (sent in a ``delta-too-small`` problem)
    would make the next voucher cover far more than was delivered."""
    HUGE_DEPOSIT_DEMAND = "huge-deposit-demand"
    """Simulates a server that refuses vouchers with ``amount-exceeds-deposit`` and a huge
    ``requiredTopUp``, to lure the client into locking a large deposit."""
    LOOKAHEAD_AS_SPENT = "lookahead-as-spent"
    """Simulates a server that books everything the client paid ahead (``acceptedCumulative``)
    as ``spent`` when the stream starts, before any token -- its first receipt says so -- and
    then demands vouchers for every token on top: a client taking that receipt as its baseline
    would pay the look-ahead twice."""
    VOUCHER_402_LOOP = "voucher-402-loop"
    """Simulates a server that answers every voucher delivery (``HEAD``/bodiless ``POST``) with
    ``402 challenge-not-found`` and a fresh challenge -- bait for a client that re-sends at once,
    forever."""
    CONTRADICTORY_NEED_VOUCHER = "contradictory-need-voucher"
    """Simulates a confused server that keeps asking for a cumulative *below* the one it already
    accepted, every ``contradictory_interval`` seconds, and delivers nothing meanwhile."""
    SPENT_REGRESS = "spent-regress"
    """Simulates a server whose receipts go back in time: ``spent`` one price below the spent
    the channel had when the request arrived, under another ``challengeId`` (so a client that
    checks monotonicity per challenge misses it). Visible once the channel has spent something."""
    NO_RECEIPT = "no-receipt"
    """Simulates a server that serves a paid response with no receipt at all: no
    ``Payment-Receipt`` header and, on a stream, no ``payment-receipt`` event."""


class Billing(StrEnum):
    """One honest billing style of real servers (see the module docstring)."""

    PACKED_TOKENS = "packed-tokens"
    """Simulates providers that stream several tokens per SSE chunk and bill each token,
    reporting the exact count in ``usage.completion_tokens`` on the final chunk."""
    PROMPT_UP_FRONT = "prompt-up-front"
    """Simulates servers that bill input tokens: ``spent`` grows by the prompt's tokens times
    the price before the first token is sent (after a voucher if the balance is short)."""
    RECEIPT_EVENT_ONLY = "receipt-event-only"
    """Simulates servers built on the reference SDK, whose streaming responses carry no
    ``Payment-Receipt`` header: the final ``payment-receipt`` event is the only receipt."""
    LATE_VOUCHER_RECEIPT = "late-voucher-receipt"
    """Simulates a slow network or server: the voucher is accepted (and the stream resumes at
    once) but the ``200`` answering it, with its receipt, arrives ``late_receipt_delay`` later."""
    PREPAID_CARRY_OVER = "prepaid-carry-over"
    """Simulates servers that let balance the client paid ahead on earlier requests cover a new
    request without asking (no need-voucher while it lasts) and report only at the end: the
    request's first receipt arrives after the prepaid tokens streamed, and its
    ``acceptedCumulative`` includes the earlier balance."""
    PER_EVENT = "per-event"
    """Simulates the reference SDK (``mppx``) and its proxies: one unit per SSE ``data:`` event,
    role-only, text, finish and usage-only chunks alike (``[DONE]`` excluded)."""
    BOOKS_LOST = "books-lost"
    """Simulates a server restarted without its database just before each request: it
    re-adopts the channel from the chain, so ``acceptedCumulative`` and ``spent`` restart from
    ``settled`` -- it under-bills, and the client's earlier payments look unspent."""


_E = TypeVar("_E", Fault, Billing)


def _parse(value: str | None, kind: type[_E], noun: str) -> frozenset[_E]:
    if not value:
        return frozenset()
    out: set[_E] = set()
    for raw in value.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        try:
            out.add(kind(name))
        except ValueError:
            known = ", ".join(f.value for f in kind)
            raise ValueError(f"unknown {noun} {name!r}; known {noun}s: {known}") from None
    return frozenset(out)


def parse_faults(value: str | None) -> frozenset[Fault]:
    """Parse a comma-separated fault list; unknown names raise ``ValueError``."""
    return _parse(value, Fault, "fault")


def parse_billing(value: str | None) -> frozenset[Billing]:
    """Parse a comma-separated billing-flavour list; unknown names raise ``ValueError``."""
    return _parse(value, Billing, "billing flavour")


def regress_receipt(receipt: dict[str, JSON], spent_before: int, price: int) -> dict[str, JSON]:
    """``spent-regress``: a copy of ``receipt`` with ``spent`` one price below ``spent_before``."""
    return receipt | {
        "spent": str(max(spent_before - price, 0)),
        "challengeId": REGRESSED_CHALLENGE_ID,
    }


def voucher_fault(
    faults: frozenset[Fault], payload: dict[str, JSON], accepted: int | None, *, update: bool
) -> tuple[Fault, ProblemError] | None:
    """The fault that refuses a voucher credential, and the problem it answers with.

    ``payload`` is the credential's raw payload, ``accepted`` the channel's accepted
    cumulative (``None``: unknown channel), ``update`` whether the request carries no
    body (a voucher delivery rather than a paid request). Only vouchers that raise the
    cumulative are refused, so an idempotent re-send still succeeds.
    """
    if payload.get("action") != "voucher":
        return None
    channel_id = payload.get("channelId")
    extras: dict[str, JSON] = {"channelId": channel_id if isinstance(channel_id, str) else ""}
    if Fault.VOUCHER_402_LOOP in faults and update:
        problem: ProblemError = ChallengeNotFoundProblem(
            "challenge not found (fault injection)", extras=extras
        )
        return Fault.VOUCHER_402_LOOP, problem
    amount = payload.get("cumulativeAmount")
    raises = (
        isinstance(amount, str)
        and amount.isdigit()
        and (accepted is None or int(amount) > accepted)
    )
    if not raises:
        return None
    if Fault.HUGE_MIN_DELTA in faults:
        problem = DeltaTooSmallProblem(
            "the increase is below minVoucherDelta (fault injection)",
            extras=extras | {"minVoucherDelta": str(HUGE_AMOUNT)},
        )
        return Fault.HUGE_MIN_DELTA, problem
    if Fault.HUGE_DEPOSIT_DEMAND in faults:
        problem = AmountExceedsDepositProblem(
            "the voucher exceeds the deposit (fault injection)",
            extras=extras | {"requiredTopUp": str(HUGE_AMOUNT)},
        )
        return Fault.HUGE_DEPOSIT_DEMAND, problem
    return None
