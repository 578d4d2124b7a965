"""Named crash points at the write-ahead steps, for crash tests.

``hit("voucher.recorded")`` does nothing unless the environment variable
``MPPAGENT_FAILPOINT`` names that point, in which case the process kills
itself with SIGKILL on the spot -- no cleanup, no flush, exactly like a power
cut or an OOM kill. The crash-matrix tests use it to prove that after a
restart nothing is lost or paid twice. Points:

``open.recorded``     the signed open transaction is in the store, not yet sent
``open.sent``         the server accepted the open, the agent has not confirmed it
``voucher.recorded``  a voucher is in the store, not yet delivered
``voucher.sent``      the server accepted a voucher, its receipt not yet recorded
``topup.recorded``    a signed topUp transaction is in the store, not yet sent
``topup.sent``        the server accepted a topUp, the agent has not confirmed it
``close.recorded``    the close voucher is in the store, not yet sent
``close.sent``        the server closed the channel, the agent has not verified it
"""

from __future__ import annotations

import os
import signal

__all__ = ["POINTS", "hit"]

POINTS = (
    "open.recorded",
    "open.sent",
    "voucher.recorded",
    "voucher.sent",
    "topup.recorded",
    "topup.sent",
    "close.recorded",
    "close.sent",
)

_ARMED = os.environ.get("MPPAGENT_FAILPOINT", "")


def hit(name: str) -> None:
    """SIGKILL this process if ``MPPAGENT_FAILPOINT`` names ``name``."""
    if _ARMED and name == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
