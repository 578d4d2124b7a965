"""Named crash points at the write-ahead steps, for crash tests.

``hit("voucher.recorded")`` does nothing unless the environment variable
``MPPAGENT_FAILPOINT`` names that point, in which case the process kills
itself with SIGKILL on the spot -- no cleanup, no flush, exactly like a power
cut or an OOM kill. The crash-matrix tests use it to prove that after a
restart nothing is lost or paid twice. Points:

``open.recorded``     the signed open transaction is in the store, not yet sent
``open.sent``         the server accepted the open, the agent has not confirmed it
``open.confirmed_on_chain``  the chain shows the channel open; the store not yet told
``voucher.recorded``  a voucher is in the store, not yet delivered
``voucher.sent``      the server accepted a voucher, its receipt not yet recorded
``topup.recorded``    a signed topUp transaction is in the store, not yet sent
``topup.sent``        the server accepted a topUp, the agent has not confirmed it
``topup.confirmed_on_chain``  the chain shows the new deposit; the store not yet told
``close.recorded``    the close voucher is in the store, not yet sent
``close.sent``        the server closed the channel, the agent has not verified it
``close.verified_on_chain``  the close checked out on chain; the store not yet told

The ``*_on_chain`` points sit between an operation's outcome and the status it
implies; both commit in one store transaction, so a crash there leaves the
operation pending, and start-up recovery settles it from the chain.
"""

from __future__ import annotations

import os
import signal

__all__ = ["POINTS", "hit"]

POINTS = (
    "open.recorded",
    "open.sent",
    "open.confirmed_on_chain",
    "voucher.recorded",
    "voucher.sent",
    "topup.recorded",
    "topup.sent",
    "topup.confirmed_on_chain",
    "close.recorded",
    "close.sent",
    "close.verified_on_chain",
)

_ARMED = os.environ.get("MPPAGENT_FAILPOINT", "")


def hit(name: str) -> None:
    """SIGKILL this process if ``MPPAGENT_FAILPOINT`` names ``name``."""
    if _ARMED and name == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
