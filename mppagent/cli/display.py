"""Showing a paid stream to a person: the text, the reasoning apart, and a live status line.

When stdout is a terminal, a ``rich`` live view renders, in the order they
happened, every payment event, the reasoning (dim) and the answer, with a
one-line status under them (tokens, this request's cost, the channel's total,
rate, channel, deposit left); the whole transcript stays on screen at the end.
When stdout is redirected the answer goes there as plain text, token by token,
and payment events and the status go to stderr -- above a live status line if
stderr is a terminal, as plain lines if not.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from mppagent.cli.output import Output, format_units

if TYPE_CHECKING:
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    from mppagent.transport.paying import PaymentEvent

__all__ = ["RequestCost", "StreamDisplay", "payment_observer"]

_STYLE = {"event": "cyan", "reasoning": "dim italic", "answer": ""}


class RequestCost:
    """What one request cost, as opposed to the channel's running total.

    During a stream the cost is estimated from the tokens delivered times the
    challenge's unit price; the final receipt replaces the estimate with what
    the server billed (``detail["billed"]``, or the receipt's ``spent`` minus
    the channel's ``spent`` before the request, for responses without one).
    """

    def __init__(self, spent_before: dict[str, int] | None = None, *, stream: bool = True) -> None:
        self.spent_before = dict(spent_before or {})
        self.stream = stream
        self.price = 0
        self.billed: int | None = None
        self.channel = ""
        self.channel_spent = 0

    def observe(self, event: PaymentEvent) -> None:
        """Take one payment event."""
        if event.kind == "challenge":
            self.price = event.amount
        elif event.kind in ("receipt", "final_receipt"):
            self.channel = event.channel_id or self.channel
            self.channel_spent = max(self.channel_spent, event.amount)
            if self.stream and event.kind == "receipt":
                return  # a stream's opening receipt: nothing billed yet
            billed = event.detail.get("billed")
            if isinstance(billed, int):
                self.billed = billed
            else:
                self.billed = event.amount - self.spent_before.get(event.channel_id, 0)

    def cost(self, tokens: int) -> int:
        """The billed amount once known, else ``tokens x price``."""
        return self.billed if self.billed is not None else tokens * self.price


class StreamDisplay:
    """Collects answer text, reasoning and payment events; renders them in order."""

    def __init__(
        self,
        *,
        symbol: str = "tUSD",
        out: TextIO | None = None,
        err: TextIO | None = None,
        show_events: bool = True,
        cost: RequestCost | None = None,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.symbol = symbol
        self.show_events = show_events
        self.cost = cost or RequestCost()
        # The transcript: (kind, text) in arrival order; kind is event/reasoning/answer.
        self.segments: list[tuple[str, str]] = []
        self.tokens = 0
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

    @property
    def answer(self) -> str:
        """All answer text so far."""
        return "".join(text for kind, text in self.segments if kind == "answer")

    @property
    def reasoning(self) -> str:
        """All reasoning text so far."""
        return "".join(text for kind, text in self.segments if kind == "reasoning")

    @property
    def events(self) -> list[str]:
        """Every payment event line, in order."""
        return [text for kind, text in self.segments if kind == "event"]

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> StreamDisplay:
        # rich only for a terminal: piped output (agents calling the CLI in a loop)
        # does not pay for importing it.
        if self._stdout_tty or self._stderr_tty:
            from rich.console import Console
            from rich.live import Live
        if self._stdout_tty:
            self._live = Live(
                self._render(),
                console=Console(file=self.out),
                refresh_per_second=12,
                transient=False,
                vertical_overflow="visible",
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
            self._append("reasoning", reasoning)
            if not self._stdout_tty:
                # Plain output: the reasoning goes to stderr, apart from the answer.
                if not self._reasoning_open:
                    self._plain("[reasoning] ")
                    self._reasoning_open = True
                self.err.write(reasoning)
                self.err.flush()
        if content:
            self._append("answer", content)
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
        self.cost.observe(event)
        units = f"{self.symbol}"
        if event.kind == "challenge":
            price = f"{event.amount} base units"  # the token is named once a channel is taken
            self._event(f"402 payment required: {price} per unit")
        elif event.kind == "open":
            self.channel, self.deposit = event.channel_id, event.amount
            self._event(
                f"opened channel {_short(event.channel_id)} with deposit "
                f"{format_units(event.amount)} {units}"
            )
        elif event.kind == "reuse":
            self.channel, self.deposit = event.channel_id, event.amount
            self.signed = max(self.signed, int(event.detail.get("signed", 0)))
            self._event(
                f"reusing channel {_short(event.channel_id)} (deposit "
                f"{format_units(event.amount)} {units})"
            )
        elif event.kind == "voucher":
            self.channel = self.channel or event.channel_id
            self.signed = max(self.signed, event.amount)
            how = "paid ahead" if event.detail.get("proactive") else "on demand"
            self._event(
                f"voucher ({how}): cumulative {format_units(event.amount)} "
                f"{units}, accepted in {event.seconds * 1000:.1f} ms"
            )
        elif event.kind == "top_up":
            self.deposit = int(event.detail.get("deposit", self.deposit + event.amount))
            self._event(f"topped up {format_units(event.amount)} {units}")
        elif event.kind == "unverified":
            self._event(
                f"warning: the server sent no receipt; what it billed on channel "
                f"{_short(event.channel_id)} is unverified (no paying ahead on it until a "
                "receipt verifies it)"
            )
        elif event.kind in ("receipt", "final_receipt"):
            self.channel = self.channel or event.channel_id
            under = int(event.detail.get("under_billed") or 0)
            if under:
                self._event(f"the server billed {format_units(under)} {units} less than it could")
            if event.kind == "final_receipt":
                self._event(
                    f"final receipt verified: {event.detail.get('units')} units, this request "
                    f"{format_units(self.cost.cost(self.tokens))} {units}, channel spent "
                    f"{format_units(event.amount)} {units}"
                )
        self._refresh()

    def count_token(self) -> None:
        """One more token delivered."""
        self.tokens += 1

    # -- rendering ---------------------------------------------------------------------------

    def _append(self, kind: str, text: str) -> None:
        if self.segments and self.segments[-1][0] == kind and kind != "event":
            self.segments[-1] = (kind, self.segments[-1][1] + text)
        else:
            self.segments.append((kind, text))

    def _event(self, line: str) -> None:
        if not self.show_events:
            return
        self._append("event", line)
        if self._stdout_tty:
            return  # part of the live transcript
        if self._live is not None:
            from rich.text import Text

            self._live.console.print(Text(f"[payment] {line}", style="cyan"))
        else:
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
        from rich.console import Group
        from rich.text import Text

        parts: list[Text] = []
        for kind, text in self.segments:
            shown = f"· {text}" if kind == "event" else text
            parts.append(Text(shown, style=_STYLE[kind]))
        parts.append(self._status_text())
        return Group(*parts)

    def _status_text(self) -> Text:
        from rich.text import Text

        return Text(self._status_line(), style="bold")

    def _status_line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        left = self.deposit - self.signed if self.deposit else 0
        spent = max(self.cost.channel_spent, 0)
        return (
            f"tokens {self.tokens} · this request {format_units(self.cost.cost(self.tokens))} "
            f"{self.symbol} · channel spent {format_units(spent)} {self.symbol} · "
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
        # A closed stdout (`| head`) is remembered by `out`: the command stops at its
        # next write instead of the transport logging the error of a callback.
        with contextlib.suppress(BrokenPipeError):
            out.emit(
                "payment",
                kind=event.kind,
                channelId=event.channel_id,
                amount=event.amount,
                seconds=round(event.seconds, 6),
            )

    return observe
