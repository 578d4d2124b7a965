"""Payment credentials: building, encoding, decoding and keeping secrets out of sight."""

from __future__ import annotations

import json
import traceback

import pytest
from pydantic import ValidationError

from mppagent.protocol import (
    CanonicalizationFailed,
    Challenge,
    ChallengeEcho,
    Credential,
    MalformedChallenge,
    MalformedCredential,
    b64url_decode,
    b64url_encode,
    b64url_jcs_encode,
    did_pkh,
    parse_challenges,
)

from .drafts import (
    EXAMPLE_CHALLENGE_LINES,
    EXAMPLE_CREDENTIAL,
    EXAMPLE_REQUEST,
    ONE_TIME_CREDENTIAL,
    unfold,
)

SIGNATURE = "0x" + "ab" * 65
TRANSACTION = "0x76f901" + "cd" * 200
CHANNEL = "0x6d0f4fdf1f2f6a1f6c1b0fbd6a7d5c2c0a8d3d7b1f6a9c1b3e2d4a5b6c7d8e9f"
PAYER = "0x742d35Cc6634C0532925a3b844Bc9e7595f8fE00"
REQ = b64url_jcs_encode({"amount": "25"})


def challenge(**extra: str) -> Challenge:
    params = {
        "id": "kM9xPqWvT2nJrHsY4aDfEb",
        "realm": "api.llm-service.com",
        "method": "tempo",
        "intent": "session",
        "request": REQ,
    }
    params.update(extra)
    return Challenge.model_validate(params)


def voucher(**extra: str) -> Credential:
    return Credential.for_challenge(
        challenge(**extra),
        {
            "action": "voucher",
            "channelId": CHANNEL,
            "cumulativeAmount": "250000",
            "signature": SIGNATURE,
        },
        source=did_pkh(4217, PAYER),
    )


def encode_json(doc: object) -> str:
    return "Payment " + b64url_encode(json.dumps(doc).encode())


# -- the draft's examples ---------------------------------------------------


def test_draft_example_credential() -> None:
    credential = Credential.decode(EXAMPLE_CREDENTIAL)
    assert credential.challenge.to_dict() == {
        "id": "x7Tg2pLqR9mKvNwY3hBcZa",
        "realm": "api.example.com",
        "method": "example",
        "intent": "charge",
        "request": EXAMPLE_REQUEST,
        "expires": "2025-01-15T12:05:00Z",
    }
    assert credential.payload == {"proof": "0xabc123..."}
    assert credential.source is None
    assert credential.challenge_id == "x7Tg2pLqR9mKvNwY3hBcZa"


def test_draft_example_credential_answers_the_draft_example_challenge() -> None:
    [received] = parse_challenges([unfold(EXAMPLE_CHALLENGE_LINES)])
    ours = Credential.for_challenge(received, {"proof": "0xabc123..."})
    assert ours == Credential.decode(EXAMPLE_CREDENTIAL)
    assert Credential.decode(EXAMPLE_CREDENTIAL).challenge.to_challenge() == received
    # The draft's token is not JCS (members in challenge order), ours is.
    assert ours.encode() != EXAMPLE_CREDENTIAL
    assert Credential.decode(ours.encode()) == ours


def test_draft_one_time_charge_credential_lacks_challenge_object() -> None:
    # The draft's base64 decodes to {"id": ..., "payload": ...}, not to the
    # {"challenge": {...}, "payload": ...} it prints below it.
    raw = b64url_decode(ONE_TIME_CREDENTIAL.split()[1])
    assert json.loads(raw) == {
        "id": "qB3wErTyU7iOpAsD9fGhJk",
        "payload": {"preimage": "0xabc123..."},
    }
    with pytest.raises(MalformedCredential) as info:
        Credential.decode(ONE_TIME_CREDENTIAL)
    assert info.value.reason == "missing 'challenge' object"


# -- encoding ----------------------------------------------------------------


def test_encode_is_jcs_of_the_expected_document() -> None:
    credential = voucher(expires="2025-01-06T12:05:00Z")
    scheme, token = credential.encode().split(" ")
    assert scheme == "Payment"
    assert b64url_decode(token).decode() == (
        '{"challenge":{"expires":"2025-01-06T12:05:00Z","id":"kM9xPqWvT2nJrHsY4aDfEb",'
        '"intent":"session","method":"tempo","realm":"api.llm-service.com",'
        f'"request":"{REQ}"}},'
        f'"payload":{{"action":"voucher","channelId":"{CHANNEL}","cumulativeAmount":"250000",'
        f'"signature":"{SIGNATURE}"}},'
        f'"source":"did:pkh:eip155:4217:{PAYER}"}}'
    )


