"""Tempo (0x76) transactions, byte for byte against the TypeScript SDK (ox/tempo, viem/tempo).

The reference encodings are computed by Node in this test run
(``tests/interop/node/tempo_tx.mjs``), from the same inputs, with the same keys;
secp256k1 signatures are deterministic (RFC 6979) on both sides, so every
signed envelope must match exactly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import rlp

from mppagent.tempo.escrow import encode_open
from mppagent.tempo.tempotx import (
    EXPIRING_NONCE_KEY,
    AccessListEntry,
    Call,
    SignedTempoTransaction,
    TempoTransaction,
    UnsupportedTempoTransaction,
    decode_tempo_transaction,
    expiring_valid_before,
    sign_as_fee_payer,
)
from mppagent.tempo.transactions import InvalidTransaction
from tests.interop.driver import run_node

SENDER_KEY = "0x" + "11" * 32
FEE_PAYER_KEY = "0x" + "22" * 32
PATH_USD = "0x20c0000000000000000000000000000000000000"
ALPHA_USD = "0x20c0000000000000000000000000000000000001"
ESCROW = "0x33b901018174ddabe4841042ab76ba85d4e24f25"
PAYEE = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
APPROVE = (
    bytes.fromhex("095ea7b3") + bytes(12) + bytes.fromhex(ESCROW[2:]) + (10**6).to_bytes(32, "big")
)
OPEN = encode_open(PAYEE, PATH_USD, 10**6, "0x" + "ab" * 32, "0x" + "00" * 20)

BASE: dict[str, Any] = {
    "chain_id": 42431,
    "gas": 800_000,
    "max_fee_per_gas": 40_000_000_000,
    "max_priority_fee_per_gas": 1_000_000_000,
}

CASES: dict[str, dict[str, Any]] = {
    "plain": {"calls": (Call(PATH_USD, APPROVE),), "nonce": 7, "fee_token": PATH_USD},
    "no-fee-token": {"calls": (Call(PATH_USD, APPROVE),), "nonce": 0},
    "multi-call": {
        "calls": (Call(PATH_USD, APPROVE), Call(ESCROW, OPEN), Call(PAYEE, b"", 5)),
        "nonce_key": 3,
        "nonce": 2,
        "fee_token": PATH_USD,
    },
    "expiring": {
        "calls": (Call(PATH_USD, APPROVE), Call(ESCROW, OPEN)),
        "nonce_key": EXPIRING_NONCE_KEY,
        "valid_before": 1_800_000_025,
        "fee_token": PATH_USD,
    },
    "valid-after": {
        "calls": (Call(ESCROW, OPEN),),
        "nonce_key": EXPIRING_NONCE_KEY,
        "valid_before": 1_800_000_020,
        "valid_after": 1_800_000_000,
        "fee_token": ALPHA_USD,
    },
    "access-list": {
        "calls": (Call(ESCROW, OPEN),),
        "nonce": 1,
        "access_list": (AccessListEntry(ESCROW, (b"\x01" * 32,)),),
    },
    "sponsored": {
        "calls": (Call(PATH_USD, APPROVE), Call(ESCROW, OPEN)),
        "nonce_key": EXPIRING_NONCE_KEY,
        "valid_before": 1_800_000_025,
        "fee_token": ALPHA_USD,
        "sponsored": True,
    },
}


def _tx(name: str) -> TempoTransaction:
    return TempoTransaction(**BASE, **CASES[name])


def _sdk_input(tx: TempoTransaction) -> dict[str, Any]:
    def opt(value: int | None) -> str | None:
        return None if value is None else str(value)

    return {
        "chainId": str(tx.chain_id),
        "calls": [
            {"to": c.to, "data": "0x" + c.data.hex(), "value": str(c.value)} for c in tx.calls
        ],
        "gas": str(tx.gas),
        "maxFeePerGas": str(tx.max_fee_per_gas),
        "maxPriorityFeePerGas": str(tx.max_priority_fee_per_gas),
        "nonceKey": str(tx.nonce_key),
        "nonce": str(tx.nonce),
        "validBefore": opt(tx.valid_before),
        "validAfter": opt(tx.valid_after),
        "feeToken": tx.fee_token,
        "accessList": [
            {"address": e.address, "storageKeys": ["0x" + k.hex() for k in e.storage_keys]}
            for e in tx.access_list
        ]
        or None,
    }


def run_sdk(payload: dict[str, Any]) -> dict[str, Any]:
    """The SDK's encodings (``tests/interop/node/tempo_tx.mjs``) for ``payload``."""
    return run_node("tempo_tx.mjs", payload)


