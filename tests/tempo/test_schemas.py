"""Wire models of the Tempo session intent: what a peer may send, and its one spelling."""

from __future__ import annotations

from typing import Any

import pytest

from mppagent.tempo.schemas import InvalidSessionMessage, VoucherPayload, parse_payload

CHANNEL = "0x" + "ab" * 32


def voucher(signature: str) -> dict[str, Any]:
    return {
        "action": "voucher",
        "channelId": CHANNEL,
        "cumulativeAmount": "25",
        "signature": signature,
    }


def test_hex_blobs_are_lowercased() -> None:
    payload = parse_payload(voucher("0x" + "AB" * 65))
    assert isinstance(payload, VoucherPayload)
    assert payload.signature == "0x" + "ab" * 65


@pytest.mark.parametrize(
    "signature",
    [
        "0x 1234 ",
        "0x12\t34",
        "0x12\n3",
        "0x1234 \x0b",
        "0x\u0661\u0662",
        "0x12g4",
        "0X1234",
        "0x123",
    ],
)
def test_hex_blobs_refuse_whitespace_and_non_hex(signature: str) -> None:
    # Found by benchmarks/fuzz.py: bytes.fromhex skips whitespace, so "0x 1234 " passed as
    # hex and was kept, spaces included, as the payload's signature.
    with pytest.raises(InvalidSessionMessage, match="signature"):
        parse_payload(voucher(signature))
