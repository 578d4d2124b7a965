"""Fuzz target for :func:`mppagent.tempo.tempotx.decode_tempo_transaction`.

Inputs are real signed Tempo transactions -- plain, 2D or expiring nonce,
one to three calls, with or without fee token, sponsored in the ``0x76``
placeholder form, the ``0x78`` hand-over or co-signed -- then mutated: bytes
flipped, inserted or cut, or one RLP field replaced by another value or shape,
re-encoded so the mutation gets past the RLP layer. A decoder that accepts
something must give back exactly the bytes it was given when re-encoding it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import rlp

from mppagent.tempo.tempotx import (
    EXPIRING_NONCE_KEY,
    FEE_PAYER_TYPE,
    Call,
    TempoTransaction,
    decode_tempo_transaction,
    sign_as_fee_payer,
)
from mppagent.tempo.transactions import InvalidTransaction

if TYPE_CHECKING:
    from tests.fuzz.targets import Source

__all__ = ["check_tempo_tx", "tempo_tx_input"]

_SENDER = "0x" + "5a" * 32
_FEE_PAYER = "0x" + "a5" * 32
_ADDRESSES = ("0x20c0000000000000000000000000000000000000", "0x" + "33" * 20, "0x" + "00" * 20)


def _valid(src: Source) -> bytes:
    """A correctly signed transaction in one of its three wire forms."""
    calls = tuple(
        Call(src.choice(_ADDRESSES), src.opaque(src.choice((0, 4, 36, 68))), src.choice((0, 1)))
        for _ in range(1 + src.below(3))
    )
    expiring = src.chance(2)
    sponsored = src.chance(3)
    tx = TempoTransaction(
        chain_id=src.choice((31337, 4217, 42431, 1)),
        calls=calls,
        gas=src.integer(0, 3_000_000),
        max_fee_per_gas=src.choice((0, 20 * 10**9, 2**128 - 1)),
        max_priority_fee_per_gas=0,
        nonce_key=EXPIRING_NONCE_KEY if expiring else src.choice((0, 1, 2**64)),
        nonce=0 if expiring else src.integer(0, 300),
        valid_before=1_800_000_000 if expiring or src.chance(4) else None,
        valid_after=1_700_000_000 if src.chance(4) else None,
        fee_token=None if src.chance(4) else _ADDRESSES[0],
        sponsored=sponsored,
    )
    signed = tx.sign(_SENDER)
    if not sponsored:
        return signed.raw
    form = src.below(3)
    if form == 0:
        return signed.raw  # placeholder form
    if form == 1:
        return signed.fee_payer_envelope()
    return sign_as_fee_payer(signed, _FEE_PAYER, _ADDRESSES[0]).raw


def _field_value(src: Source) -> Any:
    kind = src.below(6)
    if kind == 0:
        return b""
    if kind == 1:
        return b"\x00"
    if kind == 2:
        return src.opaque(src.choice((1, 19, 20, 21, 32, 33, 65)))
    if kind == 3:
        return []
    if kind == 4:
        return [src.opaque(1), src.opaque(32), src.opaque(32)]
    return [[src.opaque(20), b"", b""]]


def tempo_tx_input(src: Source) -> bytes | str:
    raw = _valid(src)
    how = src.below(6)
    if how == 0:
        return raw
    if how == 1:  # a field replaced, re-encoded
        fields: list[Any] = rlp.decode(raw[1:])
        fields[src.below(len(fields))] = _field_value(src)
        return raw[:1] + rlp.encode(fields)
    if how == 2:  # a field dropped or added
        fields = rlp.decode(raw[1:])
        if src.chance(2):
            del fields[src.below(len(fields))]
        else:
            fields.insert(src.below(len(fields) + 1), _field_value(src))
        return raw[:1] + rlp.encode(fields)
    data = bytearray(raw)
    for _ in src.repeat(4, 1):
        at = src.below(len(data)) if data else 0
        if how == 3 and data:
            data[at] ^= 1 + src.below(255)
        elif how == 4:
            data[at:at] = src.opaque(1 + src.below(3))
        else:
            del data[at:]
    if src.chance(5):
        return "0x" + bytes(data).hex()
    return bytes(data)


def check_tempo_tx(raw: bytes | str) -> None:
    """Only InvalidTransaction; what is accepted re-encodes to the very same bytes."""
    try:
        decoded = decode_tempo_transaction(raw)
    except InvalidTransaction:
        return
    data = bytes.fromhex(raw[2:]) if isinstance(raw, str) else raw
    again = decoded.fee_payer_envelope() if data[0] == FEE_PAYER_TYPE else decoded.raw
    assert again == data, "accepted a transaction that does not re-encode to itself"
    assert decode_tempo_transaction(again) == decoded
