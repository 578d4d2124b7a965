"""The ``Payment`` challenge: parsing ``WWW-Authenticate``, issuing and binding.

A :class:`Challenge` keeps every parameter exactly as it arrived on the wire
(``request`` and ``opaque`` as the received base64url text), because the client
must echo those strings byte for byte and the server's HMAC covers them. The
decoded views (:attr:`Challenge.request_data`, :attr:`Challenge.opaque_data`,
:attr:`Challenge.expires_at`) are computed once, at validation, so a challenge
that exists is a challenge whose parameters are known to decode.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Protocol, Self

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator

from mppagent.protocol.authparams import quote_string, tokenize_challenges
from mppagent.protocol.encoding import (
    JSON,
    JSONObject,
    b64url_encode,
    b64url_jcs_encode,
    b64url_json_decode,
)
from mppagent.protocol.errors import (
    EncodingError,
    HeaderTooLarge,
    InvalidTimestamp,
    MalformedChallenge,
)
from mppagent.protocol.limits import MAX_HEADER_BYTES, MAX_TOTAL_HEADER_BYTES
from mppagent.protocol.timestamps import format_rfc3339, parse_rfc3339

__all__ = [
    "OPTIONAL_PARAMS",
    "REQUIRED_PARAMS",
    "Challenge",
    "ChallengeList",
    "compute_challenge_id",
    "parse_challenges",
]

#: Parameters every ``Payment`` challenge carries, in the order we emit them.
REQUIRED_PARAMS = ("id", "realm", "method", "intent", "request")
#: Parameters a challenge may carry; anything else is ignored, as the draft requires.
OPTIONAL_PARAMS = ("expires", "digest", "description", "opaque")

_METHOD = re.compile(r"[a-z]+")
_INTENT = re.compile(r"[A-Za-z0-9-]+")
# Characters no header value can carry (CTLs other than HTAB, DEL) and lone
# surrogates, which cannot be encoded as UTF-8 when the value is echoed.
_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")


def compute_challenge_id(
    secret: bytes,
    *,
    realm: str,
    method: str,
    intent: str,
    request: str,
    expires: str | None = None,
    digest: str | None = None,
    opaque: str | None = None,
) -> str:
    """The draft's recommended stateless binding of ``id`` to the other parameters.

    ``base64url-nopad(HMAC-SHA256(secret, realm|method|intent|request|expires|digest|opaque))``
    over exactly seven slots, absent optional ones as empty strings, so that
    "expires set, no digest" and "digest set, no expires" give different inputs.
    ``request`` and ``opaque`` are the base64url texts as sent on the wire.
    ``description`` is deliberately not bound: it is display-only.
    """
    if not isinstance(secret, bytes | bytearray):
        raise TypeError("the challenge-binding secret must be bytes")
    if not secret:
        raise ValueError("the challenge-binding secret must be non-empty bytes")
    slots = [realm, method, intent, request, expires or "", digest or "", opaque or ""]
    mac = hmac.new(bytes(secret), "|".join(slots).encode("utf-8"), hashlib.sha256)
    return b64url_encode(mac.digest())


class BindableParams(Protocol):
    """Anything carrying the seven bound slots and an ``id`` (a challenge or its echo)."""

    @property
    def id(self) -> str: ...
    @property
    def realm(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def intent(self) -> str: ...
    @property
    def request(self) -> str: ...
    @property
    def expires(self) -> str | None: ...
    @property
    def digest(self) -> str | None: ...
    @property
    def opaque(self) -> str | None: ...


def binding_of(params: BindableParams, secret: bytes) -> str:
    """The recommended HMAC-SHA256 ``id`` of ``params`` under ``secret``."""
    return compute_challenge_id(
        secret,
        realm=params.realm,
        method=params.method,
        intent=params.intent,
        request=params.request,
        expires=params.expires,
        digest=params.digest,
        opaque=params.opaque,
    )


def binding_holds(params: BindableParams, secret: bytes) -> bool:
    """Whether ``params.id`` is their HMAC binding (constant-time compare)."""
    return hmac.compare_digest(
        params.id.encode("utf-8"), binding_of(params, secret).encode("ascii")
    )


class Challenge(BaseModel):
    """One ``Payment`` challenge from a ``WWW-Authenticate`` header.

    Fields are the raw wire parameters. Construction validates them and raises
    :class:`~mppagent.protocol.MalformedChallenge` when a value breaks the
    draft (empty ``id``, ``method`` not lowercase letters, ``request`` not
    base64url JSON object...). Unknown parameters are not kept: the draft says
    clients MUST ignore them, and they are not part of the echo.
    """

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    id: str
    realm: str
    method: str
    intent: str
    request: str
    expires: str | None = None
    digest: str | None = None
    description: str | None = None
    opaque: str | None = None

    _request_data: JSONObject = PrivateAttr(default_factory=dict)
    _opaque_data: dict[str, str] | None = PrivateAttr(default=None)
    _expires_at: datetime | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _validate_wire_params(self) -> Self:
        # MalformedChallenge is not a ValueError, so pydantic lets it propagate
        # unchanged: callers see one typed error whatever path built the model.
        challenge_id = self.id or None
        for name in (*REQUIRED_PARAMS, *OPTIONAL_PARAMS):
            value = getattr(self, name)
            if value is not None and _FORBIDDEN.search(value):
                raise MalformedChallenge(
                    f"parameter {name!r} contains a control character", challenge_id=challenge_id
                )
        if not self.id:
            raise MalformedChallenge("parameter 'id' must not be empty")
        if not _METHOD.fullmatch(self.method):
            raise MalformedChallenge(
                "parameter 'method' must be lowercase letters a-z", challenge_id=challenge_id
            )
        if not _INTENT.fullmatch(self.intent):
            raise MalformedChallenge(
                "parameter 'intent' must be letters, digits and '-'", challenge_id=challenge_id
            )
        if self.digest is not None and not self.digest:
            raise MalformedChallenge(
                "parameter 'digest' must not be empty", challenge_id=challenge_id
            )
        try:
            self._request_data = b64url_json_decode(self.request, what="request")
            if self.opaque is not None:
                opaque = b64url_json_decode(self.opaque, what="opaque")
                if not all(isinstance(v, str) for v in opaque.values()):
                    raise MalformedChallenge(
                        "parameter 'opaque' must be a JSON object of strings",
                        challenge_id=challenge_id,
                    )
                self._opaque_data = {k: v for k, v in opaque.items() if isinstance(v, str)}
            if self.expires is not None:
                self._expires_at = parse_rfc3339(self.expires, what="expires")
        except (EncodingError, InvalidTimestamp) as exc:
            raise MalformedChallenge(str(exc), challenge_id=challenge_id) from exc
        return self

    # -- decoded views -----------------------------------------------------

    @property
    def request_data(self) -> JSONObject:
        """The decoded ``request`` object (a fresh copy; the challenge stays immutable)."""
        return copy.deepcopy(self._request_data)

    @property
    def opaque_data(self) -> dict[str, str] | None:
        """The decoded ``opaque`` map, or ``None`` when the server sent none."""
        return None if self._opaque_data is None else dict(self._opaque_data)

    @property
    def expires_at(self) -> datetime | None:
        """``expires`` as an aware UTC datetime, or ``None`` when absent."""
        return self._expires_at

    def is_expired(self, now: datetime, skew: timedelta = timedelta(0)) -> bool:
        """Whether the challenge must no longer be paid at ``now``.

        ``skew`` is a safety margin: a challenge expiring within ``skew`` of
        ``now`` already counts as expired, leaving time for the paid retry to
        reach the server (a server tolerating client clock drift passes a
        negative skew). The clock is the caller's: this package never reads it.
        """
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be a timezone-aware datetime")
        if self._expires_at is None:
            return False
        return now + skew >= self._expires_at

    # -- wire forms -------------------------------------------------------

    def to_header(self) -> str:
        """Render as a ``WWW-Authenticate`` value (every parameter as a quoted-string).

        :func:`parse_challenges` of the result gives back an equal challenge,
        with ``request`` and ``opaque`` byte-identical.
        """
        parts = [
            f"{name}={quote_string(value)}"
            for name in (*REQUIRED_PARAMS, *OPTIONAL_PARAMS)
            if (value := getattr(self, name)) is not None
        ]
        return "Payment " + ", ".join(parts)

    def echo(self) -> dict[str, str]:
        """The credential's ``challenge`` object: the received parameters, unchanged.

        Optional parameters appear only when the challenge had them.
        """
        return {
            name: value
            for name in (*REQUIRED_PARAMS, *OPTIONAL_PARAMS)
            if (value := getattr(self, name)) is not None
        }

    # -- binding ----------------------------------------------------------

    def compute_id(self, secret: bytes) -> str:
        """The HMAC-SHA256 ``id`` these parameters would have under ``secret``."""
        return binding_of(self, secret)

    def verify_id(self, secret: bytes) -> bool:
        """Whether ``id`` is the HMAC binding of the parameters (constant-time compare)."""
        return binding_holds(self, secret)

    # -- construction -----------------------------------------------------

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Challenge:
        """Build from parsed auth-params (lowercase names); unknown names are ignored."""
        values: dict[str, str] = {}
        for name in (*REQUIRED_PARAMS, *OPTIONAL_PARAMS):
            value = params.get(name)
            if value is None:
                if name in REQUIRED_PARAMS:
                    raise MalformedChallenge(
                        f"missing required parameter {name!r}",
                        challenge_id=params.get("id") or None,
                    )
                continue
            if not isinstance(value, str):
                raise MalformedChallenge(f"parameter {name!r} must be a string")
            values[name] = value
        return cls.model_validate(values)

    @classmethod
    def issue(
        cls,
        *,
        secret: bytes,
        realm: str,
        method: str,
        intent: str,
        request: Mapping[str, JSON],
        expires: datetime | None = None,
        digest: str | None = None,
        opaque: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> Challenge:
        """Create a challenge as a server: JCS-encode ``request``/``opaque``, bind ``id``.

        Raises :class:`~mppagent.protocol.MalformedChallenge` for parameters
        that break the draft and :class:`~mppagent.protocol.CanonicalizationFailed`
        for values JCS cannot encode (amounts go in strings, not big ints).
        """
        request_b64 = b64url_jcs_encode(request)
        opaque_b64 = None if opaque is None else b64url_jcs_encode(opaque)
        expires_text = None if expires is None else format_rfc3339(expires)
        challenge_id = compute_challenge_id(
            secret,
            realm=realm,
            method=method,
            intent=intent,
            request=request_b64,
            expires=expires_text,
            digest=digest,
            opaque=opaque_b64,
        )
        return cls(
            id=challenge_id,
            realm=realm,
            method=method,
            intent=intent,
            request=request_b64,
            expires=expires_text,
            digest=digest,
            description=description,
            opaque=opaque_b64,
        )


class ChallengeList(list[Challenge]):
    """The usable challenges of a response, plus one error per malformed one.

    A list of :class:`Challenge` (so it compares equal to a plain list), with
    :attr:`errors` listing the ``Payment`` challenges that could not be used,
    each with its position. Keeping both lets a client pay a good challenge and
    still log that the server sent a broken one.
    """

    errors: list[MalformedChallenge]

    def __init__(
        self,
        challenges: Iterable[Challenge] = (),
        errors: Iterable[MalformedChallenge] = (),
    ) -> None:
        super().__init__(challenges)
        self.errors = list(errors)

    def __repr__(self) -> str:
        return f"ChallengeList({list.__repr__(self)}, errors={self.errors!r})"


def _first_duplicate(names: Iterable[str]) -> str:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    raise AssertionError("no duplicate")  # pragma: no cover


def _utf8_size(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def parse_challenges(values: Iterable[str] | str) -> ChallengeList:
    """Parse every ``Payment`` challenge from ``WWW-Authenticate`` field values.

    Pass all values of the header (``response.headers.get_list(...)``); a single
    string is taken as one value. Challenges of other schemes are skipped.
    A malformed ``Payment`` challenge goes to :attr:`ChallengeList.errors`
    instead of hiding the valid ones. Only input that is unusable as a whole
    raises: a value over 64 KiB, or all values together over 256 KiB
    (:class:`~mppagent.protocol.HeaderTooLarge`).
    """
    if isinstance(values, str):
        values = [values]
    challenges: list[Challenge] = []
    errors: list[MalformedChallenge] = []
    total = 0
    for header_index, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError("WWW-Authenticate values must be str")
        size = len(value) if len(value) > MAX_HEADER_BYTES else _utf8_size(value)
        if size > MAX_HEADER_BYTES:
            raise HeaderTooLarge(
                f"value {header_index} is {size} bytes or more, over the limit of"
                f" {MAX_HEADER_BYTES}",
                limit=MAX_HEADER_BYTES,
                size=size,
                what="WWW-Authenticate",
            )
        total += size
        if total > MAX_TOTAL_HEADER_BYTES:
            raise HeaderTooLarge(
                f"values total {total} bytes or more, over the limit of {MAX_TOTAL_HEADER_BYTES}",
                limit=MAX_TOTAL_HEADER_BYTES,
                size=total,
                what="WWW-Authenticate",
            )
        for raw in tokenize_challenges(value):
            if raw.scheme != "payment":
                continue
            params: dict[str, str] = {}
            for name, param_value in raw.params:
                params.setdefault(name, param_value)
            try:
                if raw.error is not None:
                    raise MalformedChallenge(raw.error, challenge_id=params.get("id") or None)
                if raw.token68 is not None:
                    raise MalformedChallenge("expected auth-params, got a token68 value")
                if len(params) != len(raw.params):
                    duplicate = _first_duplicate(name for name, _ in raw.params)
                    raise MalformedChallenge(
                        f"parameter {duplicate!r} appears more than once",
                        challenge_id=params.get("id") or None,
                    )
                challenges.append(Challenge.from_params(params))
            except MalformedChallenge as exc:
                errors.append(exc.at(header_index, raw.offset))
    return ChallengeList(challenges, errors)
