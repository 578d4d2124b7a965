"""v2 channel ids and the opening transaction's ``expiringNonceHash``, computed off chain.

``channelId = keccak256(abi.encode(payer, payee, operator, token, salt,
authorizedSigner, expiringNonceHash, reserve, chainId))`` -- the reserve's
``computeChannelId``. The last descriptor field ties the channel to the
transaction that opened it: ``expiringNonceHash = keccak256(signingPayload ||
sender)``, where ``signingPayload`` is the byte string the sender signed (for a
sponsored Tempo transaction: with the fee-payer placeholder and no fee token).
"""

from __future__ import annotations

from mppagent.tempo.hexutil import address_word, bytes32_word, keccak, normalize_address, uint_word
from mppagent.tempo.v2.descriptor import ChannelDescriptor

__all__ = ["compute_channel_id", "expiring_nonce_hash"]


def compute_channel_id(descriptor: ChannelDescriptor, reserve: str, chain_id: int) -> str:
    """Return the lowercase 0x-hex id the reserve at ``reserve`` on ``chain_id`` assigns."""
    encoded = (
        address_word(descriptor.payer)
        + address_word(descriptor.payee)
        + address_word(descriptor.operator)
        + address_word(descriptor.token)
        + bytes32_word(descriptor.salt)
        + address_word(descriptor.authorized_signer)
        + bytes32_word(descriptor.expiring_nonce_hash)
        + address_word(reserve)
        + uint_word(chain_id)
    )
    return "0x" + keccak(encoded).hex()


def expiring_nonce_hash(signing_payload: bytes, sender: str) -> str:
    """``keccak256(signingPayload || sender)`` of an opening transaction, as lowercase 0x-hex."""
    return "0x" + keccak(signing_payload + bytes.fromhex(normalize_address(sender)[2:])).hex()
