"""Amounts on the wire: decimal strings of unsigned 128-bit integers, never floats.

The draft and the Tempo session intent carry every amount as a JSON string of
base units (``"250000"``); the escrow stores them as ``uint128``. A float would
silently round (``2**53 + 1``), a JSON number could be parsed differently by
each peer, and a sign, exponent, space or leading zero would give one amount
several spellings. So exactly one spelling per amount is accepted, and amounts
are plain ``int`` everywhere inside mppagent.
"""

from __future__ import annotations

import re
from typing import Final

from mppagent.protocol.errors import InvalidAmount

__all__ = ["MAX_AMOUNT", "format_amount", "parse_amount"]

#: The largest amount the escrow can hold (``type(uint128).max``).
MAX_AMOUNT: Final = 2**128 - 1

_CANONICAL = re.compile(r"0|[1-9][0-9]{0,38}")


def parse_amount(value: object, field: str) -> int:
    """Read a wire amount: a JSON string of ASCII digits, no sign, no leading zeros.

    ``field`` names the JSON member being read; it appears in the error so a
    rejected challenge or receipt says exactly which amount was wrong. Integers,
    floats and booleans are refused even when their value would fit: a peer
    that sends numbers is not following the protocol, and guessing is how money
    bugs start.
    """
    if not isinstance(value, str):
        kind = "a boolean" if isinstance(value, bool) else type(value).__name__
        raise InvalidAmount(field, f"must be a decimal string, got {kind}")
    if not _CANONICAL.fullmatch(value):
        shown = value if len(value) <= 24 else value[:24] + "..."
        raise InvalidAmount(
            field,
            f"must be ASCII digits without sign, spaces or leading zeros, got {shown!r}",
        )
    amount = int(value)
    if amount > MAX_AMOUNT:
        raise InvalidAmount(field, "exceeds the uint128 maximum 2**128 - 1")
    return amount


def format_amount(value: int, field: str = "amount") -> str:
    """Write an amount in its only wire spelling (``format_amount(25) == "25"``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(field, f"must be an int, got {type(value).__name__}")
    if value < 0:
        raise InvalidAmount(field, "must not be negative")
    if value > MAX_AMOUNT:
        raise InvalidAmount(field, "exceeds the uint128 maximum 2**128 - 1")
    return str(value)
