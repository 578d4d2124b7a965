"""Fixed facts of the TIP-1034 channel reserve (session protocol v2)."""

from __future__ import annotations

__all__ = ["CLOSE_GRACE_PERIOD", "RESERVE_ADDRESS", "UINT96_MAX"]

RESERVE_ADDRESS = "0x4d50500000000000000000000000000000000000"
"""The reserve's canonical address on every Tempo chain (ASCII "MPP"), lowercase."""

CLOSE_GRACE_PERIOD = 900
"""Seconds between ``requestClose`` and the earliest ``withdraw``."""

UINT96_MAX = (1 << 96) - 1
"""The largest amount (deposit, voucher, capture) the reserve can hold or pay."""
