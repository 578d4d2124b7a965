"""The ``mppagent`` command line: parsing, dispatch, and exit codes.

Start-up time matters: agents call this command in loops. This module and
everything it imports at load time use the standard library only (no web3,
httpx, pydantic, structlog or asyncio); each command imports what it needs
when it runs, so ``--help``, ``--version``, ``providers`` and configuration
errors finish in a few interpreter start-ups (``benchmarks/startup.py``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence

from mppagent.cli.output import EXIT, Output, exit_code_for
from mppagent.errors import ConfigError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace, Output], int]

# command -> (module under mppagent.cli, function); imported only when the command runs.
_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run"),
    "chat": ("chat", "run_chat"),
    "request": ("request", "run_request"),
    "channels": ("channels", "run"),
    "serve": ("serve", "run_serve"),
    "devnet": ("serve", "run_devnet"),
    "providers": ("providers", "run_providers"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors with exit code 2 through our own channel."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message} (see {self.prog} --help)")


def _common_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options every command takes, accepted before or after the subcommand.

    On subcommands their defaults are suppressed, so a value given before the
    subcommand is not overwritten by the subcommand's default.
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="one JSON object per line on stdout (amounts in base units)",
    )
    parser.add_argument(
        "--config",
        default=default(None),
        help="TOML config file (env MPPAGENT_CONFIG; default: the platform's config dir)",
    )
    parser.add_argument(
        "--rpc-url", default=default(None), help="chain JSON-RPC URL (env MPPAGENT_RPC_URL)"
    )
    parser.add_argument(
        "--store", default=default(None), help="channel store file (env MPPAGENT_STORE)"
    )
    parser.add_argument(
        "--keystore",
        default=default(None),
        help="encrypted eth-account key file (env MPPAGENT_KEYSTORE)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default(0),
        help="more logging on stderr (-v info, -vv debug)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to document the CLI)."""
    from mppagent import __version__

    common = _Parser(add_help=False)
    _common_options(common, suppress=True)

    parser = _Parser(
        prog="mppagent",
        description="Pay for metered HTTP services (LLM tokens) with MPP payment channels.",
        epilog="Exit codes: 0 ok, 2 usage or configuration, 3 refused by the spending policy, "
        "4 server misbehaved, 5 payment rejected by the server, 6 network, 7 chain, "
        "130 interrupted, 141 output pipe closed.",
    )
    parser.add_argument(
        "--version", action="version", version=f"mppagent {__version__}", help="print the version"
    )
    _common_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = sub.add_parser("demo", parents=[common], help="a complete paid session, all local")
    demo.add_argument(
        "prompt",
        nargs="?",
        default="Explain payment channels to a robot.",
        help="what to ask the fake model",
    )
    demo.add_argument("--tokens", type=int, default=400, help="completion length (default 400)")
    demo.add_argument(
        "--rate", type=float, default=250.0, help="tokens per second (0: as fast as possible)"
    )
    demo.add_argument(
        "--model", default="mpp-fake-thinking", help="fake model name (default mpp-fake-thinking)"
    )
    _chain_option(demo)
    demo.add_argument(
        "--session-protocol",
        choices=["v2", "v1"],
        default=None,
        help="session protocol: v2 (the TIP-1034 channel reserve; default on the Tempo chain) "
        "or v1 (the TempoStreamChannel escrow; the only one on --chain evm)",
    )

    chat = sub.add_parser("chat", parents=[common], help="stream a paid chat completion")
    chat.add_argument("prompt", nargs="?", help="the prompt (default: read stdin)")
    chat.add_argument("--provider", help="a provider profile (see `mppagent providers`)")
    chat.add_argument("--base-url", help="OpenAI-compatible base URL, e.g. http://host/v1")
    chat.add_argument("--model", "-m", help="model name (default: the provider's)")
    chat.add_argument("--system", help="a system message")
    chat.add_argument("--image", action="append", default=[], help="image file or URL (repeatable)")
    chat.add_argument("--video", action="append", default=[], help="video URL (repeatable)")
    chat.add_argument(
        "--param", action="append", default=[], help="vendor body field key=JSON (repeatable)"
    )
    chat.add_argument("--max-tokens", type=int, help="completion token limit")
    chat.add_argument("--no-stream", action="store_true", help="one non-streaming response")

    request = sub.add_parser("request", parents=[common], help="any paid HTTP request")
    request.add_argument("method", help="HTTP method, e.g. POST")
    request.add_argument("url", help="the URL to request")
    request.add_argument("--data", "-d", help="request body, or @file to read it from a file")
    request.add_argument(
        "--header", "-H", action="append", default=[], help="'Name: value' (repeatable)"
    )

    channels = sub.add_parser("channels", parents=[common], help="inspect and close channels")
    channels_sub = channels.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    channels_sub.add_parser(
        "list", parents=[common], help="the channels in the store (no key needed)"
    )
    for name, text in (
        ("show", "one channel in detail (no key needed)"),
        ("close", "cooperative close (the server settles and refunds)"),
        ("request-close", "start a forced close on chain"),
        ("withdraw", "finish a forced close after the grace period"),
    ):
        action = channels_sub.add_parser(name, parents=[common], help=text)
        action.add_argument("channel_id", help="channel id, or any unique prefix of it")
    channels_sub.add_parser("sync", parents=[common], help="reconcile the store with the chain")

    serve = sub.add_parser("serve", parents=[common], help="run the reference paid server")
    _serve_options(serve)

    devnet = sub.add_parser(
        "devnet", parents=[common], help="run anvil with the contracts deployed"
    )
    _chain_option(devnet)
    sub.add_parser("providers", parents=[common], help="list provider profiles")
    return parser


