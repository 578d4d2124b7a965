"""The local TIP-1034 reserve on a development chain: install it, fund it, feed it.

Anvil predates the T5 precompile, so :func:`install_reserve` puts the runtime code
of our stand-in (``contracts/src/TIP20ChannelReserve.sol``) at the canonical
address with ``anvil_setCode`` -- clients and servers then find the reserve where
they would on Tempo. The contract has no constructor state, so runtime code is all
it needs. Two helpers stand in for what only the precompile can do (the contract's
NatSpec documents both divergences):

* :func:`grant_reserve_allowance` -- implicit approval (TIP-1035): each paying
  account approves the reserve once, since the stand-in pulls with ``transferFrom``.
* :func:`set_pending_expiring_nonce_hash` -- the opening transaction's hash, which
  the precompile derives itself; whatever forwards an ``open`` transaction to anvil
  writes it first (``anvil_setStorageAt``).
"""

from __future__ import annotations

from collections.abc import Iterable

from mppagent.devchain import DevAccount, DevChain
from mppagent.tempo.artifacts import load_artifact
from mppagent.tempo.escrow import Token, encode_approve
from mppagent.tempo.hexutil import normalize_bytes32
from mppagent.tempo.tempo_chain import send_tempo, sign_calls, sponsor
from mppagent.tempo.tempotx import Call
from mppagent.tempo.v2.constants import RESERVE_ADDRESS
from mppagent.tempo.v2.local_reserve import ARTIFACT_NAME, pending_expiring_nonce_hash_slot

__all__ = ["grant_reserve_allowance", "install_reserve", "set_pending_expiring_nonce_hash"]

_UNLIMITED = (1 << 256) - 1


async def install_reserve(
    chain: DevChain, *, accounts: Iterable[DevAccount] | None = None, token: str | None = None
) -> str:
    """Install the reserve at its canonical address; returns that address (lowercase).

    ``accounts`` (default: all of ``chain.accounts``) get an unlimited allowance of
    ``token`` (default: ``chain.token``) for the reserve.
    """
    code = load_artifact(ARTIFACT_NAME).deployed_bytecode
    await chain.rpc("anvil_setCode", [RESERVE_ADDRESS, code])
    for account in chain.accounts if accounts is None else accounts:
        await grant_reserve_allowance(chain, account, token=token)
    return RESERVE_ADDRESS


async def grant_reserve_allowance(
    chain: DevChain, account: DevAccount, *, token: str | None = None
) -> None:
    """Divergence (a): let the reserve pull ``token`` from ``account`` without limit.

    On the Tempo devchain the approval is sponsored by the dev account, so granting
    it costs ``account`` nothing: its balance stays exactly what it was funded with.
    (A node drops a transaction whose sender sponsors itself: the dev account pays its own.)
    """
    client = chain.client()
    try:
        data = encode_approve(RESERVE_ADDRESS, _UNLIMITED)
        if chain.network == "tempo":
            call = Call(token or chain.token, data)
            if account.address.lower() == chain.deployer.address.lower():
                own = await sign_calls(client, account.wallet(), [call])  # nobody to sponsor it
                await send_tempo(client, own, context="approve reserve")
                return
            handover = await sign_calls(client, account.wallet(), [call], sponsored=True)
            assert handover.handover is not None
            tx = sponsor(handover.handover, chain.deployer.wallet(), chain.fee_token)
            await send_tempo(client, tx, context="approve reserve")
            return
        erc20 = Token(client, token or chain.token)
        signed = await erc20.sign_approve(account.wallet(), RESERVE_ADDRESS, _UNLIMITED)
        await client.send_and_wait(signed, context="approve reserve")
    finally:
        await client.close()


async def set_pending_expiring_nonce_hash(chain: DevChain, sender: str, value: str) -> None:
    """Divergence (b): the hash ``sender``'s next ``open`` transaction will consume."""
    slot = pending_expiring_nonce_hash_slot(sender)
    await chain.rpc("anvil_setStorageAt", [RESERVE_ADDRESS, slot, normalize_bytes32(value)])
