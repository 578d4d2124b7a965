"""The voucher fast path against eth-account's EIP-712 implementation (no chain needed).

``mppagent.tempo.voucher`` hand-rolls the EIP-712 digest and signs with coincurve directly; these
tests pin it byte for byte to ``eth_account.Account.sign_typed_data`` over random inputs, and
check the recovery side rejects everything the escrow contract (OpenZeppelin ECDSA) rejects.
"""

from __future__ import annotations

import traceback
from typing import Any

import coincurve
import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_utils.address import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mppagent.tempo.hexutil import InvalidHex
from mppagent.tempo.voucher import (
    InvalidSignature,
    VoucherSigner,
    domain_separator,
    recover_digest_signer,
    recover_voucher_signer,
    redeemable_signature,
    sign_voucher,
    voucher_digest,
    voucher_typed_data,
)
from tests.support import compact, join, signature_forms, split

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HALF_N = N // 2
UINT128_MAX = 2**128 - 1

KEY = "0x" + "4c" * 32
CHANNEL = "0x" + "a1" * 32
ESCROW = "0x" + "e5" * 20
CHAIN_ID = 4217

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

keys = st.integers(min_value=1, max_value=N - 1).map(lambda k: "0x" + k.to_bytes(32, "big").hex())
channel_ids = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())
amounts = st.one_of(
    st.just(0),
    st.just(UINT128_MAX),
    st.integers(min_value=0, max_value=UINT128_MAX),
    st.integers(min_value=0, max_value=10**12),
)
# Mixed case is accepted on input: the address is normalised before hashing.
escrows = st.binary(min_size=20, max_size=20).flatmap(
    lambda b: st.sampled_from(["0x" + b.hex(), "0x" + b.hex().upper()])
)
chain_ids = st.one_of(
    st.sampled_from([1, 4217, 31337, 42431]), st.integers(min_value=1, max_value=2**64)
)


def typed_message(channel_id: str, amount: int, escrow: str, chain_id: int) -> dict[str, Any]:
    """The voucher as an EIP-712 ``full_message`` for eth-account."""
    return voucher_typed_data(channel_id, amount, escrow, chain_id)


# -- byte-identical to eth-account -------------------------------------------------------


@PROPERTY
@given(key=keys, channel_id=channel_ids, amount=amounts, escrow=escrows, chain_id=chain_ids)
def test_property_signature_matches_eth_account(
    key: str, channel_id: str, amount: int, escrow: str, chain_id: int
) -> None:
    message = typed_message(channel_id, amount, escrow, chain_id)
    expected = Account.sign_typed_data(key, full_message=message)
    ours = sign_voucher(key, channel_id, amount, escrow, chain_id)

    assert ours == "0x" + bytes(expected.signature).hex()
    assert ours == ours.lower()
    r, s, v = split(ours)
    assert v in (27, 28)
    assert v == expected.v
    assert 0 < s <= HALF_N
    assert (r, s) == (expected.r, expected.s)

    # The digest and the domain separator are eth-account's too.
    signable = encode_typed_data(full_message=message)
    assert domain_separator(escrow.lower(), chain_id) == bytes(signable.header)
    assert voucher_digest(channel_id, amount, escrow, chain_id) == bytes(
        _hash_eip191_message(signable)
    )

    signer = Account.from_key(key).address
    assert recover_voucher_signer(ours, channel_id, amount, escrow, chain_id) == signer
    # eth-account agrees on who signed ours.
    assert Account.recover_message(signable, signature=bytes.fromhex(ours[2:])) == signer


