"""``mppagent chat``: a (paid) chat completion, streamed to stdout, status on stderr.

Everything that can be wrong with the command line or the configuration is
checked first, synchronously; the HTTP and chain stack is imported afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mppagent.cli.common import agent_from, connection_error, run_async, settings_from
from mppagent.cli.config import Settings
from mppagent.cli.output import Output
from mppagent.cli.providers import profile_named
from mppagent.errors import ConfigError, NetworkError

if TYPE_CHECKING:
    import httpx

    from mppagent.agent import Agent
    from mppagent.cli.display import RequestCost, StreamDisplay
    from mppagent.llm.providers import ProviderProfile

__all__ = ["run_chat"]

MAX_RETRIES = 3


@dataclass
class _Plan:
    """A chat request, fully resolved before any network or chain code is loaded."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str]
    stream: bool
    paying: bool
    profile: ProviderProfile | None


def _prompt(args: argparse.Namespace) -> str:
    if args.prompt:
        return str(args.prompt)
    if sys.stdin.isatty():
        raise ConfigError("no prompt: pass one as an argument or pipe it on stdin")
    text = sys.stdin.read().strip()
    if not text:
        raise ConfigError("the prompt read from stdin is empty")
    return text


def _plan(args: argparse.Namespace, settings: Settings) -> _Plan:
    profile = profile_named(settings, args.provider or settings.provider)
    base_url = args.base_url or (profile.base_url if profile else None)
    if not base_url:
        raise ConfigError("no endpoint: pass --base-url or --provider (see mppagent providers)")
    model = args.model or (profile.default_model if profile else None)
    if not model:
        raise ConfigError("no model: pass --model (or --provider for its default model)")
    paying = not (profile and profile.auth == "bearer")
    if paying:  # fail on a missing key or RPC before the prompt is read or the stack loaded
        settings.private_key()
        settings.require_rpc()
    prompt = _prompt(args)
    from mppagent.llm.chat import build_chat_request, parse_param

    params = dict(parse_param(p) for p in args.param)
    stream = not args.no_stream and (profile.stream_default if profile else True)
    body = build_chat_request(
        model=model,
        prompt=prompt,
        system=args.system,
        images=args.image,
        videos=args.video,
        params=params,
        profile=profile,
        stream=stream,
        max_tokens=args.max_tokens,
    )
    headers = profile.request_headers() if profile else {}
    url = base_url.rstrip("/") + "/chat/completions"
    return _Plan(url, body, headers, stream, paying, profile)


def run_chat(args: argparse.Namespace, out: Output) -> int:
    """Stream a (paid) chat completion to stdout, status on stderr."""
    settings = settings_from(args)
    plan = _plan(args, settings)
    return run_async(args, lambda: _chat(plan, settings, out))


async def _chat(plan: _Plan, settings: Settings, out: Output) -> int:
    import asyncio

    import httpx

    from mppagent.cli.display import RequestCost, StreamDisplay, payment_observer
    from mppagent.llm.errors import ProviderError, retry_delay, retryable
    from mppagent.transport.paying import PaymentEvent

    payments: list[PaymentEvent] = []
    cost = RequestCost(stream=plan.stream)
    display = None if out.json_mode else StreamDisplay(cost=cost)
    show = payment_observer(out, display, payments)

    def observe(event: PaymentEvent) -> None:
        if display is None:
            cost.observe(event)
        elif event.kind in ("open", "reuse") and agent is not None:
            display.symbol = _symbol(settings, agent, event.channel_id)
        show(event)

    meter = plan.profile.meter_spec() if plan.profile else None
    agent = (
        agent_from(settings, observer=observe, meter=meter, only_url=plan.url)
        if plan.paying
        else None
    )
    http = agent.http if agent else httpx.AsyncClient(timeout=60)
    tokens = 0
    try:
        if agent is not None:
            await agent.start()
            cost.spent_before = {r.channel_id: r.spent for r in agent.channels.list()}
        for attempt in range(MAX_RETRIES + 1):
            signed_before = _signed_total(agent)
            try:
                async with http.stream(
                    "POST", plan.url, json=plan.body, headers=plan.headers
                ) as response:
                    if response.status_code >= 400:
                        content = await response.aread()
                        safe = _signed_total(agent) == signed_before
                        if retryable(response.status_code) and safe and attempt < MAX_RETRIES:
                            await asyncio.sleep(retry_delay(response, attempt))
                            continue
                        raise ProviderError.from_response(
                            response.status_code, content, plan.profile
                        )
                    tokens = await _render(response, plan.stream, display, out, cost)
            except httpx.TransportError as exc:
                raise NetworkError(connection_error(plan.url, exc)) from None
            break
    finally:
        if agent is not None:
            await agent.aclose()
        else:
            await http.aclose()
    out.emit(
        "summary",
        tokens=tokens,
        cost=cost.cost(tokens),
        channelSpent=cost.channel_spent,
        channelId=cost.channel or None,
        vouchers=sum(1 for p in payments if p.kind == "voucher"),
    )
    return 0


async def _render(
    response: httpx.Response,
    stream: bool,
    display: StreamDisplay | None,
    out: Output,
    cost: RequestCost,
) -> int:
    from mppagent.llm.chat import parse_chunk, parse_completion
    from mppagent.transport.sse import SSEParser

    tokens = 0
    if not stream or not response.headers.get("content-type", "").startswith("text/event-stream"):
        whole = parse_completion(await response.aread())
        completion = (whole.usage or {}).get("completion_tokens")
        if isinstance(completion, int):
            tokens = completion
        elif cost.price and cost.billed:
            tokens = cost.billed // cost.price  # the server billed per token
        if display is not None:
            display.tokens = tokens
            with display:
                display.text(whole.content, whole.reasoning)
        out.emit("delta", content=whole.content, reasoning=whole.reasoning)
        return tokens
    parser = SSEParser()

    async def chunks() -> Any:
        async for chunk in response.aiter_bytes():
            for event in parser.feed(chunk):
                yield event

    with display if display is not None else contextlib.nullcontext():
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


def _symbol(settings: Settings, agent: Agent, channel_id: str) -> str:
    """The symbol of the token a channel is in (looked up once, when it is taken)."""
    from mppagent.cli.tokens import token_symbols

    token = agent.channels.get(channel_id).scope.token
    return token_symbols(settings.rpc_url, [token])[token]


def _signed_total(agent: Agent | None) -> int:
    if agent is None:
        return 0
    return sum(r.signed for r in agent.channels.list())
