"""The v2 primitives on their own: descriptor wire form, ids, slots, canonical signatures.

Agreement with the reference SDK is in ``tests/interop/test_v2_vectors.py``; here are the
edges: malformed descriptors, the typed uint96 refusal, signature canonicalisation.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data

from mppagent.errors import ProtocolError
from mppagent.tempo.hexutil import ZERO_ADDRESS, checksum_address, keccak
from mppagent.tempo.schemas import InvalidSessionMessage
from mppagent.tempo.v2 import (
    RESERVE_ADDRESS,
    UINT96_MAX,
    ChannelDescriptor,
    compute_channel_id,
    recover_voucher_signer,
    sign_voucher,
    voucher_digest,
)
from mppagent.tempo.v2.local_reserve import pending_expiring_nonce_hash_slot
from mppagent.tempo.voucher import (
    V2_VOUCHERS,
    AmountOutOfRange,
    InvalidSignature,
    VoucherSigner,
    canonical_signature,
)

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
WIRE: dict[str, Any] = {
    "payer": "0x" + "11" * 20,
    "payee": "0x742D35Cc6634C0532925a3b844Bc9e7595f8fE00",
    "operator": ZERO_ADDRESS,
    "token": "0x20c0000000000000000000000000000000000000",
    "salt": "0x" + "AA" * 32,
    "authorizedSigner": ZERO_ADDRESS,
    "expiringNonceHash": "0x" + "bb" * 32,
}


def test_descriptor_wire_roundtrip_is_lowercase_camel_case() -> None:
    descriptor = ChannelDescriptor.from_wire(WIRE)
    wire = descriptor.to_wire()
    assert list(wire) == list(WIRE)  # the drafts' field order
    assert wire == {key: value.lower() for key, value in WIRE.items()}
    assert ChannelDescriptor.from_wire(wire) == descriptor
    assert ChannelDescriptor.from_wire({**WIRE, "extra": 1}) == descriptor


@pytest.mark.parametrize(
    "change",
    [
        {"operator": None},
        {"salt": "0x" + "aa" * 31},
        {"payer": "0x" + "11" * 19},
        {"payee": 5},
        {"expiringNonceHash": "bb" * 32},
        {"token": "0x" + "zz" * 20},
    ],
)
def test_descriptor_rejects_malformed_fields(change: dict[str, Any]) -> None:
    data = {**WIRE, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(InvalidSessionMessage) as info:
        ChannelDescriptor.from_wire(data)
    assert isinstance(info.value, ProtocolError)
    assert "descriptor" in str(info.value)


def test_descriptor_signer_and_abi_tuple() -> None:
    descriptor = ChannelDescriptor.from_wire(WIRE)
    assert descriptor.signer == descriptor.payer
    delegated = ChannelDescriptor.from_wire({**WIRE, "authorizedSigner": "0x" + "de" * 20})
    assert delegated.signer == "0x" + "de" * 20
    fields = descriptor.abi_tuple()
    assert fields[1] == checksum_address(WIRE["payee"])
    assert fields[4] == b"\xaa" * 32
    assert fields[6] == b"\xbb" * 32


def test_channel_id_binds_every_field_and_the_chain() -> None:
    descriptor = ChannelDescriptor.from_wire(WIRE)
    base = compute_channel_id(descriptor, RESERVE_ADDRESS, 4217)
    seen = {base}
    for key in WIRE:
        flipped = WIRE[key][:-1] + ("1" if WIRE[key][-1] != "1" else "2")
        seen.add(
            compute_channel_id(
                ChannelDescriptor.from_wire({**WIRE, key: flipped}), RESERVE_ADDRESS, 4217
            )
        )
    seen.add(compute_channel_id(descriptor, "0x" + "01" * 20, 4217))
    seen.add(compute_channel_id(descriptor, RESERVE_ADDRESS, 42431))
    assert len(seen) == len(WIRE) + 3


def test_v2_digest_matches_eth_account_typed_data() -> None:
    channel_id, amount = "0x" + "c3" * 32, UINT96_MAX
    message = V2_VOUCHERS.typed_data(channel_id, amount, RESERVE_ADDRESS, 4217)
    assert message["types"]["Voucher"][1] == {"name": "cumulativeAmount", "type": "uint96"}
    assert message["domain"]["name"] == "TIP20 Channel Reserve"
    expected = _hash_eip191_message(encode_typed_data(full_message=message))
    assert voucher_digest(channel_id, amount, RESERVE_ADDRESS, 4217) == bytes(expected)
    key = "0x" + "5a" * 32
    ours = sign_voucher(VoucherSigner(key), channel_id, amount, RESERVE_ADDRESS, 4217)
    assert ours == "0x" + bytes(Account.sign_typed_data(key, full_message=message).signature).hex()


def test_uint96_is_refused_before_signing_with_a_typed_error() -> None:
    with pytest.raises(AmountOutOfRange) as info:
        voucher_digest("0x" + "00" * 32, UINT96_MAX + 1, RESERVE_ADDRESS, 4217)
    assert isinstance(info.value, ProtocolError)
    assert isinstance(info.value, ValueError)
    # The v1 scheme keeps its uint128 range: the same amount is fine there.
    assert VoucherSigner("0x" + "5a" * 32).sign(
        "0x" + "00" * 32, UINT96_MAX + 1, RESERVE_ADDRESS, 1
    )


def _signed() -> tuple[str, str, int]:
    signer = VoucherSigner("0x" + "6b" * 32)
    channel_id = "0x" + "e1" * 32
    return sign_voucher(signer, channel_id, 42, RESERVE_ADDRESS, 4217), channel_id, 42


def test_canonical_signature_forms() -> None:
    signature, _, _ = _signed()
    raw = bytes.fromhex(signature[2:])
    r, s, v = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
    assert canonical_signature(signature) == signature
    assert canonical_signature("0x" + signature[2:].upper()) == signature
    assert canonical_signature("0x" + (raw[:64] + bytes([v - 27])).hex()) == signature
    compact = r + (((v - 27) << 255) | s).to_bytes(32, "big")
    assert canonical_signature("0x" + compact.hex()) == signature
    high = "0x" + (r + (N - s).to_bytes(32, "big") + bytes([55 - v])).hex()
    for bad in (high, signature[:-4], "0x" + "00" * 65, signature[:-2] + "1d", 7):
        with pytest.raises(InvalidSignature):
            canonical_signature(bad)  # type: ignore[arg-type]


def test_v2_recovery_accepts_only_the_canonical_form() -> None:
    signature, channel_id, amount = _signed()
    args = (channel_id, amount, RESERVE_ADDRESS, 4217)
    expected = VoucherSigner("0x" + "6b" * 32).address
    assert recover_voucher_signer(signature, *args) == expected
    assert recover_voucher_signer("0x" + signature[2:].upper(), *args) == expected
    raw = bytes.fromhex(signature[2:])
    for other in ("0x" + (raw[:64] + bytes([raw[64] - 27])).hex(), signature[:-2]):
        with pytest.raises(InvalidSignature):
            recover_voucher_signer(other, *args)


def test_pending_slot_formula() -> None:
    sender = "0x" + "ab" * 20
    expected = keccak(bytes(12) + bytes.fromhex("ab" * 20) + (1).to_bytes(32, "big"))
    assert pending_expiring_nonce_hash_slot(sender) == "0x" + expected.hex()
    assert (
        pending_expiring_nonce_hash_slot(sender.upper().replace("0X", "0x"))
        == "0x" + expected.hex()
    )