@pytest.fixture(scope="module")
def sdk() -> dict[str, dict[str, Any]]:
    """The SDK's encodings of every case, keyed by case name."""
    cases = [
        {
            "name": name,
            "senderKey": SENDER_KEY,
            "feePayerKey": FEE_PAYER_KEY if CASES[name].get("sponsored") else None,
            "sponsored": bool(CASES[name].get("sponsored")),
            "tx": _sdk_input(_tx(name)),
        }
        for name in CASES
    ]
    return {c["name"]: c for c in run_sdk({"cases": cases})["cases"]}


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


@pytest.mark.parametrize("name", [n for n in CASES if not CASES[n].get("sponsored")])
def test_signed_transaction_matches_sdk(name: str, sdk: dict[str, dict[str, Any]]) -> None:
    ref = sdk[name]
    tx = _tx(name)
    signed = tx.sign(SENDER_KEY)
    assert _hex(tx.signing_payload()) == ref["signingPayload"]
    assert _hex(tx.signing_hash()) == ref["signHash"]
    assert signed.raw_hex == ref["oxSigned"] == ref["viemSigned"]
    assert signed.hash == ref["finalHash"]
    assert signed.sender == ref["sender"]


def test_sponsored_transaction_matches_sdk(sdk: dict[str, dict[str, Any]]) -> None:
    ref = sdk["sponsored"]
    tx = _tx("sponsored")
    signed = tx.sign(SENDER_KEY)
    # The sender commits to the 0x00 placeholder and no fee token.
    assert _hex(tx.signing_payload()) == ref["signingPayload"]
    assert signed.awaiting_fee_payer
    assert signed.raw_hex == ref["oxSigned"]
    # The hand-over form the SDK's wallet sends to a sponsoring server.
    assert _hex(signed.fee_payer_envelope()) == ref["viemSigned"]
    assert _hex(tx.fee_payer_hash(signed.sender)) == ref["feePayerHash"]
    final = sign_as_fee_payer(signed, FEE_PAYER_KEY)
    assert not final.awaiting_fee_payer
    assert final.raw_hex == ref["oxFinal"] == ref["viemFinal"]
    assert final.hash == ref["finalHash"]


@pytest.mark.parametrize("name", list(CASES))
def test_decodes_what_the_sdk_signs(name: str, sdk: dict[str, dict[str, Any]]) -> None:
    ref = sdk[name]
    expected = _tx(name)
    decoded = decode_tempo_transaction(ref["viemSigned"])
    assert decoded.sender == ref["sender"]
    if expected.sponsored:
        # The hand-over carries no fee token (the sender does not commit to one).
        assert decoded.tx == replace(expected, fee_token=None)
        assert decoded.awaiting_fee_payer
        final = decode_tempo_transaction(ref["viemFinal"])
        assert final.tx == expected
        assert final.fee_payer is not None
        assert (
            final.fee_payer
            == decode_tempo_transaction(
                sign_as_fee_payer(decoded, FEE_PAYER_KEY, ALPHA_USD).raw
            ).fee_payer
        )
        assert final.hash == ref["finalHash"]
        placeholder = decode_tempo_transaction(ref["oxSigned"])
        assert placeholder.awaiting_fee_payer
        assert placeholder.sender == ref["sender"]
    else:
        assert decoded.tx == expected
        assert decoded.hash == ref["finalHash"]


