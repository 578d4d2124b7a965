"""EIP-712 vouchers for Tempo payment channels (session protocols v1 and v2).

A voucher authorises a *cumulative* amount on one channel::

    v1: Voucher(bytes32 channelId, uint128 cumulativeAmount)
        domain = {name: "Tempo Stream Channel", version: "1", chainId, verifyingContract: escrow}
    v2: Voucher(bytes32 channelId, uint96 cumulativeAmount)
        domain = {name: "TIP20 Channel Reserve", version: "1", chainId, verifyingContract: reserve}

The two differ only in the domain name and the amount's width, so one
:class:`VoucherScheme` holds that difference and everything else is shared;
:data:`V1_VOUCHERS` backs the module-level functions (the v1 API), and
``mppagent.tempo.v2.voucher`` uses :data:`V2_VOUCHERS`.

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
from dataclasses import dataclass
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
    "V1_VOUCHERS",
    "V2_VOUCHERS",
    "AmountOutOfRange",
    "InvalidSignature",
    "VoucherScheme",
    "VoucherSigner",
    "canonical_signature",
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

# secp256k1 group order and half order: signatures with s above the half order
# are the malleated twins of valid ones and are rejected everywhere.
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _N // 2


class InvalidSignature(ProtocolError):
    """A voucher signature is malformed, non-canonical (high s) or unrecoverable."""


class AmountOutOfRange(ProtocolError, ValueError):
    """A cumulative amount is negative or wider than the voucher's uint type; nothing was signed.

    A ``ValueError`` too, so callers of the v1 API that caught that keep working.
    """


@dataclass(frozen=True)
class VoucherScheme:
    """One EIP-712 voucher definition: domain name and version, and the amount's bit width.

    ``verifying_contract`` below is the v1 escrow or the v2 reserve; both bind the
    voucher to one deployment on one chain.
    """

    name: str
    version: str
    amount_bits: int

    # cached_property: the digest is on the hot path of every paid stream.
    @functools.cached_property
    def max_amount(self) -> int:
        """The largest cumulative amount a voucher of this scheme can carry."""
        return (1 << self.amount_bits) - 1

    @functools.cached_property
    def voucher_type(self) -> str:
        """The EIP-712 type string, e.g. ``Voucher(bytes32 channelId,uint96 cumulativeAmount)``."""
        return f"Voucher(bytes32 channelId,uint{self.amount_bits} cumulativeAmount)"

    @functools.cached_property
    def _typehash(self) -> bytes:
        return keccak(self.voucher_type.encode())

    def domain_separator(self, verifying_contract: str, chain_id: int) -> bytes:
        """The EIP-712 domain separator for one deployment on one chain (cached)."""
        return _domain_separator(
            self.name, self.version, normalize_address(verifying_contract), chain_id
        )

    def check_amount(self, cumulative_amount: int) -> None:
        """Raise :class:`AmountOutOfRange` unless the amount fits this scheme's uint type."""
        if not 0 <= cumulative_amount <= self.max_amount:
            raise AmountOutOfRange(f"cumulative amount must fit in uint{self.amount_bits}")

    def digest(
        self, channel_id: str, cumulative_amount: int, verifying_contract: str, chain_id: int
    ) -> bytes:
        """The 32-byte EIP-712 signing hash of a voucher (what the contract recovers against)."""
        self.check_amount(cumulative_amount)
        struct_hash = keccak(
            self._typehash + bytes32_word(channel_id) + cumulative_amount.to_bytes(32, "big")
        )
        return keccak(
            b"\x19\x01" + self.domain_separator(verifying_contract, chain_id) + struct_hash
        )

    def typed_data(
        self, channel_id: str, cumulative_amount: int, verifying_contract: str, chain_id: int
    ) -> dict[str, Any]:
        """The voucher as generic EIP-712 typed data (eth-account's ``full_message``).

        For wallets and tools that sign typed data themselves, and for checking the
        fast path against the generic one; :meth:`digest` hashes the same thing.
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
                    {"name": "cumulativeAmount", "type": f"uint{self.amount_bits}"},
                ],
            },
            "primaryType": "Voucher",
            "domain": {
                "name": self.name,
                "version": self.version,
                "chainId": chain_id,
                "verifyingContract": normalize_address(verifying_contract),
            },
            "message": {
                "channelId": bytes.fromhex(normalize_bytes32(channel_id)[2:]),
                "cumulativeAmount": cumulative_amount,
            },
        }


@functools.lru_cache(maxsize=256)
def _domain_separator(name: str, version: str, verifying_contract: str, chain_id: int) -> bytes:
    return keccak(
        _DOMAIN_TYPEHASH
        + keccak(name.encode())
        + keccak(version.encode())
        + uint_word(chain_id)
        + address_word(verifying_contract)
    )


V1_VOUCHERS = VoucherScheme(DOMAIN_NAME, DOMAIN_VERSION, 128)
"""Session protocol v1: the ``TempoStreamChannel`` escrow's vouchers (uint128 amounts)."""

