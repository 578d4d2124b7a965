"""The ``Payment`` credential sent in ``Authorization`` on the paid retry.

Wire form: ``Authorization: Payment <base64url-nopad(JSON)>`` where the JSON is
``{"challenge": {...echoed params...}, "source"?: "<payer DID>", "payload": {...}}``.
We always *send* JCS, so the same credential encodes to the same bytes; we
*accept* any member order, because the draft's own examples are not canonical.

A credential is a bearer token worth money: ``repr()``/``str()`` show only its
shape (challenge id, method, intent, payload action and channel), never the
payload itself, and decoding errors never quote the credential text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from mppagent.protocol.challenge import (
    OPTIONAL_PARAMS,
    REQUIRED_PARAMS,
    Challenge,
    binding_holds,
    binding_of,
)
from mppagent.protocol.did import validate_source
from mppagent.protocol.encoding import JSON, JSONObject, b64url_jcs_encode, b64url_json_decode
from mppagent.protocol.errors import (
    EncodingError,
    InvalidDID,
    MalformedCredential,
)
from mppagent.protocol.limits import MAX_HEADER_BYTES

__all__ = ["ChallengeEcho", "Credential"]

_METHOD = re.compile(r"[a-z]+")
_INTENT = re.compile(r"[A-Za-z0-9-]+")
# auth-scheme, 1*SP, base64url-nopad, optional trailing whitespace.
_AUTHORIZATION = re.compile(r"[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+) +(\S+)[ \t]*")
_ECHO_FIELDS = (*REQUIRED_PARAMS, *OPTIONAL_PARAMS)


class _Redacted:
    def __repr__(self) -> str:
        return "<redacted>"


class ChallengeEcho(BaseModel):
    """The ``challenge`` object inside a credential: the challenge's wire parameters.

    Only the parameters the draft defines are kept, each as the exact string
    received, so a server can recompute its HMAC binding (:meth:`verify_id`)
    and then look at the full challenge (:meth:`to_challenge`).
    """

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid", hide_input_in_errors=True)

    id: str
    realm: str
    method: str
    intent: str
    request: str
    expires: str | None = None
    digest: str | None = None
    description: str | None = None
    opaque: str | None = None

    @model_validator(mode="after")
    def _validate_shape(self) -> Self:
        if not self.id:
            raise MalformedCredential("challenge.id must not be empty")
        if not _METHOD.fullmatch(self.method):
            raise MalformedCredential("challenge.method must be lowercase letters a-z")
        if not _INTENT.fullmatch(self.intent):
            raise MalformedCredential("challenge.intent must be letters, digits and '-'")
        return self

    @classmethod
    def from_challenge(cls, challenge: Challenge) -> ChallengeEcho:
        """Echo a received challenge exactly (optional parameters only when present)."""
        return cls.model_validate(challenge.echo())

    def to_dict(self) -> dict[str, str]:
        """The JSON object as sent: absent optional parameters are left out, not ``null``."""
        return {name: value for name in _ECHO_FIELDS if (value := getattr(self, name)) is not None}

    def compute_id(self, secret: bytes) -> str:
        """The HMAC binding of the echoed parameters under ``secret`` (server side)."""
        return binding_of(self, secret)

    def verify_id(self, secret: bytes) -> bool:
        """Whether the echoed ``id`` binds the echoed parameters (constant-time compare)."""
        return binding_holds(self, secret)

    def to_challenge(self) -> Challenge:
        """Validate the echo as a full challenge (decodes ``request``, ``expires``...).

        Raises :class:`~mppagent.protocol.MalformedChallenge` if the echoed
        parameters do not form a valid challenge.
        """
        return Challenge.model_validate(self.to_dict())


class Credential(BaseModel):
    """A ``Payment`` credential: echoed challenge, optional payer ``source``, ``payload``.

    Build one with :meth:`for_challenge`, send :meth:`encode`; servers read one
    with :meth:`decode`. ``source`` is validated when it claims to be a
    ``did:pkh`` (see :func:`~mppagent.protocol.did_pkh`).
    """

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid", hide_input_in_errors=True)

    challenge: ChallengeEcho
    payload: dict[str, JSON]
    source: str | None = None

    @model_validator(mode="after")
    def _validate_source(self) -> Self:
        if self.source is not None:
            try:
                validate_source(self.source)
            except InvalidDID as exc:
                raise MalformedCredential(str(exc)) from None
        return self

    # -- convenience views (safe to log) ------------------------------------

    @property
    def challenge_id(self) -> str:
        """The ``id`` of the challenge this credential answers."""
        return self.challenge.id

    @property
    def action(self) -> str | None:
        """``payload.action`` (``open``, ``voucher``, ``topUp``, ``close``) when it is a string."""
        action = self.payload.get("action")
        return action if isinstance(action, str) else None

    @property
    def channel_id(self) -> str | None:
        """``payload.channelId`` when it is a string."""
        channel = self.payload.get("channelId")
        return channel if isinstance(channel, str) else None

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Drives __repr__, __str__ and rich/devtools pretty-printing alike.
        yield "challenge_id", self.challenge.id
        yield "method", self.challenge.method
        yield "intent", self.challenge.intent
        if self.action is not None:
            yield "action", self.action
        if self.channel_id is not None:
            yield "channel_id", self.channel_id
        if self.source is not None:
            yield "source", self.source
        yield "payload", _Redacted()

    # -- wire form --------------------------------------------------------

    def to_json_object(self) -> JSONObject:
        """The credential as the JSON object that gets encoded."""
        doc: JSONObject = {"challenge": dict(self.challenge.to_dict()), "payload": self.payload}
        if self.source is not None:
            doc["source"] = self.source
        return doc

    def encode(self) -> str:
        """The full ``Authorization`` value: ``Payment <base64url-nopad(JCS(json))>``.

        Raises :class:`~mppagent.protocol.CanonicalizationFailed` if the payload
        holds something JCS cannot encode (an int beyond 2**53, a float NaN).
        """
        return "Payment " + b64url_jcs_encode(self.to_json_object())

    @classmethod
    def for_challenge(
        cls,
        challenge: Challenge,
        payload: Mapping[str, JSON],
        source: str | None = None,
    ) -> Credential:
        """Answer ``challenge`` with ``payload``, echoing its parameters unchanged."""
        return cls(
            challenge=ChallengeEcho.from_challenge(challenge),
            payload=dict(payload),
            source=source,
        )

    @classmethod
    def decode(cls, header_value: str) -> Credential:
        """Read an ``Authorization`` value (server side).

        The scheme is matched case-insensitively and must be followed by exactly
        one base64url-nopad token of a JSON object with a ``challenge`` object
        and a ``payload`` object. Every failure is a
        :class:`~mppagent.protocol.MalformedCredential` whose message never
        contains the credential.
        """
        if not isinstance(header_value, str):
            raise MalformedCredential("expected a str header value")
        size = len(header_value)
        if size > MAX_HEADER_BYTES:
            raise MalformedCredential(f"header value is over the limit of {MAX_HEADER_BYTES} bytes")
        match = _AUTHORIZATION.fullmatch(header_value)
        if match is None:
            raise MalformedCredential("expected 'Payment <base64url>' with exactly one token")
        if match.group(1).lower() != "payment":
            raise MalformedCredential("the authorization scheme is not Payment")
        try:
            data = b64url_json_decode(match.group(2), what="credential")
        except EncodingError as exc:
            raise MalformedCredential(exc.reason) from None
        return cls.from_json_object(data)

    @classmethod
    def from_json_object(cls, data: Mapping[str, object]) -> Credential:
        """Validate a decoded credential object; unknown members are ignored."""
        challenge = data.get("challenge")
        if challenge is None:
            raise MalformedCredential("missing 'challenge' object")
        if not isinstance(challenge, dict):
            raise MalformedCredential("'challenge' is not an object")
        payload = data.get("payload")
        if payload is None:
            raise MalformedCredential("missing 'payload' object")
        if not isinstance(payload, dict):
            raise MalformedCredential("'payload' is not an object")
        source = data.get("source")
        if source is not None and not isinstance(source, str):
            raise MalformedCredential("'source' must be a string")
        echo: dict[str, str] = {}
        for name in _ECHO_FIELDS:
            value = challenge.get(name)
            if value is None:
                if name in REQUIRED_PARAMS:
                    raise MalformedCredential(f"missing challenge.{name}")
                continue
            if not isinstance(value, str):
                raise MalformedCredential(f"challenge.{name} must be a string")
            echo[name] = value
        try:
            return cls(challenge=ChallengeEcho(**echo), payload=payload, source=source)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "credential"
            raise MalformedCredential(f"{where}: {first['msg']}") from None
