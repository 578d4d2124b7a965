"""Calldata, return values and events of the TIP-1034 reserve, encoded and decoded. Pure.

The selectors come from the spec's interface (and are checked against the reference SDK's
ABI and our local reserve's artifact in the tests). Every post-open call carries the full
:class:`ChannelDescriptor`; amounts are ``uint96`` and refused beyond that with
:class:`~mppagent.tempo.voucher.AmountOutOfRange` before anything is encoded.

:func:`decode_payer_call` is what a server (or the devchain's JSON-RPC front) uses to see
whether a transaction's call opens or tops up a channel, and with what.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mppagent.tempo.codec import abi_decode, abi_encode
from mppagent.tempo.hexutil import checksum_address, keccak, normalize_bytes32
from mppagent.tempo.v2.descriptor import ChannelDescriptor
from mppagent.tempo.voucher import V2_VOUCHERS

__all__ = [
    "CHANNEL_CLOSED_TOPIC",
    "DESCRIPTOR_TYPE",
    "SELECTORS",
    "ChannelClosed",
    "ChannelOpened",
    "OpenCall",
    "ReserveState",
    "TopUpCall",
    "ToppedUp",
    "decode_channel_closed",
    "decode_channel_opened",
    "decode_channel_state",
    "decode_payer_call",
    "decode_top_up",
    "encode_close",
    "encode_get_channel_state",
    "encode_open",
    "encode_request_close",
    "encode_settle",
    "encode_top_up",
    "encode_withdraw",
]

DESCRIPTOR_TYPE = "(address,address,address,address,bytes32,address,bytes32)"
_STATE_TYPE = "(uint96,uint96,uint32)"
_OPEN_ARGS = ["address", "address", "address", "uint96", "bytes32", "address"]
_ARGS: dict[str, list[str]] = {
    "open": _OPEN_ARGS,
    "settle": [DESCRIPTOR_TYPE, "uint96", "bytes"],
    "topUp": [DESCRIPTOR_TYPE, "uint96"],
    "close": [DESCRIPTOR_TYPE, "uint96", "uint96", "bytes"],
    "requestClose": [DESCRIPTOR_TYPE],
    "withdraw": [DESCRIPTOR_TYPE],
    "getChannel": [DESCRIPTOR_TYPE],
    "getChannelState": ["bytes32"],
    "getChannelStatesBatch": ["bytes32[]"],
    "computeChannelId": [
        "address",
        "address",
        "address",
        "address",
        "bytes32",
        "address",
        "bytes32",
    ],
    "getVoucherDigest": ["bytes32", "uint96"],
    "domainSeparator": [],
    "CLOSE_GRACE_PERIOD": [],
    "VOUCHER_TYPEHASH": [],
}
SELECTORS: dict[str, bytes] = {
    name: keccak(f"{name}({','.join(types)})".encode())[:4] for name, types in _ARGS.items()
}
"""4-byte selector of every reserve function, by name."""

_OPENED_TOPIC = keccak(
    b"ChannelOpened(bytes32,address,address,address,address,address,bytes32,bytes32,uint96)"
)


def _encode(name: str, args: Sequence[Any]) -> bytes:
    return SELECTORS[name] + abi_encode(_ARGS[name], list(args))


def _amount(value: int) -> int:
    V2_VOUCHERS.check_amount(value)
    return value


def _signature(signature: str) -> bytes:
    return bytes.fromhex(signature.removeprefix("0x"))


def encode_open(
    payee: str, operator: str, token: str, deposit: int, salt: str, authorized_signer: str
) -> bytes:
    """Calldata of ``open(payee, operator, token, deposit, salt, authorizedSigner)``."""
    return _encode(
        "open",
        [
            checksum_address(payee),
            checksum_address(operator),
            checksum_address(token),
            _amount(deposit),
            bytes.fromhex(normalize_bytes32(salt)[2:]),
            checksum_address(authorized_signer),
        ],
    )


def encode_top_up(descriptor: ChannelDescriptor, additional_deposit: int) -> bytes:
    """Calldata of ``topUp(descriptor, additionalDeposit)`` (zero only cancels a close)."""
    return _encode("topUp", [descriptor.abi_tuple(), _amount(additional_deposit)])


def encode_settle(descriptor: ChannelDescriptor, cumulative_amount: int, signature: str) -> bytes:
    """Calldata of ``settle(descriptor, cumulativeAmount, signature)`` (payee or operator)."""
    return _encode(
        "settle", [descriptor.abi_tuple(), _amount(cumulative_amount), _signature(signature)]
    )


def encode_close(
    descriptor: ChannelDescriptor, cumulative_amount: int, capture_amount: int, signature: str
) -> bytes:
    """Calldata of ``close(descriptor, cumulativeAmount, captureAmount, signature)``."""
    return _encode(
        "close",
        [
            descriptor.abi_tuple(),
            _amount(cumulative_amount),
            _amount(capture_amount),
            _signature(signature),
        ],
    )


def encode_request_close(descriptor: ChannelDescriptor) -> bytes:
    """Calldata of ``requestClose(descriptor)`` (payer; starts the 900 s grace period)."""
    return _encode("requestClose", [descriptor.abi_tuple()])


def encode_withdraw(descriptor: ChannelDescriptor) -> bytes:
    """Calldata of ``withdraw(descriptor)`` (payer, after the grace period)."""
    return _encode("withdraw", [descriptor.abi_tuple()])


@dataclass(frozen=True)
class OpenCall:
    """A decoded ``open``: the caller becomes the payer (addresses lowercase)."""

    payee: str
    operator: str
    token: str
    deposit: int
    salt: str
    authorized_signer: str


@dataclass(frozen=True)
class TopUpCall:
    """A decoded ``topUp``."""

    descriptor: ChannelDescriptor
    additional_deposit: int


def decode_payer_call(data: bytes) -> OpenCall | TopUpCall | None:
    """Decode ``open``/``topUp`` calldata; ``None`` for anything else or malformed input."""
    selector, body = data[:4], data[4:]
    try:
        if selector == SELECTORS["open"]:
            payee, operator, token, deposit, salt, signer = abi_decode(_OPEN_ARGS, body)
            return OpenCall(
                payee=str(payee).lower(),
                operator=str(operator).lower(),
                token=str(token).lower(),
                deposit=int(deposit),
                salt="0x" + bytes(salt).hex(),
                authorized_signer=str(signer).lower(),
            )
        if selector == SELECTORS["topUp"]:
            fields, amount = abi_decode(_ARGS["topUp"], body)
            return TopUpCall(_descriptor(fields), int(amount))
    except Exception:  # eth-abi raises several unrelated types for malformed input
        return None
    return None


@dataclass(frozen=True)
class ReserveState:
    """A channel's on-chain state; all zero when the channel does not exist (or was closed)."""

    settled: int
    deposit: int
    close_requested_at: int

    @property
    def exists(self) -> bool:
        """The reserve marks a live channel by a nonzero deposit."""
        return self.deposit != 0