def _chain_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chain",
        choices=["tempo", "evm"],
        default="tempo",
        help="local chain mode: tempo (anvil T4, pathUSD, 0x76 transactions; default) or "
        "evm (plain anvil, test token)",
    )


def _serve_options(serve: argparse.ArgumentParser) -> None:
    _chain_option(serve)
    serve.add_argument(
        "--session-protocol",
        choices=["v2", "v1"],
        default="v2",
        help="session protocol to serve: v2 (the TIP-1034 channel reserve, as today's providers; "
        "default; needs a Tempo chain) or v1 (the TempoStreamChannel escrow)",
    )
    serve.add_argument(
        "--sponsor-fees",
        action="store_true",
        help="offer fee sponsorship (feePayer): co-sign payers' Tempo open/topUp and pay the fee",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8402, help="port to listen on (8402)")
    serve.add_argument(
        "--devnet",
        action="store_true",
        help="run on a private fresh devchain, ignoring MPPAGENT_RPC_URL/ESCROW/TOKEN",
    )
    serve.add_argument("--escrow", help="v1 escrow address (env MPPAGENT_ESCROW)")
    serve.add_argument("--token", help="token address (env MPPAGENT_TOKEN)")
    serve.add_argument(
        "--payee-key-env",
        default="MPPAGENT_PAYEE_KEY",
        help="env var holding the payee's private key (default MPPAGENT_PAYEE_KEY)",
    )
    serve.add_argument("--price", type=int, default=25, help="base units per token (25)")
    serve.add_argument(
        "--suggested-deposit",
        type=int,
        default=1_000_000,
        help="deposit the challenge suggests, base units (1000000)",
    )
    serve.add_argument(
        "--lookahead", type=int, default=100, help="tokens a voucher demand asks ahead (100)"
    )
    serve.add_argument("--min-voucher-delta", type=int, help="smallest voucher increase accepted")
    serve.add_argument(
        "--voucher-timeout",
        type=float,
        default=60.0,
        help="seconds a paused stream waits for a voucher (60)",
    )
    serve.add_argument(
        "--rate", type=float, default=0.0, help="tokens per second (0: as fast as possible)"
    )
    serve.add_argument(
        "--auth",
        choices=["mpp", "bearer", "either"],
        default="mpp",
        help="how clients authenticate (mpp)",
    )
    serve.add_argument(
        "--api-key", action="append", default=[], help="accepted Bearer key (repeatable)"
    )
    serve.add_argument(
        "--fault", action="append", default=[], help="inject a named fault (repeatable)"
    )
    serve.add_argument("--test-mode", action="store_true", help="allow X-Mpp-Fault headers")
    serve.add_argument(
        "--state",
        help="SQLite file for the server's books (default: under the platform's state dir; "
        "':memory:' keeps nothing)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="info (default): one line per request; warning: quiet",
    )


def _without_httpx_command_line() -> None:
    """Keep httpx from importing its own command-line client (click, pygments, rich's extras).

    ``import httpx`` tries ``httpx._main`` and falls back to a stub on
    ``ImportError``; a ``None`` entry in ``sys.modules`` makes it take that branch.
    This process is the mppagent command, which never runs httpx's; skipping it
    saves ~40 ms of every paying command's start (``benchmarks/startup.py``).
    """
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mppagent`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in args_list
    # SIGTERM ends a command like Ctrl-C does: tasks are cancelled and every
    # `finally` runs, so anvil, servers and leases are cleaned up, not orphaned.
    signal.signal(signal.SIGTERM, _terminate)
    output = Output(json_mode=json_mode)
    try:
        parser = build_parser()
        if not args_list:
            parser.print_help()
            return 0
        args = parser.parse_args(args_list)
        if args.command is None:
            raise ConfigError("mppagent: no command given (see mppagent --help)")
        module, function = _COMMANDS[args.command]
        _without_httpx_command_line()
        handler: Handler = getattr(importlib.import_module(f"mppagent.cli.{module}"), function)
        return handler(args, output)
    except KeyboardInterrupt:
        output.say("mppagent: interrupted")
        return EXIT["interrupted"]
    except BrokenPipeError:
        return _pipe_closed()
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:
        code = exit_code_for(exc)
        try:
            output.error(exc, code)
        except BrokenPipeError:
            return _pipe_closed()
        return code


def _pipe_closed() -> int:
    """The reader of our output went away (``| head``): stop quietly.

    stdout is pointed at /dev/null so the interpreter's final flush does not
    print a second BrokenPipeError on the way out.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT["pipe"]


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
