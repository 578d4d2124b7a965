"""Tempo session protocol v2: the TIP-1034 channel reserve's pure primitives.

Descriptor, channel id, ``expiringNonceHash`` and ``uint96`` vouchers over the
reserve's EIP-712 domain, and (``calls``) the reserve's calldata, state and events.
No I/O; chain access and the session backend build on these.
"""

from mppagent.tempo.v2.channel_id import compute_channel_id, expiring_nonce_hash
from mppagent.tempo.v2.constants import CLOSE_GRACE_PERIOD, RESERVE_ADDRESS, UINT96_MAX
from mppagent.tempo.v2.descriptor import ChannelDescriptor
from mppagent.tempo.v2.voucher import (
    recover_voucher_signer,
    sign_voucher,
    verify_voucher,
    voucher_digest,
)

__all__ = [
    "CLOSE_GRACE_PERIOD",
    "RESERVE_ADDRESS",
    "UINT96_MAX",
    "ChannelDescriptor",
    "compute_channel_id",
    "expiring_nonce_hash",
    "recover_voucher_signer",
    "sign_voucher",
    "verify_voucher",
    "voucher_digest",
]
