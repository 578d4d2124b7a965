"""Payment-Receipt decoding and encoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from mppagent.protocol import (
    CanonicalizationFailed,
    JSONObject,
    MalformedReceipt,
    Receipt,
    b64url_decode,
    b64url_encode,
    decode_receipt,
    decode_receipt_json,
    encode_receipt,
)

from .drafts import ONE_TIME_RECEIPT

CHANNEL = "0x6d0f4fdf1f2f6a1f6c1b0fbd6a7d5c2c0a8d3d7b1f6a9c1b3e2d4a5b6c7d8e9f"

# draft-tempo-session, "Receipt Generation": per-request receipt with metering.
SESSION_RECEIPT: JSONObject = {
    "method": "tempo",
    "intent": "session",
    "status": "success",
    "timestamp": "2025-01-06T12:08:30Z",
    "reference": CHANNEL,
    "challengeId": "c_8d0e3b5a9f2c1d4e",
    "channelId": CHANNEL,
    "acceptedCumulative": "250000",
    "spent": "237500",
    "units": 500,
}


def test_draft_example_receipt() -> None:
    receipt = decode_receipt(ONE_TIME_RECEIPT)
    assert receipt == Receipt(
        status="success",
        method="invoice",
        timestamp="2025-01-15T12:00:00Z",
        reference="inv_12345",
    )
    assert receipt.timestamp_at == datetime(2025, 1, 15, 12, tzinfo=UTC)
    assert receipt.is_success is True
    assert receipt.extras == {}


def test_session_receipt_keeps_method_specific_members() -> None:
    receipt = decode_receipt(b64url_encode(json.dumps(SESSION_RECEIPT).encode()))
    assert receipt.method == "tempo"
    assert receipt.reference == CHANNEL
    assert receipt.extras == {
        "intent": "session",
        "challengeId": "c_8d0e3b5a9f2c1d4e",
        "channelId": CHANNEL,
        "acceptedCumulative": "250000",
        "spent": "237500",
        "units": 500,
    }
    assert receipt.get("spent") == "237500"
    assert receipt.get("units") == 500
    assert receipt.get("status") == "success"
    assert receipt.get("txHash") is None
    assert receipt.to_json_object() == SESSION_RECEIPT


def test_extras_is_a_copy() -> None:
    receipt = decode_receipt_json(json.dumps(SESSION_RECEIPT))
    receipt.extras["spent"] = "0"
    assert receipt.get("spent") == "237500"


def test_sse_event_form() -> None:
    data = json.dumps(SESSION_RECEIPT).encode()
    assert decode_receipt_json(data) == decode_receipt(b64url_encode(data))


def test_encode_receipt_is_jcs() -> None:
    receipt = decode_receipt(ONE_TIME_RECEIPT)
    encoded = encode_receipt(receipt)
    assert b64url_decode(encoded) == (
        b'{"method":"invoice","reference":"inv_12345","status":"success",'
        b'"timestamp":"2025-01-15T12:00:00Z"}'
    )
    assert decode_receipt(encoded) == receipt
    assert encode_receipt(SESSION_RECEIPT) == encode_receipt(
        decode_receipt_json(json.dumps(SESSION_RECEIPT))
    )


def test_encode_receipt_validates_mappings() -> None:
    with pytest.raises(MalformedReceipt, match="missing 'reference'"):
        encode_receipt({"status": "success", "method": "m", "timestamp": "2025-01-15T12:00:00Z"})
    with pytest.raises(CanonicalizationFailed):
        encode_receipt({**SESSION_RECEIPT, "units": 2**60})


def test_non_success_status_is_kept_for_the_caller_to_judge() -> None:
    receipt = decode_receipt_json(json.dumps({**SESSION_RECEIPT, "status": "pending"}))
    assert receipt.status == "pending"
    assert receipt.is_success is False


def test_surrounding_whitespace_is_tolerated() -> None:
    assert decode_receipt(f" {ONE_TIME_RECEIPT}\t") == decode_receipt(ONE_TIME_RECEIPT)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({k: v for k, v in SESSION_RECEIPT.items() if k != "status"}, "missing 'status'"),
        ({k: v for k, v in SESSION_RECEIPT.items() if k != "timestamp"}, "missing 'timestamp'"),
        ({**SESSION_RECEIPT, "reference": None}, "missing 'reference'"),
        ({**SESSION_RECEIPT, "method": 1}, "'method' must be a string"),
        ({**SESSION_RECEIPT, "status": True}, "'status' must be a string"),
        (
            {**SESSION_RECEIPT, "timestamp": "yesterday"},
            "timestamp: not an RFC 3339 date-time like 2025-01-15T12:05:00Z",
        ),
    ],
)
def test_decode_rejects_bad_documents(doc: dict[str, object], reason: str) -> None:
    with pytest.raises(MalformedReceipt) as info:
        decode_receipt(b64url_encode(json.dumps(doc).encode()))
    assert info.value.reason == reason
    assert str(info.value) == f"malformed Payment receipt: {reason}"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        (ONE_TIME_RECEIPT + "=", "padding '=' is not allowed (base64url without padding)"),
        ("e30 e30", "whitespace at offset 3 is not allowed"),
        (b64url_encode(b"[]"), "expected a JSON object, got an array"),
        (b64url_encode(b"{"), "Expecting property name enclosed in double quotes at offset 1"),
    ],
)
def test_decode_rejects_bad_encoding(value: str, reason: str) -> None:
    with pytest.raises(MalformedReceipt) as info:
        decode_receipt(value)
    assert info.value.reason == reason


def test_decode_limits() -> None:
    with pytest.raises(MalformedReceipt, match="over the limit"):
        decode_receipt("A" * (64 * 1024 + 1))
    with pytest.raises(MalformedReceipt, match="nested deeper than 32 levels"):
        decode_receipt_json("[" * 33)
    with pytest.raises(MalformedReceipt, match="expected a str"):
        decode_receipt(b"e30")  # type: ignore[arg-type]


def test_receipt_is_frozen() -> None:
    receipt = decode_receipt(ONE_TIME_RECEIPT)
    with pytest.raises(ValueError, match="frozen"):
        receipt.status = "x"  # type: ignore[misc]


def test_hostile_member_names_stay_data() -> None:
    doc = {**SESSION_RECEIPT, "model_dump": 1, "__class__": "x", "extras": "y", "get": 2}
    receipt = decode_receipt_json(json.dumps(doc))
    assert receipt.get("model_dump") == 1
    assert receipt.get("extras") == "y"
    assert receipt.extras["__class__"] == "x"
    assert isinstance(receipt, Receipt)
    assert receipt.to_json_object() == doc
