"""V1Backend: which chains are Tempo chains, and the canonical v1 escrows it trusts."""

from __future__ import annotations

import pytest

from mppagent.devchain import DevChain
from mppagent.errors import ConfigError
from mppagent.tempo.v1 import CANONICAL_ESCROWS, V1Backend


async def test_tempo_is_probed_on_a_local_chain(chain: DevChain, tempo_chain: DevChain) -> None:
    """Both devchains run as chain 31337: only the pathUSD probe tells them apart."""
    for devchain, expected in ((chain, False), (tempo_chain, True)):
        client = devchain.client()
        try:
            backend = V1Backend(client)
            assert await backend.is_tempo() is expected
            assert await V1Backend(client, tempo=not expected).is_tempo() is not expected
        finally:
            await client.close()


async def test_canonical_escrow_is_trusted_by_chain_id_alone() -> None:
    """On chain 4217 the deployed escrow is trusted without its code or allowed_escrows."""
    mainnet = await DevChain.start(accounts=1, chain_id=4217)
    client = mainnet.client()
    try:
        backend = V1Backend(client)
        assert await backend.is_tempo()  # by chain id: no pathUSD on this plain anvil
        canonical = CANONICAL_ESCROWS[4217]
        assert await backend.check_contract(canonical.upper().replace("0X", "0x"))
        assert await backend.check_contract(mainnet.escrow)  # our code, any address
        # Moderato's escrow is not canonical on mainnet: no code there, refused.
        with pytest.raises(ConfigError, match="has no code"):
            await backend.check_contract(CANONICAL_ESCROWS[42431])
    finally:
        await client.close()
        await mainnet.stop()
