"""A payer's 0x76 may fund this escrow in this currency, and do nothing else."""

from __future__ import annotations

import pytest

from mppagent.tempo.escrow import encode_approve, encode_open, encode_top_up, encode_transfer
from mppagent.tempo.payer_calls import DisallowedCalls, expect_payer_calls
from mppagent.tempo.tempotx import Call

ESCROW = "0x" + "e5" * 20
CURRENCY = "0x20c0000000000000000000000000000000000000"
OTHER = "0x20c0000000000000000000000000000000000001"
PAYEE = "0x" + "7e" * 20
SALT = "0x" + "5a" * 32
CHANNEL = "0x" + "c1" * 32
SIGNER = "0x" + "00" * 20
DEPOSIT = 1_000_000

APPROVE = Call(CURRENCY, encode_approve(ESCROW, DEPOSIT))
OPEN = Call(ESCROW, encode_open(PAYEE, CURRENCY, DEPOSIT, SALT, SIGNER))
TOP_UP = Call(ESCROW, encode_top_up(CHANNEL, DEPOSIT))


@pytest.mark.parametrize(
    ("calls", "action", "function"),
    [
        ([APPROVE, OPEN], "open", "open"),
        ([OPEN], "open", "open"),
        ([APPROVE, TOP_UP], "topUp", "topUp"),
        ([TOP_UP], "topUp", "topUp"),
    ],
)
def test_allowed_shapes(calls: list[Call], action: str, function: str) -> None:
    # Addresses are compared normalised: a checksummed escrow is the same escrow.
    call = expect_payer_calls(calls, action=action, escrow="0x" + "E5" * 20, currency=CURRENCY)
    assert call.function == function


REFUSED: dict[str, tuple[list[Call], str, str]] = {
    "nothing": ([], "open", "1 or 2 calls"),
    "a third call": ([APPROVE, OPEN, Call(CURRENCY, encode_transfer(PAYEE, 1))], "open", "1 or 2"),
    "transfer smuggled first": (
        [Call(CURRENCY, encode_transfer(PAYEE, DEPOSIT)), OPEN],
        "open",
        "approve the escrow",
    ),
    "approve after open": ([OPEN, APPROVE], "open", "last call"),
    "approve for another spender": (
        [Call(CURRENCY, encode_approve(PAYEE, DEPOSIT)), OPEN],
        "open",
        "approve the escrow",
    ),
    "approve for more": (
        [Call(CURRENCY, encode_approve(ESCROW, DEPOSIT + 1)), OPEN],
        "open",
        "exactly the amount",
    ),
    "approve on another token": (
        [Call(OTHER, encode_approve(ESCROW, DEPOSIT)), OPEN],
        "open",
        "currency",
    ),
    "open in another token": (
        [Call(ESCROW, encode_open(PAYEE, OTHER, DEPOSIT, SALT, SIGNER))],
        "open",
        "another token",
    ),
    "open on another escrow": (
        [Call(PAYEE, encode_open(PAYEE, CURRENCY, DEPOSIT, SALT, SIGNER))],
        "open",
        "last call",
    ),
    "topUp where open was asked": ([APPROVE, TOP_UP], "open", "escrow's open"),
    "open where topUp was asked": ([APPROVE, OPEN], "topUp", "escrow's topUp"),
    "native value": ([APPROVE, Call(ESCROW, OPEN.data, 1)], "open", "native coin"),
    "trailing bytes": ([APPROVE, Call(ESCROW, OPEN.data + b"\x00")], "open", "beyond"),
    "not an escrow call": ([Call(ESCROW, b"\x12\x34\x56\x78")], "open", "last call"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused(name: str) -> None:
    calls, action, text = REFUSED[name]
    with pytest.raises(DisallowedCalls, match=text):
        expect_payer_calls(calls, action=action, escrow=ESCROW, currency=CURRENCY)
