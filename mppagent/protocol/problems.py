"""RFC 9457 problem details of the Payment scheme, one exception class per type.

A server explains a refused payment with an ``application/problem+json`` body
whose ``type`` is a URI under ``https://paymentauth.org/problems/`` (core types)
or ``.../problems/session/`` (Tempo session intent). Mapping each type to its own
:class:`ProblemError` subclass lets a client write ``except
DeltaTooSmallProblem:`` instead of comparing strings, and lets a server
``raise`` one and render it with :meth:`ProblemError.to_body`.

:func:`parse_problem` turns *any* HTTP response into a :class:`ProblemError`
and never raises: a body that is not a problem (HTML from a proxy, garbage,
nothing) becomes an :class:`UnknownProblem` that keeps the status code and a
short, sanitised excerpt of the body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Final, Protocol

from mppagent.errors import PaymentError, ProtocolError
from mppagent.protocol.encoding import JSON, JSONObject, parse_json_object
from mppagent.protocol.errors import PicklableError
from mppagent.protocol.limits import MAX_PROBLEM_BYTES

__all__ = [
    "CORE_PROBLEM_BASE",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPES",
    "SESSION_PROBLEM_BASE",
    "AmountExceedsDepositProblem",
    "ChallengeNotFoundProblem",
    "ChannelFinalizedProblem",
    "ChannelNotFoundProblem",
    "DeltaTooSmallProblem",
    "InsufficientBalanceProblem",
    "InvalidChallengeProblem",
    "InvalidSignatureProblem",
    "MalformedCredentialProblem",
    "MethodUnsupportedProblem",
    "PaymentExpiredProblem",
    "PaymentInsufficientProblem",
    "PaymentRequiredProblem",
    "ProblemError",
    "ResponseLike",
    "SessionProblem",
    "SignerMismatchProblem",
    "UnknownProblem",
    "VerificationFailedProblem",
    "parse_problem",
    "problem_for",
]

CORE_PROBLEM_BASE: Final = "https://paymentauth.org/problems/"
SESSION_PROBLEM_BASE: Final = "https://paymentauth.org/problems/session/"
PROBLEM_CONTENT_TYPE: Final = "application/problem+json"

#: Members with a fixed meaning in RFC 9457; everything else is an extension member.
_STANDARD_MEMBERS: Final = frozenset({"type", "title", "status", "detail", "instance"})
_MAX_TITLE: Final = 200
_MAX_DETAIL: Final = 500
_MAX_EXCERPT: Final = 200
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]+")


class _Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


class ResponseLike(Protocol):
    """What :func:`parse_problem` needs from a response; ``httpx.Response`` fits."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> _Headers: ...

    @property
    def content(self) -> bytes: ...


def _clip(text: str, limit: int) -> str:
    text = _UNPRINTABLE.sub(" ", text).strip()
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ProblemError(PicklableError, PaymentError):
    """A server's RFC 9457 problem, as an exception.

    Attributes: ``type`` (URI), ``title``, ``status`` (HTTP status; when parsed,
    the response's status code, which RFC 9457 makes authoritative), ``detail``
    (human-readable, may be ``None``), ``instance`` and ``extras`` (extension
    members such as ``challengeId``, ``channelId`` or ``requiredTopUp``).
    Subclasses fix ``type``, ``title`` and the default ``status``.
    """

    type_uri: ClassVar[str] = "about:blank"
    slug: ClassVar[str] = ""
    default_title: ClassVar[str] = "Payment Problem"
    default_status: ClassVar[int] = 402

    def __init__(
        self,
        detail: str | None = None,
        *,
        type: str | None = None,
        title: str | None = None,
        status: int | None = None,
        instance: str | None = None,
        extras: Mapping[str, JSON] | None = None,
    ) -> None:
        self.type = type if type is not None else self.type_uri
        self.title = title if title is not None else self.default_title
        self.status = status if status is not None else self.default_status
        self.detail = detail
        self.instance = instance
        self.extras: JSONObject = dict(extras or {})
        clash = _STANDARD_MEMBERS.intersection(self.extras)
        if clash:
            raise ValueError(f"extension members may not redefine {sorted(clash)}")
        message = f"{self.title} ({self.status})"
        super().__init__(f"{message}: {detail}" if detail else message)

    def to_body(self) -> JSONObject:
        """The ``application/problem+json`` body a server sends for this problem."""
        body: JSONObject = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail is not None:
            body["detail"] = self.detail
        if self.instance is not None:
            body["instance"] = self.instance
        body.update(self.extras)
        return body

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(type={self.type!r}, status={self.status!r},"
            f" detail={self.detail!r}, extras={self.extras!r})"
        )