@PROPERTY
@given(key=keys, channel_id=channel_ids, amount=amounts, escrow=escrows, chain_id=chain_ids)
def test_property_redeemable_signature_forms(
    key: str, channel_id: str, amount: int, escrow: str, chain_id: int
) -> None:
    """What a server may store: 65-byte v = 27/28 low-s, and the compact form expanded to it."""
    signer = VoucherSigner(key)
    forms = signature_forms(signer.sign(channel_id, amount, escrow, chain_id))
    canonical = forms["v27"]
    assert redeemable_signature(canonical) == canonical
    assert redeemable_signature("0X" + canonical[2:].upper()) == canonical
    assert redeemable_signature(forms["compact"]) == canonical
    for refused in ("v01", "high_s"):
        with pytest.raises(InvalidSignature):
            redeemable_signature(forms[refused])
    r, s, v = split(canonical)
    with pytest.raises(InvalidSignature, match="27 or 28"):
        redeemable_signature(join(r, s, v - 27))
    with pytest.raises(InvalidSignature, match="lower half"):
        redeemable_signature(compact(join(r, HALF_N + 1, v)))  # compact with s just too high
    args = (channel_id, amount, escrow, chain_id)
    assert recover_voucher_signer(redeemable_signature(forms["compact"]), *args) == signer.address


def test_redeemable_signature_rejects_malformed_input() -> None:
    good = sign_voucher(KEY, CHANNEL, 7, ESCROW, CHAIN_ID)
    for bad in ("", "0x", good[2:], good[:-4], good + "00", "0x" + "zz" * 65, "0x" + "00" * 65):
        with pytest.raises(InvalidSignature):
            redeemable_signature(bad)


@PROPERTY
@given(key=keys, channel_id=channel_ids, amount=amounts, escrow=escrows, chain_id=chain_ids)
def test_property_recovery_forms_and_malleability(
    key: str, channel_id: str, amount: int, escrow: str, chain_id: int
) -> None:
    signer = VoucherSigner(key)
    signature = signer.sign(channel_id, amount, escrow, chain_id)
    args = (channel_id, amount, escrow, chain_id)

    # Checksummed (EIP-55) signer address.
    recovered = recover_voucher_signer(signature, *args)
    assert recovered == signer.address == Account.from_key(key).address
    assert recovered == to_checksum_address(recovered.lower())

    # v as 0/1 and the EIP-2098 compact form recover the same signer.
    r, s, v = split(signature)
    assert recover_voucher_signer(join(r, s, v - 27), *args) == signer.address
    assert recover_voucher_signer(compact(signature), *args) == signer.address

    # The high-s twin is a valid ECDSA signature of the same digest by the same key...
    twin_s = N - s
    twin_v = 55 - v  # 27 <-> 28
    digest = voucher_digest(*args)
    twin_raw = r.to_bytes(32, "big") + twin_s.to_bytes(32, "big") + bytes([twin_v - 27])
    twin_key = coincurve.PublicKey.from_signature_and_message(twin_raw, digest, hasher=None)
    assert twin_key.format(compressed=False) == coincurve.PrivateKey(
        bytes.fromhex(key[2:])
    ).public_key.format(compressed=False)
    # ...and still refused, in both encodings.
    with pytest.raises(InvalidSignature):
        recover_voucher_signer(join(r, twin_s, twin_v), *args)
    with pytest.raises(InvalidSignature):
        recover_voucher_signer(join(r, twin_s, twin_v - 27), *args)

    # The same signature over any other voucher field names someone else.
    other_amount = amount ^ 1
    other_escrow = "0x" + format(int(escrow, 16) ^ 1, "040x")
    other_chain = chain_id + 1
    other_channel = "0x" + format(int(channel_id, 16) ^ 1, "064x")
    for changed in (
        (channel_id, other_amount, escrow, chain_id),
        (channel_id, amount, other_escrow, chain_id),
        (channel_id, amount, escrow, other_chain),
        (other_channel, amount, escrow, chain_id),
    ):
        assert recover_voucher_signer(signature, *changed) != signer.address


def test_known_vector() -> None:
    """A fixed vector, so a change in both implementations at once cannot go unnoticed."""
    signature = sign_voucher("0x" + "11" * 32, "0x" + "01" * 32, 5, "0x" + "ab" * 20, 1)
    assert signature == (
        "0x2c72fc4eefe643ca5ca8e850b0b30f7c2280ae187e8c68508c76357b892a97c5"
        "10c339bb0a5e6d8d7da19c5e0d297967a47fa9b05706058dbbcda8bbc07f47e21b"
    )


