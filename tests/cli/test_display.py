"""The terminal view: every payment event kept, in order with the answer; the request's cost."""

from __future__ import annotations

import io

import pytest

from mppagent.cli.display import RequestCost, StreamDisplay
from mppagent.transport.paying import PaymentEvent

CHANNEL = "0x" + "ab" * 32


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _events(n: int) -> list[PaymentEvent]:
    return [PaymentEvent("voucher", CHANNEL, 1000 * (i + 1)) for i in range(n)]


def test_terminal_view_keeps_every_event_in_order_with_the_answer() -> None:
    out, err = _Terminal(), io.StringIO()
    display = StreamDisplay(out=out, err=err)
    with display:
        display.payment(PaymentEvent("challenge", "", 25))
        display.payment(PaymentEvent("open", CHANNEL, 1_000_000))
        display.text("first part ", None)
        for event in _events(12):
            display.payment(event)
        display.text("second part", None)
        display.payment(PaymentEvent("final_receipt", CHANNEL, 300, detail={"units": 12}))
    kinds = [kind for kind, _ in display.segments]
    assert kinds == ["event", "event", "answer", *["event"] * 12, "answer", "event"]
    assert len(display.events) == 15  # none dropped (the view once kept only 8)
    screen = out.getvalue()
    first = screen.rindex("first part")
    twelfth = screen.rindex("cumulative 0.012000 tUSD")
    second = screen.rindex("second part")
    assert first < twelfth < second  # in the order they happened
    assert screen.rindex("cumulative 0.001000 tUSD") < twelfth


@pytest.mark.parametrize("err", [io.StringIO, _Terminal], ids=["piped", "stderr-terminal"])
def test_plain_output_keeps_events_on_stderr_and_the_answer_on_stdout(
    err: type[io.StringIO],
) -> None:
    """Piped stdout: the answer alone there; events on stderr (live status if a terminal)."""
    out, errors = io.StringIO(), err()
    display = StreamDisplay(out=out, err=errors)
    with display:
        display.payment(PaymentEvent("challenge", "", 25))
        display.text("answer", None)
        for event in _events(10):
            display.payment(event)
    assert out.getvalue() == "answer\n"
    assert errors.getvalue().count("[payment] voucher") == 10


def test_request_cost_is_apart_from_the_channel_total() -> None:
    cost = RequestCost({CHANNEL: 5_000}, stream=True)
    cost.observe(PaymentEvent("challenge", "", 25))
    cost.observe(PaymentEvent("receipt", CHANNEL, 5_000))  # the stream's opening receipt
    assert cost.cost(tokens=4) == 100  # live: tokens x price
    cost.observe(PaymentEvent("final_receipt", CHANNEL, 5_300, detail={"billed": 300}))
    assert cost.cost(tokens=4) == 300  # final: what the server billed
    assert cost.channel_spent == 5_300
    unary = RequestCost({CHANNEL: 5_000}, stream=False)
    unary.observe(PaymentEvent("receipt", CHANNEL, 5_250))
    assert unary.cost(tokens=0) == 250
    fresh = RequestCost({}, stream=False)
    fresh.observe(PaymentEvent("receipt", CHANNEL, 75))
    assert fresh.cost(tokens=0) == 75


def test_unverified_payments_and_under_billing_are_shown() -> None:
    out, err = io.StringIO(), io.StringIO()
    display = StreamDisplay(out=out, err=err)
    with display:
        display.payment(PaymentEvent("challenge", "", 25))
        display.payment(PaymentEvent("unverified", CHANNEL))
        display.payment(
            PaymentEvent("final_receipt", CHANNEL, 300, detail={"units": 12, "under_billed": 50})
        )
    shown = err.getvalue()
    assert "no receipt" in shown
    assert "unverified" in shown
    assert "billed 0.000050" in shown
