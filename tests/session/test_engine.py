"""The paid-exchange engine, driven by hand through its one entry point (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mppagent.errors import PolicyViolation, ServerMisbehaviour
from mppagent.llm.meters import MeterSpec, make_meter
from mppagent.session.engine import (
    DeliveredEvent,
    NeedVoucherSeen,
    PaidExchange,
    ProblemSeen,
    ReceiptSeen,
    SignVoucher,
    TopUp,
    VoucherSigned,
)
from mppagent.session.gate import PaymentGate
from mppagent.session.policy import SpendPolicy
from mppagent.tempo.schemas import NeedVoucher
from mppagent.transport.sse import SSEEvent
from tests.support import RECEIPT_CHANNEL, receipt

CHANNEL = RECEIPT_CHANNEL
PRICE = 25
LOOKAHEAD = 10


def exchange(
    *,
    baseline: int = 0,
    signed: int = 0,
    deposit: int = 100_000,
    policy: SpendPolicy | None = None,
    unverified: bool = False,
) -> PaidExchange:
    policy = policy or SpendPolicy(lookahead_units=LOOKAHEAD)
    gate = PaymentGate(
        policy, channel_id=CHANNEL, price=PRICE, baseline=baseline, signed_at_start=signed
    )
    return PaidExchange(
        policy=policy,
        gate=gate,
        meter=make_meter(MeterSpec(kind="event", request_units=0), None, b""),
        challenge_id="ch-1",
        deposit=deposit,
        signed=signed,
        initial_deposit=deposit,
        unverified=unverified,
    )


def deliver(ex: PaidExchange, units: int) -> None:
    for _ in range(units):
        ex.handle(DeliveredEvent(SSEEvent("", '{"x":1}', None, None, b'data: {"x":1}\n\n')))


def need(required: int, accepted: int = 0) -> NeedVoucherSeen:
    return NeedVoucherSeen(
        NeedVoucher.model_validate(
            {
                "channelId": CHANNEL,
                "requiredCumulative": str(required),
                "acceptedCumulative": str(accepted),
                "deposit": "100000",
            }
        )
    )


def sign(ex: PaidExchange, decision: object) -> int:
    assert isinstance(decision, SignVoucher)
    ex.handle(VoucherSigned(decision.amount))
    return decision.amount


# -- hostile: nothing signed beyond the bound ------------------------------------------------


def test_demands_within_the_bound_are_signed_exactly_and_beyond_it_refused() -> None:
    ex = exchange()
    assert sign(ex, ex.handle(need(LOOKAHEAD * PRICE))) == LOOKAHEAD * PRICE
    deliver(ex, 4)
    with pytest.raises(ServerMisbehaviour) as info:
        ex.handle(need((4 + LOOKAHEAD) * PRICE + 1))
    assert info.value.check == "ask_ahead"


def test_a_402_asking_a_huge_top_up_before_any_token_signs_nothing() -> None:
    ex = exchange()
    with pytest.raises(ServerMisbehaviour):
        ex.handle(ProblemSeen("insufficient-balance", required_top_up=10**9))
    assert ex.signed == 0


def test_a_huge_min_voucher_delta_is_refused() -> None:
    ex = exchange()
    with pytest.raises(PolicyViolation) as info:
        ex.handle(ProblemSeen("delta-too-small", min_delta=10**9))
    assert info.value.rule == "min_voucher_delta"


def test_amount_exceeds_deposit_against_a_covering_deposit_resends_without_top_up() -> None:
    ex = exchange(signed=100, baseline=100)
    decision = ex.handle(ProblemSeen("amount-exceeds-deposit"))
    assert isinstance(decision, SignVoucher)
    assert decision.resend
    assert decision.amount == 100


def test_a_first_receipt_booking_the_lookahead_as_spent_does_not_raise_the_ceiling() -> None:
    ex = exchange()
    sign(ex, ex.handle(need(LOOKAHEAD * PRICE)))
    ex.handle(ReceiptSeen(receipt(LOOKAHEAD * PRICE, LOOKAHEAD * PRICE)))
    deliver(ex, 1)
    # The old engine took spent from this receipt as its start: 2 x look-ahead allowed.
    with pytest.raises(ServerMisbehaviour):
        ex.handle(need((1 + 2 * LOOKAHEAD) * PRICE))


def test_contradictory_demands_end_in_a_typed_error_after_a_few() -> None:
    ex = exchange()
    sign(ex, ex.handle(need(5 * PRICE)))
    for _ in range(3):
        decision = ex.handle(need(2 * PRICE, accepted=5 * PRICE))
        assert isinstance(decision, SignVoucher)
        assert decision.resend
    with pytest.raises(ServerMisbehaviour) as info:
        ex.handle(need(2 * PRICE, accepted=5 * PRICE))
    assert info.value.check == "need_voucher_contradictory"


def test_top_up_is_decided_only_for_amounts_the_gate_allows() -> None:
    ex = exchange(deposit=5 * PRICE)
    decision = ex.handle(need(8 * PRICE))
    assert isinstance(decision, TopUp)
    assert decision.then_sign == 8 * PRICE
    with pytest.raises(ServerMisbehaviour):
        exchange(deposit=5 * PRICE).handle(need(11 * PRICE))


# -- honest servers: paid, no alarm -------------------------------------------------------------


def test_prepaid_balance_from_earlier_requests_is_fine() -> None:
    ex = exchange(baseline=1_000, signed=1_000 + 8 * PRICE)
    deliver(ex, 8)  # streamed on prepaid balance, no receipt yet
    ex.handle(ReceiptSeen(receipt(1_000 + 8 * PRICE, 1_000 + 8 * PRICE)))
    sign(ex, ex.handle(need(1_000 + 12 * PRICE, 1_000 + 8 * PRICE)))
    deliver(ex, 4)
    ex.handle(ReceiptSeen(receipt(1_000 + 12 * PRICE, 1_000 + 12 * PRICE, units=12), final=True))
    assert ex.billed == 12 * PRICE


def test_prepaid_balance_consumed_by_a_killed_request_is_built_on_not_refused() -> None:
    # A process killed mid-stream signed ahead to 1_000 + 20 units; its last receipt
    # verified 1_000. The server streamed the prepaid units to the dead process.
    ex = exchange(baseline=1_000, signed=1_000 + 20 * PRICE)
    ex.handle(ReceiptSeen(receipt(1_000 + 20 * PRICE, 1_000 + 20 * PRICE)))
    deliver(ex, 4)
    required = 1_000 + (20 + 4 + LOOKAHEAD) * PRICE
    assert sign(ex, ex.handle(need(required, 1_000 + 20 * PRICE))) == required
    # ... but the new allowance is still only what was delivered plus the look-ahead.
    with pytest.raises(ServerMisbehaviour):
        ex.handle(need(required + PRICE, required))


def test_prepaid_credit_counts_only_what_the_request_cannot_have_delivered() -> None:
    ex = exchange(baseline=1_000, signed=1_000 + 20 * PRICE)
    deliver(ex, 5)
    # spent covers the 5 units this request delivered: only 15 prepaid units were before it.
    ex.handle(ReceiptSeen(receipt(1_000 + 20 * PRICE, 1_000 + 20 * PRICE)))
    with pytest.raises(ServerMisbehaviour):
        ex.handle(need(1_000 + (20 + 5 + LOOKAHEAD) * PRICE + 1, 1_000 + 20 * PRICE))
    assert ex.signed == 1_000 + 20 * PRICE


def test_a_late_voucher_receipt_after_the_final_is_fine() -> None:
    ex = exchange()
    sign(ex, ex.handle(need(4 * PRICE)))
    deliver(ex, 4)
    ex.handle(ReceiptSeen(receipt(4 * PRICE, 4 * PRICE, units=4), final=True))
    ex.handle(ReceiptSeen(receipt(0, 4 * PRICE), "ch-1"))  # produced earlier, read late
    assert ex.billed == 4 * PRICE


def test_books_lost_on_restart_is_under_billing_not_an_alarm() -> None:
    ex = exchange(baseline=2_000, signed=2_000)
    sign(ex, ex.handle(need(2_000 + 3 * PRICE)))
    deliver(ex, 3)
    ex.handle(ReceiptSeen(receipt(500 + 3 * PRICE, 2_000 + 3 * PRICE, units=3), final=True))
    assert ex.under_billed == 2_000 - (500 + 3 * PRICE)
    assert ex.final is not None


def test_the_final_spent_below_one_verified_in_the_request_is_a_violation() -> None:
    ex = exchange()
    sign(ex, ex.handle(need(6 * PRICE)))
    deliver(ex, 6)
    ex.handle(ReceiptSeen(receipt(6 * PRICE, 6 * PRICE)))
    with pytest.raises(ServerMisbehaviour) as info:
        ex.handle(ReceiptSeen(receipt(2 * PRICE, 6 * PRICE, challengeId="ch-1"), final=True))
    assert info.value.check == "receipt_monotonic"


def test_no_pay_ahead_on_an_unverified_channel_until_a_receipt_verifies_it() -> None:
    ex = exchange(unverified=True)
    for step in (1, 2, 3):
        sign(ex, ex.handle(need((step * 3 + LOOKAHEAD // 2) * PRICE)))
        deliver(ex, 3)
    assert ex.pay_ahead() is None
    ex.handle(ReceiptSeen(receipt(9 * PRICE, 9 * PRICE)))
    assert ex.pay_ahead() is not None


# -- property: random servers never get a signature above the bound -------------------------------


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 30 * PRICE)), min_size=1, max_size=30
    ),
    baseline=st.integers(0, 10_000),
)
def test_random_demands_never_sign_above_the_gate(
    steps: list[tuple[int, int]], baseline: int
) -> None:
    ex = exchange(baseline=baseline, signed=baseline, deposit=10**9)
    for units, ask in steps:
        deliver(ex, units)
        ceiling = baseline + (ex.bound + LOOKAHEAD) * PRICE
        refused: ServerMisbehaviour | None = None
        try:
            decision = ex.handle(need(baseline + ask))
        except ServerMisbehaviour as exc:
            refused = exc
        if refused is not None:
            # Refused: above the bound, or a demand repeating what it already holds.
            assert baseline + ask > ceiling or refused.check == "need_voucher_contradictory"
            return
        assert isinstance(decision, SignVoucher)
        sign(ex, decision)
        assert ex.signed <= max(ceiling, baseline)


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.integers(1, 8), min_size=1, max_size=40), window=st.integers(1, LOOKAHEAD)
)
def test_an_honest_random_server_is_always_paid_in_full(chunks: list[int], window: int) -> None:
    ex = exchange(deposit=10**9)
    accepted = 0
    delivered = 0
    for units in chunks:
        # The honest server asks for the next window whenever its balance runs out.
        if delivered * PRICE >= accepted:
            accepted = sign(ex, ex.handle(need((delivered + window) * PRICE, accepted)))
        step = min(units, accepted // PRICE - delivered)
        deliver(ex, step)
        delivered += step
    ex.handle(ReceiptSeen(receipt(delivered * PRICE, accepted, units=delivered), final=True))
    assert ex.billed == delivered * PRICE