def test_sdk_decodes_what_we_sign() -> None:
    ours: list[SignedTempoTransaction] = []
    for name in CASES:
        signed = _tx(name).sign(SENDER_KEY)
        if signed.tx.sponsored:
            signed = sign_as_fee_payer(signed, FEE_PAYER_KEY)
        ours.append(signed)
    decoded = run_sdk({"decode": [s.raw_hex for s in ours]})["decoded"]
    for signed, ref in zip(ours, decoded, strict=True):
        assert ref["ok"], ref
        assert ref["from"] == signed.sender
        assert int(ref["chainId"]) == signed.tx.chain_id
        assert [c["to"].lower() for c in ref["calls"]] == [c.to for c in signed.tx.calls]
        assert int(ref.get("nonceKey", 0)) == signed.tx.nonce_key
        assert ref.get("validBefore") == signed.tx.valid_before
        assert ref.get("validAfter") == signed.tx.valid_after
        assert (ref.get("feeToken") or None) == signed.tx.fee_token
        assert (ref.get("feePayerSignature") is not None) == signed.tx.sponsored


def test_expiring_window() -> None:
    assert _tx("expiring").sign(SENDER_KEY).tx.valid_before == 1_800_000_025
    assert expiring_valid_before(100) == 125
    with pytest.raises(ValueError, match="expiring window"):
        expiring_valid_before(100, window=26)


def test_fee_payer_can_choose_the_fee_token() -> None:
    signed = _tx("sponsored").sign(SENDER_KEY)
    final = decode_tempo_transaction(sign_as_fee_payer(signed, FEE_PAYER_KEY, PATH_USD).raw)
    assert final.tx.fee_token == PATH_USD
    assert final.sender == signed.sender


# -- malformed input -> typed errors ----------------------------------------------------


def _fields(raw: bytes) -> list[Any]:
    decoded: list[Any] = rlp.decode(raw[1:])
    return decoded


def _reencode(raw: bytes, change: Any) -> bytes:
    fields = _fields(raw)
    change(fields)
    return raw[:1] + rlp.encode(fields)


def _set(index: int, value: Any) -> Any:
    def go(fields: list[Any]) -> None:
        fields[index] = value

    return go


PLAIN = _tx("multi-call").sign(SENDER_KEY).raw
SPONSORED = _tx("sponsored").sign(SENDER_KEY)
HIGH_S = PLAIN[:1] + rlp.encode(
    [
        *_fields(PLAIN)[:13],
        _fields(PLAIN)[13][:32]
        + (
            0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
            - int.from_bytes(_fields(PLAIN)[13][32:64], "big")
        ).to_bytes(32, "big")
        + bytes([55 - _fields(PLAIN)[13][64]]),
    ]
)

