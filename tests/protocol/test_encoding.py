"""Strict base64url, bounded JSON and JCS."""

from __future__ import annotations

import json
from types import MappingProxyType

import pytest

from mppagent.errors import ProtocolError
from mppagent.protocol import (
    MAX_JSON_DEPTH,
    CanonicalizationFailed,
    DuplicateJSONKey,
    EncodingError,
    InputTooLarge,
    InvalidBase64url,
    InvalidJSON,
    JSONTooDeep,
    LimitExceeded,
    NonFiniteNumber,
    b64url_decode,
    b64url_encode,
    b64url_jcs_encode,
    b64url_json_decode,
    jcs_encode,
    parse_json,
    parse_json_object,
)

# -- base64url ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"", ""),
        (b"A", "QQ"),
        (b"AB", "QUI"),
        (b"ABC", "QUJD"),
        (b"\xfb\xff", "-_8"),
        (b'{"a":1}', "eyJhIjoxfQ"),
    ],
)
def test_b64url_encode_has_no_padding(raw: bytes, text: str) -> None:
    assert b64url_encode(raw) == text


@pytest.mark.parametrize("text", ["QQ", "QUI", "QUJD", "-_8", "eyJhIjoxfQ"])
def test_b64url_decode_round_trips(text: str) -> None:
    assert b64url_encode(b64url_decode(text)) == text


def test_b64url_decode_accepts_ascii_bytes() -> None:
    assert b64url_decode(b"QUI") == b"AB"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("QQ==", "padding '=' is not allowed (base64url without padding)"),
        ("QUI=", "padding '=' is not allowed (base64url without padding)"),
        ("+_8", "'+' at offset 0 is standard base64; base64url uses '-' and '_'"),
        ("-/8", "'/' at offset 1 is standard base64; base64url uses '-' and '_'"),
        ("QU I", "whitespace at offset 2 is not allowed"),
        ("QUI\n", "whitespace at offset 3 is not allowed"),
        (" QUI", "whitespace at offset 0 is not allowed"),
        ("QU!", "character U+0021 at offset 2 is not in the base64url alphabet"),
        ("QUé", "character U+00E9 at offset 2 is not in the base64url alphabet"),
        ("QU٣", "character U+0663 at offset 2 is not in the base64url alphabet"),
        ("Q", "length 1 is impossible for base64url"),
        ("QUJDR", "length 5 is impossible for base64url"),
        ("QR", "non-canonical: the unused trailing bits are not zero"),
        ("QUJ", "non-canonical: the unused trailing bits are not zero"),
    ],
)
def test_b64url_decode_rejects(text: str, reason: str) -> None:
    with pytest.raises(InvalidBase64url) as info:
        b64url_decode(text, what="request")
    assert info.value.reason == reason
    assert str(info.value) == f"request: {reason}"
    assert isinstance(info.value, EncodingError)
    assert isinstance(info.value, ProtocolError)


def test_b64url_decode_rejects_non_ascii_bytes() -> None:
    with pytest.raises(InvalidBase64url, match="non-ASCII"):
        b64url_decode(b"QU\xff")


def test_b64url_decode_rejects_non_text() -> None:
    with pytest.raises(InvalidBase64url, match="expected text, got int"):
        b64url_decode(5)  # type: ignore[arg-type]


def test_b64url_decode_limit_checked_first() -> None:
    with pytest.raises(InputTooLarge) as info:
        b64url_decode("A" * 101, max_chars=100)
    assert info.value.limit == 100
    assert info.value.size == 101
    assert isinstance(info.value, LimitExceeded)
    assert isinstance(info.value, EncodingError)
    assert b64url_decode("QUJD" * 25, max_chars=100) == b"ABC" * 25


# -- JSON --------------------------------------------------------------------