def test_signer_is_deterministic_and_matches_sign_voucher() -> None:
    signer = VoucherSigner(KEY)
    one = signer.sign(CHANNEL, 1_000, ESCROW, CHAIN_ID)
    assert one == signer.sign(CHANNEL, 1_000, ESCROW, CHAIN_ID)
    assert one == sign_voucher(KEY, CHANNEL, 1_000, ESCROW, CHAIN_ID)
    assert one == sign_voucher(bytes.fromhex(KEY[2:]), CHANNEL, 1_000, ESCROW, CHAIN_ID)
    assert one == sign_voucher(KEY[2:], CHANNEL, 1_000, ESCROW.upper().replace("0X", "0x"), 4217)
    assert signer.sign_digest(voucher_digest(CHANNEL, 1_000, ESCROW, CHAIN_ID)) == one
    assert len(one) == 2 + 130


def test_generated_signer_roundtrips_its_key() -> None:
    signer = VoucherSigner.generate()
    again = VoucherSigner(signer.private_key_hex)
    assert again.address == signer.address == Account.from_key(signer.private_key_hex).address
    assert VoucherSigner.generate().address != signer.address


# -- malformed signatures ------------------------------------------------------------------


def _good() -> str:
    return sign_voucher(KEY, CHANNEL, 7, ESCROW, CHAIN_ID)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: s[:-1], id="odd-length"),
        pytest.param(lambda s: s[:-4], id="63-bytes"),
        pytest.param(lambda s: s + "00", id="66-bytes"),
        pytest.param(lambda s: "0x", id="empty"),
        pytest.param(lambda s: s[2:], id="no-0x"),
        pytest.param(lambda s: "0x" + "zz" + s[4:], id="non-hex"),
        pytest.param(lambda s: s[:-2] + "1d", id="v=29"),
        pytest.param(lambda s: s[:-2] + "02", id="v=2"),
        pytest.param(lambda s: s[:-2] + "00" if s.endswith("1c") else s[:-2] + "01", id="v-flip"),
        pytest.param(lambda s: "0x" + "00" * 32 + s[66:], id="r=0"),
        pytest.param(lambda s: s[:66] + "00" * 32 + s[-2:], id="s=0"),
        pytest.param(lambda s: "0x" + format(N, "064x") + s[66:], id="r=n"),
        pytest.param(lambda s: s[:66] + format(HALF_N + 1, "064x") + s[-2:], id="s=n/2+1"),
    ],
)
def test_malformed_signatures_rejected(mangle: Any) -> None:
    bad = mangle(_good())
    try:
        who = recover_voucher_signer(bad, CHANNEL, 7, ESCROW, CHAIN_ID)
    except InvalidSignature:
        return
    # Only the v-flip may still recover (to a different key): it is a well-formed signature.
    assert who != VoucherSigner(KEY).address


def test_malformed_signatures_raise_invalid_signature() -> None:
    good = _good()
    for bad in (
        good[:-1],
        good[:-4],
        good + "00",
        good[2:],
        "0x" + "zz" + good[4:],
        good[:-2] + "1d",
        good[:-2] + "02",
        "0x" + "00" * 32 + good[66:],
        good[:66] + "00" * 32 + good[-2:],
        "0x" + format(N, "064x") + good[66:],
        good[:66] + format(HALF_N + 1, "064x") + good[-2:],
        "0X" + good[2:].upper() + "00",
    ):
        with pytest.raises(InvalidSignature):
            recover_voucher_signer(bad, CHANNEL, 7, ESCROW, CHAIN_ID)
    for not_a_string in (None, 5, bytes.fromhex(good[2:])):
        with pytest.raises(InvalidSignature):
            recover_digest_signer(not_a_string, b"\x00" * 32)  # type: ignore[arg-type]
    # Uppercase hex with a 0X prefix is still hex.
    assert (
        recover_voucher_signer("0X" + good[2:].upper(), CHANNEL, 7, ESCROW, CHAIN_ID)
        == VoucherSigner(KEY).address
    )


