"""Amounts are canonical decimal strings of uint128, never numbers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mppagent.protocol import MAX_AMOUNT, InvalidAmount, format_amount, parse_amount


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("1", 1),
        ("250000", 250_000),
        ("9007199254740993", 2**53 + 1),
        ("340282366920938463463374607431768211455", 2**128 - 1),
    ],
)
def test_parse_amount_accepts_canonical_strings(text: str, value: int) -> None:
    assert parse_amount(text, "amount") == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (1000, "must be a decimal string, got int"),
        (0, "must be a decimal string, got int"),
        (1.5, "must be a decimal string, got float"),
        (1e3, "must be a decimal string, got float"),
        (True, "must be a decimal string, got a boolean"),
        (None, "must be a decimal string, got NoneType"),
        (Decimal(5), "must be a decimal string, got Decimal"),
        (["1"], "must be a decimal string, got list"),
    ],
)
def test_parse_amount_rejects_non_strings(value: object, reason: str) -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount(value, "cumulativeAmount")
    assert info.value.field == "cumulativeAmount"
    assert info.value.reason == reason
    assert str(info.value) == f"cumulativeAmount: {reason}"


@pytest.mark.parametrize(
    "text",
    ["", "1e3", " 1", "1 ", "01", "00", "-1", "+1", "1.0", "0x10", "1_000", "١٢", "\uff11", "1\n"],
)
def test_parse_amount_rejects_non_canonical_strings(text: str) -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount(text, "spent")
    assert info.value.field == "spent"
    assert info.value.reason == (
        f"must be ASCII digits without sign, spaces or leading zeros, got {text!r}"
    )


def test_parse_amount_clips_long_values_in_message() -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount("x" * 100, "amount")
    assert info.value.reason.endswith(f"got {'x' * 24 + '...'!r}")


@pytest.mark.parametrize("text", [str(2**128), "9" * 39, "1" + "0" * 39, "1" * 1000])
def test_parse_amount_rejects_above_uint128(text: str) -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount(text, "deposit")
    assert "deposit" in str(info.value)


def test_format_amount() -> None:
    assert format_amount(0) == "0"
    assert format_amount(25) == "25"
    assert format_amount(MAX_AMOUNT) == "340282366920938463463374607431768211455"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1, "must not be negative"),
        (2**128, "exceeds the uint128 maximum 2**128 - 1"),
        (True, "must be an int, got bool"),
        (1.0, "must be an int, got float"),
        ("1", "must be an int, got str"),
    ],
)
def test_format_amount_rejects(value: object, reason: str) -> None:
    with pytest.raises(InvalidAmount) as info:
        format_amount(value, "topUp")  # type: ignore[arg-type]
    assert str(info.value) == f"topUp: {reason}"