def test_parse_json_values() -> None:
    assert parse_json(b'{"a":[1,2.5,"x",true,null],"b":{}}') == {
        "a": [1, 2.5, "x", True, None],
        "b": {},
    }
    assert parse_json(" 12 ") == 12
    assert parse_json('"\\u00e9"') == "é"
    assert parse_json('"\\ud83d\\ude00"') == "\U0001f600"


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        (b'{"a":1,"a":2}', DuplicateJSONKey, "duplicate object member 'a'"),
        (b'[{"k":{"x":1,"x":1}}]', DuplicateJSONKey, "duplicate object member 'x'"),
        (b"NaN", NonFiniteNumber, "NaN is not a JSON number"),
        (b"[Infinity]", NonFiniteNumber, "Infinity is not a JSON number"),
        (b"[-Infinity]", NonFiniteNumber, "-Infinity is not a JSON number"),
        (b"1e400", NonFiniteNumber, "number is too large for a double"),
        (b'"\\ud800"', InvalidJSON, "string contains a lone UTF-16 surrogate"),
        (b'{"\\udfff":1}', InvalidJSON, "string contains a lone UTF-16 surrogate"),
        (b"\xff", InvalidJSON, "not valid UTF-8"),
        (
            b"\xef\xbb\xbf{}",
            InvalidJSON,
            "Unexpected UTF-8 BOM (decode using utf-8-sig) at offset 0",
        ),
        (b"", InvalidJSON, "Expecting value at offset 0"),
        (b'{"a":}', InvalidJSON, "Expecting value at offset 5"),
        (b"{} {}", InvalidJSON, "Extra data at offset 3"),
        (b"9" * 5000, InvalidJSON, "number literal is too long"),
        (b"[" * 33 + b"]" * 33, JSONTooDeep, "nested deeper than 32 levels"),
    ],
)
def test_parse_json_rejects(data: bytes, error: type[Exception], reason: str) -> None:
    with pytest.raises(error) as info:
        parse_json(data, what="request")
    assert isinstance(info.value, InvalidJSON)
    assert info.value.reason == reason
    assert info.value.what == "request"


def test_utf16_is_not_sniffed() -> None:
    with pytest.raises(InvalidJSON, match="not valid UTF-8"):
        parse_json("{}".encode("utf-16"))


def test_depth_limit_is_exact() -> None:
    assert MAX_JSON_DEPTH == 32
    nested = "[" * 32 + "]" * 32
    assert parse_json(nested) == json.loads(nested)
    objects = '{"a":' * 32 + "1" + "}" * 32
    assert isinstance(parse_json(objects), dict)
    with pytest.raises(JSONTooDeep) as info:
        parse_json('{"a":' * 33 + "1" + "}" * 33)
    assert info.value.limit == 32
    assert isinstance(info.value, LimitExceeded)


def test_depth_scan_ignores_brackets_in_strings() -> None:
    text = '["' + "[{" * 100 + '\\"\\\\"]'
    assert parse_json(text) == ["[{" * 100 + '"\\']


def test_depth_scan_survives_deep_hostile_input_without_recursion() -> None:
    with pytest.raises(JSONTooDeep):
        parse_json("[" * 60_000)


def test_parse_json_size_limit() -> None:
    with pytest.raises(InputTooLarge) as info:
        parse_json(b" " * 11 + b"1", max_bytes=11)
    assert info.value.size == 12
    with pytest.raises(InputTooLarge):
        parse_json("é" * 6, max_bytes=11)  # 12 UTF-8 bytes
    assert parse_json(b" " * 10 + b"1", max_bytes=11) == 1


def test_parse_json_str_with_lone_surrogate() -> None:
    with pytest.raises(InvalidJSON, match="lone UTF-16 surrogate"):
        parse_json('"\ud800"')


def test_parse_json_rejects_other_types() -> None:
    with pytest.raises(InvalidJSON, match="expected text or bytes, got int"):
        parse_json(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "kind"),
    [(b"[]", "an array"), (b'"x"', "a string"), (b"1", "a number"), (b"null", "null")],
)
def test_parse_json_object_requires_object(data: bytes, kind: str) -> None:
    with pytest.raises(InvalidJSON) as info:
        parse_json_object(data, what="opaque")
    assert str(info.value) == f"opaque: expected a JSON object, got {kind}"


