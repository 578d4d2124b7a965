"""RFC 3339 timestamps, parsed strictly and always compared in UTC.

``datetime.fromisoformat`` accepts far more than RFC 3339 (week dates, missing
offsets, ``20250115``), and a naive datetime compared with an aware one raises at
the worst moment. So challenge ``expires`` and receipt ``timestamp`` go through
this one parser, which returns aware UTC datetimes only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from mppagent.protocol.errors import InvalidTimestamp

__all__ = ["format_rfc3339", "parse_rfc3339"]

_RFC3339 = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"[Tt](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]{1,32}))?"
    r"(?P<offset>[Zz]|(?P<sign>[+-])(?P<off_hour>[0-9]{2}):(?P<off_minute>[0-9]{2}))"
)


def parse_rfc3339(value: object, *, what: str = "timestamp") -> datetime:
    """Parse an RFC 3339 ``date-time`` into an aware UTC datetime.

    A leap second (``:60``) is read as the first instant of the next minute;
    fractions beyond microseconds are truncated. ``-00:00`` ("offset unknown")
    is read as UTC, which is what it denotes in practice.
    """
    if not isinstance(value, str):
        raise InvalidTimestamp(
            f"expected an RFC 3339 string, got {type(value).__name__}", what=what
        )
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise InvalidTimestamp("not an RFC 3339 date-time like 2025-01-15T12:05:00Z", what=what)
    second = int(match["second"])
    leap = second == 60
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]
    offset = timedelta(0)
    if match["sign"] is not None:
        off_hour, off_minute = int(match["off_hour"]), int(match["off_minute"])
        if off_hour > 23 or off_minute > 59:
            raise InvalidTimestamp("UTC offset out of range", what=what)
        offset = timedelta(hours=off_hour, minutes=off_minute)
        if match["sign"] == "-":
            offset = -offset
    try:
        local = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            59 if leap else second,
            int(fraction),
            tzinfo=timezone(offset),
        )
        if leap:
            local += timedelta(seconds=1)
        return local.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidTimestamp("date or time field out of range", what=what) from None


def format_rfc3339(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 in UTC (``2025-01-15T12:05:00Z``).

    Microseconds are kept only when present, without trailing zeros, so whole
    seconds look like the draft's examples. Naive datetimes are refused: their
    meaning depends on the machine's zone, which a peer cannot know.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidTimestamp("datetime must be timezone-aware", what="expires")
    utc = moment.astimezone(UTC)
    text = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    )
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"
