"""The root of mppagent's exception tree.

Every error mppagent raises on purpose is an :class:`MppagentError`, and the
branch it sits on tells the caller what kind of trouble it is and what to do
about it (the CLI maps branches to stable exit codes):

* :class:`PaymentError` -- about the Payment authentication scheme itself:
  something a peer sent could not be decoded (:class:`ProtocolError`), or the
  server answered with an RFC 9457 problem (``mppagent.protocol.ProblemError``).
* :class:`PolicyViolation` -- the owner's spending policy refused a payment;
  nothing was signed for it.
* :class:`ServerMisbehaviour` -- the server asked for, or reported, something
  inconsistent with what was delivered; paying stopped.
* :class:`ChainError` -- the chain refused or could not be reached.
* :class:`NetworkError` -- HTTP failed after retries.
* :class:`StoreError` -- the local channel store could not be used.
* :class:`ConfigError` -- the configuration or a command line is wrong.

Messages never contain secrets: private keys, signatures, signed transactions
and credentials stay out of ``str()`` and ``repr()`` of every error.
"""

from __future__ import annotations

__all__ = [
    "ChainError",
    "ConfigError",
    "MppagentError",
    "NetworkError",
    "PaymentError",
    "PolicyViolation",
    "ProtocolError",
    "ServerMisbehaviour",
    "StoreError",
]


class MppagentError(Exception):
    """Base class of every error mppagent raises deliberately."""


class PaymentError(MppagentError):
    """Base of everything about the Payment scheme: decoding failures and server problems."""


class ProtocolError(PaymentError):
    """Something received from a peer (header, credential, receipt, event) is malformed.

    Raised by the pure parsers in :mod:`mppagent.protocol`; hostile input of any
    shape ends here rather than in an unhandled exception.
    """


class PolicyViolation(MppagentError):
    """The local spending policy refused a payment. Nothing was signed for it.

    ``rule`` names the policy rule (for example ``max_price`` or
    ``budget_per_request``) so callers and logs can tell which limit hit.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message

    def __reduce__(self) -> tuple[type[PolicyViolation], tuple[str, str]]:
        return (type(self), (self.rule, self.message))


class ServerMisbehaviour(MppagentError):
    """The server's demands or receipts contradict what was delivered or agreed.

    Paying stops at once; the evidence is kept in the channel store.
    ``check`` names the invariant that failed.
    """

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message

    def __reduce__(self) -> tuple[type[ServerMisbehaviour], tuple[str, str]]:
        return (type(self), (self.check, self.message))


class ChainError(MppagentError):
    """A chain operation failed: unreachable RPC, a revert, a dropped transaction."""


class NetworkError(MppagentError):
    """An HTTP exchange failed after the allowed retries."""


class StoreError(MppagentError):
    """The durable channel store could not be read or written."""


class ConfigError(MppagentError):
    """Configuration, keys or command-line arguments are unusable."""
