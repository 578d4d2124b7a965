"""``mppagent chat``, ``mppagent request`` and ``mppagent providers``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx

from mppagent.agent import Agent
from mppagent.cli.common import agent_from, settings_from
from mppagent.cli.config import Settings
from mppagent.cli.display import StreamDisplay, payment_observer
from mppagent.cli.output import Output, format_units
from mppagent.errors import ConfigError, NetworkError
from mppagent.llm.chat import build_chat_request, parse_chunk, parse_completion, parse_param
from mppagent.llm.errors import ProviderError, retry_delay, retryable
from mppagent.llm.providers import ProviderProfile, load_profiles
from mppagent.transport.paying import PaymentEvent
from mppagent.transport.sse import SSEParser

__all__ = ["run_chat", "run_providers", "run_request"]

MAX_RETRIES = 3


def _profile(settings: Settings, name: str | None) -> ProviderProfile | None:
    profiles = load_profiles(settings.providers)
    if name is None:
        return None
    if name not in profiles:
        known = ", ".join(sorted(profiles))
        raise ConfigError(f"unknown provider {name!r}; known providers: {known}")
    return profiles[name]


def _prompt(args: argparse.Namespace) -> str:
    if args.prompt:
        return str(args.prompt)
    if sys.stdin.isatty():
        raise ConfigError("no prompt: pass one as an argument or pipe it on stdin")
    text = sys.stdin.read().strip()
    if not text:
        raise ConfigError("the prompt read from stdin is empty")
    return text


async def run_chat(args: argparse.Namespace, out: Output) -> int:
    """Stream a (paid) chat completion to stdout, status on stderr."""
    settings = settings_from(args)
    profile = _profile(settings, args.provider or settings.provider)
    base_url = args.base_url or (profile.base_url if profile else None)
    if not base_url:
        raise ConfigError("no endpoint: pass --base-url or --provider")
    model = args.model or (profile.default_model if profile else None)
    if not model:
        raise ConfigError("no model: pass --model (this provider has no default)")
    params = dict(parse_param(p) for p in args.param)
    stream = not args.no_stream and (profile.stream_default if profile else True)
    body = build_chat_request(
        model=model,
        prompt=_prompt(args),
        system=args.system,
        images=args.image,
        videos=args.video,
        params=params,
        profile=profile,
        stream=stream,
        max_tokens=args.max_tokens,
    )
    url = base_url.rstrip("/") + "/chat/completions"
    headers = profile.request_headers() if profile else {}
    display = None if out.json_mode else StreamDisplay()
    payments: list[PaymentEvent] = []
    observe = payment_observer(out, display, payments)

    paying = not (profile and profile.auth == "bearer")
    agent = agent_from(settings, observer=observe) if paying else None
    http = agent.http if agent else httpx.AsyncClient(timeout=60)
    tokens = 0
    try:
        if agent is not None:
            await agent.start()
        for attempt in range(MAX_RETRIES + 1):
            signed_before = _signed_total(agent)
            async with http.stream("POST", url, json=body, headers=headers) as response:
                if response.status_code >= 400:
                    content = await response.aread()
                    safe = _signed_total(agent) == signed_before
                    if retryable(response.status_code) and safe and attempt < MAX_RETRIES:
                        await asyncio.sleep(retry_delay(response, attempt))
                        continue
                    raise ProviderError.from_response(response.status_code, content, profile)
                tokens = await _render(response, stream, display, out)
            break
    finally:
        if agent is not None:
            await agent.aclose()
        else:
            await http.aclose()
    final = [p for p in payments if p.kind in ("final_receipt", "receipt")]
    spent = max((p.amount for p in final), default=0)
    channel = next((p.channel_id for p in reversed(payments) if p.channel_id), "")
    out.emit(
        "summary",
        tokens=tokens,
        spent=spent,
        channelId=channel or None,
        vouchers=sum(1 for p in payments if p.kind == "voucher"),
    )
    return 0


async def _render(
    response: httpx.Response, stream: bool, display: StreamDisplay | None, out: Output
) -> int:
    tokens = 0
    if not stream or not response.headers.get("content-type", "").startswith("text/event-stream"):
        whole = parse_completion(await response.aread())
        if display is not None:
            with display:
                display.text(whole.content, whole.reasoning)
        out.emit("delta", content=whole.content, reasoning=whole.reasoning)
        completion = (whole.usage or {}).get("completion_tokens")
        return completion if isinstance(completion, int) else 0
    parser = SSEParser()

    async def chunks() -> Any:
        async for chunk in response.aiter_bytes():
            for event in parser.feed(chunk):
                yield event

    with display if display is not None else _Null():
        async for event in chunks():
            delta = parse_chunk(event.data)
            if delta is None or not (delta.content or delta.reasoning):
                continue
            tokens += 1
            if display is not None:
                display.count_token()
                display.text(delta.content, delta.reasoning)
            out.emit("delta", content=delta.content, reasoning=delta.reasoning)
    return tokens


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _signed_total(agent: Agent | None) -> int:
    if agent is None:
        return 0
    return sum(r.signed for r in agent.channels.list())


async def run_request(args: argparse.Namespace, out: Output) -> int:
    """Any paid HTTP request, curl-like; SSE bodies are streamed as they arrive."""
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
                content = await asyncio.to_thread(Path(args.data[1:]).read_bytes)
            except OSError as exc:
                raise ConfigError(f"cannot read {args.data[1:]}: {exc.strerror}") from None
        else:
            content = args.data.encode()

    def observe(event: PaymentEvent) -> None:
        out.emit("payment", kind=event.kind, channelId=event.channel_id, amount=event.amount)
        if event.kind in ("open", "voucher", "top_up", "final_receipt"):
            out.say(f"[payment] {event.kind} {format_units(event.amount)}")

    method = args.method.upper()
    async with (
        agent_from(settings, observer=observe) as agent,
        agent.http.stream(method, args.url, content=content, headers=headers) as response,
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
    out.emit("summary", status=status)
    if status >= 400:
        raise NetworkError(f"{method} {args.url} answered {status}")
    return 0


async def run_providers(args: argparse.Namespace, out: Output) -> int:
    """List built-in and configured provider profiles."""
    settings = settings_from(args)
    for name, profile in sorted(load_profiles(settings.providers).items()):
        out.emit(
            "provider",
            name=name,
            baseUrl=profile.base_url,
            auth=profile.auth,
            defaultModel=profile.default_model,
            description=profile.description,
        )
        out.result(
            f"{name:<16} {profile.auth:<7} {profile.base_url:<40} {profile.default_model or '-'}"
        )
    return 0
