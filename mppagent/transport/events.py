"""What the paying transport reports: payment events for observers, outcomes for callers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mppagent.errors import NetworkError

__all__ = [
    "PAYMENT_OUTCOME",
    "Observer",
    "PaymentEvent",
    "PaymentOutcome",
    "StreamInterrupted",
]

PAYMENT_OUTCOME = "mppagent.payment"
"""Response extension holding the :class:`PaymentOutcome` of a paid response."""


class StreamInterrupted(NetworkError):
    """A paid stream ended before the server's final receipt; state was saved."""


@dataclass(frozen=True)
class PaymentEvent:
    """Something the transport did, for status lines, logs and benchmarks.

    ``kind`` is one of ``challenge``, ``open``, ``reuse`` (an open channel
    taken for this request; ``amount`` is its deposit), ``voucher``,
    ``top_up``, ``receipt``, ``final_receipt`` (``detail["billed"]``: what
    this request cost), ``unverified`` (a paid response without any receipt).
    Amounts are base units; ``seconds`` is the time from a voucher demand to
    its acceptance (the stall).
    """

    kind: str
    channel_id: str
    amount: int = 0
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


Observer = Callable[[PaymentEvent], None]


@dataclass
class PaymentOutcome:
    """How a paid response was paid, for the caller (``response.extensions``).

    ``verified`` is False when the server sent no receipt at all: nothing it
    billed was checked, and the channel gets no pay-ahead until a receipt
    verifies it. ``billed`` is what the verified receipts say this request
    cost; ``under_billed`` what the server billed less than it could have.
    """

    channel_id: str
    verified: bool = False
    billed: int | None = None
    signed: int = 0
    under_billed: int = 0