def test_truncated_to_64_bytes_is_the_compact_form() -> None:
    """Dropping v leaves r ‖ s, which is the EIP-2098 form with y parity 0."""
    good = _good()
    _, _, v = split(good)
    who = recover_voucher_signer(good[:-2], CHANNEL, 7, ESCROW, CHAIN_ID)
    assert (who == VoucherSigner(KEY).address) == (v == 27)


@pytest.mark.parametrize("parity", [0, 1])
def test_compact_high_s_rejected(parity: int) -> None:
    """EIP-2098 can only carry s < 2**255; the sliver above n/2 must still be refused."""
    r, _, _ = split(_good())
    for s in (HALF_N + 1, 2**255 - 1):
        sig = "0x" + r.to_bytes(32, "big").hex() + (parity << 255 | s).to_bytes(32, "big").hex()
        with pytest.raises(InvalidSignature):
            recover_voucher_signer(sig, CHANNEL, 7, ESCROW, CHAIN_ID)


# -- amounts and inputs --------------------------------------------------------------------


@pytest.mark.parametrize("amount", [-1, 2**128, 2**256])
def test_amounts_outside_uint128_rejected(amount: int) -> None:
    with pytest.raises(ValueError, match="uint128"):
        voucher_digest(CHANNEL, amount, ESCROW, CHAIN_ID)
    with pytest.raises(ValueError, match="uint128"):
        sign_voucher(KEY, CHANNEL, amount, ESCROW, CHAIN_ID)
    with pytest.raises(ValueError, match="uint128"):
        VoucherSigner(KEY).sign(CHANNEL, amount, ESCROW, CHAIN_ID)
    with pytest.raises(ValueError, match="uint128"):
        recover_voucher_signer(_good(), CHANNEL, amount, ESCROW, CHAIN_ID)


def test_uint128_bounds_accepted() -> None:
    for amount in (0, UINT128_MAX):
        sig = sign_voucher(KEY, CHANNEL, amount, ESCROW, CHAIN_ID)
        assert recover_voucher_signer(sig, CHANNEL, amount, ESCROW, CHAIN_ID) == (
            VoucherSigner(KEY).address
        )


@pytest.mark.parametrize(
    ("channel_id", "escrow"),
    [
        ("0x" + "a1" * 31, ESCROW),
        ("a1" * 32, ESCROW),
        ("0x" + "g1" * 32, ESCROW),
        (CHANNEL, "0x" + "e5" * 19),
        (CHANNEL, "e5" * 20),
    ],
)
def test_bad_channel_id_or_escrow_rejected(channel_id: str, escrow: str) -> None:
    with pytest.raises(InvalidHex):
        sign_voucher(KEY, channel_id, 1, escrow, CHAIN_ID)


# -- keys never leak -----------------------------------------------------------------------


def test_signer_repr_hides_key() -> None:
    signer = VoucherSigner(KEY)
    for text in (repr(signer), str(signer)):
        assert KEY[2:] not in text.lower()
        assert signer.address in text
    assert repr(signer) == f"VoucherSigner(address={signer.address!r})"
    assert not hasattr(signer, "__dict__")


@pytest.mark.parametrize(
    "bad_key",
    [
        pytest.param("0x" + "00" * 32, id="zero"),
        pytest.param("0x" + format(N, "064x"), id="order"),
        pytest.param("0x" + "ff" * 32, id="above-order"),
        pytest.param("0x" + "7b" * 31, id="31-bytes"),
        pytest.param("0x" + "7b" * 33, id="33-bytes"),
        pytest.param("0x" + "7b" * 31 + "zz", id="non-hex"),
        pytest.param(bytes.fromhex("7b" * 31), id="31-raw-bytes"),
    ],
)
def test_bad_key_raises_value_error_without_key(bad_key: str | bytes) -> None:
    with pytest.raises(ValueError, match="private key") as info:
        sign_voucher(bad_key, CHANNEL, 1, ESCROW, CHAIN_ID)
    shown = "".join(traceback.format_exception(info.value))
    key_text = bad_key.hex() if isinstance(bad_key, bytes) else bad_key[2:]
    assert key_text not in shown
    assert key_text[:40] not in shown
    with pytest.raises(ValueError, match="private key"):
        VoucherSigner(bad_key)
