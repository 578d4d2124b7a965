"""Hex, address and word helpers shared by the Tempo layer.

The wire rule (draft-tempo-session, "Encoding Conventions") is lowercase
``0x``-hex everywhere, with mixed case accepted on input; checksummed
addresses are only for display and for web3 calls that insist on them.

Standard library and eth-hash only: this module sits under every path that
checks an address, including a paid request on an open channel, which must not
pay for importing eth-utils (and the eth-typing tables it loads) or web3.
"""

from __future__ import annotations

import re

from eth_hash.auto import keccak

from mppagent.errors import ProtocolError

__all__ = [
    "ZERO_ADDRESS",
    "InvalidHex",
    "address_word",
    "bytes32_word",
    "checksum_address",
    "keccak",
    "normalize_address",
    "normalize_bytes32",
    "uint_word",
]

_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_BYTES32_RE = re.compile(r"0x[0-9a-fA-F]{64}")
ZERO_ADDRESS = "0x" + "00" * 20


class InvalidHex(ProtocolError, ValueError):
    """A value that must be an address or a 32-byte word is not one."""


def normalize_address(value: object, field: str = "address") -> str:
    """Return ``value`` as a lowercase ``0x`` address, or raise :class:`InvalidHex`."""
    if not isinstance(value, str) or not _ADDRESS_RE.fullmatch(value):
        raise InvalidHex(f"{field} must be a 0x-prefixed 20-byte hex address")
    return value.lower()


def normalize_bytes32(value: object, field: str = "bytes32") -> str:
    """Return ``value`` as a lowercase ``0x`` 32-byte hex word, or raise :class:`InvalidHex`."""
    if not isinstance(value, str) or not _BYTES32_RE.fullmatch(value):
        raise InvalidHex(f"{field} must be a 0x-prefixed 32-byte hex value")
    return value.lower()


def checksum_address(value: str) -> str:
    """EIP-55 form of an address (display, and web3 calls that demand it).

    Each hex letter is upper-cased where the matching nibble of the keccak of
    the lowercase address is 8 or more.
    """
    body = normalize_address(value)[2:]
    nibbles = keccak(body.encode("ascii")).hex()
    return "0x" + "".join(
        char.upper() if int(nibble, 16) >= 8 else char
        for char, nibble in zip(body, nibbles, strict=False)
    )


def address_word(address: str) -> bytes:
    """ABI encoding of an address: 12 zero bytes then the 20 address bytes."""
    return b"\x00" * 12 + bytes.fromhex(normalize_address(address)[2:])


def uint_word(value: int, bits: int = 256) -> bytes:
    """ABI encoding of an unsigned integer that must fit in ``bits`` bits."""
    if value < 0 or value >= 1 << bits:
        raise ValueError(f"value does not fit in uint{bits}")
    return value.to_bytes(32, "big")


def bytes32_word(value: str) -> bytes:
    """ABI encoding of a bytes32 given as 0x-hex."""
    return bytes.fromhex(normalize_bytes32(value)[2:])
