"""The gate against the reference server: every hostile path refused, every honest style paid.

Each test runs real paid requests over HTTP against the reference server on the
devchain, with one of its faults or billing flavours switched on per request.
Whatever happens, the agent's highest signed voucher on every channel stays
within ``baseline + (meter bound + look-ahead) x price``, where the bound is
recomputed here from exactly the events the application received.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from mppagent import Agent, ChannelStatus, PaymentEvent, ServerMisbehaviour, SpendPolicy
from mppagent.devserver import RunningServer
from mppagent.errors import MppagentError, PaymentError
from mppagent.llm.meters import MeterSpec, default_spec, make_meter
from mppagent.transport.delivery import VoucherDeliveryFailed
from mppagent.transport.events import PAYMENT_OUTCOME, StreamInterrupted
from mppagent.transport.sse import SSEEvent
from tests.support import CHAT, PRICE, AgentFactory, ServerFactory, chat_body

LOOKAHEAD = 30
POLICY = SpendPolicy(lookahead_units=LOOKAHEAD)


@dataclass
class Outcome:
    events: list[SSEEvent] = field(default_factory=list)
    error: MppagentError | None = None
    payments: list[PaymentEvent] = field(default_factory=list)

    @property
    def final(self) -> PaymentEvent | None:
        finals = [p for p in self.payments if p.kind == "final_receipt"]
        return finals[-1] if finals else None


async def paid(
    agent: Agent,
    server: RunningServer,
    payments: list[PaymentEvent],
    *,
    fault: str | None = None,
    billing: str | None = None,
    tokens: int = 120,
    spec: MeterSpec | None = None,
) -> Outcome:
    """One paid stream; then the gate's invariant on every channel, recomputed here."""
    before = {r.channel_id: (r.spent, r.signed) for r in agent.channels.list()}
    body = json.dumps(chat_body(tokens)).encode()
    headers = {"content-type": "application/json", "x-mpp-fault-after": "10"}
    if fault:
        headers["x-mpp-fault"] = fault
    if billing:
        headers["x-mpp-billing"] = billing
    start = len(payments)
    outcome = Outcome()
    try:
        async for event in agent.stream("POST", server.url + CHAT, content=body, headers=headers):
            outcome.events.append(event)
    except MppagentError as exc:
        outcome.error = exc
    outcome.payments = payments[start:]
    meter = make_meter(spec or default_spec("llm_token"), "llm_token", body)
    for event in outcome.events:
        meter.observe(event)
    for record in agent.channels.list():
        spent_before, signed_before = before.get(record.channel_id, (0, 0))
        allowed = max(signed_before, spent_before + (meter.bound + LOOKAHEAD) * PRICE)
        assert record.signed <= allowed, (record.channel_id, record.signed, allowed)
        assert record.lease_owner is None
    return outcome


@pytest.fixture
async def agent(make_agent: AgentFactory) -> tuple[Agent, list[PaymentEvent]]:
    payments: list[PaymentEvent] = []
    return await make_agent(policy=POLICY, events=payments), payments


@pytest.fixture
async def small(start_server: ServerFactory) -> RunningServer:
    """A server asking small windows, so a 120-token stream needs many vouchers."""
    return await start_server(lookahead_tokens=10)


# -- hostile: refused, nothing signed beyond the bound --------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected", "checks"),
    [
        ("huge-top-up", ServerMisbehaviour, {"ask_ahead"}),
        ("contradictory-need-voucher", ServerMisbehaviour, {"need_voucher_contradictory"}),
        ("huge-min-delta", PaymentError, set()),
        ("huge-deposit-demand", PaymentError, set()),
        ("voucher-402-loop", VoucherDeliveryFailed, set()),
        ("no-receipt", StreamInterrupted, set()),
    ],
)
async def test_hostile_servers_get_a_typed_error_and_no_more_than_the_bound(
    small: RunningServer,
    agent: tuple[Agent, list[PaymentEvent]],
    fault: str,
    expected: type[Exception],
    checks: set[str],
) -> None:
    paying, payments = agent
    outcome = await paid(paying, small, payments, fault=fault)
    assert isinstance(outcome.error, expected), repr(outcome.error)
    if checks:
        assert isinstance(outcome.error, ServerMisbehaviour)
        assert outcome.error.check in checks
        (record,) = paying.channels.list()
        assert record.status == ChannelStatus.SUSPECT


