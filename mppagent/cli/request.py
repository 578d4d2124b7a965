"""``mppagent request``: any paid HTTP request, curl-like."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mppagent.cli.common import agent_from, connection_error, run_async, settings_from
from mppagent.cli.config import Settings
from mppagent.cli.output import Output, format_units
from mppagent.errors import ConfigError, NetworkError

if TYPE_CHECKING:
    from mppagent.transport.paying import PaymentEvent

__all__ = ["run_request"]


def run_request(args: argparse.Namespace, out: Output) -> int:
    """Any paid HTTP request; SSE bodies are streamed as they arrive."""
    settings = settings_from(args)
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"bad header {item!r}: use 'Name: value'")
        headers[name.strip()] = value.strip()
    content: bytes | None = None
    if args.data is not None:
        if args.data.startswith("@"):
            try:
                content = Path(args.data[1:]).read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {args.data[1:]}: {exc.strerror}") from None
        else:
            content = args.data.encode()
    settings.private_key()
    settings.require_rpc()
    method = args.method.upper()
    return run_async(args, lambda: _request(settings, out, method, args.url, content, headers))


async def _request(
    settings: Settings,
    out: Output,
    method: str,
    url: str,
    content: bytes | None,
    headers: dict[str, str],
) -> int:
    import httpx

    from mppagent.transport.sse import SSEParser

    def observe(event: PaymentEvent) -> None:
        with contextlib.suppress(BrokenPipeError):  # `out` remembers; the main flow stops
            out.emit("payment", kind=event.kind, channelId=event.channel_id, amount=event.amount)
        if event.kind in ("open", "voucher", "top_up", "final_receipt"):
            out.say(f"[payment] {event.kind} {format_units(event.amount)}")

    try:
        async with (
            agent_from(settings, observer=observe) as agent,
            agent.http.stream(method, url, content=content, headers=headers) as response,
        ):
            out.emit(
                "response",
                status=response.status_code,
                contentType=response.headers.get("content-type"),
            )
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                parser = SSEParser()
                async for chunk in response.aiter_bytes():
                    for event in parser.feed(chunk):
                        if out.json_mode:
                            out.emit("event", event=event.event, data=event.data)
                        else:
                            sys.stdout.buffer.write(event.raw)
                            sys.stdout.flush()
            else:
                body = await response.aread()
                if out.json_mode:
                    out.emit("body", text=body.decode("utf-8", errors="replace"))
                else:
                    sys.stdout.buffer.write(body)
                    sys.stdout.flush()
            status = response.status_code
    except httpx.TransportError as exc:
        raise NetworkError(connection_error(url, exc)) from None
    out.emit("summary", status=status)
    if status >= 400:
        raise NetworkError(f"{method} {url} answered {status}")
    return 0
