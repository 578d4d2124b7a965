"""Facts about the local stand-in for the reserve (``contracts/src/TIP20ChannelReserve.sol``).

Pure: no chain access here. The stand-in cannot read its transaction's envelope,
so whoever forwards an opening transaction to the development chain first writes
that transaction's ``expiringNonceHash`` into the reserve's storage at
:func:`pending_expiring_nonce_hash_slot` (``anvil_setStorageAt``); the contract's
``open`` consumes it. The slot is that of ``pendingExpiringNonceHash[sender]``, a
mapping declared as the contract's second state variable (base slot 1).
"""

from __future__ import annotations

from mppagent.tempo.hexutil import address_word, keccak, uint_word

__all__ = [
    "ARTIFACT_NAME",
    "PENDING_EXPIRING_NONCE_HASH_BASE_SLOT",
    "pending_expiring_nonce_hash_slot",
]

ARTIFACT_NAME = "TIP20ChannelReserve"
"""The shipped artifact (``mppagent/tempo/artifacts/``) holding the stand-in's runtime code."""

PENDING_EXPIRING_NONCE_HASH_BASE_SLOT = 1
"""Storage slot of the ``pendingExpiringNonceHash`` mapping in the stand-in."""


def pending_expiring_nonce_hash_slot(sender: str) -> str:
    """``keccak256(abi.encode(sender, 1))``: where the hash for ``sender``'s next open goes."""
    word = keccak(address_word(sender) + uint_word(PENDING_EXPIRING_NONCE_HASH_BASE_SLOT))
    return "0x" + word.hex()
