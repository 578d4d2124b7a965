"""Fixtures of the reference-server tests: a chain client and a paying dev account."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mppagent.devchain import DevChain
from mppagent.tempo import ChainClient

from .helpers import Payer, payer_at


@pytest.fixture
async def client(chain: DevChain) -> AsyncIterator[ChainClient]:
    c = chain.client()
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def payer(chain: DevChain, client: ChainClient) -> Payer:
    return payer_at(chain, client, 1)
