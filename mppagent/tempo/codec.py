"""ABI encoding and decoding, with eth-abi imported on first use.

eth-abi (and eth-utils under it) take a quarter of a second to import, and the
modules that build escrow calls are imported by every agent, including one that
only pays on an already open channel and never encodes a call. These two
functions keep eth-abi's signatures and load it when a call is first encoded or
an answer decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["abi_decode", "abi_encode"]


def abi_encode(types: Sequence[str], args: Sequence[Any]) -> bytes:
    """``eth_abi.abi.encode``."""
    from eth_abi.abi import encode

    return bytes(encode(types, args))


def abi_decode(types: Sequence[str], data: bytes, strict: bool = True) -> tuple[Any, ...]:
    """``eth_abi.abi.decode``."""
    from eth_abi.abi import decode

    return tuple(decode(types, data, strict=strict))
