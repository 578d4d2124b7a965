"""``Payment-Session-Snapshot``: the server's view of a v2 channel, for a client to rehydrate.

draft-tempo-session (Session Snapshot): for v2 reusable channels a server MAY put a
snapshot of the channel in the challenge's ``methodDetails.sessionSnapshot``, MAY
send it in the ``Payment-Session-Snapshot`` response header (base64url JSON without
padding), and MAY name the channel in a ``Payment-Session`` header. This server sends
both headers on a ``402`` for a request that names one of its open v2 channels (the
client's ``Payment-Session`` hint, or the credential's channel), and puts the
snapshot in the challenge too when that ``402`` refuses a credential for the channel
(the client's view is evidently behind): a client that lost its store, or fell out
of step, learns where the channel stands without a chain lookup. Nothing in it is
secret -- the descriptor is in the reserve's ``ChannelOpened`` log, and only the
payee or operator may redeem the voucher -- and a client must verify it anyway.

Beside the draft's fields it carries ``highestVoucher`` (as the reference SDK's
server does): the voucher behind ``acceptedCumulative``, which lets a client
verify that figure instead of trusting it.
"""

from __future__ import annotations

import base64
import json

from mppagent.devserver.state import ServerChannel
from mppagent.protocol import JSON

__all__ = ["SESSION_HEADER", "SNAPSHOT_HEADER", "encode_snapshot", "session_snapshot"]

SESSION_HEADER = "payment-session"
SNAPSHOT_HEADER = "payment-session-snapshot"


def session_snapshot(
    channel: ServerChannel, *, reserve: str, chain_id: int, price: int
) -> dict[str, JSON] | None:
    """The snapshot of ``channel``; ``None`` when it has none to give (closed, no voucher).

    ``requiredCumulative`` is what the next unit would need: ``spent`` plus one
    ``price`` (the challenge's ``amount``).
    """
    if channel.finalized or channel.descriptor is None or channel.accepted_signature is None:
        return None
    return {
        "acceptedCumulative": str(channel.accepted),
        "chainId": chain_id,
        "channelId": channel.channel_id,
        "deposit": str(channel.deposit),
        "descriptor": json.loads(channel.descriptor),
        "escrow": reserve,
        "highestVoucher": {
            "channelId": channel.channel_id,
            "cumulativeAmount": str(channel.accepted),
            "signature": channel.accepted_signature,
        },
        "requiredCumulative": str(channel.spent + price),
        "settled": str(channel.settled),
        "spent": str(channel.spent),
    }


def encode_snapshot(snapshot: dict[str, JSON]) -> str:
    """The header value: base64url of the JSON, without padding (the draft's encoding)."""
    raw = json.dumps(snapshot, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
