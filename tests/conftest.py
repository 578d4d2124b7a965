"""Shared fixtures: one anvil devchain per test session (reverted after each test), the
reference server on uvicorn, and paying agents against it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from mppagent import Agent, PaymentEvent, SpendPolicy, SqliteChannelStore
from mppagent.devchain import DevAccount, DevChain
from mppagent.devserver import DevServerConfig, RunningServer
from tests.support import AgentFactory, ServerFactory


@pytest.fixture(scope="session")
async def devchain() -> AsyncIterator[DevChain]:
    """A real anvil node with the token and escrow deployed and 8 funded accounts."""
    chain = await DevChain.start(accounts=8)
    try:
        yield chain
    finally:
        await chain.stop()


@pytest.fixture
async def chain(devchain: DevChain) -> AsyncIterator[DevChain]:
    """The session devchain, with its state snapshotted before and reverted after the test."""
    snapshot = await devchain.snapshot()
    try:
        yield devchain
    finally:
        await devchain.revert(snapshot)


@pytest.fixture
def payee(chain: DevChain) -> DevAccount:
    return chain.accounts[0]


@pytest.fixture
def payer(chain: DevChain) -> DevAccount:
    return chain.accounts[1]


@asynccontextmanager
async def _servers(
    chain: DevChain, payee: DevAccount, tmp_path: Path, **defaults: Any
) -> AsyncIterator[ServerFactory]:
    """A factory of reference servers on ``chain`` paying ``payee``; all stopped on exit."""
    running: list[RunningServer] = []

    async def start(**overrides: Any) -> RunningServer:
        values: dict[str, Any] = {
            "rpc_url": chain.rpc_url,
            "escrow": chain.escrow,
            "token": chain.token,
            "payee_private_key": payee.private_key,
            "state_path": str(tmp_path / f"server-{len(running)}.db"),
            "test_mode": True,
            **defaults,
        }
        values.update(overrides)
        server = RunningServer(DevServerConfig(**values))
        await server.start()
        running.append(server)
        return server

    try:
        yield start
    finally:
        for server in running:
            await server.stop()


@pytest.fixture
async def start_server(
    chain: DevChain, payee: DevAccount, tmp_path: Path
) -> AsyncIterator[ServerFactory]:
    """Start reference servers (uvicorn on 127.0.0.1) with config overrides; stopped after.

    Session protocol v1 (the escrow) unless ``session_protocol="v2"`` is passed: most
    tests run on the plain EVM devchain, which has no v2 reserve. A module that rebinds
    ``chain`` to the Tempo devchain may ask for v2, or use :func:`start_v2_server`.
    """
    async with _servers(chain, payee, tmp_path, session_protocol="v1") as start:
        yield start


@pytest.fixture
async def server(start_server: ServerFactory) -> RunningServer:
    return await start_server()


@pytest.fixture
async def make_agent(
    chain: DevChain, payer: DevAccount, tmp_path: Path
) -> AsyncIterator[AgentFactory]:
    """Create agents paying from ``payer`` with a store file in tmp_path; closed after."""
    agents: list[Agent] = []

    async def make(
        *,
        policy: SpendPolicy | None = None,
        store_path: Path | None = None,
        events: list[PaymentEvent] | None = None,
        account: DevAccount | None = None,
        **kwargs: Any,
    ) -> Agent:
        agent = Agent(
            private_key=(account or payer).private_key,
            rpc_url=chain.rpc_url,
            policy=policy or SpendPolicy(),
            store=SqliteChannelStore(store_path or tmp_path / "agent.db"),
            observer=events.append if events is not None else None,
            **kwargs,
        )
        await agent.start()
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.aclose()


@pytest.fixture(scope="session")
async def tempo_devchain() -> AsyncIterator[DevChain]:
    """anvil in Tempo mode (T4): pathUSD as currency and fee token, our escrow, 6 accounts."""
    chain = await DevChain.start(accounts=6, network="tempo")
    try:
        yield chain
    finally:
        await chain.stop()


@pytest.fixture
async def tempo_chain(tempo_devchain: DevChain) -> AsyncIterator[DevChain]:
    """The session Tempo devchain, snapshotted before and reverted after the test.

    ``evm_revert`` also winds anvil's clock back to the snapshot's time, so the
    next block would be stamped in the past; a Tempo node refuses an expiring
    nonce valid for longer than its window *from the block time*, so the clock
    is set to the wall clock again (a later test's 25 s window stays valid).
    """
    snapshot = await tempo_devchain.snapshot()
    try:
        yield tempo_devchain
    finally:
        await tempo_devchain.revert(snapshot)
        # A revert keeps the node's evm_increaseTime offset: put its clock back on the wall
        # clock, or the next test's expiring nonces (validBefore from the wall clock) would
        # be stale in the pool.
        await tempo_devchain.rpc("anvil_setTime", [int(time.time())])


@pytest.fixture
async def start_v2_server(tempo_chain: DevChain, tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Reference servers speaking session v2 (the reserve) on the Tempo devchain.

    The payee is ``tempo_chain.accounts[0]``; the currency pathUSD. Overrides as for
    :func:`start_server` (e.g. ``sponsor_fees=True``).
    """
    async with _servers(
        tempo_chain, tempo_chain.accounts[0], tmp_path, session_protocol="v2"
    ) as start:
        yield start


@pytest.fixture
async def v2_server(start_v2_server: ServerFactory) -> RunningServer:
    """One session-v2 reference server on the Tempo devchain (see :func:`start_v2_server`)."""
    return await start_v2_server()
