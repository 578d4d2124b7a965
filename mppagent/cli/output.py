"""What the CLI prints: human text or JSON lines, stable exit codes, amounts for people.

Exit codes (documented in the README, never renumbered):

=== =========================================================================
0  success
2  usage or configuration error (bad flags, missing key, unreadable config)
3  refused by the local spending policy (nothing was signed)
4  the server misbehaved (receipt or voucher demand inconsistent with delivery)
5  payment rejected by the server (an RFC 9457 payment problem)
6  network or upstream failure after retries (including HTTP errors)
7  chain failure (RPC unreachable, transaction reverted)
130 interrupted (Ctrl-C or SIGTERM); what was started is stopped first
141 the reader of the output went away (e.g. ``| head``); nothing is printed
=== =========================================================================
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any, TextIO

from mppagent.errors import (
    ChainError,
    ConfigError,
    MppagentError,
    NetworkError,
    PaymentError,
    PolicyViolation,
    ProtocolError,
    ServerMisbehaviour,
    StoreError,
)

__all__ = ["EXIT", "Output", "exit_code_for", "format_units"]

EXIT = {
    "ok": 0,
    "usage": 2,
    "policy": 3,
    "misbehaviour": 4,
    "rejected": 5,
    "network": 6,
    "chain": 7,
    "interrupted": 130,
    "pipe": 141,
}


def exit_code_for(exc: BaseException) -> int:
    """Map an exception onto the documented exit codes."""
    if isinstance(exc, ConfigError | StoreError):
        return EXIT["usage"]
    if isinstance(exc, PolicyViolation):
        return EXIT["policy"]
    if isinstance(exc, ServerMisbehaviour):
        return EXIT["misbehaviour"]
    if isinstance(exc, ChainError):
        return EXIT["chain"]
    if isinstance(exc, ProtocolError | NetworkError | OSError) or _is_http_error(exc):
        return EXIT["network"]
    if isinstance(exc, PaymentError):
        return EXIT["rejected"]
    return 1


def _is_http_error(exc: BaseException) -> bool:
    # httpx is imported only by commands that talk HTTP; if it is not loaded,
    # nothing raised can be one of its errors (and start-up stays fast).
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(exc, httpx.HTTPError)


def format_units(amount: int, decimals: int = 6) -> str:
    """Base units as a decimal string for people (``1234567`` -> ``1.234567``)."""
    return f"{Decimal(amount).scaleb(-decimals):.{decimals}f}"


class Output:
    """Writes results either for people (text) or for programs (one JSON object per line)."""

    def __init__(self, *, json_mode: bool, out: TextIO | None = None, err: TextIO | None = None):
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.closed = False  # the reader of stdout went away

    def _write(self, text: str) -> None:
        """Write to stdout; once the reader has gone, every write raises BrokenPipeError.

        The first failure is remembered, so a write attempted from a callback
        whose errors are swallowed (a payment observer) still ends the command
        at its next write from the main flow.
        """
        if self.closed:
            raise BrokenPipeError("stdout is closed")
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            self.closed = True
            raise

    def emit(self, record_type: str, /, **fields: Any) -> None:
        """A JSON line on stdout (JSON mode only); integers become decimal strings."""
        if self.json_mode:
            record = {"type": record_type, **{k: _wire(v) for k, v in fields.items()}}
            self._write(json.dumps(record, separators=(",", ":")) + "\n")

    def say(self, text: str) -> None:
        """A human line on stderr (text mode only): progress and payments, not results."""
        if not self.json_mode:
            self.err.write(text + "\n")
            self.err.flush()

    def result(self, text: str) -> None:
        """A human line on stdout (text mode only): the command's result."""
        if not self.json_mode:
            self._write(text + "\n")

    def error(self, exc: BaseException, code: int) -> None:
        """Report a failure: one clear line (text) or an ``error`` object (JSON)."""
        name = type(exc).__name__
        message = str(exc) or name
        if self.json_mode:
            extra: dict[str, Any] = {}
            for attr in ("rule", "check", "status", "type"):
                value = getattr(exc, attr, None)
                if isinstance(value, str | int):
                    extra[attr] = value
            self.emit("error", code=code, error=name, message=message, **extra)
        else:
            label = "error" if isinstance(exc, MppagentError) else "unexpected error"
            self.err.write(f"mppagent: {label}: {message} [{name}, exit {code}]\n")
            self.err.flush()


def _wire(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    return value
