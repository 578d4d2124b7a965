"""The crash matrix against a session-v2 server on the Tempo devchain (the reserve).

Same kill points and the same reconciliation as ``test_crash.py`` (which runs them
on v1); here every funding is one ``0x76`` to the reserve and the close is settled
by the reserve's capture amount.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mppagent.devchain import DevAccount, DevChain
from mppagent.failpoints import POINTS
from tests.agent.test_crash import PRICE, crash_at
from tests.support import AgentFactory, ServerFactory, fresh_block

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
async def chain(tempo_chain: DevChain) -> DevChain:
    await fresh_block(tempo_chain)
    return tempo_chain


@pytest.mark.parametrize("point", POINTS)
async def test_crash_matrix_v2(
    chain: DevChain,
    start_server: ServerFactory,
    make_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
    tmp_path: Path,
    point: str,
) -> None:
    # A deposit of 60 tokens forces a top-up during a 150-token stream.
    server = await start_server(
        suggested_deposit=60 * PRICE, lookahead_tokens=50, session_protocol="v2"
    )
    await crash_at(chain, server, make_agent, payer, payee, tmp_path, point)
