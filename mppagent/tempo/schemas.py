"""Wire models of the Tempo ``session`` intent (v1, and v2's ``descriptor``), client and server.

Everything that crosses the wire for a session is validated here, once:
the decoded challenge ``request``, the four credential payloads, the
``payment-need-voucher`` event and the session receipt. Amounts are decimal
strings on the wire and ``int`` base units in these models; addresses and
ids are normalised to lowercase hex. Signatures and signed transactions are
kept out of ``repr``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
)

from mppagent.errors import ProtocolError
from mppagent.protocol.amounts import MAX_AMOUNT, parse_amount
from mppagent.tempo.hexutil import normalize_address, normalize_bytes32

__all__ = [
    "WIRE",
    "ClosePayload",
    "InvalidSessionMessage",
    "MethodDetails",
    "NeedVoucher",
    "OpenPayload",
    "SessionPayload",
    "SessionReceipt",
    "SessionRequest",
    "TopUpPayload",
    "VoucherPayload",
    "parse_model",
    "parse_payload",
]

DEFAULT_CHAIN_ID = 4217


class InvalidSessionMessage(ProtocolError):
    """A session request, payload, event or receipt does not match the draft's schema."""


_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")

WIRE = {"wire": True}
"""Validation context for data from a peer: amounts must then be decimal strings."""


def _amount(value: object, info: ValidationInfo) -> int:
    wire = bool(info.context and info.context.get("wire"))
    if not wire and isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= MAX_AMOUNT:
            raise ValueError("amount must fit in uint128")
        return value  # constructed in Python, not received: ints are fine
    try:
        return parse_amount(value, "amount")
    except ProtocolError as exc:  # re-raised as ValueError so pydantic names the field
        raise ValueError(str(exc)) from None


def _hex_blob(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) % 2:
        raise ValueError("must be 0x-prefixed hex with an even number of digits")
    # Not bytes.fromhex: it skips whitespace, so "0x 12 34 " would pass as hex.
    if not _HEX_DIGITS.fullmatch(value, 2):
        raise ValueError("must be hex")
    return value.lower()


Amount = Annotated[int, BeforeValidator(_amount), PlainSerializer(str, return_type=str)]
Address = Annotated[str, BeforeValidator(normalize_address)]
Bytes32 = Annotated[str, BeforeValidator(normalize_bytes32)]
HexBlob = Annotated[str, BeforeValidator(_hex_blob)]
WireDescriptor = dict[str, str]
"""A v2 channel descriptor as it travels in a payload (``mppagent.tempo.v2.ChannelDescriptor``
validates it; kept as a plain object here so v1's wire models need no v2 import)."""


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, Any]:
        """The JSON object for the wire: camelCase keys, amounts as strings, no nulls."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class MethodDetails(_Wire):
    """``request.methodDetails`` of a tempo session challenge."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="allow")

    escrow_contract: Address = Field(alias="escrowContract")
    chain_id: StrictInt = Field(DEFAULT_CHAIN_ID, alias="chainId")
    channel_id: Bytes32 | None = Field(None, alias="channelId")
    min_voucher_delta: Amount | None = Field(None, alias="minVoucherDelta")
    fee_payer: StrictBool | None = Field(None, alias="feePayer")
    session_protocol: str | None = Field(None, alias="sessionProtocol")
    operator: Address | None = None
    fee_token: Address | None = Field(None, alias="feeToken")
    session_snapshot: dict[str, Any] | None = Field(None, alias="sessionSnapshot", repr=False)


class SessionRequest(_Wire):
    """The decoded ``request`` of a ``tempo``/``session`` challenge.

    ``amount`` is the price *per unit* (``unit_type``), not a total.
    """

    amount: Amount
    unit_type: str | None = Field(None, alias="unitType")
    suggested_deposit: Amount | None = Field(None, alias="suggestedDeposit")
    currency: Address
    recipient: Address
    method_details: MethodDetails = Field(alias="methodDetails")

    @property
    def escrow(self) -> str:
        """The escrow contract address (lowercase)."""
        return self.method_details.escrow_contract

    @property
    def chain_id(self) -> int:
        """Chain id, defaulting to Tempo mainnet's 4217 as the draft says."""
        return self.method_details.chain_id


