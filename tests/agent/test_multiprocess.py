"""Several processes on one key and one store: concurrent opens and top-ups never fail.

The signing lock and the nonce counter live in the store, so sibling processes
wait for each other instead of taking each other's nonce or exact allowance.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mppagent.devchain import DevAccount, DevChain
from tests.agent.test_crash import assert_vouchers_monotonic, finish_and_reconcile, spawn
from tests.support import CHAT, PRICE, AgentFactory, ServerFactory, token_balances

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def test_four_processes_one_key_one_store_no_failed_request(
    chain: DevChain,
    start_server: ServerFactory,
    make_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
    tmp_path: Path,
) -> None:
    # A small deposit forces a top-up in every 120-token stream: opens and top-ups race.
    server = await start_server(suggested_deposit=50 * PRICE, lookahead_tokens=20)
    store = tmp_path / "shared.db"
    before = await token_balances(chain, payer.address, payee.address)
    children = [await spawn(chain, payer, server.url + CHAT, store, "120", "3") for _ in range(4)]
    results = await asyncio.wait_for(asyncio.gather(*(c.communicate() for c in children)), 240)
    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err.decode()[-3000:]
        assert out.strip().endswith(b"done")
    agent = await make_agent(store_path=store)
    records = agent.channels.list()
    assert len(records) >= 2  # the processes really streamed side by side
    assert_vouchers_monotonic(agent)
    await finish_and_reconcile(chain, server, agent, payer, payee, before)