def test_optional_echo_params_only_when_present() -> None:
    credential = Credential.for_challenge(
        challenge(description="d", opaque="e30", digest="sha-256=:x:"), {}
    )
    assert credential.challenge.to_dict() == {
        "id": "kM9xPqWvT2nJrHsY4aDfEb",
        "realm": "api.llm-service.com",
        "method": "tempo",
        "intent": "session",
        "request": REQ,
        "digest": "sha-256=:x:",
        "description": "d",
        "opaque": "e30",
    }
    assert "source" not in credential.to_json_object()


def test_encode_refuses_unencodable_payload() -> None:
    credential = Credential.for_challenge(challenge(), {"cumulativeAmount": 2**60})
    with pytest.raises(CanonicalizationFailed):
        credential.encode()


def test_for_challenge_copies_payload() -> None:
    payload: dict[str, object] = {"action": "voucher"}
    credential = Credential.for_challenge(challenge(), payload)  # type: ignore[arg-type]
    payload["action"] = "close"
    assert credential.action == "voucher"


# -- decoding ----------------------------------------------------------------


def test_decode_round_trip_and_scheme_case() -> None:
    credential = voucher()
    token = credential.encode().split(" ")[1]
    for value in (
        f"Payment {token}",
        f"payment {token}",
        f"PAYMENT   {token}",
        f"  Payment {token}\t",
    ):
        assert Credential.decode(value) == credential


def test_decode_ignores_unknown_members_and_null_optionals() -> None:
    doc = {
        "challenge": {**challenge().echo(), "expires": None, "future": "x"},
        "payload": {"a": 1},
        "source": None,
        "extension": {"x": 1},
    }
    credential = Credential.decode(encode_json(doc))
    assert credential.challenge.expires is None
    assert credential.source is None
    assert credential.payload == {"a": 1}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Bearer eyJhIjoxfQ", "the authorization scheme is not Payment"),
        ("Payment", "expected 'Payment <base64url>' with exactly one token"),
        ("Payment ", "expected 'Payment <base64url>' with exactly one token"),
        ("Payment a b", "expected 'Payment <base64url>' with exactly one token"),
        ("Payment\teyJhIjoxfQ", "expected 'Payment <base64url>' with exactly one token"),
        (
            "Payment eyJhIjoxfQ, Payment eyJhIjoxfQ",
            "expected 'Payment <base64url>' with exactly one token",
        ),
        ("", "expected 'Payment <base64url>' with exactly one token"),
        ("Payment e30=", "padding '=' is not allowed (base64url without padding)"),
        ("Payment e30+", "'+' at offset 3 is standard base64; base64url uses '-' and '_'"),
        ("Payment e3,0", "character U+002C at offset 2 is not in the base64url alphabet"),
        ("Payment e", "length 1 is impossible for base64url"),
        ("Payment " + b64url_encode(b"not json"), "Expecting value at offset 0"),
        ("Payment " + b64url_encode(b"[]"), "expected a JSON object, got an array"),
        ("Payment " + b64url_encode(b'{"a":1,"a":2}'), "duplicate object member 'a'"),
        ("Payment " + b64url_encode(b"{" * 40), "nested deeper than 32 levels"),
        ("Payment e30", "missing 'challenge' object"),
    ],
)
def test_decode_rejects(value: str, reason: str) -> None:
    with pytest.raises(MalformedCredential) as info:
        Credential.decode(value)
    assert info.value.reason == reason
    assert str(info.value) == f"malformed Payment credential: {reason}"


def test_decode_rejects_oversized_value() -> None:
    with pytest.raises(MalformedCredential, match="over the limit of 65536 bytes"):
        Credential.decode("Payment " + "A" * (64 * 1024))


def test_decode_rejects_non_str() -> None:
    with pytest.raises(MalformedCredential, match="expected a str"):
        Credential.decode(b"Payment e30")  # type: ignore[arg-type]


