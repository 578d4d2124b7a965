"""The paid-exchange state machine, driven by hand (no I/O)."""

from __future__ import annotations

import pytest

from mppagent.errors import PolicyViolation, ServerMisbehaviour
from mppagent.session.engine import PaidExchange, SignVoucher, TopUp
from mppagent.session.policy import SpendPolicy
from mppagent.tempo.schemas import NeedVoucher
from tests.support import RECEIPT_CHANNEL, receipt

CHANNEL = RECEIPT_CHANNEL
PRICE = 25


def exchange(policy: SpendPolicy | None = None, **over: int) -> PaidExchange:
    values = {
        "deposit": 100_000,
        "signed": 0,
        "accepted": 0,
        "spent": 0,
        "initial_deposit": 100_000,
    }
    values.update(over)
    return PaidExchange(
        policy=policy or SpendPolicy(lookahead_units=100),
        channel_id=CHANNEL,
        challenge_id="ch-1",
        price=PRICE,
        **values,
    )


def need(required: int, channel: str = CHANNEL, accepted: int = 0) -> NeedVoucher:
    return NeedVoucher.model_validate(
        {
            "channelId": channel,
            "requiredCumulative": str(required),
            "acceptedCumulative": str(accepted),
            "deposit": "100000",
        }
    )


def test_voucher_demand_within_lookahead_is_signed_exactly() -> None:
    ex = exchange()
    ex.check_receipt(receipt(0, 0))
    assert ex.on_need_voucher(need(100 * PRICE)) == SignVoucher(100 * PRICE)
    ex.voucher_signed(100 * PRICE)
    ex.delivered_units(100)
    assert ex.on_need_voucher(need(200 * PRICE)) == SignVoucher(200 * PRICE)


def test_asking_beyond_delivered_plus_lookahead_is_misbehaviour() -> None:
    ex = exchange()
    ex.check_receipt(receipt(0, 0))
    ex.delivered_units(10)
    with pytest.raises(ServerMisbehaviour) as info:
        ex.on_need_voucher(need((10 + 101) * PRICE))
    assert info.value.check == "ask_ahead"


def test_duplicate_demand_resends_without_signing() -> None:
    ex = exchange(signed=2500, accepted=2500)
    ex.check_receipt(receipt(0, 2500))
    assert ex.on_need_voucher(need(2500)) == SignVoucher(2500, resend=True)
    assert ex.vouchers_signed == 0


def test_demand_for_another_channel() -> None:
    ex = exchange()
    with pytest.raises(ServerMisbehaviour, match="need_voucher_channel"):
        ex.on_need_voucher(need(100, channel="0x" + "cd" * 32))


def test_demand_above_deposit_asks_for_top_up_within_cap() -> None:
    ex = exchange(
        policy=SpendPolicy(lookahead_units=100, max_deposit=300_000),
        deposit=2_000,
        initial_deposit=2_000,
    )
    ex.check_receipt(receipt(0, 0))
    decision = ex.on_need_voucher(need(2_500))
    assert decision == TopUp(amount=2_000, then_sign=2_500)


def test_top_up_beyond_max_deposit_is_refused() -> None:
    ex = exchange(
        policy=SpendPolicy(lookahead_units=100, max_deposit=2_000),
        deposit=2_000,
        initial_deposit=2_000,
    )
    ex.check_receipt(receipt(0, 0))
    with pytest.raises(PolicyViolation) as info:
        ex.on_need_voucher(need(2_500))
    assert info.value.rule == "max_deposit"


def test_request_budget() -> None:
    ex = exchange(policy=SpendPolicy(lookahead_units=100, budget_per_request=1_000))
    ex.check_receipt(receipt(0, 0))
    with pytest.raises(PolicyViolation) as info:
        ex.on_need_voucher(need(1_025))
    assert info.value.rule == "budget_per_request"


@pytest.mark.parametrize(
    ("bad", "check"),
    [
        ({"challengeId": "other"}, "receipt_challenge"),
        ({"channelId": "0x" + "cd" * 32, "reference": "0x" + "cd" * 32}, "receipt_channel"),
        ({"status": "failed"}, "receipt_kind"),
        ({"intent": "charge"}, "receipt_kind"),
    ],
)
def test_receipt_identity_checks(bad: dict[str, str], check: str) -> None:
    ex = exchange(signed=100)
    with pytest.raises(ServerMisbehaviour) as info:
        ex.check_receipt(receipt(0, 100, **bad))
    assert info.value.check == check


