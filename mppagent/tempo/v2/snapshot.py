"""``Payment-Session-Snapshot``: a v2 server's view of a channel, checked before any use.

A server may hand a cold client (one that lost its store) the state of a channel
it holds: descriptor, deposit, settled, spent, accepted, and the highest voucher
it has. Nothing in it is taken on the server's word. :func:`check_snapshot`
proves what can be proven off chain -- the channel id is the descriptor's on this
reserve and chain, the payer is us, the voucher is signed by the channel's signer
for that id and amount, and the amounts are ordered -- and
:func:`verify_snapshot_on_chain` that the reserve holds the same deposit,
settlement and close request. Only then may a caller rehydrate from it (not wired
into the session store yet; see the README).

Wire form: base64 of a JSON object -- the draft says base64url without padding,
the reference SDK writes standard base64 with padding (and reads both); so do we.
"""

from __future__ import annotations

import base64
import binascii
import json

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from mppagent.errors import ProtocolError
from mppagent.tempo.backend import ChannelTerms
from mppagent.tempo.escrow import ChannelState
from mppagent.tempo.hexutil import normalize_address
from mppagent.tempo.schemas import Address, Amount, Bytes32, HexBlob, parse_model
from mppagent.tempo.v2.backend import V2Backend
from mppagent.tempo.v2.channel_id import compute_channel_id
from mppagent.tempo.v2.descriptor import ChannelDescriptor
from mppagent.tempo.v2.voucher import verify_voucher
from mppagent.tempo.voucher import InvalidSignature

__all__ = [
    "InvalidSnapshot",
    "SessionSnapshot",
    "SnapshotVoucher",
    "check_snapshot",
    "parse_snapshot",
    "verify_snapshot_on_chain",
]

MAX_SNAPSHOT_CHARS = 16 * 1024


class InvalidSnapshot(ProtocolError):
    """A session snapshot is malformed, or does not prove what it claims."""


class SnapshotVoucher(BaseModel):
    """The highest voucher the server holds for the channel."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    channel_id: Bytes32 = Field(alias="channelId")
    cumulative_amount: Amount = Field(alias="cumulativeAmount")
    signature: HexBlob = Field(repr=False)


class SessionSnapshot(BaseModel):
    """A decoded ``Payment-Session-Snapshot`` (amounts in base units)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    channel_id: Bytes32 = Field(alias="channelId")
    chain_id: StrictInt = Field(alias="chainId")
    escrow: Address
    descriptor: ChannelDescriptor
    deposit: Amount
    settled: Amount
    spent: Amount
    accepted_cumulative: Amount = Field(alias="acceptedCumulative")
    required_cumulative: Amount = Field(alias="requiredCumulative")
    close_requested_at: Amount | None = Field(None, alias="closeRequestedAt")
    highest_voucher: SnapshotVoucher | None = Field(None, alias="highestVoucher")
    units: StrictInt | None = None


def parse_snapshot(header: str) -> SessionSnapshot:
    """Decode the header value (base64 or base64url JSON); :class:`InvalidSnapshot` if bad."""
    if not isinstance(header, str) or len(header) > MAX_SNAPSHOT_CHARS:
        raise InvalidSnapshot("session snapshot is missing or too large")
    text = header.strip().replace("-", "+").replace("_", "/")
    try:
        data = json.loads(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except (binascii.Error, ValueError):
        raise InvalidSnapshot("session snapshot is not base64 JSON") from None
    try:
        return parse_model(SessionSnapshot, data, "session snapshot")
    except ProtocolError as exc:
        raise InvalidSnapshot(str(exc)) from None


def check_snapshot(snapshot: SessionSnapshot, *, payer: str, reserve: str, chain_id: int) -> None:
    """Everything provable off chain; raises :class:`InvalidSnapshot` naming what failed."""
    descriptor = snapshot.descriptor
    if snapshot.chain_id != chain_id or snapshot.escrow != normalize_address(reserve):
        raise InvalidSnapshot("session snapshot is for another chain or reserve")
    if descriptor.payer != normalize_address(payer):
        raise InvalidSnapshot("session snapshot names another payer")
    if compute_channel_id(descriptor, snapshot.escrow, chain_id) != snapshot.channel_id:
        raise InvalidSnapshot("session snapshot's channel id is not its descriptor's")
    voucher = snapshot.highest_voucher
    signed = 0
    if voucher is not None:
        if voucher.channel_id != snapshot.channel_id:
            raise InvalidSnapshot("session snapshot's voucher is for another channel")
        try:
            verify_voucher(
                voucher.signature,
                descriptor,
                snapshot.channel_id,
                voucher.cumulative_amount,
                snapshot.escrow,
                chain_id,
            )
        except InvalidSignature as exc:
            raise InvalidSnapshot(f"session snapshot's voucher: {exc}") from None
        signed = voucher.cumulative_amount
    if not (
        snapshot.settled <= snapshot.accepted_cumulative <= signed <= snapshot.deposit
        and snapshot.spent <= snapshot.accepted_cumulative
    ):
        raise InvalidSnapshot(
            "session snapshot's amounts are out of order "
            "(settled, spent <= accepted <= highest voucher <= deposit)"
        )


async def verify_snapshot_on_chain(backend: V2Backend, snapshot: SessionSnapshot) -> ChannelState:
    """The reserve holds the snapshot's deposit, settlement and close request, or raise."""
    descriptor = snapshot.descriptor
    terms = ChannelTerms(
        payer=descriptor.payer,
        payee=descriptor.payee,
        token=descriptor.token,
        escrow=snapshot.escrow,
        chain_id=snapshot.chain_id,
        salt=descriptor.salt,
        authorized_signer=descriptor.authorized_signer,
        operator=descriptor.operator,
        descriptor=json.dumps(descriptor.to_wire()),
    )
    state = await backend.read_channel(terms, snapshot.channel_id)
    requested = snapshot.close_requested_at or 0
    if (
        not state.exists
        or state.finalized
        or (state.deposit, state.settled, state.close_requested_at)
        != (snapshot.deposit, snapshot.settled, requested)
    ):
        raise InvalidSnapshot("session snapshot does not match the channel on chain")
    return state
