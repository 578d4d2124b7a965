"""SIGKILL the paying agent mid-payment; after a restart nothing is lost or paid twice.

A child process runs an agent against the reference server. It is killed
either at a named write-ahead point (``MPPAGENT_FAILPOINT``, see
:mod:`mppagent.failpoints`) or at a random moment. A fresh agent on the same
store then recovers, keeps using or closes every channel, and the chain, the
server's books and the agent's ledger must agree to the base unit.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

import pytest

from mppagent import Agent, ChannelStatus
from mppagent.devchain import DevAccount, DevChain
from mppagent.devserver import RunningServer
from mppagent.failpoints import POINTS
from mppagent.session.store import ChannelRecord, OperationKind, OperationState
from mppagent.tempo.v2 import RESERVE_ADDRESS
from mppagent.tempo.v2.backend import V2Backend
from tests.support import CHAT, AgentFactory, ServerFactory, chat_body, token_balances

CHILD = Path(__file__).with_name("crash_child.py")
PRICE = 25
FEE_BOUND = 200_000  # pathUSD base units: far above what the Tempo devchain's fees come to

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def spawn(
    chain: DevChain, payer: DevAccount, url: str, store: Path, *args: str, failpoint: str = ""
) -> asyncio.subprocess.Process:
    env = {**os.environ, "CRASH_CHILD_KEY": payer.private_key, "MPPAGENT_FAILPOINT": failpoint}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        chain.rpc_url,
        url,
        str(store),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def assert_vouchers_monotonic(agent: Agent) -> None:
    for record in agent.channels.list():
        amounts = [
            op.amount
            for op in agent.store.operations(record.channel_id, kind=OperationKind.VOUCHER)
        ]
        assert amounts == sorted(set(amounts)), record.channel_id
        if amounts:
            assert record.signed == amounts[-1]


async def paid_on_chain(chain: DevChain, agent: Agent, record: ChannelRecord) -> int | None:
    """What the chain says a finalized channel paid the payee (``None``: not finalized).

    v1 reads the escrow's flag; v2's reserve deletes a closed channel, whose
    ``ChannelClosed`` log is then the only trace.
    """
    if record.scope.escrow == RESERVE_ADDRESS:
        client = chain.client()
        try:
            return await V2Backend(client).final_settled(RESERVE_ADDRESS, record.channel_id)
        finally:
            await client.close()
    state = await agent.manager.escrow(record.scope.escrow).get_channel(record.channel_id)
    if not (state.exists or state.finalized):
        return None
    assert state.finalized, record.channel_id
    # The escrow wipes finalized channels; the agent's record keeps what was paid.
    return agent.channels.get(record.channel_id).settled


async def finish_and_reconcile(
    chain: DevChain,
    server: RunningServer,
    agent: Agent,
    payer: DevAccount,
    payee: DevAccount,
    before: list[int],
) -> None:
    """Use the recovered store once more, close every live channel, check the books.

    On a plain EVM chain the balances move by exactly what was paid; on the Tempo
    devchain fees are paid in the same token, so they move by that plus small fees.
    """
    assert not agent.store.operations(state=OperationState.PENDING)
    assert not [r for r in agent.channels.list() if r.status == ChannelStatus.OPENING]
    async for _ in agent.stream("POST", server.url + CHAT, json=chat_body(20)):
        pass
    books = server.app.state.devserver
    payee_state = await books.payee()
    total_paid = 0
    for record in agent.channels.list():
        if record.status in (ChannelStatus.OPEN, ChannelStatus.CLOSING):
            result = await agent.channels.close(record.channel_id)
            server_view = payee_state.state.get(record.channel_id)
            assert server_view is not None
            assert result.paid == server_view.spent
            assert result.refunded == result.deposit - result.paid
        paid = await paid_on_chain(chain, agent, record)
        if paid is not None:
            assert paid == agent.channels.get(record.channel_id).settled, record.channel_id
            total_paid += paid
    assert_vouchers_monotonic(agent)
    payer_after, payee_after = await token_balances(chain, payer.address, payee.address)
    if chain.fee_token is None:
        assert before[0] - payer_after == total_paid
        assert payee_after - before[1] == total_paid
    else:
        assert 0 <= before[0] - payer_after - total_paid < FEE_BOUND
        assert 0 <= total_paid - (payee_after - before[1]) < FEE_BOUND


async def crash_at(
    chain: DevChain,
    server: RunningServer,
    make_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
    tmp_path: Path,
    point: str,
) -> None:
    """Kill a paying child at ``point``; a restarted agent recovers and the books agree."""
    store = tmp_path / "crash.db"
    before = await token_balances(chain, payer.address, payee.address)
    child = await spawn(
        chain, payer, server.url + CHAT, store, "150", "1", "close", failpoint=point
    )
    out, err = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode == -signal.SIGKILL, (point, out, err.decode()[-2000:])
    agent = await make_agent(store_path=store)  # start() recovers pending operations
    assert_vouchers_monotonic(agent)
    await finish_and_reconcile(chain, server, agent, payer, payee, before)


# v1 differs from v2 (test_crash_v2.py runs every point) in how a channel is funded --
# on a plain EVM chain an approve, then the open or top-up -- and in how a closed channel
# is read back; the voucher points and the rest of the close run the same session code.
V1_POINTS = [p for p in POINTS if p.startswith(("open.", "topup.")) or p.endswith("on_chain")]
assert len(V1_POINTS) < len(POINTS)


@pytest.mark.parametrize("point", V1_POINTS)
async def test_crash_matrix_v1(
    chain: DevChain,
    start_server: ServerFactory,
    make_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
    tmp_path: Path,
    point: str,
) -> None:
    """Session v1 on a plain EVM chain (separate approve, then open); v2: test_crash_v2.py."""
    # A deposit of 60 tokens forces a top-up during a 150-token stream.
    server = await start_server(suggested_deposit=60 * PRICE, lookahead_tokens=50)
    await crash_at(chain, server, make_agent, payer, payee, tmp_path, point)


async def test_random_kills(
    chain: DevChain,
    server: RunningServer,
    make_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
    tmp_path: Path,
) -> None:
    store = tmp_path / "random.db"
    before = await token_balances(chain, payer.address, payee.address)
    rng = random.Random(20261121)
    for _ in range(3):
        child = await spawn(chain, payer, server.url + CHAT, store, "400", "100000")
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        assert child.returncode is None, (await child.communicate())[1].decode()[-600:]
        child.kill()
        await asyncio.wait_for(child.communicate(), 60)
        agent = await make_agent(store_path=store)
        assert_vouchers_monotonic(agent)
        for record in agent.channels.list():
            assert record.spent <= record.accepted <= record.signed <= record.deposit
        await agent.aclose()
    agent = await make_agent(store_path=store)
    await finish_and_reconcile(chain, server, agent, payer, payee, before)