MALFORMED: dict[str, tuple[bytes | str, type[Exception], str]] = {
    "not hex": ("0x76zz", InvalidTransaction, "not hex"),
    "no prefix": (PLAIN.hex(), InvalidTransaction, "0x-prefixed"),
    "empty": (b"", InvalidTransaction, "empty"),
    "eip1559 type": (b"\x02" + PLAIN[1:], InvalidTransaction, "type byte"),
    "bad rlp": (PLAIN[:-3], InvalidTransaction, "not valid RLP"),
    "trailing bytes": (PLAIN + b"\x00", InvalidTransaction, "not valid RLP"),
    "unsigned": (
        PLAIN[:1] + rlp.encode(_fields(PLAIN)[:13]),
        UnsupportedTempoTransaction,
        "unsigned",
    ),
    "too few fields": (PLAIN[:1] + rlp.encode(_fields(PLAIN)[:9]), InvalidTransaction, "13 to 15"),
    "leading zero int": (_reencode(PLAIN, _set(3, b"\x00\x01")), InvalidTransaction, "gas"),
    "calls not a list": (_reencode(PLAIN, _set(4, b"\x01")), InvalidTransaction, "calls"),
    "no calls": (_reencode(PLAIN, _set(4, [])), InvalidTransaction, "at least one call"),
    "short address": (
        _reencode(PLAIN, lambda f: f[4].__setitem__(0, [b"\x01" * 19, b"", b""])),
        InvalidTransaction,
        "call.to",
    ),
    "create call": (
        _reencode(PLAIN, lambda f: f[4].__setitem__(0, [b"", b"", b"\x60"])),
        UnsupportedTempoTransaction,
        "contract-creation",
    ),
    "authorization list": (
        _reencode(PLAIN, _set(12, [[b"\x01"]])),
        UnsupportedTempoTransaction,
        "authorization",
    ),
    "p256 signature": (
        _reencode(PLAIN, _set(13, b"\x01" + b"\x02" * 129)),
        UnsupportedTempoTransaction,
        "65-byte",
    ),
    "v = 0": (
        _reencode(PLAIN, lambda f: f.__setitem__(13, f[13][:64] + bytes([f[13][64] - 27]))),
        InvalidTransaction,
        "27 or 28",
    ),
    "high s": (HIGH_S, InvalidTransaction, "canonical"),
    "bad fee payer slot": (_reencode(PLAIN, _set(11, b"\x01")), InvalidTransaction, "fee payer"),
    "fee payer sig shape": (
        _reencode(PLAIN, _set(11, [b"\x01", b"\x02"])),
        InvalidTransaction,
        "yParity",
    ),
    "fee token 19 bytes": (
        _reencode(PLAIN, _set(10, b"\x01" * 19)),
        InvalidTransaction,
        "feeToken",
    ),
    "placeholder with fee token": (
        _reencode(SPONSORED.raw, _set(10, b"\x01" * 20)),
        InvalidTransaction,
        "no feeToken",
    ),
    "hand-over sender mismatch": (
        _reencode(SPONSORED.fee_payer_envelope(), _set(11, b"\x01" * 20)),
        InvalidTransaction,
        "does not match",
    ),
    "hand-over without sender": (
        _reencode(SPONSORED.fee_payer_envelope(), _set(11, b"\x00")),
        InvalidTransaction,
        "sender address",
    ),
    "priority above max fee": (
        _reencode(PLAIN, _set(1, (10**12).to_bytes(5, "big"))),
        InvalidTransaction,
        "maxPriorityFeePerGas",
    ),
    "expiring with nonce": (
        _reencode(PLAIN, lambda f: f.__setitem__(6, EXPIRING_NONCE_KEY.to_bytes(32, "big"))),
        InvalidTransaction,
        "expiring nonce",
    ),
    "validity window reversed": (
        _reencode(PLAIN, lambda f: (f.__setitem__(8, b"\x05"), f.__setitem__(9, b"\x06"))),
        InvalidTransaction,
        "validBefore",
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_input_is_a_typed_error(name: str) -> None:
    raw, error, text = MALFORMED[name]
    with pytest.raises(error, match=text):
        decode_tempo_transaction(raw)


def test_tampered_call_changes_the_sender() -> None:
    """A signature is bound to the calls: changing one recovers someone else (or fails)."""
    original = decode_tempo_transaction(PLAIN)
    tampered = _reencode(PLAIN, lambda f: f[4][0].__setitem__(2, b"\x00\x01"))
    try:
        other = decode_tempo_transaction(tampered)
    except InvalidTransaction:
        return
    assert other.sender != original.sender


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"calls": ()}, "at least one call"),
        ({"nonce_key": EXPIRING_NONCE_KEY, "nonce": 0}, "validBefore"),
        ({"valid_before": 0}, "positive"),
        ({"gas": -1}, "uint64"),
        ({"chain_id": 0}, "chainId"),
    ],
)
def test_building_checks_fields(fields: dict[str, Any], text: str) -> None:
    values = {**BASE, "calls": (Call(PATH_USD, APPROVE),), **fields}
    with pytest.raises(InvalidTransaction, match=text):
        TempoTransaction(**values)


def test_sponsorship_needs_placeholder_and_token() -> None:
    plain = _tx("plain").sign(SENDER_KEY)
    with pytest.raises(InvalidTransaction, match="placeholder"):
        sign_as_fee_payer(plain, FEE_PAYER_KEY)
    with pytest.raises(InvalidTransaction, match="only a sponsored"):
        plain.fee_payer_envelope()
    tokenless = replace(_tx("sponsored"), fee_token=None).sign(SENDER_KEY)
    with pytest.raises(InvalidTransaction, match="fee token"):
        sign_as_fee_payer(tokenless, FEE_PAYER_KEY)


def test_repr_hides_signatures() -> None:
    final = sign_as_fee_payer(_tx("sponsored").sign(SENDER_KEY), FEE_PAYER_KEY)
    text = repr(final)
    assert final.sender_signature.hex() not in text
    assert "fee_payer_signature" not in text
