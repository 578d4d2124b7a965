"""The payment gate and its preflight, driven by hand (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mppagent.errors import PolicyViolation, ServerMisbehaviour
from mppagent.protocol import Challenge
from mppagent.session.gate import Authorization, PaymentGate, Purpose, preflight
from mppagent.session.policy import SpendPolicy

CHANNEL = "0x" + "ab" * 32
PRICE = 25


def gate(policy: SpendPolicy | None = None, *, baseline: int = 0, signed: int = 0) -> PaymentGate:
    return PaymentGate(
        policy or SpendPolicy(lookahead_units=10),
        channel_id=CHANNEL,
        price=PRICE,
        baseline=baseline,
        signed_at_start=signed,
    )


def test_ceiling_is_baseline_plus_bound_and_lookahead_times_price() -> None:
    g = gate(baseline=1_000)
    assert g.ceiling(0) == 1_000 + 10 * PRICE
    assert g.ceiling(4) == 1_000 + 14 * PRICE
    ok = g.authorize(
        1_000 + 14 * PRICE, purpose=Purpose.DEMAND, bound_units=4, signed=0, deposit=10**6
    )
    assert ok.amount == 1_000 + 14 * PRICE
    assert ok.valid


@pytest.mark.parametrize("purpose", [Purpose.DEMAND, Purpose.PROBLEM])
def test_server_asking_above_the_bound_is_misbehaviour(purpose: Purpose) -> None:
    with pytest.raises(ServerMisbehaviour) as info:
        gate().authorize(11 * PRICE, purpose=purpose, bound_units=0, signed=0, deposit=10**6)
    assert info.value.check == "ask_ahead"


def test_our_own_paths_above_the_bound_are_policy_refusals() -> None:
    with pytest.raises(PolicyViolation) as info:
        gate().authorize(
            11 * PRICE, purpose=Purpose.PAY_AHEAD, bound_units=0, signed=0, deposit=10**6
        )
    assert info.value.rule == "lookahead_units"


def test_amounts_already_signed_always_pass_as_resends() -> None:
    auth = gate().authorize(
        10,
        purpose=Purpose.DEMAND,
        bound_units=0,
        signed=5_000,
        deposit=1,
    )
    assert auth.amount == 5_000


def test_budget_counts_what_this_request_newly_authorises() -> None:
    g = gate(SpendPolicy(lookahead_units=100, budget_per_request=5 * PRICE), signed=1_000)
    g.authorize(
        1_000 + 5 * PRICE, purpose=Purpose.DEMAND, bound_units=5, signed=1_000, deposit=10**6
    )
    with pytest.raises(PolicyViolation) as info:
        g.authorize(
            1_000 + 6 * PRICE, purpose=Purpose.DEMAND, bound_units=6, signed=1_000, deposit=10**6
        )
    assert info.value.rule == "budget_per_request"


def test_deposit_and_uint96_are_enforced() -> None:
    g = gate(SpendPolicy(lookahead_units=100))
    with pytest.raises(PolicyViolation) as info:
        g.authorize(
            50 * PRICE, purpose=Purpose.DEMAND, bound_units=50, signed=0, deposit=49 * PRICE
        )
    assert info.value.rule == "deposit"
    with pytest.raises(PolicyViolation) as info:
        g.authorize(
            1 << 96,
            purpose=Purpose.DEMAND,
            bound_units=1 << 96,
            signed=0,
            deposit=1 << 97,
        )
    assert info.value.rule == "amount"


def test_a_huge_min_voucher_delta_is_refused_naming_it() -> None:
    with pytest.raises(PolicyViolation) as info:
        gate().authorize_delta(10**9, bound_units=0, signed=0, deposit=10**12)
    assert info.value.rule == "min_voucher_delta"
    ok = gate().authorize_delta(5 * PRICE, bound_units=0, signed=0, deposit=10**6)
    assert ok.amount == 5 * PRICE


def test_close_is_bounded_by_what_was_signed_and_settled() -> None:
    assert PaymentGate.authorize_close(CHANNEL, 100, signed=200, settled=50).amount == 100
    with pytest.raises(PolicyViolation):
        PaymentGate.authorize_close(CHANNEL, 300, signed=200, settled=50)
    with pytest.raises(PolicyViolation):
        PaymentGate.authorize_close(CHANNEL, 10, signed=200, settled=50)


def test_hand_made_authorizations_are_not_valid() -> None:
    assert not Authorization(CHANNEL, 10, Purpose.DEMAND).valid


# -- preflight: refused before any approval, deposit or open --------------------------------


def offer(min_delta: int | None = None):  # type: ignore[no-untyped-def]
    details: dict[str, object] = {"escrowContract": "0x" + "33" * 20, "chainId": 31337}
    if min_delta is not None:
        details["minVoucherDelta"] = str(min_delta)
    challenge = Challenge.issue(
        realm="test",
        method="tempo",
        intent="session",
        request={
            "amount": str(PRICE),
            "unitType": "llm_token",
            "currency": "0x" + "22" * 20,
            "recipient": "0x" + "11" * 20,
            "methodDetails": details,
        },
        expires=datetime.now(UTC) + timedelta(minutes=5),
        secret=b"k" * 32,
    )
    return SpendPolicy().check_offer(challenge, datetime.now(UTC))


@pytest.mark.parametrize(
    ("policy", "min_delta", "rule"),
    [
        (SpendPolicy(budget_per_request=PRICE - 1), None, "budget_per_request"),
        (SpendPolicy(budget_per_request=10 * PRICE), 11 * PRICE, "budget_per_request"),
        (SpendPolicy(lookahead_units=10), 11 * PRICE, "min_voucher_delta"),
    ],
)
def test_preflight_refuses_what_can_never_be_paid(
    policy: SpendPolicy, min_delta: int | None, rule: str
) -> None:
    with pytest.raises(PolicyViolation) as info:
        preflight(policy, offer(min_delta), spent_last_day=None)
    assert info.value.rule == rule


def test_preflight_refuses_an_exhausted_daily_budget_and_passes_a_payable_request() -> None:
    with pytest.raises(PolicyViolation) as info:
        preflight(SpendPolicy(budget_per_day=1_000), offer(), spent_last_day=990)
    assert info.value.rule == "budget_per_day"
    preflight(SpendPolicy(budget_per_day=1_000), offer(5 * PRICE), spent_last_day=0)


def test_authorizations_carry_what_the_meter_saw_delivered() -> None:
    g = gate(baseline=1_000)
    auth = g.authorize(
        1_000 + 8 * PRICE,
        purpose=Purpose.DEMAND,
        bound_units=8,
        signed=0,
        deposit=10**6,
        delivered_units=6,
    )
    assert auth.acknowledged == 1_000 + 6 * PRICE
