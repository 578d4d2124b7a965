"""v2 vouchers: the TIP-1034 reserve's EIP-712 domain, ``uint96`` amounts, canonical signatures.

Signing uses the same fast path as v1 (:class:`~mppagent.tempo.voucher.VoucherSigner`
over a hand-rolled digest, scheme :data:`~mppagent.tempo.voucher.V2_VOUCHERS`); an
amount above ``2**96 - 1`` raises :class:`~mppagent.tempo.voucher.AmountOutOfRange`
before anything is signed. Verification is stricter than v1's: the reserve takes
only 65-byte ``r‖s‖v`` signatures, and the reference server re-serialises a
signature and compares, so anything but the canonical form (v = 27/28, low s) is
refused here too.
"""

from __future__ import annotations

from mppagent.tempo.hexutil import normalize_bytes32
from mppagent.tempo.v2.channel_id import compute_channel_id
from mppagent.tempo.v2.descriptor import ChannelDescriptor
from mppagent.tempo.voucher import (
    V2_VOUCHERS,
    InvalidSignature,
    VoucherSigner,
    canonical_signature,
    recover_digest_signer,
)

__all__ = ["recover_voucher_signer", "sign_voucher", "verify_voucher", "voucher_digest"]


def voucher_digest(channel_id: str, cumulative_amount: int, reserve: str, chain_id: int) -> bytes:
    """The EIP-712 hash the reserve's ``getVoucherDigest`` returns for this voucher."""
    return V2_VOUCHERS.digest(channel_id, cumulative_amount, reserve, chain_id)


def sign_voucher(
    signer: VoucherSigner, channel_id: str, cumulative_amount: int, reserve: str, chain_id: int
) -> str:
    """Sign a v2 voucher; returns the canonical 65-byte 0x-hex r‖s‖v (v = 27/28, low s)."""
    return signer.sign(channel_id, cumulative_amount, reserve, chain_id, scheme=V2_VOUCHERS)


def recover_voucher_signer(
    signature: str, channel_id: str, cumulative_amount: int, reserve: str, chain_id: int
) -> str:
    """The checksummed address that signed this v2 voucher.

    Raises :class:`InvalidSignature` unless ``signature`` is already canonical
    (65 bytes, v = 27/28, low s; hex case is ignored).
    """
    if not isinstance(signature, str) or canonical_signature(signature) != signature.lower():
        raise InvalidSignature("v2 voucher signatures must be 65 bytes r‖s‖v with v = 27 or 28")
    digest = voucher_digest(channel_id, cumulative_amount, reserve, chain_id)
    return recover_digest_signer(signature, digest)


def verify_voucher(
    signature: str,
    descriptor: ChannelDescriptor,
    channel_id: str,
    cumulative_amount: int,
    reserve: str,
    chain_id: int,
) -> None:
    """Check a voucher exactly as the reserve would settle it; raise :class:`InvalidSignature`.

    The channel id must be the descriptor's (so a voucher cannot be moved to another
    channel's descriptor) and the signer the descriptor's :attr:`~ChannelDescriptor.signer`.
    """
    if normalize_bytes32(channel_id) != compute_channel_id(descriptor, reserve, chain_id):
        raise InvalidSignature("voucher channel id does not match the descriptor")
    signer = recover_voucher_signer(signature, channel_id, cumulative_amount, reserve, chain_id)
    if signer.lower() != descriptor.signer:
        raise InvalidSignature("voucher is not signed by the channel's authorized signer")
