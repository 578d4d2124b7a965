"""Session protocol v2 on the server: the TIP-1034 channel reserve.

What the server checks, beyond what v1 needs, and why:

* **The descriptor** in every payload is the channel's identity: its id must be
  the descriptor's on this reserve and chain, and it must name us as payee, our
  currency as token, and the operator we announce (zero: none). A credential
  ``source``, when sent, must be the payer or the authorized signer.
* **The open** is a Tempo ``0x76`` whose calls are exactly ``[open(...)]`` on the
  reserve with the descriptor's terms -- no ``approve`` (the reserve has implicit
  approval on TIP-20 tokens), nothing else, no native value, no trailing bytes --
  signed by the descriptor's payer. Its ``expiringNonceHash``, recomputed from
  the payload the sender signed, must be the descriptor's, and once mined the
  reserve's ``ChannelOpened`` event must carry the same id and descriptor.
* **A top-up** is exactly ``[topUp(descriptor, amount)]``, and its ``TopUp``
  event must show that amount added.
* **Vouchers** are ``uint96`` amounts in the reserve's EIP-712 domain with
  canonical 65-byte signatures (v = 27/28, low s): the form the reserve settles.
* **The close** passes a capture amount: the reserve pays the payee exactly
  ``spent`` and refunds the rest itself, so no refund of an over-capture is owed.

Reading state reuses the client's reserve reader
(:meth:`~mppagent.tempo.v2.backend.V2Backend.read_channel`): the reserve deletes a
closed channel's state, and that reader recognises it by its ``ChannelClosed`` log.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from mppagent.devserver.backend import (
    CheckedOpen,
    ClosedChannel,
    LaterPayload,
    require_signer,
)
from mppagent.devserver.payer_tx import (
    PayerTransaction,
    ReceivedTransaction,
    read_payer_transaction,
)
from mppagent.devserver.state import ServerChannel
from mppagent.devserver.terms import PayeeTerms, refused
from mppagent.errors import ProtocolError
from mppagent.protocol import (
    JSON,
    InvalidSignatureProblem,
    VerificationFailedProblem,
)
from mppagent.protocol.did import parse_did_pkh
from mppagent.tempo.backend import ChannelTerms
from mppagent.tempo.chain import ContractReverted
from mppagent.tempo.escrow import ChannelState
from mppagent.tempo.schemas import OpenPayload, TopUpPayload
from mppagent.tempo.tempo_chain import send_tempo, sign_calls
from mppagent.tempo.tempotx import Call
from mppagent.tempo.transactions import InvalidTransaction
from mppagent.tempo.v2.backend import V2Backend
from mppagent.tempo.v2.calls import (
    OpenCall,
    TopUpCall,
    decode_channel_closed,
    decode_channel_opened,
    decode_payer_call,
    decode_top_up,
    encode_close,
    encode_open,
    encode_top_up,
)
from mppagent.tempo.v2.channel_id import compute_channel_id, expiring_nonce_hash
from mppagent.tempo.v2.constants import UINT96_MAX
from mppagent.tempo.v2.descriptor import ChannelDescriptor
from mppagent.tempo.v2.voucher import recover_voucher_signer
from mppagent.tempo.voucher import AmountOutOfRange, InvalidSignature

__all__ = ["V2ServerBackend"]

E = TypeVar("E")


class V2ServerBackend:
    """v2 channels in the reserve at ``terms.contract``."""

    protocol: Literal["v2"] = "v2"

    def __init__(self, terms: PayeeTerms) -> None:
        self.terms = terms
        self.contract = terms.contract
        self._reader = V2Backend(terms.chain)

    def method_details(self) -> dict[str, JSON]:
        """``sessionProtocol: "v2"``, and the operator when there is one."""
        details: dict[str, JSON] = {"sessionProtocol": "v2"}
        if int(self.terms.operator, 16):
            details["operator"] = self.terms.operator
        return details

    # -- descriptors ---------------------------------------------------------------------------

    def _descriptor(
        self, wire: dict[str, str] | None, channel_id: str, source: str | None
    ) -> ChannelDescriptor:
        """The payload's descriptor, if it is this channel's and names our terms."""
        if wire is None:
            raise VerificationFailedProblem("a v2 credential carries the channel's descriptor")
        try:
            descriptor = ChannelDescriptor.from_wire(wire)
        except ProtocolError as exc:
            raise VerificationFailedProblem(str(exc)) from None
        terms = self.terms
        if compute_channel_id(descriptor, self.contract, terms.chain_id) != channel_id:
            raise VerificationFailedProblem("the channel descriptor does not match channelId")
        if descriptor.payee != terms.payee:
            raise VerificationFailedProblem("the channel descriptor pays another payee")
        if descriptor.token != terms.token:
            raise VerificationFailedProblem("the channel descriptor is for another token")
        if descriptor.operator != terms.operator:
            raise VerificationFailedProblem("the channel descriptor names another operator")
        if source is not None:
            self._check_source(source, descriptor)
        return descriptor

    def _check_source(self, source: str, descriptor: ChannelDescriptor) -> None:
        try:
            chain_id, address = parse_did_pkh(source)
        except ProtocolError:
            raise VerificationFailedProblem("the credential source is not a did:pkh") from None
        if chain_id != self.terms.chain_id or address.lower() not in (
            descriptor.payer,
            descriptor.authorized_signer,
        ):
            raise VerificationFailedProblem(
                "the credential source is neither the channel's payer nor its signer"
            )

    def channel_descriptor(self, payload: LaterPayload, source: str | None) -> str | None:
        """The checked descriptor (JSON as stored), required in every v2 payload."""
        return _stored(self._descriptor(payload.descriptor, payload.channel_id, source))

    # -- funding -------------------------------------------------------------------------------

    def _only_call(self, raw: str, action: Literal["open", "topUp"]) -> ReceivedTransaction:
        """A Tempo transaction whose one call is the reserve's ``action``, in canonical bytes."""
        try:
            received = read_payer_transaction(raw, tempo_only=True)
        except InvalidTransaction as exc:
            raise VerificationFailedProblem(str(exc)) from None
        calls = received.calls
        if len(calls) != 1:
            raise VerificationFailedProblem(
                f"a v2 {action} transaction makes exactly one call (the reserve's {action}), "
                f"not {len(calls)}"
            )
        (call,) = calls
        if call.to != self.contract or call.value:
            raise VerificationFailedProblem(
                f"the {action} transaction must call the reserve, moving no native value"
            )
        return received

    def _prepared(self, received: ReceivedTransaction, action: str) -> PayerTransaction:
        terms = self.terms
        try:
            tx = received.prepare(terms.fee_payer, terms.fee_token)
        except InvalidTransaction as exc:
            raise VerificationFailedProblem(str(exc)) from None
        terms.check_chain(tx, action)
        return tx

    def check_open(self, payload: OpenPayload, source: str | None) -> CheckedOpen:
        """One ``open`` with the descriptor's terms, whose nonce hash is the descriptor's."""
        descriptor = self._descriptor(payload.descriptor, payload.channel_id, source)
        if (
            payload.authorized_signer is not None
            and payload.authorized_signer != descriptor.authorized_signer
        ):
            raise VerificationFailedProblem("authorizedSigner does not match the descriptor")
        received = self._only_call(payload.transaction, "open")
        data = received.calls[0].data
        call = decode_payer_call(data)
        if not isinstance(call, OpenCall) or _canonical_open(call) != data:
            raise VerificationFailedProblem("the open transaction's call is not the reserve's open")
        if (
            received.sender.lower(),
            call.payee,
            call.operator,
            call.token,
            call.salt,
            call.authorized_signer,
        ) != (
            descriptor.payer,
            descriptor.payee,
            descriptor.operator,
            descriptor.token,
            descriptor.salt,
            descriptor.authorized_signer,
        ):
            raise VerificationFailedProblem("the open transaction does not open that descriptor")
        assert received.tempo is not None  # tempo_only
        signed = received.tempo
        if expiring_nonce_hash(signed.tx.signing_payload(), signed.sender) != (
            descriptor.expiring_nonce_hash
        ):
            raise VerificationFailedProblem(
                "the descriptor's expiringNonceHash is not the open transaction's"
            )
        tx = self._prepared(received, "open")
        return CheckedOpen(payload.channel_id, tx, _stored(descriptor))

    def confirm_open(self, checked: CheckedOpen, receipt: dict[str, Any]) -> None:
        """The reserve's ``ChannelOpened`` carries this id and this descriptor (nonce hash too)."""
        assert checked.descriptor is not None
        descriptor = _loaded(checked.descriptor)
        opened = [
            event
            for event in self._events(receipt, decode_channel_opened)
            if event.channel_id == checked.channel_id
        ]
        if len(opened) != 1 or opened[0].descriptor != descriptor:
            raise VerificationFailedProblem(
                "the reserve's ChannelOpened event does not match the credential's channel"
            )

    def check_top_up(self, payload: TopUpPayload, channel: ServerChannel) -> PayerTransaction:
        """Exactly ``topUp(descriptor, additionalDeposit)`` for this channel."""
        if payload.additional_deposit > UINT96_MAX:
            raise VerificationFailedProblem("additionalDeposit exceeds uint96")
        received = self._only_call(payload.transaction, "topUp")
        data = received.calls[0].data
        call = decode_payer_call(data)
        if not isinstance(call, TopUpCall) or _canonical_top_up(call) != data:
            raise VerificationFailedProblem(
                "the topUp transaction's call is not the reserve's topUp"
            )
        if channel.descriptor is None or call.descriptor != _loaded(channel.descriptor):
            raise VerificationFailedProblem("the topUp transaction is for another channel")
        if call.additional_deposit != payload.additional_deposit:
            raise VerificationFailedProblem("additionalDeposit does not match the transaction")
        return self._prepared(received, "topUp")

    def confirm_top_up(self, channel_id: str, amount: int, receipt: dict[str, Any]) -> None:
        """The reserve's ``TopUp`` event for this channel and amount."""
        topped = [e for e in self._events(receipt, decode_top_up) if e.channel_id == channel_id]
        if len(topped) != 1 or topped[0].additional_deposit != amount:
            raise VerificationFailedProblem("the topUp transaction did not add that deposit")

    def _events(
        self, receipt: dict[str, Any], decode: Callable[[Sequence[bytes], bytes], E | None]
    ) -> list[E]:
        """The reserve's logs in ``receipt`` that ``decode`` recognises."""
        found = []
        for log in receipt.get("logs", []):
            if str(log.get("address", "")).lower() != self.contract:
                continue
            topics = [_bytes(t) for t in log.get("topics", [])]
            event = decode(topics, _bytes(log.get("data", "0x")))
            if event is not None:
                found.append(event)
        return found

    # -- state and vouchers --------------------------------------------------------------------

    async def read_state(self, channel_id: str, descriptor: str | None) -> ChannelState:
        """``getChannelState`` (a closed channel: its ``ChannelClosed`` log)."""
        if descriptor is None:
            raise VerificationFailedProblem("this v2 channel's descriptor is unknown")
        d = _loaded(descriptor)
        terms = ChannelTerms(
            payer=d.payer,
            payee=d.payee,
            token=d.token,
            escrow=self.contract,
            chain_id=self.terms.chain_id,
            salt=d.salt,
            authorized_signer=d.authorized_signer,
            operator=d.operator,
            descriptor=descriptor,
        )
        return await self._reader.read_channel(terms, channel_id)

    def redeemable(self, signature: str, channel_id: str, amount: int, signer: str) -> str:
        """Only the canonical 65-byte r‖s‖v, over a ``uint96`` amount, by ``signer``."""
        if amount > UINT96_MAX:
            raise VerificationFailedProblem(
                "v2 amounts are uint96", extras={"channelId": channel_id}
            )
        try:
            recovered = recover_voucher_signer(
                signature, channel_id, amount, self.contract, self.terms.chain_id
            )
        except (InvalidSignature, AmountOutOfRange) as exc:
            raise InvalidSignatureProblem(str(exc), extras={"channelId": channel_id}) from None
        require_signer(recovered, signer, channel_id)
        return signature.lower()

    def close_ceiling(self, accepted: int, deposit: int) -> int:
        """The deposit: the capture amount, not the voucher, fixes what the payee gets."""
        del accepted
        return deposit

    # -- close ---------------------------------------------------------------------------------

    async def close(
        self,
        channel: ServerChannel,
        state: ChannelState,
        spent: int,
        voucher: tuple[int, str],
    ) -> ClosedChannel:
        """``close(descriptor, voucher, capture = spent, sig)``: the reserve refunds the rest."""
        del state
        if channel.descriptor is None:
            raise VerificationFailedProblem("this v2 channel's descriptor is unknown")
        amount, signature = voucher
        terms = self.terms
        call = Call(
            self.contract, encode_close(_loaded(channel.descriptor), amount, spent, signature)
        )
        try:
            tx = await sign_calls(terms.chain, terms.wallet, [call], fee_token=terms.token)
            receipt = await send_tempo(terms.chain, tx, context="close")
        except ContractReverted as exc:
            raise refused("close", exc) from None
        closed = [
            e
            for e in self._events(receipt, decode_channel_closed)
            if e.channel_id == channel.channel_id
        ]
        if len(closed) != 1 or closed[0].paid != spent:
            raise VerificationFailedProblem("the reserve's close did not capture what was spent")
        return ClosedChannel(tx.hash)


def _stored(descriptor: ChannelDescriptor) -> str:
    """The descriptor as the server stores it (canonical JSON)."""
    return json.dumps(descriptor.to_wire(), sort_keys=True)


def _loaded(stored: str) -> ChannelDescriptor:
    return ChannelDescriptor.from_wire(json.loads(stored))


def _canonical_open(call: OpenCall) -> bytes:
    try:
        return encode_open(
            call.payee, call.operator, call.token, call.deposit, call.salt, call.authorized_signer
        )
    except AmountOutOfRange:
        return b""


def _canonical_top_up(call: TopUpCall) -> bytes:
    try:
        return encode_top_up(call.descriptor, call.additional_deposit)
    except AmountOutOfRange:
        return b""


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return bytes.fromhex(str(value).removeprefix("0x"))
