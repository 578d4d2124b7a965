"""Named faults the reference server can inject, for testing clients against hostile servers.

Switch faults on for a whole server (``DevServerConfig.faults`` or
``mppagent serve --fault NAME``), or -- when the server runs in test mode --
per request with the header ``X-Mpp-Fault: name[, name...]`` on the paid
request; ``X-Mpp-Fault-After: N`` sets after how many delivered tokens the
stream faults start (default 5). A stream's faults also govern the voucher
requests answered while it runs.

=======================  ==========================================================
fault                    what the server does
=======================  ==========================================================
overcharge               receipts claim more ``spent`` than was delivered
ask-ahead                ``requiredCumulative`` far beyond the tokens delivered
wrong-channel            need-voucher events and the final receipt name another channel
wrong-challenge          receipts carry another ``challengeId``
price-change             charges twice the advertised price per token
drop                     cuts the connection mid-stream (no final receipt)
slow-voucher             accepts each voucher only after ``slow_voucher_delay`` seconds
reject-voucher           refuses every voucher with ``verification-failed``
duplicate-need-voucher   sends every need-voucher event twice
gone                     answers ``410 channel-not-found`` for a channel it knows
endless-need-voucher     keeps demanding vouchers without delivering tokens
stall                    stops sending bytes mid-stream and keeps the connection open
huge-event               sends one SSE line of ``huge_event_bytes`` (8 MiB by default)
=======================  ==========================================================
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FAULT_AFTER_HEADER", "FAULT_HEADER", "Fault", "parse_faults"]

FAULT_HEADER = "x-mpp-fault"
FAULT_AFTER_HEADER = "x-mpp-fault-after"


class Fault(StrEnum):
    """One injectable misbehaviour (see the module docstring for what each does)."""

    OVERCHARGE = "overcharge"
    ASK_AHEAD = "ask-ahead"
    WRONG_CHANNEL = "wrong-channel"
    WRONG_CHALLENGE = "wrong-challenge"
    PRICE_CHANGE = "price-change"
    DROP = "drop"
    SLOW_VOUCHER = "slow-voucher"
    REJECT_VOUCHER = "reject-voucher"
    DUPLICATE_NEED_VOUCHER = "duplicate-need-voucher"
    GONE = "gone"
    ENDLESS_NEED_VOUCHER = "endless-need-voucher"
    STALL = "stall"
    HUGE_EVENT = "huge-event"


def parse_faults(value: str | None) -> frozenset[Fault]:
    """Parse a comma-separated fault list; unknown names raise ``ValueError``."""
    if not value:
        return frozenset()
    out = set()
    for raw in value.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        try:
            out.add(Fault(name))
        except ValueError:
            known = ", ".join(f.value for f in Fault)
            raise ValueError(f"unknown fault {name!r}; known faults: {known}") from None
    return frozenset(out)
