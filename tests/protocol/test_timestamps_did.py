"""RFC 3339 timestamps and did:pkh payer identifiers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mppagent.protocol import (
    InvalidDID,
    InvalidTimestamp,
    did_pkh,
    format_rfc3339,
    parse_did_pkh,
    parse_rfc3339,
    validate_source,
)

ADDRESS = "0x742d35Cc6634C0532925a3b844Bc9e7595f8fE00"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-15T12:05:00Z", datetime(2025, 1, 15, 12, 5, tzinfo=UTC)),
        ("2025-01-15t12:05:00z", datetime(2025, 1, 15, 12, 5, tzinfo=UTC)),
        ("2025-01-15T12:05:00.5Z", datetime(2025, 1, 15, 12, 5, 0, 500_000, tzinfo=UTC)),
        ("2025-01-15T12:05:00.1234567Z", datetime(2025, 1, 15, 12, 5, 0, 123_456, tzinfo=UTC)),
        ("2025-01-15T14:05:00+02:00", datetime(2025, 1, 15, 12, 5, tzinfo=UTC)),
        ("2025-01-15T07:35:00-04:30", datetime(2025, 1, 15, 12, 5, tzinfo=UTC)),
        ("2025-01-15T12:05:00-00:00", datetime(2025, 1, 15, 12, 5, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2025-01-15", "not an RFC 3339 date-time like 2025-01-15T12:05:00Z"),
        ("2025-01-15T12:05:00", "not an RFC 3339 date-time like 2025-01-15T12:05:00Z"),
        ("2025-01-15 12:05:00Z", "not an RFC 3339 date-time like 2025-01-15T12:05:00Z"),
        ("20250115T120500Z", "not an RFC 3339 date-time like 2025-01-15T12:05:00Z"),
        ("2025-01-15T12:05Z", "not an RFC 3339 date-time like 2025-01-15T12:05:00Z"),
        ("2025-01-15T12:05:00+0200", "not an RFC 3339 date-time like 2025-01-15T12:05:00Z"),
        ("\uff12025-01-15T12:05:00Z", "not an RFC 3339 date-time like 2025-01-15T12:05:00Z"),
        (" 2025-01-15T12:05:00Z", "not an RFC 3339 date-time like 2025-01-15T12:05:00Z"),
        ("2025-02-30T12:05:00Z", "date or time field out of range"),
        ("2025-01-15T24:00:00Z", "date or time field out of range"),
        ("0000-01-01T00:00:00Z", "date or time field out of range"),
        ("0001-01-01T00:00:00+01:00", "date or time field out of range"),
        ("2025-01-15T12:05:00+24:00", "UTC offset out of range"),
        ("2025-01-15T12:05:00+01:60", "UTC offset out of range"),
    ],
)
def test_parse_rfc3339_rejects(text: str, reason: str) -> None:
    with pytest.raises(InvalidTimestamp) as info:
        parse_rfc3339(text, what="expires")
    assert str(info.value) == f"expires: {reason}"


def test_parse_rfc3339_rejects_non_strings() -> None:
    with pytest.raises(InvalidTimestamp, match="got int"):
        parse_rfc3339(1736942700)


def test_format_rfc3339() -> None:
    assert format_rfc3339(datetime(2025, 1, 15, 12, 5, tzinfo=UTC)) == "2025-01-15T12:05:00Z"
    plus2 = timezone(timedelta(hours=2))
    assert format_rfc3339(datetime(2025, 1, 15, 14, 5, tzinfo=plus2)) == "2025-01-15T12:05:00Z"
    assert (
        format_rfc3339(datetime(2025, 1, 15, 12, 5, 0, 250_000, tzinfo=UTC))
        == "2025-01-15T12:05:00.25Z"
    )
    assert format_rfc3339(datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0005-01-02T03:04:05Z"


def test_format_rfc3339_refuses_naive() -> None:
    with pytest.raises(InvalidTimestamp, match="timezone-aware"):
        format_rfc3339(datetime(2025, 1, 15, 12, 5))


def test_did_pkh() -> None:
    assert did_pkh(4217, ADDRESS) == f"did:pkh:eip155:4217:{ADDRESS}"
    assert parse_did_pkh(f"did:pkh:eip155:31337:{ADDRESS.lower()}") == (31337, ADDRESS.lower())


@pytest.mark.parametrize(
    ("chain_id", "address"),
    [
        (0, ADDRESS),
        (-1, ADDRESS),
        (True, ADDRESS),
        (1, ADDRESS[:-1]),
        (1, ADDRESS[2:]),
        (1, ADDRESS + "0"),
        (1, "0x" + "g" * 40),
    ],
)
def test_did_pkh_rejects(chain_id: int, address: str) -> None:
    with pytest.raises(InvalidDID):
        did_pkh(chain_id, address)


@pytest.mark.parametrize(
    "source",
    [
        f"did:pkh:eip155:01:{ADDRESS}",
        f"did:pkh:eip155:0:{ADDRESS}",
        f"did:pkh:eip155::{ADDRESS}",
        f"did:pkh:eip155:1:{ADDRESS[:-2]}",
        f"did:pkh:eip155:1:{ADDRESS}:extra",
        "did:pkh:eip155:1",
    ],
)
def test_validate_source_rejects_bad_eip155(source: str) -> None:
    with pytest.raises(InvalidDID) as info:
        validate_source(source)
    assert str(info.value) == "source: expected did:pkh:eip155:<chainId>:<0x address>"


def test_validate_source_other_namespaces_and_methods() -> None:
    validate_source(
        "did:pkh:solana:4sGjMW1sUnHzSxGspuhpqLDx6wiyjNtZ:CKg5d12Jhpej1JqtmxLJgaFqqeYjxgPqToJ"
    )
    validate_source("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK")
    validate_source("anything that is not did:pkh")
    with pytest.raises(InvalidDID, match="CAIP-10"):
        validate_source("did:pkh:x:1:abc")