def decode_channel_state(output: bytes) -> ReserveState:
    """Decode the return value of ``getChannelState``."""
    settled, deposit, requested = abi_decode([_STATE_TYPE], output)[0]
    return ReserveState(int(settled), int(deposit), int(requested))


@dataclass(frozen=True)
class ChannelOpened:
    """A decoded ``ChannelOpened`` event: the whole descriptor and the deposit."""

    channel_id: str
    descriptor: ChannelDescriptor
    deposit: int


def decode_channel_opened(topics: Sequence[bytes], data: bytes) -> ChannelOpened | None:
    """Decode a ``ChannelOpened`` log (``None`` if the log is another event)."""
    if len(topics) != 4 or bytes(topics[0]) != _OPENED_TOPIC:
        return None
    operator, token, signer, salt, nonce_hash, deposit = abi_decode(
        ["address", "address", "address", "bytes32", "bytes32", "uint96"], data
    )
    descriptor = ChannelDescriptor(
        payer="0x" + bytes(topics[2])[12:].hex(),
        payee="0x" + bytes(topics[3])[12:].hex(),
        operator=str(operator),
        token=str(token),
        salt="0x" + bytes(salt).hex(),
        authorized_signer=str(signer),
        expiring_nonce_hash="0x" + bytes(nonce_hash).hex(),
    )
    return ChannelOpened("0x" + bytes(topics[1]).hex(), descriptor, int(deposit))


def _descriptor(fields: Sequence[Any]) -> ChannelDescriptor:
    payer, payee, operator, token, salt, signer, nonce_hash = fields
    return ChannelDescriptor(
        payer=str(payer),
        payee=str(payee),
        operator=str(operator),
        token=str(token),
        salt="0x" + bytes(salt).hex(),
        authorized_signer=str(signer),
        expiring_nonce_hash="0x" + bytes(nonce_hash).hex(),
    )


_CLOSED_TOPIC = keccak(b"ChannelClosed(bytes32,address,address,uint96,uint96)")


@dataclass(frozen=True)
class ChannelClosed:
    """A decoded ``ChannelClosed`` event (cooperative close or withdraw)."""

    channel_id: str
    paid: int
    refunded: int


def decode_channel_closed(topics: Sequence[bytes], data: bytes) -> ChannelClosed | None:
    """Decode a ``ChannelClosed`` log (``None`` if the log is another event)."""
    if len(topics) != 4 or bytes(topics[0]) != _CLOSED_TOPIC:
        return None
    paid, refunded = abi_decode(["uint96", "uint96"], data)
    return ChannelClosed("0x" + bytes(topics[1]).hex(), int(paid), int(refunded))


_TOP_UP_TOPIC = keccak(b"TopUp(bytes32,address,address,uint96,uint96)")


@dataclass(frozen=True)
class ToppedUp:
    """A decoded ``TopUp`` event."""

    channel_id: str
    additional_deposit: int
    new_deposit: int


def decode_top_up(topics: Sequence[bytes], data: bytes) -> ToppedUp | None:
    """Decode a ``TopUp`` log (``None`` if the log is another event)."""
    if len(topics) != 4 or bytes(topics[0]) != _TOP_UP_TOPIC:
        return None
    added, deposit = abi_decode(["uint96", "uint96"], data)
    return ToppedUp("0x" + bytes(topics[1]).hex(), int(added), int(deposit))


def encode_get_channel_state(channel_id: str) -> bytes:
    """Calldata of ``getChannelState(channelId)``."""
    return _encode("getChannelState", [bytes.fromhex(normalize_bytes32(channel_id)[2:])])


CHANNEL_CLOSED_TOPIC = "0x" + _CLOSED_TOPIC.hex()
"""``topics[0]`` of ``ChannelClosed``, for log filters."""
