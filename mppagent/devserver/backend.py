"""The seam between the server's protocol-neutral books and one session protocol.

:class:`~mppagent.devserver.payee.SessionPayee` keeps what every session protocol
shares: challenges, per-channel locks, rate limits, voucher demands, accepted
and spent amounts, receipts and faults. What differs between v1 (the
``TempoStreamChannel`` escrow, :mod:`.backend_v1`) and v2 (the TIP-1034 channel
reserve, :mod:`.backend_v2`) sits behind :class:`ServerBackend`: how an ``open``
or ``topUp`` transaction is checked and what it must have done on chain, how a
channel id is derived, how channel state is read, which voucher signatures are
valid, and how a channel is closed.

A backend refuses with the draft's problem types (``verification-failed``,
``invalid-signature``...), so the payee passes its refusals on unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from mppagent.devserver.payer_tx import PayerTransaction
from mppagent.devserver.state import ServerChannel
from mppagent.protocol import JSON, SignerMismatchProblem
from mppagent.tempo.escrow import ChannelState
from mppagent.tempo.schemas import ClosePayload, OpenPayload, TopUpPayload, VoucherPayload

__all__ = ["CheckedOpen", "ClosedChannel", "ServerBackend", "require_signer"]

LaterPayload = TopUpPayload | VoucherPayload | ClosePayload
"""Every payload after the open: each names an existing channel."""


@dataclass(frozen=True)
class CheckedOpen:
    """An ``open`` credential whose transaction opens exactly ``channel_id`` for us.

    ``descriptor`` is the channel's v2 descriptor (JSON, as stored with the
    channel), ``None`` in v1.
    """

    channel_id: str
    tx: PayerTransaction
    descriptor: str | None = None


@dataclass(frozen=True)
class ClosedChannel:
    """A mined close: its hash, and what the payee must still send back to the payer.

    ``refund_owed`` is nonzero only where the protocol's close cannot capture less
    than the redeemed voucher (v1): the payee returns the difference above ``spent``.
    """

    tx_hash: str
    refund_owed: int = 0


class ServerBackend(Protocol):
    """One session protocol as the server needs it (v1 escrow or v2 reserve)."""

    @property
    def protocol(self) -> Literal["v1", "v2"]:
        """The ``sessionProtocol`` this backend speaks."""
        ...

    @property
    def contract(self) -> str:
        """The ``escrowContract`` the challenges name (lowercase)."""
        ...

    def method_details(self) -> dict[str, JSON]:
        """What this protocol adds to a challenge's ``methodDetails``."""
        ...

    def check_open(self, payload: OpenPayload, source: str | None) -> CheckedOpen:
        """Decode and check the open transaction against our terms; nothing is sent."""
        ...

    def confirm_open(self, checked: CheckedOpen, receipt: dict[str, Any]) -> None:
        """Check the mined open did what the credential claimed (raise if not)."""
        ...

    def channel_descriptor(self, payload: LaterPayload, source: str | None) -> str | None:
        """The payload's channel descriptor, checked against its id and our terms.

        v2 requires one in every payload (``None`` in v1, which has none).
        """
        ...

    def check_top_up(self, payload: TopUpPayload, channel: ServerChannel) -> PayerTransaction:
        """Decode and check a top-up transaction for ``channel``; nothing is sent."""
        ...

    def confirm_top_up(self, channel_id: str, amount: int, receipt: dict[str, Any]) -> None:
        """Check the mined top-up added exactly ``amount`` to ``channel_id`` (raise if not)."""
        ...

    async def read_state(self, channel_id: str, descriptor: str | None) -> ChannelState:
        """The channel's state on chain (a closed channel reads as finalized)."""
        ...

    def redeemable(self, signature: str, channel_id: str, amount: int, signer: str) -> str:
        """Verify a voucher by ``signer``; return the signature in the form the contract takes."""
        ...

    def close_ceiling(self, accepted: int, deposit: int) -> int:
        """The highest close voucher taken (``accepted``: the highest accepted voucher)."""
        ...

    async def close(
        self,
        channel: ServerChannel,
        state: ChannelState,
        spent: int,
        voucher: tuple[int, str],
    ) -> ClosedChannel:
        """Close ``channel`` so the payee keeps exactly ``spent`` (``voucher``: the close's)."""
        ...


def require_signer(recovered: str, signer: str, channel_id: str) -> None:
    """Refuse a voucher that ``signer`` (the channel's authorized signer) did not sign."""
    if recovered.lower() != signer:
        raise SignerMismatchProblem(
            "the voucher is not signed by the channel's authorized signer",
            extras={"channelId": channel_id},
        )
