"""Shared fixtures: one anvil devchain per test session, reverted after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mppagent.devchain import DevChain


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