def with_challenge(**changes: object) -> dict[str, object]:
    echo: dict[str, object] = dict(challenge().echo())
    echo.update(changes)
    return {"challenge": {k: v for k, v in echo.items() if v is not ...}, "payload": {}}


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"challenge": "x", "payload": {}}, "'challenge' is not an object"),
        ({"challenge": challenge().echo()}, "missing 'payload' object"),
        ({"challenge": challenge().echo(), "payload": []}, "'payload' is not an object"),
        (
            {"challenge": challenge().echo(), "payload": {}, "source": 5},
            "'source' must be a string",
        ),
        (with_challenge(id=...), "missing challenge.id"),
        (with_challenge(request=...), "missing challenge.request"),
        (with_challenge(realm=5), "challenge.realm must be a string"),
        (with_challenge(expires=1), "challenge.expires must be a string"),
        (with_challenge(id=""), "challenge.id must not be empty"),
        (with_challenge(method="Tempo"), "challenge.method must be lowercase letters a-z"),
        (with_challenge(intent="a b"), "challenge.intent must be letters, digits and '-'"),
        (
            {"challenge": challenge().echo(), "payload": {}, "source": "did:pkh:eip155:1:0x12"},
            "source: expected did:pkh:eip155:<chainId>:<0x address>",
        ),
    ],
)
def test_decode_rejects_bad_documents(doc: dict[str, object], reason: str) -> None:
    with pytest.raises(MalformedCredential) as info:
        Credential.decode(encode_json(doc))
    assert info.value.reason == reason


def test_source_other_did_methods_pass() -> None:
    doc = {"challenge": challenge().echo(), "payload": {}, "source": "did:key:z6Mkha"}
    assert Credential.decode(encode_json(doc)).source == "did:key:z6Mkha"


def test_construction_validates_source() -> None:
    with pytest.raises(MalformedCredential, match="source"):
        Credential.for_challenge(challenge(), {}, source="did:pkh:eip155:0:" + PAYER)


# -- secrets stay out of sight ------------------------------------------------


def test_repr_and_str_redact_the_payload() -> None:
    credential = Credential.for_challenge(
        challenge(),
        {
            "action": "open",
            "type": "transaction",
            "channelId": CHANNEL,
            "transaction": TRANSACTION,
            "cumulativeAmount": "0",
            "signature": SIGNATURE,
        },
        source=did_pkh(4217, PAYER),
    )
    for text in (repr(credential), str(credential), f"{credential}", f"{credential!r}"):
        assert SIGNATURE not in text
        assert TRANSACTION not in text
        assert "ab" * 10 not in text
        assert "<redacted>" in text
    assert repr(credential) == (
        "Credential(challenge_id='kM9xPqWvT2nJrHsY4aDfEb', method='tempo', intent='session', "
        f"action='open', channel_id='{CHANNEL}', source='did:pkh:eip155:4217:{PAYER}', "
        "payload=<redacted>)"
    )


def test_repr_without_action() -> None:
    credential = Credential.for_challenge(challenge(), {"proof": "secret-preimage"})
    assert repr(credential) == (
        "Credential(challenge_id='kM9xPqWvT2nJrHsY4aDfEb', method='tempo', intent='session', "
        "payload=<redacted>)"
    )
    assert credential.action is None
    assert credential.channel_id is None


def test_decode_errors_never_contain_the_credential() -> None:
    secret_doc = {
        "challenge": {**challenge().echo(), "method": 7},
        "payload": {"signature": SIGNATURE},
    }
    value = encode_json(secret_doc)
    with pytest.raises(MalformedCredential) as info:
        Credential.decode(value)
    # Everything a logged traceback would show, chained exceptions included.
    text = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert value.split()[1][:20] not in text
    assert SIGNATURE not in text


def test_decode_errors_do_not_chain_encoding_details() -> None:
    with pytest.raises(MalformedCredential) as info:
        Credential.decode(
            "Payment " + b64url_encode(b'{"signature": "' + SIGNATURE.encode() + b'" x}')
        )
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True
    assert SIGNATURE not in "".join(traceback.format_exception(info.value))


def test_validation_errors_hide_input() -> None:
    with pytest.raises(ValidationError) as info:
        Credential(challenge=ChallengeEcho.from_challenge(challenge()), payload=SIGNATURE)  # type: ignore[arg-type]
    assert SIGNATURE not in str(info.value)


# -- the echo (server side) --------------------------------------------------


def test_echo_verify_id() -> None:
    secret = b"server-secret"
    issued = Challenge.issue(
        secret=secret, realm="r", method="tempo", intent="session", request={"amount": "25"}
    )
    credential = Credential.decode(Credential.for_challenge(issued, {}).encode())
    assert credential.challenge.verify_id(secret) is True
    assert credential.challenge.compute_id(secret) == issued.id
    assert credential.challenge.verify_id(b"other") is False
    forged = ChallengeEcho(**{**issued.echo(), "request": b64url_jcs_encode({"amount": "1"})})
    assert forged.verify_id(secret) is False


def test_echo_to_challenge_validates_fully() -> None:
    echo = ChallengeEcho(**{**challenge().echo(), "request": "e30="})
    with pytest.raises(MalformedChallenge, match="padding"):
        echo.to_challenge()