class UnknownProblem(ProblemError):
    """A problem type we do not know, or an error response that is not a problem at all."""

    default_title = "Unknown Problem"


# -- core types (draft-httpauth-payment, "Error Codes") ------------------------


class PaymentRequiredProblem(ProblemError):
    """``payment-required``: the resource needs payment; a challenge accompanies it."""

    slug = "payment-required"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Payment Required"


class PaymentInsufficientProblem(ProblemError):
    """``payment-insufficient``: the amount paid is too low."""

    slug = "payment-insufficient"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Payment Insufficient"


class PaymentExpiredProblem(ProblemError):
    """``payment-expired``: the challenge or authorization expired; get a fresh one."""

    slug = "payment-expired"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Payment Expired"


class VerificationFailedProblem(ProblemError):
    """``verification-failed``: the payment proof is invalid."""

    slug = "verification-failed"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Payment Verification Failed"


class MethodUnsupportedProblem(ProblemError):
    """``method-unsupported`` (400): the server does not accept this payment method."""

    slug = "method-unsupported"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Method Unsupported"
    default_status = 400


class MalformedCredentialProblem(ProblemError):
    """``malformed-credential``: the credential could not be decoded."""

    slug = "malformed-credential"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Malformed Credential"


class InvalidChallengeProblem(ProblemError):
    """``invalid-challenge``: the challenge id is unknown, expired or already used."""

    slug = "invalid-challenge"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Invalid Challenge"


# -- Tempo session types (draft-tempo-session, "Rejection and Error Responses") --


class SessionProblem(ProblemError):
    """Base of the problem types of the Tempo ``session`` intent."""


class InvalidSignatureProblem(SessionProblem):
    """``session/invalid-signature``: a voucher or close signature did not verify."""

    slug = "session/invalid-signature"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Invalid Signature"


class SignerMismatchProblem(SessionProblem):
    """``session/signer-mismatch``: the signer is not authorized for the channel."""

    slug = "session/signer-mismatch"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Signer Mismatch"


class AmountExceedsDepositProblem(SessionProblem):
    """``session/amount-exceeds-deposit``: the voucher exceeds the channel deposit."""

    slug = "session/amount-exceeds-deposit"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Amount Exceeds Deposit"


class DeltaTooSmallProblem(SessionProblem):
    """``session/delta-too-small``: the increase is below ``minVoucherDelta``."""

    slug = "session/delta-too-small"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Delta Too Small"


class InsufficientBalanceProblem(SessionProblem):
    """``session/insufficient-balance``: not enough authorized balance (see ``requiredTopUp``)."""

    slug = "session/insufficient-balance"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Insufficient Balance"


class ChallengeNotFoundProblem(SessionProblem):
    """``session/challenge-not-found``: the challenge id is unknown or expired."""

    slug = "session/challenge-not-found"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Challenge Not Found"


class ChannelNotFoundProblem(SessionProblem):
    """``session/channel-not-found`` (410): no channel with this id exists."""

    slug = "session/channel-not-found"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Channel Not Found"
    default_status = 410


class ChannelFinalizedProblem(SessionProblem):
    """``session/channel-finalized`` (410): the channel is closed for good."""

    slug = "session/channel-finalized"
    type_uri = CORE_PROBLEM_BASE + slug
    default_title = "Channel Finalized"
    default_status = 410


