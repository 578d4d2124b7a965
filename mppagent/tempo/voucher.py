"""EIP-712 vouchers for Tempo stream channels (session protocol v1).

A voucher authorises a *cumulative* amount on one channel::

    Voucher(bytes32 channelId, uint128 cumulativeAmount)
    domain = {name: "Tempo Stream Channel", version: "1", chainId, verifyingContract: escrow}

Signing sits on the hot path of every paid stream (one signature per
need-voucher round), so this module skips eth-account's generic typed-data
machinery: the domain separator is computed once per (escrow, chain) and the
digest is two keccak calls over fixed-width words, signed directly with
libsecp256k1 through coincurve. Tests prove the result byte-identical to
``eth_account.Account.sign_typed_data``; ``benchmarks/vouchers.py`` measures it.

libsecp256k1 always produces low-s signatures; recovery rejects high-s ones
(the escrow contract would too), so a malleated signature never counts.
"""

from __future__ import annotations

import functools
import secrets
from typing import Any

import coincurve

from mppagent.errors import ProtocolError
from mppagent.tempo.hexutil import (
    address_word,
    bytes32_word,
    checksum_address,
    keccak,
    normalize_address,
    normalize_bytes32,
    uint_word,
)

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "InvalidSignature",
    "VoucherSigner",
    "domain_separator",
    "recover_voucher_signer",
    "redeemable_signature",
    "sign_voucher",
    "voucher_digest",
    "voucher_typed_data",
]

DOMAIN_NAME = "Tempo Stream Channel"
DOMAIN_VERSION = "1"

_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_VOUCHER_TYPEHASH = keccak(b"Voucher(bytes32 channelId,uint128 cumulativeAmount)")
_NAME_HASH = keccak(DOMAIN_NAME.encode())
_VERSION_HASH = keccak(DOMAIN_VERSION.encode())

# secp256k1 group order and half order: signatures with s above the half order
# are the malleated twins of valid ones and are rejected everywhere.
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _N // 2
_UINT128_MAX = (1 << 128) - 1


class InvalidSignature(ProtocolError):
    """A voucher signature is malformed, non-canonical (high s) or unrecoverable."""


@functools.lru_cache(maxsize=256)
def domain_separator(escrow: str, chain_id: int) -> bytes:
    """The EIP-712 domain separator of one escrow deployment on one chain (cached)."""
    return keccak(
        _DOMAIN_TYPEHASH + _NAME_HASH + _VERSION_HASH + uint_word(chain_id) + address_word(escrow)
    )


def voucher_digest(channel_id: str, cumulative_amount: int, escrow: str, chain_id: int) -> bytes:
    """The 32-byte EIP-712 signing hash of a voucher (what the contract recovers against)."""
    if not 0 <= cumulative_amount <= _UINT128_MAX:
        raise ValueError("cumulative amount must fit in uint128")
    struct_hash = keccak(
        _VOUCHER_TYPEHASH + bytes32_word(channel_id) + cumulative_amount.to_bytes(32, "big")
    )
    return keccak(b"\x19\x01" + domain_separator(normalize_address(escrow), chain_id) + struct_hash)


class VoucherSigner:
    """Holds one secp256k1 key and signs vouchers with it.

    Keep one per key rather than calling :func:`sign_voucher` in a loop: the key
    is parsed once. The key never appears in ``repr`` or in errors.
    """

    __slots__ = ("_key", "address")

    def __init__(self, private_key: bytes | str) -> None:
        raw = _key_bytes(private_key)
        try:
            self._key = coincurve.PrivateKey(raw)
        except Exception as exc:  # coincurve raises ValueError/TypeError variants
            raise ValueError("private key is not a valid secp256k1 scalar") from exc
        public = self._key.public_key.format(compressed=False)[1:]
        self.address: str = checksum_address("0x" + keccak(public)[-20:].hex())

    @classmethod
    def generate(cls) -> VoucherSigner:
        """A fresh random key (used for per-channel delegated signers)."""
        return cls(secrets.token_bytes(32))

    @property
    def private_key_hex(self) -> str:
        """The key as 0x-hex, for storing a delegated signer key. Handle with care."""
        return "0x" + self._key.secret.hex()

    def sign_digest(self, digest: bytes) -> str:
        """Sign a 32-byte digest; returns 0x-hex r‖s‖v with v in {27, 28}."""
        sig = self._key.sign_recoverable(digest, hasher=None)
        return "0x" + sig[:64].hex() + format(sig[64] + 27, "02x")

    def sign(self, channel_id: str, cumulative_amount: int, escrow: str, chain_id: int) -> str:
        """Sign the voucher ``(channel_id, cumulative_amount)`` for ``escrow`` on ``chain_id``."""
        return self.sign_digest(voucher_digest(channel_id, cumulative_amount, escrow, chain_id))

    def __repr__(self) -> str:
        return f"VoucherSigner(address={self.address!r})"