async def test_a_402_loop_on_voucher_delivery_stays_bounded(
    small: RunningServer, agent: tuple[Agent, list[PaymentEvent]]
) -> None:
    paying, payments = agent
    outcome = await paid(paying, small, payments, fault="voucher-402-loop")
    assert isinstance(outcome.error, VoucherDeliveryFailed)
    assert small.app.state.devserver.counters["voucher-402-loop"] <= 5


async def test_a_paid_response_without_any_receipt_is_reported_not_verified(
    small: RunningServer, agent: tuple[Agent, list[PaymentEvent]]
) -> None:
    paying, payments = agent
    response = await paying.request(
        "POST",
        small.url + CHAT,
        json=chat_body(5, stream=False),
        headers={"x-mpp-fault": "no-receipt"},
    )
    assert response.status_code == 200
    outcome = response.extensions[PAYMENT_OUTCOME]
    assert outcome.verified is False
    assert "payment-receipt" not in response.headers
    assert [p.kind for p in payments].count("unverified") == 1
    (record,) = paying.channels.list()
    assert record.unverified  # no pay-ahead on it until a receipt verifies it
    again = await paid(paying, small, payments)
    assert again.error is None
    assert not paying.channels.get(record.channel_id).unverified


async def test_books_as_spent_lookahead_and_regressing_spent_are_caught(
    small: RunningServer, agent: tuple[Agent, list[PaymentEvent]]
) -> None:
    paying, payments = agent
    assert (await paid(paying, small, payments)).error is None  # spend something first
    regress = await paid(paying, small, payments, fault="spent-regress")
    assert isinstance(regress.error, ServerMisbehaviour)
    assert regress.error.check == "receipt_challenge"


async def test_lookahead_booked_as_spent_never_raises_what_is_signed(
    small: RunningServer, make_agent: AgentFactory
) -> None:
    payments: list[PaymentEvent] = []
    paying = await make_agent(policy=POLICY, events=payments)
    assert (await paid(paying, small, payments, tokens=200)).error is None
    outcome = await paid(paying, small, payments, fault="lookahead-as-spent", tokens=200)
    if outcome.error is not None:  # refusing is right; paying past the bound is not
        assert isinstance(outcome.error, ServerMisbehaviour)


# -- honest: paid in full, no alarm ------------------------------------------------------------


@pytest.mark.parametrize(
    "billing",
    [
        "packed-tokens",
        "receipt-event-only",
        "late-voucher-receipt",
        "per-event",
    ],
)
async def test_honest_billing_styles_are_paid_without_alarm(
    small: RunningServer, agent: tuple[Agent, list[PaymentEvent]], billing: str
) -> None:
    paying, payments = agent
    outcome = await paid(paying, small, payments, billing=billing, tokens=150)
    assert outcome.error is None, repr(outcome.error)
    final = outcome.final
    assert final is not None
    assert final.detail["billed"] == final.amount  # fresh channel: billed = spent
    assert final.detail["billed"] <= final.detail["bound"] * PRICE
    (record,) = paying.channels.list()
    assert record.status == ChannelStatus.OPEN
    assert record.spent == final.amount
    assert sum(1 for p in outcome.payments if p.kind == "voucher") >= 3


async def test_prompt_billed_up_front_is_paid_when_the_profile_says_so(
    small: RunningServer, make_agent: AgentFactory
) -> None:
    spec = MeterSpec(kind="token", event_floor=True, bills_prompt=True)
    payments: list[PaymentEvent] = []
    paying = await make_agent(policy=POLICY, events=payments, meter=spec)
    outcome = await paid(paying, small, payments, billing="prompt-up-front", spec=spec)
    assert outcome.error is None, repr(outcome.error)
    final = outcome.final
    assert final is not None
    assert final.detail["units"] is None or final.amount >= 120 * PRICE


@pytest.mark.parametrize("billing", ["prepaid-carry-over", "books-lost"])
async def test_state_carried_across_requests_is_fine(
    small: RunningServer, agent: tuple[Agent, list[PaymentEvent]], billing: str
) -> None:
    paying, payments = agent
    for _ in range(3):
        outcome = await paid(paying, small, payments, billing=billing, tokens=60)
        assert outcome.error is None, repr(outcome.error)
    (record,) = paying.channels.list()
    assert record.status == ChannelStatus.OPEN
    if billing == "books-lost":
        under = [p.detail["under_billed"] for p in payments if p.kind == "final_receipt"]
        assert under[-1] > 0  # the server forgot what it had billed: the payer's gain