V2_VOUCHERS = VoucherScheme("TIP20 Channel Reserve", "1", 96)
"""Session protocol v2: the TIP-1034 channel reserve's vouchers (uint96 amounts)."""


def domain_separator(escrow: str, chain_id: int) -> bytes:
    """The v1 EIP-712 domain separator of one escrow deployment on one chain (cached)."""
    return V1_VOUCHERS.domain_separator(escrow, chain_id)


def voucher_digest(channel_id: str, cumulative_amount: int, escrow: str, chain_id: int) -> bytes:
    """The 32-byte EIP-712 signing hash of a v1 voucher (what the escrow recovers against)."""
    return V1_VOUCHERS.digest(channel_id, cumulative_amount, escrow, chain_id)


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

    def sign(
        self,
        channel_id: str,
        cumulative_amount: int,
        escrow: str,
        chain_id: int,
        *,
        scheme: VoucherScheme = V1_VOUCHERS,
    ) -> str:
        """Sign the voucher ``(channel_id, cumulative_amount)`` for ``escrow`` on ``chain_id``.

        ``scheme`` picks the protocol (v1 escrow by default, :data:`V2_VOUCHERS` for the
        reserve); an amount too wide for it raises :class:`AmountOutOfRange` before signing.
        """
        return self.sign_digest(scheme.digest(channel_id, cumulative_amount, escrow, chain_id))

    def __repr__(self) -> str:
        return f"VoucherSigner(address={self.address!r})"


def voucher_typed_data(
    channel_id: str, cumulative_amount: int, escrow: str, chain_id: int
) -> dict[str, Any]:
    """The v1 voucher as generic EIP-712 typed data (see :meth:`VoucherScheme.typed_data`)."""
    return V1_VOUCHERS.typed_data(channel_id, cumulative_amount, escrow, chain_id)


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
    r, s, parity = _parse_signature(signature)
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([parity]), digest, hasher=None
        )
    except Exception as exc:  # unrecoverable point
        raise InvalidSignature("signature does not recover to a public key") from exc
    uncompressed = public.format(compressed=False)[1:]
    return checksum_address("0x" + keccak(uncompressed)[-20:].hex())


def canonical_signature(signature: str) -> str:
    """The canonical wire form of a secp256k1 signature: lowercase 0x r‖s‖v, v = 27/28.

    That is the only form the v2 reserve and the reference server accept (the server
    re-serialises a voucher signature and compares). v = 0/1 and the 64-byte EIP-2098
    compact form are rewritten into it; a high-s signature is refused with
    :class:`InvalidSignature` rather than flipped, so a malleated twin never counts.
    """
    r, s, parity = _parse_signature(signature)
    return "0x" + r.to_bytes(32, "big").hex() + s.to_bytes(32, "big").hex() + f"{parity + 27:02x}"


def _parse_signature(signature: object) -> tuple[int, int, int]:
    """Split a 65-byte (v = 27/28 or 0/1) or 64-byte compact signature into (r, s, y parity).

    Rejects high s and out-of-range r with :class:`InvalidSignature`, like the contracts do.
    """
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
    return r, s, v


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
