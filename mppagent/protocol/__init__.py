"""The Payment HTTP authentication scheme, without I/O.

Everything here takes strings, bytes and models and returns models or typed
errors; nothing touches the network, the disk or the clock (time comes in as an
argument). That keeps every rule of the drafts a fast unit test and lets the
client transport and the reference server share one implementation of the
wire format.

Client side::

    challenges = parse_challenges(response.headers.get_list("www-authenticate"))
    challenge = challenges[0]
    if not challenge.is_expired(now):
        header = Credential.for_challenge(challenge, payload, source=did).encode()
    receipt = decode_receipt(paid.headers["payment-receipt"])
    problem = parse_problem(error_response)   # never raises

Server side: :meth:`Challenge.issue`, :meth:`Credential.decode`,
:meth:`ChallengeEcho.verify_id`, :func:`encode_receipt`, :func:`problem_for`,
:func:`parse_accept_payment`.
"""

from __future__ import annotations

from mppagent.errors import PaymentError, ProtocolError
from mppagent.protocol.accept import (
    PaymentRange,
    QValue,
    accept_payment_header,
    parse_accept_payment,
    preference,
)
from mppagent.protocol.amounts import MAX_AMOUNT, format_amount, parse_amount
from mppagent.protocol.authparams import AuthChallenge, quote_string, tokenize_challenges
from mppagent.protocol.challenge import (
    OPTIONAL_PARAMS,
    REQUIRED_PARAMS,
    Challenge,
    ChallengeList,
    compute_challenge_id,
    parse_challenges,
)
from mppagent.protocol.credential import ChallengeEcho, Credential
from mppagent.protocol.did import did_pkh, parse_did_pkh, validate_source
from mppagent.protocol.encoding import (
    JSON,
    JSONObject,
    b64url_decode,
    b64url_encode,
    b64url_jcs_encode,
    b64url_json_decode,
    jcs_encode,
    parse_json,
    parse_json_object,
)
from mppagent.protocol.errors import (
    CanonicalizationFailed,
    DuplicateJSONKey,
    EncodingError,
    HeaderTooLarge,
    InputTooLarge,
    InvalidAcceptPayment,
    InvalidAmount,
    InvalidBase64url,
    InvalidDID,
    InvalidJSON,
    InvalidTimestamp,
    JSONTooDeep,
    LimitExceeded,
    MalformedChallenge,
    MalformedCredential,
    MalformedReceipt,
    NonFiniteNumber,
)
from mppagent.protocol.limits import (
    MAX_HEADER_BYTES,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_PROBLEM_BYTES,
    MAX_TOTAL_HEADER_BYTES,
)
from mppagent.protocol.problems import (
    CORE_PROBLEM_BASE,
    PROBLEM_CONTENT_TYPE,
    PROBLEM_TYPES,
    SESSION_PROBLEM_BASE,
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
    ResponseLike,
    SessionProblem,
    SignerMismatchProblem,
    UnknownProblem,
    VerificationFailedProblem,
    parse_problem,
    problem_for,
)
from mppagent.protocol.receipt import (
    Receipt,
    decode_receipt,
    decode_receipt_json,
    encode_receipt,
)
from mppagent.protocol.timestamps import format_rfc3339, parse_rfc3339

__all__ = [
    "CORE_PROBLEM_BASE",
    "JSON",
    "MAX_AMOUNT",
    "MAX_HEADER_BYTES",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_PROBLEM_BYTES",
    "MAX_TOTAL_HEADER_BYTES",
    "OPTIONAL_PARAMS",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPES",
    "REQUIRED_PARAMS",
    "SESSION_PROBLEM_BASE",
    "AmountExceedsDepositProblem",
    "AuthChallenge",
    "CanonicalizationFailed",
    "Challenge",
    "ChallengeEcho",
    "ChallengeList",
    "ChallengeNotFoundProblem",
    "ChannelFinalizedProblem",
    "ChannelNotFoundProblem",
    "Credential",
    "DeltaTooSmallProblem",
    "DuplicateJSONKey",
    "EncodingError",
    "HeaderTooLarge",
    "InputTooLarge",
    "InsufficientBalanceProblem",
    "InvalidAcceptPayment",
    "InvalidAmount",
    "InvalidBase64url",
    "InvalidChallengeProblem",
    "InvalidDID",
    "InvalidJSON",
    "InvalidSignatureProblem",
    "InvalidTimestamp",
    "JSONObject",
    "JSONTooDeep",
    "LimitExceeded",
    "MalformedChallenge",
    "MalformedCredential",
    "MalformedCredentialProblem",
    "MalformedReceipt",
    "MethodUnsupportedProblem",
    "NonFiniteNumber",
    "PaymentError",
    "PaymentExpiredProblem",
    "PaymentInsufficientProblem",
    "PaymentRange",
    "PaymentRequiredProblem",
    "ProblemError",
    "ProtocolError",
    "QValue",
    "Receipt",
    "ResponseLike",
    "SessionProblem",
    "SignerMismatchProblem",
    "UnknownProblem",
    "VerificationFailedProblem",
    "accept_payment_header",
    "b64url_decode",
    "b64url_encode",
    "b64url_jcs_encode",
    "b64url_json_decode",
    "compute_challenge_id",
    "decode_receipt",
    "decode_receipt_json",
    "did_pkh",
    "encode_receipt",
    "format_amount",
    "format_rfc3339",
    "jcs_encode",
    "parse_accept_payment",
    "parse_amount",
    "parse_challenges",
    "parse_did_pkh",
    "parse_json",
    "parse_json_object",
    "parse_problem",
    "parse_rfc3339",
    "preference",
    "problem_for",
    "quote_string",
    "tokenize_challenges",
    "validate_source",
]