_ALL: Final[tuple[type[ProblemError], ...]] = (
    PaymentRequiredProblem,
    PaymentInsufficientProblem,
    PaymentExpiredProblem,
    VerificationFailedProblem,
    MethodUnsupportedProblem,
    MalformedCredentialProblem,
    InvalidChallengeProblem,
    InvalidSignatureProblem,
    SignerMismatchProblem,
    AmountExceedsDepositProblem,
    DeltaTooSmallProblem,
    InsufficientBalanceProblem,
    ChallengeNotFoundProblem,
    ChannelNotFoundProblem,
    ChannelFinalizedProblem,
)

#: Problem type URI → exception class, for every type the drafts define.
PROBLEM_TYPES: Final[Mapping[str, type[ProblemError]]] = MappingProxyType(
    {cls.type_uri: cls for cls in _ALL}
)
_BY_SLUG: Final[Mapping[str, type[ProblemError]]] = MappingProxyType(
    {cls.slug: cls for cls in _ALL}
)


def problem_for(type_slug: str, detail: str | None = None, **extras: JSON) -> ProblemError:
    """Build the problem for ``type_slug`` (``"payment-expired"``, ``"session/delta-too-small"``).

    For servers: ``raise problem_for("session/insufficient-balance", "top up",
    requiredTopUp="25")``. An unknown slug is a programming error (``ValueError``).
    """
    cls = _BY_SLUG.get(type_slug)
    if cls is None:
        raise ValueError(f"unknown problem type slug {type_slug!r}")
    return cls(detail, extras=extras)


def _excerpt(content: bytes) -> str | None:
    text = _clip(content[: _MAX_EXCERPT * 4].decode("utf-8", "replace"), _MAX_EXCERPT)
    return text or None


def parse_problem(response: ResponseLike) -> ProblemError:
    """Describe an error response as a :class:`ProblemError`; never raises.

    Reads ``status_code`` and ``content`` (and ignores ``Content-Type``: servers
    do label problems ``application/json``). A JSON object body with a known
    ``type`` gives that type's class; any other body gives
    :class:`UnknownProblem` with a clipped excerpt of the body as ``detail``.
    Titles and details are clipped and stripped of control characters, since
    they end up in logs and terminals.
    """
    # Duck-typed input: a broken response object must not escape as a crash.
    raw_status: object
    raw_content: object
    try:
        raw_status = response.status_code
    except Exception:
        raw_status = 0
    try:
        raw_content = response.content
    except Exception:
        raw_content = b""
    status = raw_status if isinstance(raw_status, int) and not isinstance(raw_status, bool) else 0
    content = bytes(raw_content) if isinstance(raw_content, bytes | bytearray) else b""

    if len(content) > MAX_PROBLEM_BYTES:
        return UnknownProblem(
            f"error body of {len(content)} bytes is too large to parse",
            title=f"HTTP {status}",
            status=status,
        )
    try:
        body = parse_json_object(content, max_bytes=MAX_PROBLEM_BYTES, what="problem")
    except ProtocolError:
        return UnknownProblem(_excerpt(content), title=f"HTTP {status}", status=status)

    type_uri = body.get("type")
    if not isinstance(type_uri, str) or not type_uri:
        type_uri = "about:blank"
    cls = PROBLEM_TYPES.get(type_uri, UnknownProblem)
    title = body.get("title")
    detail = body.get("detail")
    instance = body.get("instance")
    return cls(
        _clip(detail, _MAX_DETAIL) if isinstance(detail, str) else None,
        type=_clip(type_uri, _MAX_TITLE),
        title=_clip(title, _MAX_TITLE) if isinstance(title, str) else None,
        status=status,
        instance=_clip(instance, _MAX_TITLE) if isinstance(instance, str) else None,
        extras={k: v for k, v in body.items() if k not in _STANDARD_MEMBERS},
    )
