"""``Accept-Payment``: a client's weighted list of acceptable method/intent pairs.

``Accept-Payment: tempo/session, tempo/charge;q=0.5`` tells a server which
challenges to offer first (``q`` defaults to 1; ``q=0`` means "do not offer").
Weights are kept as :class:`~decimal.Decimal` and written in their shortest
form: a float weight such as ``0.1 + 0.2`` would otherwise leak
``q=0.30000000000000004`` onto the wire, so floats are refused outright.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TypeAlias

from mppagent.protocol.errors import HeaderTooLarge, InvalidAcceptPayment
from mppagent.protocol.limits import MAX_HEADER_BYTES

__all__ = [
    "PaymentRange",
    "QValue",
    "accept_payment_header",
    "parse_accept_payment",
    "preference",
]

#: A weight as callers may give it: ``1``, ``"0.5"`` or ``Decimal("0.25")``.
QValue: TypeAlias = int | str | Decimal

_METHOD = re.compile(r"[a-z]+|\*")
_INTENT = re.compile(r"[A-Za-z0-9-]+|\*")
# RFC 9110 §12.4.2 qvalue.
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_RANGE = re.compile(
    r"(?P<method>[^/;,\s]+)/(?P<intent>[^/;,\s]+)"
    r"(?:[ \t]*;[ \t]*[qQ]=(?P<q>[^;,\s]*))?"
)
_ONE = Decimal(1)
_MILLI = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class PaymentRange:
    """One ``method/intent;q=...`` entry; ``*`` is a wildcard on either side."""

    method: str
    intent: str
    q: Decimal = _ONE

    def matches(self, method: str, intent: str) -> bool:
        """Whether this range covers a challenge with ``method`` and ``intent``."""
        return self.method in ("*", method) and self.intent in ("*", intent)

    @property
    def specificity(self) -> int:
        """How specific the range is: exact method counts 2, exact intent 1."""
        return (2 if self.method != "*" else 0) + (1 if self.intent != "*" else 0)

    def __str__(self) -> str:
        text = f"{self.method}/{self.intent}"
        return text if self.q == _ONE else f"{text};q={_format_q(self.q)}"


def _format_q(q: Decimal) -> str:
    text = format(q.quantize(_MILLI), "f").rstrip("0").rstrip(".")
    return text or "0"


def _check_q(q: object, label: str) -> Decimal:
    if isinstance(q, bool | float):
        raise InvalidAcceptPayment(
            f"weight for {label} must be an int, str or Decimal, not {type(q).__name__}",
            what="Accept-Payment",
        )
    if isinstance(q, str):
        if not _QVALUE.fullmatch(q):
            raise InvalidAcceptPayment(
                f"weight for {label} must be between 0 and 1 with at most 3 decimals",
                what="Accept-Payment",
            )
        return Decimal(q)
    if isinstance(q, int):
        value = Decimal(q)
    elif isinstance(q, Decimal):
        value = q
    else:
        raise InvalidAcceptPayment(
            f"weight for {label} must be an int, str or Decimal, not {type(q).__name__}",
            what="Accept-Payment",
        )
    try:
        exact = value.is_finite() and value == value.quantize(_MILLI)
    except InvalidOperation:
        exact = False
    if not exact or not (0 <= value <= 1):
        raise InvalidAcceptPayment(
            f"weight for {label} must be between 0 and 1 with at most 3 decimals",
            what="Accept-Payment",
        )
    return value.copy_abs()  # turns Decimal("-0") into 0


def _check_range(method: object, intent: object) -> str:
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise InvalidAcceptPayment(
            "method must be lowercase letters a-z or '*'", what="Accept-Payment"
        )
    if not isinstance(intent, str) or not _INTENT.fullmatch(intent):
        raise InvalidAcceptPayment(
            "intent must be letters, digits and '-' or '*'", what="Accept-Payment"
        )
    return f"{method}/{intent}"


def accept_payment_header(
    preferences: Iterable[tuple[str, str, QValue]] | Mapping[str, QValue],
) -> str:
    """Build an ``Accept-Payment`` value, keeping the caller's order.

    ``preferences`` is either ``[("tempo", "session", 1), ("tempo", "charge",
    Decimal("0.5"))]`` or ``{"tempo/session": 1, "tempo/charge": "0.5"}``.
    ``q`` is omitted when it is 1. Duplicates, bad identifiers, weights outside
    [0, 1] or with more than three decimals, and floats raise
    :class:`~mppagent.protocol.InvalidAcceptPayment`.
    """
    entries: list[tuple[str, str, object]] = []
    if isinstance(preferences, Mapping):
        for key, q in preferences.items():
            if not isinstance(key, str) or key.count("/") != 1:
                raise InvalidAcceptPayment(
                    "mapping keys must look like 'method/intent'", what="Accept-Payment"
                )
            method, intent = key.split("/")
            entries.append((method, intent, q))
    else:
        for item in preferences:
            if not isinstance(item, tuple) or len(item) != 3:
                raise InvalidAcceptPayment(
                    "entries must be (method, intent, q) tuples", what="Accept-Payment"
                )
            entries.append(item)
    if not entries:
        raise InvalidAcceptPayment("no preferences given", what="Accept-Payment")
    seen: set[str] = set()
    ranges: list[PaymentRange] = []
    for method, intent, q in entries:
        label = _check_range(method, intent)
        if label in seen:
            raise InvalidAcceptPayment(f"{label} appears more than once", what="Accept-Payment")
        seen.add(label)
        ranges.append(PaymentRange(str(method), str(intent), _check_q(q, label)))
    return ", ".join(str(r) for r in ranges)


def parse_accept_payment(value: str) -> list[PaymentRange]:
    """Parse an ``Accept-Payment`` value (servers), in the order the client wrote.

    Empty list elements are skipped. Anything outside the draft's grammar
    raises :class:`~mppagent.protocol.InvalidAcceptPayment`; the draft lets a
    server ignore a malformed header, so callers typically catch it and fall
    back to offering everything.
    """
    if not isinstance(value, str):
        raise InvalidAcceptPayment("expected a str header value", what="Accept-Payment")
    if len(value) > MAX_HEADER_BYTES:
        raise HeaderTooLarge(
            f"over the limit of {MAX_HEADER_BYTES} bytes",
            limit=MAX_HEADER_BYTES,
            size=len(value),
            what="Accept-Payment",
        )
    ranges: list[PaymentRange] = []
    for raw in value.split(","):
        element = raw.strip(" \t")
        if not element:
            continue
        match = _RANGE.fullmatch(element)
        if match is None:
            raise InvalidAcceptPayment(
                "each element must be method/intent with an optional ;q=weight",
                what="Accept-Payment",
            )
        label = _check_range(match["method"], match["intent"])
        q = _ONE if match["q"] is None else _check_q(match["q"], label)
        ranges.append(PaymentRange(match["method"], match["intent"], q))
    return ranges


def preference(ranges: Iterable[PaymentRange], method: str, intent: str) -> Decimal | None:
    """The client's weight for ``method/intent``: that of the most specific matching range.

    ``None`` when no range matches (the client did not mention it); ``0`` when it
    explicitly refuses. Among equally specific matches the first one wins.
    """
    best: PaymentRange | None = None
    for candidate in ranges:
        if candidate.matches(method, intent) and (
            best is None or candidate.specificity > best.specificity
        ):
            best = candidate
    return None if best is None else best.q
