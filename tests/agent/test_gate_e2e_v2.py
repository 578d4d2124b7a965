"""The gate e2e tests against a session-v2 server (the reserve, on the Tempo devchain).

The faults and billing flavours of the reference server apply in both protocols;
this module reruns the hostile and honest cases of ``test_gate_e2e.py`` with the
``chain`` fixture on the Tempo devchain and ``small`` speaking v2.
"""

from __future__ import annotations

import pytest

from mppagent import Agent, PaymentEvent
from mppagent.devchain import DevChain
from mppagent.devserver import RunningServer
from tests.agent import test_gate_e2e as v1
from tests.agent.test_gate_e2e import (  # collected here again, against v2
    agent,
    test_a_402_loop_on_voucher_delivery_stays_bounded,
    test_hostile_servers_get_a_typed_error_and_no_more_than_the_bound,
    test_state_carried_across_requests_is_fine,
)
from tests.support import ServerFactory, fresh_block

__all__ = [
    "agent",
    "test_a_402_loop_on_voucher_delivery_stays_bounded",
    "test_hostile_servers_get_a_typed_error_and_no_more_than_the_bound",
    "test_state_carried_across_requests_is_fine",
]


@pytest.fixture
async def chain(tempo_chain: DevChain) -> DevChain:
    await fresh_block(tempo_chain)
    return tempo_chain


@pytest.fixture
async def small(start_server: ServerFactory) -> RunningServer:
    """A v2 server asking small windows, so a 120-token stream needs many vouchers."""
    return await start_server(lookahead_tokens=10, session_protocol="v2")


# late-voucher-receipt (15 s of deliberate delays) runs on v1 only: it is about timing.
@pytest.mark.parametrize("billing", ["packed-tokens", "receipt-event-only", "per-event"])
async def test_honest_billing_styles_are_paid_on_v2(
    small: RunningServer, agent: tuple[Agent, list[PaymentEvent]], billing: str
) -> None:
    await v1.test_honest_billing_styles_are_paid_without_alarm(small, agent, billing)