def test_receipt_invariants() -> None:
    ex = exchange(signed=1000, accepted=500, spent=400)
    with pytest.raises(ServerMisbehaviour, match="receipt_spent"):
        ex.check_receipt(receipt(600, 500))
    with pytest.raises(ServerMisbehaviour, match="receipt_accepted"):
        ex.check_receipt(receipt(400, 1001))
    with pytest.raises(ServerMisbehaviour, match="receipt_monotonic"):
        ex.check_receipt(receipt(300, 600))  # spent down while accepted went up
    with pytest.raises(ServerMisbehaviour, match="receipt_monotonic"):
        ex.check_receipt(receipt(450, 499))  # accepted down while spent went up
    ex.check_receipt(receipt(400, 500))
    assert (ex.spent, ex.accepted) == (400, 500)


def test_an_earlier_receipt_read_late_is_checked_but_moves_nothing() -> None:
    ex = exchange(signed=1000, accepted=500, spent=400)
    ex.check_receipt(receipt(300, 450))  # e.g. a voucher's answer overtaken by the stream
    assert (ex.spent, ex.accepted) == (400, 500)
    with pytest.raises(ServerMisbehaviour, match="receipt_spent"):
        ex.check_receipt(receipt(460, 450))  # inconsistent in itself: still refused


def test_final_receipt_bills_exactly_what_was_delivered() -> None:
    ex = exchange(signed=5000)
    ex.check_receipt(receipt(1000, 5000))  # the stream's first receipt: spent at start
    ex.delivered_units(100)
    ex.check_final_receipt(receipt(1000 + 100 * PRICE, 5000, units=100))
    assert ex.final is not None


def test_final_receipt_overcharge_and_unit_mismatch() -> None:
    ex = exchange(signed=5000)
    ex.check_receipt(receipt(0, 5000))
    ex.delivered_units(100)
    with pytest.raises(ServerMisbehaviour, match="overcharge"):
        ex.check_final_receipt(receipt(110 * PRICE, 5000, units=110))
    ex = exchange(signed=5000)
    ex.check_receipt(receipt(0, 5000))
    ex.delivered_units(100)
    with pytest.raises(ServerMisbehaviour, match="receipt_units"):
        ex.check_final_receipt(receipt(100 * PRICE, 5000, units=50))


def test_unit_tolerance_allows_metering_slack() -> None:
    ex = exchange(policy=SpendPolicy(lookahead_units=100, unit_tolerance=5), signed=5000)
    ex.check_receipt(receipt(0, 5000))
    ex.delivered_units(100)
    ex.check_final_receipt(receipt(105 * PRICE, 5000, units=105))


def test_insufficient_balance_answer() -> None:
    ex = exchange(signed=1000, accepted=1000, spent=1000)
    assert ex.required_for_balance(1250) == SignVoucher(2250)


def test_proactive_voucher_only_in_steady_state_and_within_the_ceiling() -> None:
    ex = exchange(policy=SpendPolicy(lookahead_units=150))
    ex.check_receipt(receipt(0, 0))
    assert ex.on_need_voucher(need(100 * PRICE)) == SignVoucher(100 * PRICE)
    ex.voucher_signed(100 * PRICE)
    ex.delivered_units(60)
    assert ex.proactive_voucher() is None  # one demand seen: its size may be the reply's end
    ex.delivered_units(40)
    assert ex.on_need_voucher(need(200 * PRICE, accepted=100 * PRICE)) == SignVoucher(200 * PRICE)
    ex.voucher_signed(200 * PRICE)  # the same 100-token window twice: steady
    assert ex.proactive_voucher() is None  # a full window (100) is still prepaid
    ex.delivered_units(20)  # 120 delivered, 80 prepaid
    # Two windows ahead would be 320, but the policy's look-ahead caps it at 120 + 150.
    assert ex.proactive_voucher() == SignVoucher(270 * PRICE)
    ex.voucher_signed(270 * PRICE)
    ex.delivered_units(5)  # 125 delivered, 145 prepaid: nothing to do
    assert ex.proactive_voucher() is None


def test_proactive_voucher_never_needs_a_top_up_or_breaks_a_budget() -> None:
    ex = exchange(
        policy=SpendPolicy(lookahead_units=200, budget_per_request=250 * PRICE), deposit=1_000_000
    )
    ex.check_receipt(receipt(0, 0))
    for required in (100, 200):
        ex.on_need_voucher(need(required * PRICE, accepted=(required - 100) * PRICE))
        ex.voucher_signed(required * PRICE)
    ex.delivered_units(190)
    assert ex.proactive_voucher() is None  # 300 would break the per-request budget of 250
    small = exchange(policy=SpendPolicy(lookahead_units=200), deposit=250 * PRICE)
    small.check_receipt(receipt(0, 0))
    for required in (100, 200):
        small.on_need_voucher(need(required * PRICE, accepted=(required - 100) * PRICE))
        small.voucher_signed(required * PRICE)
    small.delivered_units(190)
    assert small.proactive_voucher() is None  # 300 is above the deposit: wait for a demand
