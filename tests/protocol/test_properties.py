"""Property tests: round trips, and hostile input ending only in typed errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from mppagent.errors import PaymentError
from mppagent.protocol import (
    MAX_AMOUNT,
    Challenge,
    Credential,
    EncodingError,
    InvalidAcceptPayment,
    InvalidAmount,
    InvalidTimestamp,
    MalformedCredential,
    MalformedReceipt,
    PaymentRange,
    ProblemError,
    accept_payment_header,
    b64url_decode,
    b64url_encode,
    b64url_jcs_encode,
    decode_receipt,
    decode_receipt_json,
    encode_receipt,
    format_amount,
    format_rfc3339,
    jcs_encode,
    parse_accept_payment,
    parse_amount,
    parse_challenges,
    parse_json,
    parse_problem,
    parse_rfc3339,
    tokenize_challenges,
)

from .strategies import (
    challenges,
    header_text,
    intents,
    json_objects,
    json_values,
    methods,
    sources,
)

HEADERISH = st.text(alphabet='Payment id=realm,"\\ =\t;eyJ9-_ABasicNegotiate', max_size=80)


def raises_only(
    allowed: type[BaseException] | tuple[type[BaseException], ...],
    fn: Callable[..., object],
    *args: object,
) -> object:
    """Call ``fn``; any exception must be one of ``allowed`` (anything else fails the test)."""
    try:
        return fn(*args)
    except allowed as exc:
        return exc


# -- round trips ---------------------------------------------------------------


@given(challenges())
def test_property_challenge_header_round_trip(challenge: Challenge) -> None:
    result = parse_challenges([challenge.to_header()])
    assert result.errors == []
    assert result == [challenge]
    [parsed] = result
    assert parsed.request == challenge.request
    assert parsed.opaque == challenge.opaque
    assert parsed.echo() == challenge.echo()


@given(challenges(), challenges())
def test_property_challenges_beside_other_schemes(first: Challenge, second: Challenge) -> None:
    value = f'Bearer realm="x", {first.to_header()}, Negotiate abc==, {second.to_header()}, Basic'
    assert parse_challenges([value]) == [first, second]


@given(challenges(), json_objects, sources)
def test_property_credential_round_trip(
    challenge: Challenge, payload: dict[str, object], source: str | None
) -> None:
    credential = Credential.for_challenge(challenge, payload, source=source)  # type: ignore[arg-type]
    decoded = Credential.decode(credential.encode())
    assert decoded == credential
    assert decoded.challenge.to_challenge() == challenge
    assert decoded.encode() == credential.encode()


@given(challenges(), st.binary(min_size=1, max_size=32))
def test_property_binding_verifies_only_with_its_secret(
    challenge: Challenge, secret: bytes
) -> None:
    bound = challenge.model_copy(update={"id": challenge.compute_id(secret)})
    assert bound.verify_id(secret)
    assert not bound.verify_id(secret + b"x")


@given(json_values)
def test_property_jcs_then_parse_is_identity(value: object) -> None:
    assert parse_json(jcs_encode(value)) == value


@given(st.binary(max_size=64))
def test_property_b64url_round_trip(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text
    if data:
        assert b64url_decode(text) == data


@given(st.integers(0, MAX_AMOUNT))
def test_property_amount_round_trip(amount: int) -> None:
    assert parse_amount(format_amount(amount), "amount") == amount


@given(st.datetimes(timezones=st.just(UTC)))
def test_property_rfc3339_round_trip(moment: datetime) -> None:
    assert parse_rfc3339(format_rfc3339(moment)) == moment


@given(
    st.lists(
        st.tuples(
            methods | st.just("*"),
            intents | st.just("*"),
            st.integers(0, 1000).map(lambda n: str(n / 1000) if n < 1000 else "1"),
        ),
        min_size=1,
        max_size=5,
        unique_by=lambda t: (t[0], t[1]),
    )
)
def test_property_accept_payment_round_trip(entries: list[tuple[str, str, str]]) -> None:
    header = accept_payment_header(entries)
    parsed = parse_accept_payment(header)
    assert [(r.method, r.intent) for r in parsed] == [(m, i) for m, i, _ in entries]
    assert ", ".join(str(r) for r in parsed) == header
    assert all(isinstance(r, PaymentRange) for r in parsed)


@given(json_objects, st.dictionaries(st.sampled_from(["units", "spent", "x"]), json_values))
def test_property_receipt_round_trip(extras: dict[str, object], more: dict[str, object]) -> None:
    doc = {
        **extras,
        **more,
        "status": "success",
        "method": "tempo",
        "timestamp": "2025-01-06T12:08:30Z",
        "reference": "0x6d",
    }
    encoded = encode_receipt(doc)  # type: ignore[arg-type]
    receipt = decode_receipt(encoded)
    assert receipt.to_json_object() == doc
    assert encode_receipt(receipt) == encoded


# -- hostile input -------------------------------------------------------------


@given(st.lists(st.one_of(st.text(max_size=200), HEADERISH), max_size=4))
@example(['Payment id="a\\'])
@example(["Payment id=a, realm=, Payment"])
@example(['Payment ID=a, id="b", ,, =, "'])
def test_property_parse_challenges_never_crashes(values: list[str]) -> None:
    result = raises_only(PaymentError, parse_challenges, values)
    if not isinstance(result, BaseException):
        assert all(isinstance(c, Challenge) for c in result)  # type: ignore[attr-defined]


@given(st.text(max_size=300) | HEADERISH)
def test_property_tokenizer_is_total(value: str) -> None:
    for challenge in tokenize_challenges(value):
        assert 0 <= challenge.offset < len(value)


@given(challenges(), st.data())
def test_property_mutated_headers_end_in_typed_errors(
    challenge: Challenge, data: st.DataObject
) -> None:
    header = challenge.to_header()
    position = data.draw(st.integers(0, len(header)))
    insert = data.draw(st.sampled_from(['"', "\\", ",", "=", " ", "", "\x00", "é"]))
    cut = data.draw(st.integers(0, 3))
    mutated = header[:position] + insert + header[position + cut :]
    raises_only(PaymentError, parse_challenges, [mutated, challenge.to_header()])
    result = parse_challenges([mutated, challenge.to_header()])
    assert result[-1] == challenge  # the intact copy always survives


@given(st.text(max_size=200) | st.text(alphabet="Payment eyJ9AQ-_=+/ ", max_size=60))
def test_property_credential_decode_only_raises_malformed(value: str) -> None:
    raises_only(MalformedCredential, Credential.decode, value)


@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_property_credential_decode_of_any_payload(raw: bytes) -> None:
    if raw:
        raises_only(MalformedCredential, Credential.decode, "Payment " + b64url_encode(raw))


@given(st.text(max_size=200))
def test_property_decode_receipt_only_raises_malformed(value: str) -> None:
    raises_only(MalformedReceipt, decode_receipt, value)


@given(st.binary(max_size=200) | json_objects.map(lambda v: json.dumps(v).encode()))
def test_property_decode_receipt_json_only_raises_malformed(raw: bytes) -> None:
    raises_only(MalformedReceipt, decode_receipt_json, raw)
    if raw:
        raises_only(MalformedReceipt, decode_receipt, b64url_encode(raw))


@dataclass
class _Response:
    status_code: int
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)


@given(
    st.integers(-(2**70), 2**70),
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | json_objects.map(
        lambda v: json.dumps(
            {**v, "type": "https://paymentauth.org/problems/payment-expired"}
        ).encode()
    ),
)
def test_property_parse_problem_never_raises(status: int, content: bytes) -> None:
    problem = parse_problem(_Response(status, content))
    assert isinstance(problem, ProblemError)
    assert problem.status == status
    assert problem.detail is None or len(problem.detail) <= 500


@given(st.text(max_size=100) | st.binary(max_size=100))
def test_property_b64url_decode_only_raises_encoding_errors(value: str | bytes) -> None:
    result = raises_only(EncodingError, b64url_decode, value)
    if isinstance(result, bytes):
        assert b64url_encode(result) == (value if isinstance(value, str) else value.decode())


@given(
    st.text(max_size=200) | st.binary(max_size=200) | st.text(alphabet='[]{}"\\:,1e.-', max_size=80)
)
def test_property_parse_json_only_raises_encoding_errors(value: str | bytes) -> None:
    raises_only(EncodingError, parse_json, value)


@given(st.one_of(st.text(max_size=50), st.integers(), st.floats(), st.booleans(), st.none()))
def test_property_parse_amount_is_canonical_or_refuses(value: object) -> None:
    result = raises_only(InvalidAmount, parse_amount, value, "amount")
    if isinstance(result, int):
        assert format_amount(result) == value


@given(st.text(max_size=60))
def test_property_parse_rfc3339_only_raises_invalid_timestamp(value: str) -> None:
    raises_only(InvalidTimestamp, parse_rfc3339, value)


@given(st.text(max_size=120) | st.text(alphabet="abc*/;q=0.15, \t", max_size=60))
def test_property_parse_accept_payment_only_raises_invalid(value: str) -> None:
    raises_only(InvalidAcceptPayment, parse_accept_payment, value)


@given(header_text)
def test_property_header_text_survives_quoting(text: str) -> None:
    challenge = Challenge(
        id="x" + text,
        realm=text,
        method="tempo",
        intent="session",
        request=b64url_jcs_encode({}),
        description=text,
    )
    assert parse_challenges(challenge.to_header()) == [challenge]
