"""The ``mppagent`` command line: parsing, dispatch, and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from mppagent.cli.output import EXIT, Output, exit_code_for
from mppagent.errors import ConfigError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace, Output], Coroutine[Any, Any, int]]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors with exit code 2 through our own channel."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to document the CLI)."""
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    common.add_argument("--config", help="TOML config file (default: platform config dir)")
    common.add_argument("--rpc-url", help="chain JSON-RPC URL (env MPPAGENT_RPC_URL)")
    common.add_argument("--store", help="channel store file (env MPPAGENT_STORE)")
    common.add_argument("--keystore", help="encrypted key file (env MPPAGENT_KEYSTORE)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more logging")

    parser = _Parser(
        prog="mppagent",
        description="Pay for metered HTTP services (LLM tokens) with MPP payment channels.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", parents=[common], help="a complete paid session, all local")
    demo.add_argument("prompt", nargs="?", default="Explain payment channels to a robot.")
    demo.add_argument("--tokens", type=int, default=400, help="completion length")
    demo.add_argument("--rate", type=float, default=250.0, help="tokens per second (0: max)")
    demo.add_argument("--model", default="mpp-fake-thinking")

    chat = sub.add_parser("chat", parents=[common], help="stream a paid chat completion")
    chat.add_argument("prompt", nargs="?", help="the prompt (default: read stdin)")
    chat.add_argument("--provider", help="a provider profile (see `mppagent providers`)")
    chat.add_argument("--base-url", help="OpenAI-compatible base URL, e.g. http://host/v1")
    chat.add_argument("--model", "-m", help="model name")
    chat.add_argument("--system", help="a system message")
    chat.add_argument("--image", action="append", default=[], help="image file or URL")
    chat.add_argument("--video", action="append", default=[], help="video URL")
    chat.add_argument("--param", action="append", default=[], help="vendor field key=JSON")
    chat.add_argument("--max-tokens", type=int, help="completion token limit")
    chat.add_argument("--no-stream", action="store_true", help="one non-streaming response")

    request = sub.add_parser("request", parents=[common], help="any paid HTTP request")
    request.add_argument("method")
    request.add_argument("url")
    request.add_argument("--data", "-d", help="request body, or @file")
    request.add_argument("--header", "-H", action="append", default=[], help="'Name: value'")

    channels = sub.add_parser("channels", parents=[common], help="inspect and close channels")
    channels_sub = channels.add_subparsers(dest="action", required=True, parser_class=_Parser)
    channels_sub.add_parser("list", parents=[common], help="all channels of this wallet")
    for name, text in (
        ("show", "one channel in detail"),
        ("close", "cooperative close (the server settles and refunds)"),
        ("request-close", "start a forced close on chain"),
        ("withdraw", "finish a forced close after the grace period"),
    ):
        action = channels_sub.add_parser(name, parents=[common], help=text)
        action.add_argument("channel_id")
    channels_sub.add_parser("sync", parents=[common], help="reconcile with the chain")

    serve = sub.add_parser("serve", parents=[common], help="run the reference paid server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8402)
    serve.add_argument("--escrow", help="escrow address (with --rpc-url)")
    serve.add_argument("--token", help="token address (with --rpc-url)")
    serve.add_argument(
        "--payee-key-env",
        default="MPPAGENT_PAYEE_KEY",
        help="env var holding the payee key (with --rpc-url)",
    )
    serve.add_argument("--price", type=int, default=25, help="base units per token")
    serve.add_argument("--suggested-deposit", type=int, default=1_000_000)
    serve.add_argument("--lookahead", type=int, default=100, help="tokens paid ahead")
    serve.add_argument("--min-voucher-delta", type=int)
    serve.add_argument("--voucher-timeout", type=float, default=60.0)
    serve.add_argument("--rate", type=float, default=0.0, help="tokens per second (0: max)")
    serve.add_argument("--auth", choices=["mpp", "bearer", "either"], default="mpp")
    serve.add_argument("--api-key", action="append", default=[], help="accepted Bearer key")
    serve.add_argument("--fault", action="append", default=[], help="inject a named fault")
    serve.add_argument("--test-mode", action="store_true", help="allow X-Mpp-Fault headers")
    serve.add_argument("--state", help="SQLite file for the server's books")

    devnet = sub.add_parser(
        "devnet", parents=[common], help="run anvil with the contracts deployed"
    )
    devnet.add_argument("--chain", choices=["evm", "tempo"], default="evm", help="anvil mode")
    sub.add_parser("providers", parents=[common], help="list provider profiles")
    return parser


def _handlers() -> dict[str, Handler]:
    from mppagent.cli import channels, chat, demo, serve

    return {
        "demo": demo.run,
        "chat": chat.run_chat,
        "request": chat.run_request,
        "channels": channels.run,
        "serve": serve.run_serve,
        "devnet": serve.run_devnet,
        "providers": chat.run_providers,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mppagent`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in args_list
    # SIGTERM ends a command like Ctrl-C does: tasks are cancelled and every
    # `finally` runs, so anvil, servers and leases are cleaned up, not orphaned.
    signal.signal(signal.SIGTERM, _terminate)
    output = Output(json_mode=json_mode)
    try:
        args = build_parser().parse_args(args_list)
        _configure_logging(args)
        handler = _handlers()[args.command]
        return asyncio.run(handler(args, output))
    except KeyboardInterrupt:
        output.say("mppagent: interrupted")
        return 130
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except Exception as exc:
        code = exit_code_for(exc)
        output.error(exc, code)
        return code if code != 1 else EXIT["usage"] if isinstance(exc, ValueError) else 1


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _configure_logging(args: argparse.Namespace) -> None:
    from mppagent.logging import configure

    level = {0: "WARNING", 1: "INFO"}.get(args.verbose, "DEBUG")
    configure(level=level, json=bool(args.json))
