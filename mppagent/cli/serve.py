"""``mppagent serve`` (the reference paid server) and ``mppagent devnet`` (a local chain).

They fit together as the README shows, in three terminals: ``mppagent devnet``
prints ``export MPPAGENT_...`` lines; ``serve`` run with those in its
environment serves on that chain (``MPPAGENT_RPC_URL``, ``MPPAGENT_ESCROW``,
``MPPAGENT_TOKEN``, ``MPPAGENT_PAYEE_KEY``); and ``chat --provider local``
with the same exports pays it. Without a chain in the environment (or with
``--devnet``) ``serve`` starts a private devchain of its own.

The server keeps its books (what each channel has accepted and spent) in a
SQLite file, so a restart does not break the channels clients hold: under the
platform's state dir, named after the escrow, unless ``--state`` says
otherwise (``:memory:`` keeps nothing). On a private devchain, which dies with
the server, the books go to a temporary file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mppagent.cli.common import run_async, settings_from
from mppagent.cli.config import validate_private_key
from mppagent.cli.output import Output
from mppagent.errors import ConfigError

if TYPE_CHECKING:
    from mppagent.devchain import DevChain
    from mppagent.devserver import DevServerConfig

__all__ = ["run_devnet", "run_serve", "state_dir"]

DEFAULT_BASE = "http://127.0.0.1:8402/v1"  # the `local` provider profile's base URL


@dataclass(frozen=True)
class _Chain:
    """The chain a server runs on, from flags or the environment ``devnet`` printed."""

    rpc_url: str
    escrow: str | None  # the v1 escrow; v2 needs none (the reserve's address is canonical)
    token: str
    payee_key: str


def state_dir() -> Path:
    """Where ``serve`` keeps its books by default (the platform's user state dir)."""
    import platformdirs

    return Path(platformdirs.user_state_dir("mppagent"))


def _external_chain(args: argparse.Namespace) -> _Chain | None:
    """The chain named by flags or ``MPPAGENT_*`` variables; ``None`` for a private one."""
    if args.devnet:
        return None
    env = os.environ
    escrow = args.escrow or env.get("MPPAGENT_ESCROW")
    token = args.token or env.get("MPPAGENT_TOKEN")
    if not (escrow or token):
        return None
    rpc_url = settings_from(args).rpc_url
    missing = [
        name
        for name, value in (
            ("--rpc-url or MPPAGENT_RPC_URL", rpc_url),
            ("--escrow or MPPAGENT_ESCROW", escrow or args.session_protocol == "v2"),
            ("--token or MPPAGENT_TOKEN", token),
            (args.payee_key_env, env.get(args.payee_key_env)),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"serving on an existing chain needs {', '.join(missing)} as well "
            "(the `export` lines `mppagent devnet` prints set them all); "
            "or pass --devnet for a private chain"
        )
    assert rpc_url
    assert token
    payee_key = validate_private_key(env[args.payee_key_env], args.payee_key_env)
    return _Chain(rpc_url, escrow, token, payee_key)


def run_serve(args: argparse.Namespace, out: Output) -> int:
    """Run the reference server in the foreground until Ctrl-C."""
    from mppagent.devserver.faults import parse_faults

    try:
        faults = parse_faults(",".join(args.fault))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    external = _external_chain(args)
    if args.session_protocol == "v2" and external is None and args.chain != "tempo":
        raise ConfigError(
            "session protocol v2 needs a Tempo chain (its channel reserve); "
            "use --chain tempo or --session-protocol v1"
        )
    if args.state and args.state != ":memory:":
        Path(args.state).expanduser().parent.mkdir(parents=True, exist_ok=True)

    from mppagent.devserver.server import bind

    sock = bind(args.host, args.port)  # a busy port fails now, not after the chain started

    async def serve() -> int:
        from pydantic import SecretStr

        from mppagent.devchain import DevChain
        from mppagent.devserver import DevServerConfig, RunningServer

        chain: DevChain | None = None
        if external is None:
            out.say("starting a private devchain (anvil) for this server ...")
            chain = await DevChain.start(accounts=2, network=args.chain)
            on = _Chain(chain.rpc_url, chain.escrow, chain.token, chain.accounts[0].private_key)
        else:
            on = external
        try:
            with _books(args.state, on, private=chain is not None) as state_path:
                config = DevServerConfig(
                    rpc_url=on.rpc_url,
                    escrow=on.escrow,
                    token=on.token,
                    payee_private_key=SecretStr(on.payee_key),
                    price_per_token=args.price,
                    suggested_deposit=args.suggested_deposit,
                    lookahead_tokens=args.lookahead,
                    min_voucher_delta=args.min_voucher_delta,
                    voucher_timeout=args.voucher_timeout,
                    tokens_per_second=args.rate or None,
                    auth_mode=args.auth,
                    api_keys=tuple(SecretStr(k) for k in args.api_key),
                    faults=faults,
                    test_mode=args.test_mode,
                    state_path=state_path,
                    sponsor_fees=args.sponsor_fees,
                    fee_token=chain.fee_token if chain else os.environ.get("MPPAGENT_FEE_TOKEN"),
                    session_protocol=args.session_protocol,
                )
                await _check_contract(config)
                async with RunningServer(config, host=args.host, sock=sock) as server:
                    _announce(out, args, f"{server.url}/v1", on, chain, state_path, config.contract)
                    await _forever()
        finally:
            sock.close()
            if chain is not None:
                await chain.stop()
        return 0

    return run_async(args, serve, level=args.log_level.upper())


async def _check_contract(config: DevServerConfig) -> None:
    """Fail now, not on the first request, if the chain lacks the protocol's contract."""
    from mppagent.devserver.app import check_contract
    from mppagent.tempo.chain import ChainClient

    chain = ChainClient(config.rpc_url)
    try:
        await check_contract(config, chain)
    finally:
        await chain.close()


@contextlib.contextmanager
def _books(explicit: str | None, on: _Chain, *, private: bool) -> Iterator[str]:
    """The server's state file: ``--state``, a temporary one, or the state dir's."""
    if explicit:
        yield explicit if explicit == ":memory:" else str(Path(explicit).expanduser())
        return
    if private:
        with tempfile.TemporaryDirectory(prefix="mppagent-serve-") as tmp:
            yield str(Path(tmp) / "server.db")
        return
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    yield str(directory / f"server-{(on.escrow or 'v2').lower()}.db")


def _announce(
    out: Output,
    args: argparse.Namespace,
    base: str,
    on: _Chain,
    chain: DevChain | None,
    state_path: str,
    contract: str,
) -> None:
    wallet = chain.env(chain.accounts[1]) if chain is not None else None
    out.emit(
        "serve",
        baseUrl=base,
        rpcUrl=on.rpc_url,
        escrow=contract,
        sessionProtocol=args.session_protocol,
        token=on.token,
        price=args.price,
        auth=args.auth,
        state=state_path,
        wallet=wallet,  # a paying wallet's environment, on a private devchain only
    )
    out.say(f"reference MPP server on {base} (auth {args.auth}, {args.price} base units per token)")
    out.say(
        f"  chain {on.rpc_url}, session {args.session_protocol} via {contract}, token {on.token}"
    )
    out.say(f"  books in {state_path}")
    if wallet is not None:
        out.say("a paying wallet on this private devchain (dev keys only):")
        for key, value in wallet.items():
            out.say(f"  export {key}={shlex.quote(value)}")
    else:
        out.say("pay it from a shell with the same `mppagent devnet` exports:")
    suggestion = "mppagent chat --provider local"
    if base != DEFAULT_BASE:
        suggestion += f" --base-url {base}"
    out.say(f"  {suggestion} 'Hello'")
    out.say("Ctrl-C to stop")


async def _forever() -> None:
    import asyncio

    await asyncio.Event().wait()


def run_devnet(args: argparse.Namespace, out: Output) -> int:
    """Start anvil with the contracts deployed, print the environment, wait for Ctrl-C."""

    async def devnet() -> int:
        from mppagent.devchain import DevChain

        chain = await DevChain.start(accounts=2, network=args.chain)
        try:
            payee, payer = chain.accounts
            env = chain.env(payer)
            env["MPPAGENT_PAYEE_KEY"] = payee.private_key
            out.emit("devnet", **env, payee=payee.address, payer=payer.address, **chain.describe())
            out.say(
                f"anvil {chain.rpc_url} (chain {chain.chain_id}); escrow {chain.escrow}; "
                f"token {chain.token}"
            )
            out.say("# dev-chain accounts only: these keys guard nothing of value")
            for key, value in env.items():
                out.result(f"export {key}={shlex.quote(value)}")
            out.say(
                "paste these into two more shells, then: `mppagent serve` in one, "
                "`mppagent chat --provider local 'Hello'` in the other"
            )
            out.say("Ctrl-C to stop")
            sys.stdout.flush()
            await _forever()
        finally:
            await chain.stop()
        return 0

    return run_async(args, devnet)
