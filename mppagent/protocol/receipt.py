"""``Payment-Receipt``: the server's statement that a payment was accepted.

The header carries ``base64url-nopad(JSON)``; Tempo session streams also send
the same JSON, unencoded, as the data of a final ``payment-receipt`` SSE event.
The core fields are ``status``, ``method``, ``timestamp`` and ``reference``;
payment methods add their own (a session receipt adds ``channelId``,
``acceptedCumulative``, ``spent``...). Those are kept as extra members, since a
client checks them against what it signed and received, and a receipt we cannot
re-encode faithfully would be a poor piece of evidence.

Receipts are sensitive (the draft asks to treat them like credentials), so
decoding errors describe the defect and not the content.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from mppagent.protocol.encoding import (
    JSON,
    JSONObject,
    b64url_jcs_encode,
    b64url_json_decode,
    parse_json_object,
)
from mppagent.protocol.errors import EncodingError, InvalidTimestamp, MalformedReceipt
from mppagent.protocol.limits import MAX_HEADER_BYTES
from mppagent.protocol.timestamps import parse_rfc3339

__all__ = ["Receipt", "decode_receipt", "decode_receipt_json", "encode_receipt"]

_CORE_FIELDS = ("status", "method", "timestamp", "reference")


class Receipt(BaseModel):
    """A payment receipt: the four core fields plus any method-specific members.

    Method-specific members are accessible with :meth:`get` or :attr:`extras`
    and are written back unchanged by :func:`encode_receipt`. ``status`` is
    kept as sent; the draft only ever issues ``"success"`` (see
    :attr:`is_success`), and judging anything else is the caller's business.
    """

    model_config = ConfigDict(frozen=True, strict=True, extra="allow", hide_input_in_errors=True)

    status: str
    method: str
    timestamp: str
    reference: str

    @model_validator(mode="after")
    def _validate_timestamp(self) -> Self:
        try:
            parse_rfc3339(self.timestamp, what="timestamp")
        except InvalidTimestamp as exc:
            raise MalformedReceipt(str(exc)) from None
        return self

    @property
    def timestamp_at(self) -> datetime:
        """``timestamp`` as an aware UTC datetime."""
        return parse_rfc3339(self.timestamp, what="timestamp")

    @property
    def is_success(self) -> bool:
        """Whether ``status`` is ``"success"``, the only status the draft defines."""
        return self.status == "success"

    @property
    def extras(self) -> JSONObject:
        """The method-specific members (a copy), e.g. ``channelId`` or ``spent``."""
        return dict(self.model_extra or {})

    def get(self, name: str) -> JSON | None:
        """A member by its wire name (core or method-specific), or ``None``."""
        if name in _CORE_FIELDS:
            value: JSON = getattr(self, name)
            return value
        return (self.model_extra or {}).get(name)

    def to_json_object(self) -> JSONObject:
        """All members as they travel, core and method-specific."""
        return {**{name: getattr(self, name) for name in _CORE_FIELDS}, **self.extras}


def _from_object(data: Mapping[str, object]) -> Receipt:
    for name in _CORE_FIELDS:
        value = data.get(name)
        if value is None:
            raise MalformedReceipt(f"missing {name!r}")
        if not isinstance(value, str):
            raise MalformedReceipt(f"{name!r} must be a string")
    try:
        return Receipt.model_validate(dict(data))
    except ValidationError as exc:  # pragma: no cover - the checks above cover the schema
        first = exc.errors(include_url=False, include_input=False)[0]
        raise MalformedReceipt(f"{first['loc']}: {first['msg']}") from None


def decode_receipt(value: str) -> Receipt:
    """Read a ``Payment-Receipt`` header value (base64url-nopad JSON object)."""
    if not isinstance(value, str):
        raise MalformedReceipt("expected a str header value")
    if len(value) > MAX_HEADER_BYTES:
        raise MalformedReceipt(f"header value is over the limit of {MAX_HEADER_BYTES} bytes")
    try:
        data = b64url_json_decode(value.strip(" \t"), what="receipt")
    except EncodingError as exc:
        raise MalformedReceipt(exc.reason) from None
    return _from_object(data)


def decode_receipt_json(data: str | bytes) -> Receipt:
    """Read a receipt sent as plain JSON (the ``payment-receipt`` SSE event's data)."""
    try:
        obj = parse_json_object(data, what="receipt")
    except EncodingError as exc:
        raise MalformedReceipt(exc.reason) from None
    return _from_object(obj)


def encode_receipt(receipt: Receipt | Mapping[str, JSON]) -> str:
    """Encode a receipt for the ``Payment-Receipt`` header (servers): base64url JCS."""
    if not isinstance(receipt, Receipt):
        receipt = _from_object(receipt)
    return b64url_jcs_encode(receipt.to_json_object())
