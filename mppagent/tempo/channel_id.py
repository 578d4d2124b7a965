"""Channel identifiers of the v1 escrow, computed off chain.

``channelId = keccak256(abi.encode(payer, payee, token, salt, authorizedSigner,
escrow, chainId))`` -- the same formula as the contract's ``computeChannelId``,
so a client knows its channel id before the open transaction is mined and can
sign the initial voucher for it.
"""

from __future__ import annotations

import secrets

from mppagent.tempo.hexutil import address_word, bytes32_word, keccak, uint_word

__all__ = ["compute_channel_id", "random_salt"]


def compute_channel_id(
    payer: str,
    payee: str,
    token: str,
    salt: str,
    authorized_signer: str,
    escrow: str,
    chain_id: int,
) -> str:
    """Return the lowercase 0x-hex channel id the escrow will assign."""
    encoded = (
        address_word(payer)
        + address_word(payee)
        + address_word(token)
        + bytes32_word(salt)
        + address_word(authorized_signer)
        + address_word(escrow)
        + uint_word(chain_id)
    )
    return "0x" + keccak(encoded).hex()


def random_salt() -> str:
    """A fresh 32-byte salt from the OS CSPRNG, so channel ids never collide."""
    return "0x" + secrets.token_bytes(32).hex()
