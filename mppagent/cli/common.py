"""Pieces shared by the CLI commands: settings, the agent they build, running async work.

Heavy modules (the agent, web3, httpx, structlog, asyncio) are imported inside
the functions that need them, so a command that fails on its configuration
fails before paying for those imports.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mppagent.cli.config import Settings, load_settings

if TYPE_CHECKING:
    import httpx

    from mppagent.agent import Agent
    from mppagent.llm.meters import MeterSpec
    from mppagent.session.store import SqliteChannelStore
    from mppagent.transport.paying import Observer

__all__ = [
    "agent_from",
    "configure_logging",
    "connection_error",
    "open_store",
    "run_async",
    "settings_from",
]


def settings_from(args: argparse.Namespace) -> Settings:
    """Resolve settings for this invocation (flags > environment > config file)."""
    return load_settings(
        config=getattr(args, "config", None),
        rpc_url=getattr(args, "rpc_url", None),
        store=getattr(args, "store", None),
        keystore=getattr(args, "keystore", None),
        provider=getattr(args, "provider", None),
    )


def open_store(settings: Settings) -> SqliteChannelStore:
    """The channel store these settings name (default: the platform's data dir)."""
    from mppagent.session.store import SqliteChannelStore

    if settings.store_path:
        return SqliteChannelStore(settings.store_path)
    return SqliteChannelStore.default()


def agent_from(
    settings: Settings,
    *,
    observer: Observer | None = None,
    meter: MeterSpec | None = None,
    only_url: str | None = None,
) -> Agent:
    """The paying agent described by ``settings``.

    The key and the RPC URL are checked before anything heavy is imported.
    ``only_url``: the one URL this agent will request (``chat``), see
    :func:`_transport_for`.
    """
    private_key = settings.private_key()
    rpc_url = settings.require_rpc()
    policy = settings.policy
    from mppagent.agent import Agent

    return Agent(
        private_key=private_key,
        rpc_url=rpc_url,
        policy=policy,
        store=open_store(settings),
        observer=observer,
        meter=meter,
        transport=_transport_for(only_url),
    )


def _transport_for(url: str | None) -> httpx.AsyncBaseTransport | None:
    """An HTTP transport without the CA bundle when the agent talks to plain http only.

    Loading the bundle takes tens of milliseconds (over 100 on a busy machine) of
    a ``chat``'s start-up, and plain http has no certificate to check. The
    context has no trusted roots, so a TLS connection (say a redirect to https,
    were one followed) fails verification rather than going unchecked. ``None``
    (the agent's default pool, verifying) for https or an unknown URL.
    """
    if url is None or not url.lower().startswith("http://"):
        return None
    import ssl

    import httpx

    from mppagent.transport.paying import KEEPALIVE

    return httpx.AsyncHTTPTransport(
        verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=KEEPALIVE),
    )


def configure_logging(args: argparse.Namespace, level: str | None = None) -> None:
    """Set up logging for a command that does real work (this imports structlog)."""
    from mppagent.logging import configure

    chosen = level or {0: "WARNING", 1: "INFO"}.get(getattr(args, "verbose", 0), "DEBUG")
    configure(level=chosen, json=bool(getattr(args, "json", False)))


def run_async(
    args: argparse.Namespace, work: Callable[[], Awaitable[int]], *, level: str | None = None
) -> int:
    """Run a command's asynchronous part: logging set up, then ``asyncio.run``.

    SIGTERM cancels the command's task, as Ctrl-C does (asyncio's own SIGINT
    handling): every ``finally`` runs inside the loop, so servers shut down in
    order instead of having their tasks torn away (and tracebacks printed).
    Either way the command ends with :class:`KeyboardInterrupt` (exit 130).
    """
    import asyncio
    import signal

    configure_logging(args, level)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await work()

    previous = signal.getsignal(signal.SIGTERM)
    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def connection_error(url: str, exc: BaseException) -> str:
    """``cannot reach <url>: <cause>`` -- the thing concerned and why, in one line."""
    cause = str(exc) or type(exc).__name__
    return f"cannot reach {url}: {cause} ({type(exc).__name__})"
