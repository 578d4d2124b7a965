"""Typed errors for everything :mod:`mppagent.protocol` refuses to decode or build.

Every class here is a :class:`~mppagent.errors.ProtocolError`, so callers that
only care "the peer sent garbage" catch that one class, while code that reacts
differently (a server choosing between ``malformed-credential`` and a generic
400, a client logging which challenge was unusable) can catch the precise kind.

Messages name the field and the rule that failed, never the offending value in
full: header values can be long and hostile, and credentials are bearer secrets.
Server answers (RFC 9457 problem details) are a different branch, see
:mod:`mppagent.protocol.problems`.
"""

from __future__ import annotations

from mppagent.errors import ProtocolError

__all__ = [
    "CanonicalizationFailed",
    "DuplicateJSONKey",
    "EncodingError",
    "HeaderTooLarge",
    "InputTooLarge",
    "InvalidAcceptPayment",
    "InvalidAmount",
    "InvalidBase64url",
    "InvalidDID",
    "InvalidJSON",
    "InvalidTimestamp",
    "JSONTooDeep",
    "LimitExceeded",
    "MalformedChallenge",
    "MalformedCredential",
    "MalformedReceipt",
    "NonFiniteNumber",
]


def _restore(
    cls: type[BaseException], args: tuple[object, ...], state: dict[str, object]
) -> object:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class PicklableError(Exception):
    """Pickles by state rather than by re-calling ``__init__``.

    The default ``BaseException.__reduce__`` calls ``cls(*args)``, which breaks
    for errors whose constructors take keyword-only or several arguments; these
    errors cross process boundaries (worker pools, test runners), so they must
    survive a round trip.
    """

    def __reduce__(self) -> tuple[object, ...]:
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class _ReasonError(PicklableError, ProtocolError):
    """A protocol error with a short ``reason`` and the name of what was being decoded."""

    def __init__(self, reason: str, *, what: str | None = None) -> None:
        self.reason = reason
        self.what = what
        super().__init__(f"{what}: {reason}" if what else reason)


class EncodingError(_ReasonError):
    """Bytes or text do not follow the wire encoding (base64url, JSON, JCS)."""


class InvalidBase64url(EncodingError):
    """Not base64url without padding (RFC 4648 §5): padding, foreign characters, bad length."""


class InvalidJSON(EncodingError):
    """Not a JSON text we accept: syntax error, not UTF-8, or not the expected shape."""


class DuplicateJSONKey(InvalidJSON):
    """An object repeats a member name.

    RFC 8259 leaves the meaning of duplicates to the parser, so two peers may read
    different values from the same bytes; refusing them removes that ambiguity.
    """

    def __init__(self, key: str, *, what: str | None = None) -> None:
        shown = key if len(key) <= 40 else key[:40] + "..."
        super().__init__(f"duplicate object member {shown!r}", what=what)
        self.key = key


class NonFiniteNumber(InvalidJSON):
    """``NaN``, ``Infinity`` or a number too large for a double: not JSON per RFC 8259."""


class CanonicalizationFailed(EncodingError):
    """A value cannot be serialized with JCS (RFC 8785).

    Typically an integer beyond ±(2**53 - 1), a non-finite float, a lone surrogate
    in a string, or a type JSON does not have. Amounts belong in decimal strings.
    """


class LimitExceeded(_ReasonError):
    """Input exceeds a size limit from :mod:`mppagent.protocol.limits`."""

    def __init__(
        self, reason: str, *, limit: int, size: int | None = None, what: str | None = None
    ) -> None:
        super().__init__(reason, what=what)
        self.limit = limit
        self.size = size


class HeaderTooLarge(LimitExceeded):
    """A header value (or all values of one header together) is over the byte limit."""


class InputTooLarge(LimitExceeded, EncodingError):
    """An encoded value (base64url text, JSON document) is over the byte limit."""


class JSONTooDeep(LimitExceeded, InvalidJSON):
    """JSON arrays/objects nested deeper than the limit."""


class InvalidAmount(PicklableError, ProtocolError):
    """An amount is not a canonical decimal string of a uint128.

    ``field`` names the JSON member (for example ``cumulativeAmount``) so the
    message points at the exact place in a challenge or receipt.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class InvalidTimestamp(_ReasonError):
    """Not an RFC 3339 date-time (``2025-01-15T12:05:00Z``)."""


class InvalidDID(_ReasonError):
    """A payer ``source`` that claims to be ``did:pkh`` but is not well formed."""


class InvalidAcceptPayment(_ReasonError):
    """An ``Accept-Payment`` value, or preferences to build one, break the draft's grammar."""


class MalformedChallenge(PicklableError, ProtocolError):
    """One ``Payment`` challenge is unusable; the others in the response may still be fine.

    ``header_index`` is the position of the header value among those passed to
    :func:`~mppagent.protocol.parse_challenges` and ``offset`` the character
    offset of the challenge inside it (both ``None`` when the error comes from
    building a challenge rather than parsing one). ``challenge_id`` is the ``id``
    parameter when it could be read, to correlate with server logs.
    """

    def __init__(
        self,
        reason: str,
        *,
        header_index: int | None = None,
        offset: int | None = None,
        challenge_id: str | None = None,
    ) -> None:
        self.reason = reason
        self.header_index = header_index
        self.offset = offset
        self.challenge_id = challenge_id
        where = ""
        if header_index is not None:
            where = f" (header {header_index}, offset {offset})"
        super().__init__(f"malformed Payment challenge{where}: {reason}")

    def at(self, header_index: int, offset: int) -> MalformedChallenge:
        """The same error, located at a header value and offset."""
        return MalformedChallenge(
            self.reason,
            header_index=header_index,
            offset=offset,
            challenge_id=self.challenge_id,
        )


class MalformedCredential(PicklableError, ProtocolError):
    """An ``Authorization: Payment`` value is unusable.

    A server answers it with the ``malformed-credential`` problem type. The
    message never contains the credential, which is a bearer secret.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed Payment credential: {reason}")


class MalformedReceipt(PicklableError, ProtocolError):
    """A ``Payment-Receipt`` (header or ``payment-receipt`` event) is unusable."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed Payment receipt: {reason}")