class OpenPayload(_Wire):
    """``action: "open"`` -- a signed ``open`` transaction plus the initial voucher."""

    action: Literal["open"] = "open"
    type: Literal["transaction"] = "transaction"
    channel_id: Bytes32 = Field(alias="channelId")
    transaction: HexBlob = Field(repr=False)
    authorized_signer: Address | None = Field(None, alias="authorizedSigner")
    cumulative_amount: Amount = Field(alias="cumulativeAmount")
    signature: HexBlob = Field(repr=False)
    descriptor: WireDescriptor | None = None


class TopUpPayload(_Wire):
    """``action: "topUp"`` -- a signed ``topUp`` transaction."""

    action: Literal["topUp"] = "topUp"
    type: Literal["transaction"] = "transaction"
    channel_id: Bytes32 = Field(alias="channelId")
    transaction: HexBlob = Field(repr=False)
    additional_deposit: Amount = Field(alias="additionalDeposit")
    descriptor: WireDescriptor | None = None


class VoucherPayload(_Wire):
    """``action: "voucher"`` -- a cumulative voucher."""

    action: Literal["voucher"] = "voucher"
    channel_id: Bytes32 = Field(alias="channelId")
    cumulative_amount: Amount = Field(alias="cumulativeAmount")
    signature: HexBlob = Field(repr=False)
    descriptor: WireDescriptor | None = None


class ClosePayload(_Wire):
    """``action: "close"`` -- the final voucher the server closes the channel with."""

    action: Literal["close"] = "close"
    channel_id: Bytes32 = Field(alias="channelId")
    cumulative_amount: Amount = Field(alias="cumulativeAmount")
    signature: HexBlob = Field(repr=False)
    descriptor: WireDescriptor | None = None


SessionPayload = Annotated[
    OpenPayload | TopUpPayload | VoucherPayload | ClosePayload, Field(discriminator="action")
]
_PAYLOAD: TypeAdapter[OpenPayload | TopUpPayload | VoucherPayload | ClosePayload] = TypeAdapter(
    SessionPayload
)


class NeedVoucher(_Wire):
    """Data of a ``payment-need-voucher`` SSE event."""

    channel_id: Bytes32 = Field(alias="channelId")
    required_cumulative: Amount = Field(alias="requiredCumulative")
    accepted_cumulative: Amount = Field(alias="acceptedCumulative")
    deposit: Amount


class SessionReceipt(_Wire):
    """A session receipt (``Payment-Receipt`` header or ``payment-receipt`` event)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="allow")

    method: str
    intent: str
    status: str
    timestamp: str
    reference: str
    challenge_id: str = Field(alias="challengeId")
    channel_id: Bytes32 = Field(alias="channelId")
    accepted_cumulative: Amount = Field(alias="acceptedCumulative")
    spent: Amount
    units: StrictInt | None = None
    tx_hash: Bytes32 | None = Field(None, alias="txHash")


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], data: object, what: str) -> M:
    """Validate ``data`` as ``model``; failures become :class:`InvalidSessionMessage`."""
    try:
        return model.model_validate(data, context=WIRE)
    except ValidationError as exc:
        raise InvalidSessionMessage(f"invalid {what}: {_summary(exc)}") from None


def parse_payload(data: object) -> OpenPayload | TopUpPayload | VoucherPayload | ClosePayload:
    """Validate a credential ``payload`` object into one of the four actions."""
    try:
        return _PAYLOAD.validate_python(data, context=WIRE)
    except ValidationError as exc:
        raise InvalidSessionMessage(f"invalid session payload: {_summary(exc)}") from None


def _summary(exc: ValidationError) -> str:
    """First few validation problems, naming fields but never echoing values."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