def test_b64url_json_decode() -> None:
    assert b64url_json_decode("eyJhIjoxfQ") == {"a": 1}
    with pytest.raises(InvalidJSON, match="expected a JSON object, got an array"):
        b64url_json_decode(b64url_encode(b"[1]"))


# -- JCS ---------------------------------------------------------------------


def test_jcs_sorts_keys_and_drops_whitespace() -> None:
    assert jcs_encode({"b": 1, "a": [True, None, "x"], "c": {"z": 1, "y": 2}}) == (
        b'{"a":[true,null,"x"],"b":1,"c":{"y":2,"z":1}}'
    )


def test_jcs_rfc8785_number_and_string_forms() -> None:
    assert jcs_encode([1.0, 1e21, 1e-7, 0.5, -0.0]) == b"[1,1e+21,1e-7,0.5,0]"
    assert jcs_encode("é\n\u2028") == '"é\\n\u2028"'.encode()


def test_jcs_sorts_by_utf16_code_units() -> None:
    # U+FB01 sorts after U+1F600 in UTF-16 (0xD83D < 0xFB01) but before it by code point.
    assert jcs_encode({"\ufb01": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\ufb01":1}'.encode()


def test_jcs_accepts_read_only_mappings_and_tuples() -> None:
    assert jcs_encode(MappingProxyType({"b": (1, 2), "a": "x"})) == b'{"a":"x","b":[1,2]}'


def test_jcs_integers_stop_at_the_double_safe_range() -> None:
    assert jcs_encode([2**53 - 1, -(2**53 - 1)]) == b"[9007199254740991,-9007199254740991]"
    for unsafe in (2**53, -(2**53), 10**16):
        with pytest.raises(CanonicalizationFailed):
            jcs_encode(unsafe)


def test_large_floats_reparse_as_ints_that_jcs_refuses() -> None:
    # A known limit, not a bug: JCS writes 1e16 as digits, which Python reads back
    # as an int beyond 2**53 - 1. Received documents are kept as received text,
    # so this only matters when re-encoding a parsed document with such numbers.
    assert jcs_encode(1e16) == b"10000000000000000"
    assert parse_json(b"10000000000000000") == 10**16
    with pytest.raises(CanonicalizationFailed):
        jcs_encode(parse_json(jcs_encode(1e16)))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (2**53, "integer outside ±(2**53 - 1) (send amounts as decimal strings)"),
        (-(2**53), "integer outside ±(2**53 - 1) (send amounts as decimal strings)"),
        (10**400, "integer outside ±(2**53 - 1) (send amounts as decimal strings)"),
        (float("nan"), "NaN or infinite float"),
        (float("-inf"), "NaN or infinite float"),
        ({1: "x"}, "object keys must be strings"),
        ("\ud800", "input contains non-UTF-8 codepoints"),
    ],
)
def test_jcs_rejection_messages_never_show_values(value: object, reason: str) -> None:
    with pytest.raises(CanonicalizationFailed) as info:
        jcs_encode(value)
    assert str(info.value) == f"JCS: {reason}"


@pytest.mark.parametrize(
    "value",
    [
        2**53 + 1,
        -(2**53 + 1),
        float("nan"),
        float("inf"),
        {1: "x"},
        {"a": object()},
        "\ud800",
        b"x",
    ],
)
def test_jcs_rejects_unencodable(value: object) -> None:
    with pytest.raises(CanonicalizationFailed):
        jcs_encode(value)


def test_jcs_rejects_cycles() -> None:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(CanonicalizationFailed, match="nested too deeply"):
        jcs_encode(cyclic)


def test_b64url_jcs_encode() -> None:
    assert b64url_jcs_encode({"b": "2", "a": "1"}) == b64url_encode(b'{"a":"1","b":"2"}')