def voucher_typed_data(
    channel_id: str, cumulative_amount: int, escrow: str, chain_id: int
) -> dict[str, Any]:
    """The voucher as generic EIP-712 typed data (eth-account's ``full_message``).

    For wallets and tools that sign typed data themselves, and for checking the
    fast path against the generic one; :func:`voucher_digest` hashes the same thing.
    """
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Voucher": [
                {"name": "channelId", "type": "bytes32"},
                {"name": "cumulativeAmount", "type": "uint128"},
            ],
        },
        "primaryType": "Voucher",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": normalize_address(escrow),
        },
        "message": {
            "channelId": bytes.fromhex(normalize_bytes32(channel_id)[2:]),
            "cumulativeAmount": cumulative_amount,
        },
    }


def sign_voucher(
    private_key: bytes | str,
    channel_id: str,
    cumulative_amount: int,
    escrow: str,
    chain_id: int,
) -> str:
    """Sign one voucher; returns 65-byte 0x-hex r‖s‖v (v = 27/28, low s)."""
    return VoucherSigner(private_key).sign(channel_id, cumulative_amount, escrow, chain_id)


def recover_voucher_signer(
    signature: str,
    channel_id: str,
    cumulative_amount: int,
    escrow: str,
    chain_id: int,
) -> str:
    """Return the checksummed address that signed this voucher.

    Accepts the 65-byte r‖s‖v form (v = 27/28, or 0/1) and the 64-byte
    EIP-2098 compact form. Rejects high-s signatures with
    :class:`InvalidSignature`, like the escrow contract does.
    """
    digest = voucher_digest(channel_id, cumulative_amount, escrow, chain_id)
    return recover_digest_signer(signature, digest)


def redeemable_signature(signature: str) -> str:
    """The signature in the one form every v1 escrow redeems: 65-byte r‖s‖v, v = 27/28, low s.

    A server must only accept vouchers it can collect. The draft accepts two
    encodings, and both are taken here: 65-byte r‖s‖v with v = 27/28, returned
    as is (lowercase), and the 64-byte EIP-2098 compact form, expanded to the
    65-byte form (lossless: same r, s and parity), so the stored voucher is the
    canonical encoding the reference SDK, our escrow and the deployed one all
    accept. Refused with :class:`InvalidSignature`: v = 0/1 in a 65-byte
    signature (not a draft encoding; the escrows' ``close`` reverts on it) and
    high s (the draft requires servers to reject it; our escrow reverts on it).
    """
    raw = _signature_bytes(signature)
    r = int.from_bytes(raw[:32], "big")
    if len(raw) == 65:
        s, v = int.from_bytes(raw[32:64], "big"), raw[64]
        if v not in (27, 28):
            raise InvalidSignature(
                f"signature v must be 27 or 28 (got {v}); the escrow cannot redeem it"
            )
    else:
        vs = int.from_bytes(raw[32:64], "big")
        s, v = vs & ((1 << 255) - 1), 27 + (vs >> 255)
    if not (0 < r < _N and 0 < s <= _HALF_N):
        raise InvalidSignature("signature is not canonical (s must be in the lower half order)")
    return "0x" + raw[:32].hex() + s.to_bytes(32, "big").hex() + format(v, "02x")


def recover_digest_signer(signature: str, digest: bytes) -> str:
    """Recover the signer of a 32-byte digest from a 65- or 64-byte hex signature."""
    raw = _signature_bytes(signature)
    r = int.from_bytes(raw[:32], "big")
    if len(raw) == 65:
        s = int.from_bytes(raw[32:64], "big")
        v = raw[64]
        if v in (27, 28):
            v -= 27
        if v not in (0, 1):
            raise InvalidSignature("signature v must be 27 or 28")
    else:  # EIP-2098: the top bit of the second word carries y parity
        vs = int.from_bytes(raw[32:64], "big")
        v = vs >> 255
        s = vs & ((1 << 255) - 1)
    if not (0 < r < _N and 0 < s <= _HALF_N):
        raise InvalidSignature("signature is not canonical (s must be in the lower half order)")
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            raw[:32] + s.to_bytes(32, "big") + bytes([v]), digest, hasher=None
        )
    except Exception as exc:  # unrecoverable point
        raise InvalidSignature("signature does not recover to a public key") from exc
    uncompressed = public.format(compressed=False)[1:]
    return checksum_address("0x" + keccak(uncompressed)[-20:].hex())


def _signature_bytes(signature: object) -> bytes:
    if not isinstance(signature, str) or not signature.startswith(("0x", "0X")):
        raise InvalidSignature("signature must be 0x-prefixed hex")
    body = signature[2:]
    if len(body) not in (128, 130):
        raise InvalidSignature("signature must be 64 or 65 bytes")
    try:
        return bytes.fromhex(body)
    except ValueError as exc:
        raise InvalidSignature("signature is not hex") from exc


def _key_bytes(private_key: bytes | str) -> bytes:
    if isinstance(private_key, str):
        text = private_key[2:] if private_key.startswith(("0x", "0X")) else private_key
        try:
            private_key = bytes.fromhex(text)
        except ValueError:
            raise ValueError("private key must be 32 bytes of hex") from None
    if len(private_key) != 32:
        raise ValueError("private key must be 32 bytes")
    return private_key
