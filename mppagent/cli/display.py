"""Showing a paid stream to a person: the text, the reasoning apart, and a live status line.

When stdout is a terminal, a ``rich`` live view renders payment events, the
reasoning (dim), the answer and a one-line status (tokens, spent, rate,
channel, deposit left), and leaves the answer on screen at the end. When
stdout is redirected the answer goes there as plain text, token by token, and
the status goes to stderr -- live if stderr is a terminal, as plain lines if not.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from mppagent.cli.output import Output, format_units
from mppagent.transport.paying import PaymentEvent

__all__ = ["StreamDisplay", "payment_observer"]


class StreamDisplay:
    """Collects answer text, reasoning and payment events; renders them as they come."""

    def __init__(
        self,
        *,
        symbol: str = "tUSD",
        out: TextIO | None = None,
        err: TextIO | None = None,
        show_events: bool = True,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.symbol = symbol
        self.show_events = show_events
        self.answer = ""
        self.reasoning = ""
        self.events: list[str] = []
        self.tokens = 0
        self.spent = 0
        self.channel = ""
        self.deposit = 0
        self.signed = 0
        self.started = time.monotonic()
        self._live: Live | None = None
        self._plain_status_at = time.monotonic()
        self._mid_line = False  # plain mode: the answer's last line is still open
        self._reasoning_open = False
        self._stdout_tty = self.out.isatty()
        self._stderr_tty = self.err.isatty()

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> StreamDisplay:
        if self._stdout_tty:
            self._live = Live(
                self._render(),
                console=Console(file=self.out),
                refresh_per_second=12,
                transient=False,
            )
        elif self._stderr_tty:
            self._live = Live(
                self._status_text(),
                console=Console(file=self.err),
                refresh_per_second=8,
                transient=True,
            )
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._render() if self._stdout_tty else self._status_text())
            self._live.__exit__(None, None, None)
        if not self._stdout_tty and self.answer and not self.answer.endswith("\n"):
            self.out.write("\n")
            self.out.flush()
            self._mid_line = False
        if not self._stderr_tty or not self._live:
            self._plain(self._status_line() + "\n")

    # -- input -------------------------------------------------------------------------------

    def text(self, content: str | None, reasoning: str | None) -> None:
        """Append streamed answer and reasoning text."""
        if reasoning:
            self.reasoning += reasoning
            if self._live is None or not self._stdout_tty:
                # Plain output: the reasoning goes to stderr, apart from the answer.
                if not self._reasoning_open:
                    self._plain("[reasoning] ")
                    self._reasoning_open = True
                self.err.write(reasoning)
                self.err.flush()
        if content:
            self.answer += content
            if not self._stdout_tty:
                if self._reasoning_open:
                    self.err.write("\n")
                    self._reasoning_open = False
                self.out.write(content)
                self.out.flush()
                self._mid_line = not content.endswith("\n")
        self._refresh()

    def payment(self, event: PaymentEvent) -> None:
        """Take a payment event from the transport's observer."""
        if event.kind == "challenge":
            self._event(
                f"402 payment required: {format_units(event.amount)} {self.symbol} per unit"
            )
        elif event.kind == "open":
            self.channel, self.deposit = event.channel_id, event.amount
            self._event(
                f"opened channel {_short(event.channel_id)} with deposit "
                f"{format_units(event.amount)} {self.symbol}"
            )
        elif event.kind == "reuse":
            self.channel, self.deposit = event.channel_id, event.amount
            self.signed = max(self.signed, int(event.detail.get("signed", 0)))
            self._event(
                f"reusing channel {_short(event.channel_id)} (deposit "
                f"{format_units(event.amount)} {self.symbol})"
            )
        elif event.kind == "voucher":
            self.channel = self.channel or event.channel_id
            self.signed = max(self.signed, event.amount)
            how = "paid ahead" if event.detail.get("proactive") else "on demand"
            self._event(
                f"voucher ({how}): cumulative {format_units(event.amount)} "
                f"{self.symbol}, accepted in {event.seconds * 1000:.1f} ms"
            )
        elif event.kind == "top_up":
            self.deposit = int(event.detail.get("deposit", self.deposit + event.amount))
            self._event(f"topped up {format_units(event.amount)} {self.symbol}")
        elif event.kind in ("receipt", "final_receipt"):
            self.channel = self.channel or event.channel_id
            self.spent = max(self.spent, event.amount)
            if event.kind == "final_receipt":
                self._event(
                    f"final receipt verified: {event.detail.get('units')} units, spent "
                    f"{format_units(event.amount)} {self.symbol}"
                )
        self._refresh()

    def count_token(self) -> None:
        """One more token delivered."""
        self.tokens += 1

    # -- rendering ---------------------------------------------------------------------------

    def _event(self, line: str) -> None:
        if not self.show_events:
            return
        self.events.append(line)
        if (self._live is None or not self._stdout_tty) and not self._stderr_tty:
            self._plain(f"[payment] {line}\n")

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render() if self._stdout_tty else self._status_text())
        elif time.monotonic() - self._plain_status_at > 2.0:
            self._plain_status_at = time.monotonic()
            self._plain(self._status_line() + "\n")

    def _plain(self, text: str) -> None:
        """A stderr line that starts on a line of its own, even mid-answer."""
        if self._mid_line or self._reasoning_open:
            text = "\n" + text
            self._mid_line = self._reasoning_open = False
        self.err.write(text)
        self.err.flush()

    def _render(self) -> Group:
        parts: list[Text] = [Text(f"· {e}", style="cyan") for e in self.events[-8:]]
        if self.reasoning:
            parts.append(Text(self.reasoning, style="dim italic"))
        parts.append(Text(self.answer))
        parts.append(self._status_text())
        return Group(*parts)

    def _status_text(self) -> Text:
        return Text(self._status_line(), style="bold")

    def _status_line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        left = self.deposit - self.signed if self.deposit else 0
        return (
            f"tokens {self.tokens} · spent {format_units(self.spent)} {self.symbol} · "
            f"{self.tokens / elapsed:.0f} tok/s · channel {_short(self.channel) or '-'} · "
            f"deposit left {format_units(max(left, 0))} {self.symbol}"
        )


def _short(value: str) -> str:
    return f"{value[:8]}…{value[-4:]}" if len(value) > 14 else value


def payment_observer(
    out: Output, display: StreamDisplay | None, sink: list[PaymentEvent]
) -> Callable[[PaymentEvent], None]:
    """The transport observer the CLI uses: keep, show, and (in JSON mode) emit each event."""

    def observe(event: PaymentEvent) -> None:
        sink.append(event)
        if display is not None:
            display.payment(event)
        out.emit(
            "payment",
            kind=event.kind,
            channelId=event.channel_id,
            amount=event.amount,
            seconds=round(event.seconds, 6),
        )

    return observe
