"""Payment challenges: parsing, validation, rendering and HMAC binding."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from mppagent.protocol import (
    CanonicalizationFailed,
    Challenge,
    ChallengeList,
    HeaderTooLarge,
    MalformedChallenge,
    b64url_encode,
    b64url_jcs_encode,
    compute_challenge_id,
    parse_challenges,
)

from .drafts import (
    EXAMPLE_CHALLENGE_LINES,
    EXAMPLE_REQUEST,
    NEGOTIATION_HEADERS,
    ONE_TIME_CHALLENGE_LINES,
    ONE_TIME_REQUEST,
    SIGNED_CHALLENGE_LINES,
    unfold,
)

REQ = b64url_jcs_encode({"amount": "25"})  # eyJhbW91bnQiOiIyNSJ9
SECRET = b"server-secret"


def good(challenge_id: str = "abc", **extra: str) -> str:
    params = {
        "id": challenge_id,
        "realm": "api.example.com",
        "method": "tempo",
        "intent": "session",
        "request": REQ,
    }
    params.update(extra)
    return "Payment " + ", ".join(f'{k}="{v}"' for k, v in params.items())


def only(values: list[str] | str) -> Challenge:
    result = parse_challenges(values)
    assert result.errors == []
    [challenge] = result
    return challenge


def only_error(value: str) -> MalformedChallenge:
    result = parse_challenges([value])
    assert list(result) == []
    [error] = result.errors
    return error


# -- the draft's examples ---------------------------------------------------


@pytest.mark.parametrize("joiner", [" ", "\r\n"])
def test_draft_example_challenge(joiner: str) -> None:
    value = unfold(EXAMPLE_CHALLENGE_LINES) if joiner == " " else " ".join(EXAMPLE_CHALLENGE_LINES)
    challenge = only([value])
    assert challenge == Challenge(
        id="x7Tg2pLqR9mKvNwY3hBcZa",
        realm="api.example.com",
        method="example",
        intent="charge",
        request=EXAMPLE_REQUEST,
        expires="2025-01-15T12:05:00Z",
    )
    # The draft prints "usd" in its decoded view; the bytes it encoded say "USD".
    assert challenge.request_data == {"amount": "1000", "currency": "USD", "recipient": "acct_123"}
    assert challenge.expires_at == datetime(2025, 1, 15, 12, 5, tzinfo=UTC)
    assert challenge.opaque_data is None
    assert challenge.description is None
    assert challenge.digest is None


def test_draft_one_time_charge_challenge() -> None:
    challenge = only(unfold(ONE_TIME_CHALLENGE_LINES))
    assert challenge.id == "qB3wErTyU7iOpAsD9fGhJk"
    assert challenge.method == "invoice"
    assert challenge.request == ONE_TIME_REQUEST
    assert challenge.request_data == {"amount": "1000", "currency": "USD", "invoice": "inv_12345"}


def test_draft_signed_authorization_challenge() -> None:
    challenge = only(unfold(SIGNED_CHALLENGE_LINES))
    assert challenge.method == "signed"
    # The encoded request differs from the draft's "Decoded request" block
    # (which shows currency + methodDetails.nonce); the bytes are authoritative.
    assert challenge.request_data == {
        "amount": "5000",
        "asset": "USD",
        "recipient": "0x742d35Cc6634C0532925a3b844Bc9e7595f8fE00",
        "nonce": "0x1234567890",
    }


def test_draft_negotiation_placeholders_are_reported_not_raised() -> None:
    result = parse_challenges(list(NEGOTIATION_HEADERS))
    assert list(result) == []
    assert [(e.header_index, e.offset, e.challenge_id) for e in result.errors] == [
        (0, 0, "pT7yHnKmQ2wErXsZ5vCbNl"),
        (1, 0, "nH6xJkLpO3qRtYsA6wDcVb"),
        (2, 0, "mF8uJkLpO3qRtYsA6wDcVb"),
        (3, 0, "kD4vLmNpQ2rStUwX5yAbCe"),
    ]
    assert result.errors[0].reason == (
        "request: character U+002E at offset 0 is not in the base64url alphabet"
    )


def test_draft_negotiation_headers_with_real_requests_keep_server_order() -> None:
    values = [line.replace('request="..."', f'request="{REQ}"') for line in NEGOTIATION_HEADERS]
    result = parse_challenges(values)
    assert [(c.method, c.intent) for c in result] == [
        ("tempo", "charge"),
        ("tempo", "session"),
        ("stripe", "charge"),
        ("solana", "charge"),
    ]


# -- header syntax ------------------------------------------------------------


def test_payment_after_bearer_in_one_line() -> None:
    challenge = only(['Bearer realm="x", ' + good()])
    assert challenge.id == "abc"
    assert challenge.realm == "api.example.com"


def test_other_schemes_only() -> None:
    result = parse_challenges(['Bearer realm="x"', "Basic", "Negotiate abc=="])
    assert result == []
    assert result.errors == []


def test_two_payment_challenges_in_one_line() -> None:
    result = parse_challenges([good("one") + ", " + good("two", intent="charge")])
    assert [(c.id, c.intent) for c in result] == [("one", "session"), ("two", "charge")]


def test_challenges_across_several_values() -> None:
    result = parse_challenges([good("one"), 'Basic realm="b"', good("two")])
    assert [c.id for c in result] == ["one", "two"]


def test_bare_string_is_one_value() -> None:
    assert [c.id for c in parse_challenges(good("one"))] == ["one"]


def test_quoted_string_escapes_in_values() -> None:
    value = (
        f'Payment id="a\\"b", realm="r\\\\s", method=tempo, intent=session, request={REQ}, '
        'description="say \\"hi\\" \\\\ bye"'
    )
    challenge = only([value])
    assert challenge.id == 'a"b'
    assert challenge.realm == "r\\s"
    assert challenge.description == 'say "hi" \\ bye'


def test_uppercase_scheme_and_names_spaces_around_equals() -> None:
    value = f'PAYMENT ID = "x" , REALM= r ,Method =tempo,  INTENT="session",request = {REQ}'
    challenge = only([value])
    assert (challenge.id, challenge.realm, challenge.method, challenge.intent) == (
        "x",
        "r",
        "tempo",
        "session",
    )


def test_unknown_params_are_ignored() -> None:
    challenge = only([good(future="1", x_vendor="y") + ", another=token"])
    assert challenge == only([good()])


def test_broken_challenge_between_two_good_ones() -> None:
    broken = 'Payment id="bad", realm="r" method="tempo"'
    result = parse_challenges([good("one") + ", " + broken + ", " + good("two")])
    assert [c.id for c in result] == ["one", "two"]
    [error] = result.errors
    assert error.reason == "unexpected character after parameter 'realm'"
    assert error.header_index == 0
    assert error.offset == len(good("one") + ", ")
    assert error.challenge_id == "bad"
    assert str(error) == (
        f"malformed Payment challenge (header 0, offset {error.offset}): "
        "unexpected character after parameter 'realm'"
    )


def test_invalid_challenge_between_two_good_ones() -> None:
    result = parse_challenges([good("one"), good("", method="Tempo"), good("two")])
    assert [c.id for c in result] == ["one", "two"]
    [error] = result.errors
    assert (error.header_index, error.offset) == (1, 0)
    assert error.reason == "parameter 'id' must not be empty"


@pytest.mark.parametrize("missing", ["id", "realm", "method", "intent", "request"])
def test_missing_required_param(missing: str) -> None:
    params = {
        "id": "abc",
        "realm": "r",
        "method": "tempo",
        "intent": "session",
        "request": REQ,
    }
    del params[missing]
    value = "Payment " + ", ".join(f'{k}="{v}"' for k, v in params.items())
    error = only_error(value)
    assert error.reason == f"missing required parameter {missing!r}"
    assert error.challenge_id == (None if missing == "id" else "abc")


def test_payment_without_params() -> None:
    assert only_error("Payment").reason == "missing required parameter 'id'"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"id": ""}, "parameter 'id' must not be empty"),
        ({"method": "Tempo"}, "parameter 'method' must be lowercase letters a-z"),
        ({"method": "tempo2"}, "parameter 'method' must be lowercase letters a-z"),
        ({"method": ""}, "parameter 'method' must be lowercase letters a-z"),
        ({"intent": "pay_now"}, "parameter 'intent' must be letters, digits and '-'"),
        ({"intent": ""}, "parameter 'intent' must be letters, digits and '-'"),
        ({"request": REQ + "="}, "request: padding '=' is not allowed (base64url without padding)"),
        ({"request": "e30="}, "request: padding '=' is not allowed (base64url without padding)"),
        ({"request": ""}, "request: empty"),
        ({"request": b64url_encode(b"[1,2]")}, "request: expected a JSON object, got an array"),
        ({"request": b64url_encode(b'"x"')}, "request: expected a JSON object, got a string"),
        (
            {"request": b64url_encode(b"{")},
            "request: Expecting property name enclosed in double quotes at offset 1",
        ),
        ({"request": b64url_encode(b'{"a":1,"a":1}')}, "request: duplicate object member 'a'"),
        (
            {"opaque": b64url_encode(b'{"a":1}')},
            "parameter 'opaque' must be a JSON object of strings",
        ),
        (
            {"opaque": b64url_encode(b'{"a":{"b":"c"}}')},
            "parameter 'opaque' must be a JSON object of strings",
        ),
        ({"opaque": b64url_encode(b'["a"]')}, "opaque: expected a JSON object, got an array"),
        ({"opaque": ""}, "opaque: empty"),
        ({"expires": "tomorrow"}, "expires: not an RFC 3339 date-time like 2025-01-15T12:05:00Z"),
        ({"expires": "2025-13-01T00:00:00Z"}, "expires: date or time field out of range"),
        ({"digest": ""}, "parameter 'digest' must not be empty"),
    ],
)
def test_invalid_param_values(params: dict[str, str], reason: str) -> None:
    error = only_error(good(**{"id": "abc", **params}) if "id" not in params else good(**params))
    assert error.reason == reason


def test_intent_allows_uppercase_digits_and_dash_per_abnf() -> None:
    assert only(good(intent="Charge-v2")).intent == "Charge-v2"


def test_duplicate_param_is_malformed() -> None:
    error = only_error(good() + ', ID="other"')
    assert error.reason == "parameter 'id' appears more than once"
    assert error.challenge_id == "abc"


def test_token68_payment_is_malformed() -> None:
    assert only_error("Payment eyJhIjoxfQ").reason == "expected auth-params, got a token68 value"


def test_header_size_limits() -> None:
    padding = ", x=" + "a" * (64 * 1024)
    with pytest.raises(HeaderTooLarge) as info:
        parse_challenges([good() + padding])
    assert info.value.limit == 64 * 1024
    almost = good() + ", x=" + "a" * (64 * 1024 - len(good()) - 4)
    assert len(almost) == 64 * 1024
    assert [c.id for c in parse_challenges([almost])] == ["abc"]
    with pytest.raises(HeaderTooLarge) as total:
        parse_challenges([almost] * 5)
    assert total.value.limit == 256 * 1024


def test_header_size_counts_utf8_bytes() -> None:
    with pytest.raises(HeaderTooLarge):
        parse_challenges([good(description="é" * (33 * 1024))])


def test_non_str_values_are_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_challenges([b"Payment id=x"])  # type: ignore[list-item]


def test_challenge_list() -> None:
    result = parse_challenges([good("a"), "Payment id=x"])
    assert isinstance(result, ChallengeList)
    assert isinstance(result, list)
    assert result == [only(good("a"))]
    assert len(result.errors) == 1
    assert repr(result).startswith("ChallengeList([Challenge(id='a'")
    assert ChallengeList().errors == []


# -- the model ---------------------------------------------------------------


def make(**overrides: str | None) -> Challenge:
    params: dict[str, str | None] = {
        "id": "abc",
        "realm": "api.example.com",
        "method": "tempo",
        "intent": "session",
        "request": REQ,
    }
    params.update(overrides)
    return Challenge.model_validate(params)


def test_construction_raises_malformed_challenge_not_validation_error() -> None:
    with pytest.raises(MalformedChallenge) as info:
        make(method="TEMPO")
    assert info.value.header_index is None
    assert info.value.offset is None
    assert str(info.value) == (
        "malformed Payment challenge: parameter 'method' must be lowercase letters a-z"
    )


def test_wrong_types_are_pydantic_errors() -> None:
    with pytest.raises(ValidationError):
        Challenge.model_validate(
            {"id": 1, "realm": "r", "method": "m", "intent": "i", "request": REQ}
        )


@pytest.mark.parametrize("name", ["id", "realm", "description", "digest"])
@pytest.mark.parametrize("char", ["\r", "\n", "\x00", "\x7f", "\ud800"])
def test_control_characters_are_refused(name: str, char: str) -> None:
    with pytest.raises(MalformedChallenge) as info:
        make(**{name: f"a{char}b"})
    assert info.value.reason == f"parameter {name!r} contains a control character"


def test_tab_is_allowed() -> None:
    assert make(description="a\tb").description == "a\tb"


def test_from_params_type_checks() -> None:
    with pytest.raises(MalformedChallenge, match="parameter 'realm' must be a string"):
        Challenge.from_params({"id": "a", "realm": 1, "method": "m", "intent": "i", "request": REQ})  # type: ignore[dict-item]


def test_frozen_and_hashable() -> None:
    challenge = make()
    with pytest.raises(ValidationError):
        challenge.id = "other"  # type: ignore[misc]
    assert hash(challenge) == hash(make())
    assert len({challenge, make(), make(id="x")}) == 2


def test_request_data_is_a_copy() -> None:
    challenge = make(request=b64url_jcs_encode({"a": {"b": ["c"]}}))
    data = challenge.request_data
    inner = data["a"]
    assert isinstance(inner, dict)
    inner["b"] = "changed"
    assert challenge.request_data == {"a": {"b": ["c"]}}


def test_opaque_data() -> None:
    opaque = b64url_jcs_encode({"pi": "pi_123", "n": "1"})
    challenge = make(opaque=opaque)
    assert challenge.opaque_data == {"n": "1", "pi": "pi_123"}
    assert challenge.opaque == opaque


def test_non_canonical_request_is_kept_verbatim() -> None:
    # The draft mandates JCS for servers; clients echo whatever they received.
    request = b64url_encode(b'{ "b": "1",\n "a": "2" }')
    challenge = only(good(request=request))
    assert challenge.request == request
    assert challenge.echo()["request"] == request
    assert challenge.request_data == {"b": "1", "a": "2"}


# -- expiry ------------------------------------------------------------------

EXPIRES = datetime(2025, 1, 15, 12, 5, tzinfo=UTC)


def test_is_expired() -> None:
    challenge = make(expires="2025-01-15T12:05:00Z")
    assert challenge.is_expired(EXPIRES - timedelta(seconds=1)) is False
    assert challenge.is_expired(EXPIRES) is True
    assert challenge.is_expired(EXPIRES + timedelta(seconds=1)) is True


def test_is_expired_with_skew() -> None:
    challenge = make(expires="2025-01-15T12:05:00Z")
    now = EXPIRES - timedelta(seconds=10)
    assert challenge.is_expired(now, skew=timedelta(seconds=9)) is False
    assert challenge.is_expired(now, skew=timedelta(seconds=10)) is True
    assert challenge.is_expired(EXPIRES, skew=timedelta(seconds=-1)) is False


def test_is_expired_compares_instants_across_offsets() -> None:
    challenge = make(expires="2025-01-15T14:05:00+02:00")
    assert challenge.expires_at == EXPIRES
    assert challenge.is_expired(EXPIRES - timedelta(microseconds=1)) is False


def test_no_expires_never_expires() -> None:
    assert make().is_expired(datetime(9999, 1, 1, tzinfo=UTC)) is False
    assert make().expires_at is None


def test_is_expired_refuses_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make().is_expired(datetime(2025, 1, 1))


# -- wire forms --------------------------------------------------------------


def test_to_header_exact() -> None:
    challenge = make(
        id='a"b',
        expires="2025-01-15T12:05:00Z",
        digest="sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        description='50 tokens \\ "fast"',
        opaque="eyJhIjoiYiJ9",
    )
    assert challenge.to_header() == (
        'Payment id="a\\"b", realm="api.example.com", method="tempo", intent="session", '
        f'request="{REQ}", expires="2025-01-15T12:05:00Z", '
        'digest="sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:", '
        'description="50 tokens \\\\ \\"fast\\"", opaque="eyJhIjoiYiJ9"'
    )
    assert parse_challenges([challenge.to_header()]) == [challenge]


def test_to_header_minimal() -> None:
    assert make().to_header() == (
        'Payment id="abc", realm="api.example.com", method="tempo", intent="session", '
        f'request="{REQ}"'
    )


def test_echo_has_exactly_the_received_params() -> None:
    assert make().echo() == {
        "id": "abc",
        "realm": "api.example.com",
        "method": "tempo",
        "intent": "session",
        "request": REQ,
    }
    full = make(expires="2025-01-15T12:05:00Z", digest="d", description="x", opaque="e30")
    assert full.echo() == {
        "id": "abc",
        "realm": "api.example.com",
        "method": "tempo",
        "intent": "session",
        "request": REQ,
        "expires": "2025-01-15T12:05:00Z",
        "digest": "d",
        "description": "x",
        "opaque": "e30",
    }


# -- HMAC binding ------------------------------------------------------------


def reference_hmac(secret: bytes, message: str) -> str:
    return b64url_encode(hmac.new(secret, message.encode(), hashlib.sha256).digest())


def test_binding_uses_seven_slots_with_empty_absent_ones() -> None:
    challenge = make()
    assert challenge.compute_id(SECRET) == reference_hmac(
        SECRET, f"api.example.com|tempo|session|{REQ}|||"
    )
    full = make(expires="2025-01-15T12:05:00Z", digest="sha-256=:x:", opaque="e30")
    assert full.compute_id(SECRET) == reference_hmac(
        SECRET, f"api.example.com|tempo|session|{REQ}|2025-01-15T12:05:00Z|sha-256=:x:|e30"
    )


def test_binding_distinguishes_expires_only_from_digest_only() -> None:
    expires_only = make(expires="2025-01-15T12:05:00Z").compute_id(SECRET)
    digest_only = make(digest="2025-01-15T12:05:00Z").compute_id(SECRET)
    assert expires_only != digest_only
    assert expires_only == reference_hmac(
        SECRET, f"api.example.com|tempo|session|{REQ}|2025-01-15T12:05:00Z||"
    )
    assert digest_only == reference_hmac(
        SECRET, f"api.example.com|tempo|session|{REQ}||2025-01-15T12:05:00Z|"
    )


def test_binding_ignores_description_and_id() -> None:
    assert make(description="x", id="other").compute_id(SECRET) == make().compute_id(SECRET)


def test_binding_is_pinned() -> None:
    # Computed independently: printf ... | openssl dgst -sha256 -hmac server-secret -binary
    assert make().compute_id(SECRET) == "ITKn5ase7Yw_E0W1l5LRkXw2bvLdg9wvkXWV_dLI04U"


@pytest.mark.parametrize(
    ("secret", "realm", "request_obj", "digest", "expected"),
    [
        # Cross-SDK conformance vectors shared by the TypeScript, Rust and Python SDKs.
        (
            b"test-secret-key-12345",
            "api.example.com",
            {
                "amount": "1000000",
                "currency": "0x20c0000000000000000000000000000000000000",
                "recipient": "0x1234567890abcdef1234567890abcdef12345678",
            },
            None,
            "XmJ98SdsAdzwP9Oa-8In322Uh6yweMO6rywdomWk_V4",
        ),
        (
            b"my-server-secret",
            "payments.example.org",
            {
                "amount": "250000",
                "currency": "USD",
                "recipient": "0x9999999999999999999999999999999999999999",
            },
            "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
            "qcJUPoapy4bFLznQjQUutwPLyXW7FvALrWA_sMENgAY",
        ),
        (
            b"unicode-test-key",
            "api.example.com",
            {
                "amount": "100",
                "currency": "EUR",
                "recipient": "0x1111111111111111111111111111111111111111",
                "description": "Payment for caf\u00e9 \u2615",
            },
            None,
            "1_GKJqATKvVnIUY3f8MFq48bMs18JHz_3CBK8pu52yA",
        ),
    ],
)
def test_binding_interoperates(
    secret: bytes, realm: str, request_obj: dict[str, str], digest: str | None, expected: str
) -> None:
    assert (
        compute_challenge_id(
            secret,
            realm=realm,
            method="tempo",
            intent="charge",
            request=b64url_jcs_encode(request_obj),
            digest=digest,
        )
        == expected
    )


def test_verify_id() -> None:
    challenge = make(id=make().compute_id(SECRET))
    assert challenge.verify_id(SECRET) is True
    assert challenge.verify_id(b"other-secret") is False
    tampered = make(id=challenge.id, realm="evil.example.com")
    assert tampered.verify_id(SECRET) is False
    assert make(id="non-ascii-\u00e9").verify_id(SECRET) is False


def test_empty_or_text_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty bytes"):
        make().compute_id(b"")
    with pytest.raises(TypeError, match="must be bytes"):
        make().compute_id("server-secret")  # type: ignore[arg-type]


# -- issuing (server side) ---------------------------------------------------


def test_issue() -> None:
    challenge = Challenge.issue(
        secret=SECRET,
        realm="api.example.com",
        method="tempo",
        intent="session",
        request={"unitType": "llm_token", "amount": "25", "methodDetails": {"chainId": 4217}},
        expires=datetime(2025, 1, 15, 14, 5, tzinfo=timezone(timedelta(hours=2))),
        opaque={"b": "2", "a": "1"},
        description="LLM tokens",
    )
    assert challenge.request == b64url_encode(
        b'{"amount":"25","methodDetails":{"chainId":4217},"unitType":"llm_token"}'
    )
    assert challenge.opaque == b64url_encode(b'{"a":"1","b":"2"}')
    assert challenge.expires == "2025-01-15T12:05:00Z"
    assert challenge.description == "LLM tokens"
    assert challenge.digest is None
    assert challenge.verify_id(SECRET)
    assert challenge.id == reference_hmac(
        SECRET,
        f"api.example.com|tempo|session|{challenge.request}|2025-01-15T12:05:00Z||{challenge.opaque}",
    )
    assert parse_challenges([challenge.to_header()]) == [challenge]


def test_issue_validates() -> None:
    with pytest.raises(MalformedChallenge, match="'method' must be lowercase"):
        Challenge.issue(secret=SECRET, realm="r", method="Tempo", intent="x", request={})
    with pytest.raises(CanonicalizationFailed):
        Challenge.issue(secret=SECRET, realm="r", method="t", intent="x", request={"a": 2**60})
    with pytest.raises(MalformedChallenge, match="opaque"):
        Challenge.issue(
            secret=SECRET,
            realm="r",
            method="t",
            intent="x",
            request={},
            opaque={"a": 1},  # type: ignore[dict-item]
        )
