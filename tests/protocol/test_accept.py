"""Accept-Payment building and parsing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mppagent.protocol import (
    HeaderTooLarge,
    InvalidAcceptPayment,
    PaymentRange,
    QValue,
    accept_payment_header,
    parse_accept_payment,
    preference,
)


def test_build_from_tuples() -> None:
    assert (
        accept_payment_header([("tempo", "session", 1), ("tempo", "charge", Decimal("0.5"))])
        == "tempo/session, tempo/charge;q=0.5"
    )


PREFERENCES: dict[str, QValue] = {"tempo/session": 1, "tempo/charge": "0.5", "*/*": 0}


def test_build_from_mapping() -> None:
    assert accept_payment_header(PREFERENCES) == "tempo/session, tempo/charge;q=0.5, */*;q=0"


@pytest.mark.parametrize(
    ("q", "rendered"),
    [
        (1, "a/b"),
        ("1", "a/b"),
        ("1.000", "a/b"),
        (Decimal("1.0"), "a/b"),
        (0, "a/b;q=0"),
        ("0", "a/b;q=0"),
        ("0.", "a/b;q=0"),
        (Decimal("0.000"), "a/b;q=0"),
        (Decimal("-0"), "a/b;q=0"),
        ("0.5", "a/b;q=0.5"),
        (Decimal("0.500"), "a/b;q=0.5"),
        ("0.125", "a/b;q=0.125"),
        (Decimal("0.1") + Decimal("0.2"), "a/b;q=0.3"),
        (Decimal("5E-3"), "a/b;q=0.005"),
    ],
)
def test_q_rendering(q: int | str | Decimal, rendered: str) -> None:
    assert accept_payment_header([("a", "b", q)]) == rendered


@pytest.mark.parametrize(
    "q",
    [
        0.5,
        True,
        2,
        -1,
        "1.5",
        "0.1234",
        ".5",
        "1.001",
        " 0.5",
        "0,5",
        Decimal("0.0001"),
        Decimal("1.001"),
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("1E+100"),
        None,
    ],
)
def test_bad_weights(q: object) -> None:
    with pytest.raises(InvalidAcceptPayment):
        accept_payment_header([("a", "b", q)])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "preferences",
    [
        [("Tempo", "charge", 1)],
        [("tempo2", "charge", 1)],
        [("", "charge", 1)],
        [("tempo", "pay now", 1)],
        [("tempo", "", 1)],
        [("tempo", "charge")],
        {"tempo": 1},
        {"tempo/charge/x": 1},
        [],
        {},
    ],
)
def test_bad_preferences(preferences: object) -> None:
    with pytest.raises(InvalidAcceptPayment):
        accept_payment_header(preferences)  # type: ignore[arg-type]


def test_duplicates_are_refused() -> None:
    with pytest.raises(InvalidAcceptPayment, match="tempo/charge appears more than once"):
        accept_payment_header([("tempo", "charge", 1), ("tempo", "charge", "0.5")])


def test_intents_follow_the_abnf_and_wildcards() -> None:
    assert accept_payment_header([("*", "charge-V2", 1), ("tempo", "*", 0)]) == (
        "*/charge-V2, tempo/*;q=0"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "tempo/charge, tempo/session, stripe/charge;q=0.5, solana/charge;q=0.3",
            [
                PaymentRange("tempo", "charge"),
                PaymentRange("tempo", "session"),
                PaymentRange("stripe", "charge", Decimal("0.5")),
                PaymentRange("solana", "charge", Decimal("0.3")),
            ],
        ),
        (
            "tempo/*, solana/*;q=0.6, */session;q=0.3",
            [
                PaymentRange("tempo", "*"),
                PaymentRange("solana", "*", Decimal("0.6")),
                PaymentRange("*", "session", Decimal("0.3")),
            ],
        ),
        (
            "tempo/charge, tempo/session;q=0, solana/charge",
            [
                PaymentRange("tempo", "charge"),
                PaymentRange("tempo", "session", Decimal("0")),
                PaymentRange("solana", "charge"),
            ],
        ),
        ("  ,a/b ; Q=0.25 ,, ", [PaymentRange("a", "b", Decimal("0.25"))]),
        ("", []),
    ],
)
def test_parse_draft_examples(value: str, expected: list[PaymentRange]) -> None:
    assert parse_accept_payment(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "tempo",
        "tempo/",
        "/charge",
        "Tempo/charge",
        "a/b;q=2",
        "a/b;q=",
        "a/b;x=1",
        "a/b;q=0.5;q=1",
        "a/b c/d",
        "a/b/c",
        "a/b;q=0.1234",
    ],
)
def test_parse_rejects(value: str) -> None:
    with pytest.raises(InvalidAcceptPayment):
        parse_accept_payment(value)


def test_parse_limit() -> None:
    with pytest.raises(HeaderTooLarge):
        parse_accept_payment("a/b, " * 20_000)


def test_round_trip() -> None:
    header = "tempo/session, tempo/charge;q=0.5, */*;q=0"
    assert ", ".join(str(r) for r in parse_accept_payment(header)) == header


def test_preference_uses_most_specific_match() -> None:
    ranges = parse_accept_payment("tempo/*, solana/*;q=0.6, */session;q=0.3, tempo/session;q=0")
    assert preference(ranges, "tempo", "session") == Decimal("0")
    assert preference(ranges, "tempo", "charge") == Decimal("1")
    assert preference(ranges, "solana", "session") == Decimal("0.6")
    assert preference(ranges, "stripe", "session") == Decimal("0.3")
    assert preference(ranges, "stripe", "charge") is None


def test_payment_range_matching() -> None:
    assert PaymentRange("*", "*").matches("x", "y")
    assert not PaymentRange("tempo", "*").matches("stripe", "charge")
    assert [
        PaymentRange(m, i).specificity for m, i in [("*", "*"), ("*", "a"), ("a", "*"), ("a", "b")]
    ] == [0, 1, 2, 3]
