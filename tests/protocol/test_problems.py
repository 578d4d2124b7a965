"""RFC 9457 problem details: one exception class per type; parse_problem never raises."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from mppagent.errors import MppagentError, PaymentError, ProtocolError
from mppagent.protocol import (
    PROBLEM_CONTENT_TYPE,
    PROBLEM_TYPES,
    AmountExceedsDepositProblem,
    ChallengeNotFoundProblem,
    ChannelFinalizedProblem,
    ChannelNotFoundProblem,
    DeltaTooSmallProblem,
    InsufficientBalanceProblem,
    InvalidChallengeProblem,
    InvalidSignatureProblem,
    MalformedCredentialProblem,
    MethodUnsupportedProblem,
    PaymentExpiredProblem,
    PaymentInsufficientProblem,
    PaymentRequiredProblem,
    ProblemError,
    SessionProblem,
    SignerMismatchProblem,
    UnknownProblem,
    VerificationFailedProblem,
    parse_problem,
    problem_for,
)

from .drafts import ONE_TIME_PROBLEM_BODY, VERIFICATION_FAILED_BODY


@dataclass
class Response:
    status_code: int
    content: bytes
    headers: Mapping[str, str] = field(
        default_factory=lambda: {"content-type": PROBLEM_CONTENT_TYPE}
    )


CORE = "https://paymentauth.org/problems/"
SESSION = "https://paymentauth.org/problems/session/"

TABLE = [
    (PaymentRequiredProblem, CORE + "payment-required", "Payment Required", 402),
    (PaymentInsufficientProblem, CORE + "payment-insufficient", "Payment Insufficient", 402),
    (PaymentExpiredProblem, CORE + "payment-expired", "Payment Expired", 402),
    (VerificationFailedProblem, CORE + "verification-failed", "Payment Verification Failed", 402),
    (MethodUnsupportedProblem, CORE + "method-unsupported", "Method Unsupported", 400),
    (MalformedCredentialProblem, CORE + "malformed-credential", "Malformed Credential", 402),
    (InvalidChallengeProblem, CORE + "invalid-challenge", "Invalid Challenge", 402),
    (InvalidSignatureProblem, SESSION + "invalid-signature", "Invalid Signature", 402),
    (SignerMismatchProblem, SESSION + "signer-mismatch", "Signer Mismatch", 402),
    (
        AmountExceedsDepositProblem,
        SESSION + "amount-exceeds-deposit",
        "Amount Exceeds Deposit",
        402,
    ),
    (DeltaTooSmallProblem, SESSION + "delta-too-small", "Delta Too Small", 402),
    (InsufficientBalanceProblem, SESSION + "insufficient-balance", "Insufficient Balance", 402),
    (ChallengeNotFoundProblem, SESSION + "challenge-not-found", "Challenge Not Found", 402),
    (ChannelNotFoundProblem, SESSION + "channel-not-found", "Channel Not Found", 410),
    (ChannelFinalizedProblem, SESSION + "channel-finalized", "Channel Finalized", 410),
]


@pytest.mark.parametrize(("cls", "type_uri", "title", "status"), TABLE)
def test_problem_classes(cls: type[ProblemError], type_uri: str, title: str, status: int) -> None:
    assert cls.type_uri == type_uri
    assert PROBLEM_TYPES[type_uri] is cls
    problem = cls("because")
    assert (problem.type, problem.title, problem.status, problem.detail) == (
        type_uri,
        title,
        status,
        "because",
    )
    assert str(problem) == f"{title} ({status}): because"
    assert isinstance(problem, PaymentError)
    assert isinstance(problem, MppagentError)
    assert not isinstance(problem, ProtocolError)
    assert isinstance(problem, SessionProblem) == type_uri.startswith(SESSION)


@pytest.mark.parametrize(("cls", "type_uri", "title", "status"), TABLE)
def test_parse_known_types(cls: type[ProblemError], type_uri: str, title: str, status: int) -> None:
    body = {"type": type_uri, "title": title, "status": status, "detail": "d", "channelId": "0x1"}
    problem = parse_problem(Response(status, json.dumps(body).encode()))
    assert type(problem) is cls
    assert problem.extras == {"channelId": "0x1"}
    assert problem.to_body() == body


def test_registry_is_complete_and_read_only() -> None:
    assert len(PROBLEM_TYPES) == 15
    with pytest.raises(TypeError):
        PROBLEM_TYPES["x"] = ProblemError  # type: ignore[index]


def test_draft_payment_required_body() -> None:
    problem = parse_problem(Response(402, ONE_TIME_PROBLEM_BODY))
    assert isinstance(problem, PaymentRequiredProblem)
    assert problem.detail == "Payment required for access."
    assert problem.extras == {"challengeId": "qB3wErTyU7iOpAsD9fGhJk"}
    assert problem.status == 402


def test_draft_verification_failed_body() -> None:
    problem = parse_problem(Response(402, VERIFICATION_FAILED_BODY))
    assert isinstance(problem, VerificationFailedProblem)
    assert problem.title == "Payment Verification Failed"
    assert problem.detail == "Invalid payment proof."
    assert str(problem) == "Payment Verification Failed (402): Invalid payment proof."


def test_session_insufficient_balance_with_required_top_up() -> None:
    body = {
        "type": SESSION + "insufficient-balance",
        "title": "Insufficient Balance",
        "status": 402,
        "detail": "top up",
        "requiredTopUp": "25",
        "channelId": "0x6d",
    }
    problem = parse_problem(Response(402, json.dumps(body).encode()))
    assert isinstance(problem, InsufficientBalanceProblem)
    assert problem.extras["requiredTopUp"] == "25"


def test_http_status_wins_over_body_status() -> None:
    body = {"type": SESSION + "channel-finalized", "status": 402}
    problem = parse_problem(Response(410, json.dumps(body).encode()))
    assert isinstance(problem, ChannelFinalizedProblem)
    assert problem.status == 410
    assert problem.title == "Channel Finalized"
    assert problem.detail is None


def test_content_type_is_not_required() -> None:
    body = json.dumps({"type": CORE + "payment-expired"}).encode()
    problem = parse_problem(Response(402, body, {"content-type": "application/json"}))
    assert isinstance(problem, PaymentExpiredProblem)


def test_unknown_type_keeps_everything() -> None:
    body = {"type": "https://example.com/out-of-credit", "title": "Out", "detail": "d", "x": 1}
    problem = parse_problem(Response(403, json.dumps(body).encode()))
    assert type(problem) is UnknownProblem
    assert problem.type == "https://example.com/out-of-credit"
    assert problem.title == "Out"
    assert problem.status == 403
    assert problem.extras == {"x": 1}


def test_missing_type_is_about_blank() -> None:
    problem = parse_problem(Response(402, b'{"detail": "no type", "type": 5}'))
    assert type(problem) is UnknownProblem
    assert problem.type == "about:blank"
    assert problem.title == "Unknown Problem"
    assert problem.detail == "no type"


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "<html><body>502 Bad Gateway</body></html>"),
        (b"", None),
        (b"\xff\xfe garbage \x00\x01 bytes", "\ufffd\ufffd garbage bytes"),
        (b"[1, 2]", "[1, 2]"),
        (b"line one\r\n\r\n  line two", "line one line two"),
        (b"x" * 1000, "x" * 197 + "..."),
    ],
)
def test_non_problem_bodies(content: bytes, detail: str | None) -> None:
    problem = parse_problem(Response(502, content, {"content-type": "text/html"}))
    assert type(problem) is UnknownProblem
    assert problem.status == 502
    assert problem.title == "HTTP 502"
    assert problem.detail == detail
    assert problem.type == "about:blank"


def test_huge_body_is_not_parsed() -> None:
    problem = parse_problem(Response(500, b"{" + b" " * (64 * 1024)))
    assert problem.detail == "error body of 65537 bytes is too large to parse"


def test_titles_and_details_are_clipped_and_sanitised() -> None:
    body = {"type": CORE + "payment-expired", "title": "T\x1b[31m" + "t" * 300, "detail": "d" * 600}
    problem = parse_problem(Response(402, json.dumps(body).encode()))
    assert problem.title == "T [31m" + "t" * 191 + "..."
    assert len(problem.title) == 200
    assert problem.detail is not None
    assert len(problem.detail) == 500
    assert problem.detail.endswith("...")


def test_broken_response_objects_do_not_raise() -> None:
    class Broken:
        @property
        def status_code(self) -> int:
            raise RuntimeError("boom")

        @property
        def content(self) -> bytes:
            raise RuntimeError("not read")

        headers: Mapping[str, str] = {}

    problem = parse_problem(Broken())
    assert type(problem) is UnknownProblem
    assert problem.status == 0
    assert problem.detail is None

    odd = parse_problem(Response(True, "text"))  # type: ignore[arg-type]
    assert odd.status == 0


def test_httpx_response_fits_the_protocol() -> None:
    httpx = pytest.importorskip("httpx")
    response = httpx.Response(
        402,
        headers={"Content-Type": PROBLEM_CONTENT_TYPE},
        content=VERIFICATION_FAILED_BODY,
    )
    assert isinstance(parse_problem(response), VerificationFailedProblem)


# -- building problems (server side) ------------------------------------------


def test_problem_for() -> None:
    problem = problem_for("session/insufficient-balance", "top up", requiredTopUp="25")
    assert isinstance(problem, InsufficientBalanceProblem)
    assert problem.to_body() == {
        "type": SESSION + "insufficient-balance",
        "title": "Insufficient Balance",
        "status": 402,
        "detail": "top up",
        "requiredTopUp": "25",
    }
    assert problem_for("payment-required").to_body() == {
        "type": CORE + "payment-required",
        "title": "Payment Required",
        "status": 402,
    }


def test_problem_for_unknown_slug() -> None:
    with pytest.raises(ValueError, match="unknown problem type slug 'nope'"):
        problem_for("nope")


def test_extras_may_not_shadow_standard_members() -> None:
    with pytest.raises(ValueError, match="may not redefine"):
        problem_for("payment-required", status=200)
    with pytest.raises(ValueError, match=r"\['title', 'type'\]"):
        PaymentRequiredProblem(extras={"type": "x", "title": "y"})


def test_constructor_overrides_and_instance() -> None:
    problem = MethodUnsupportedProblem("no", status=406, title="Nope", instance="/req/1")
    assert problem.to_body() == {
        "type": CORE + "method-unsupported",
        "title": "Nope",
        "status": 406,
        "detail": "no",
        "instance": "/req/1",
    }
    assert str(MethodUnsupportedProblem()) == "Method Unsupported (400)"
    assert repr(problem) == (
        "MethodUnsupportedProblem(type='https://paymentauth.org/problems/method-unsupported',"
        " status=406, detail='no', extras={})"
    )


def test_problems_can_be_raised_and_caught_by_branch() -> None:
    with pytest.raises(SessionProblem):
        raise problem_for("session/delta-too-small", "increase by at least 100")
    with pytest.raises(PaymentError):
        raise problem_for("payment-expired")
