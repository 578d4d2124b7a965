"""``mppagent serve`` (the reference paid server) and ``mppagent devnet`` (a local chain)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex

from pydantic import SecretStr

from mppagent.cli.common import settings_from
from mppagent.cli.output import Output
from mppagent.devchain import DevChain
from mppagent.devserver import DevServerConfig, RunningServer, parse_faults
from mppagent.errors import ConfigError

__all__ = ["run_devnet", "run_serve"]


async def _forever() -> None:
    await asyncio.Event().wait()


async def run_devnet(args: argparse.Namespace, out: Output) -> int:
    """Start anvil with the contracts deployed, print the environment, wait for Ctrl-C."""
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
        out.say("Ctrl-C to stop")
        await _forever()
    finally:
        await chain.stop()
    return 0


async def run_serve(args: argparse.Namespace, out: Output) -> int:
    """Run the reference server in the foreground, on a fresh devchain unless --rpc-url."""
    try:
        faults = parse_faults(",".join(args.fault))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    chain: DevChain | None = None
    settings = settings_from(args)
    if settings.rpc_url and (args.escrow or args.token):
        if not (args.escrow and args.token):
            raise ConfigError("--escrow and --token go together")
        payee_key = os.environ.get(args.payee_key_env)
        if not payee_key:
            raise ConfigError(f"set {args.payee_key_env} to the payee's private key")
        rpc_url, escrow, token = settings.rpc_url, args.escrow, args.token
    else:
        chain = await DevChain.start(accounts=2)
        payee = chain.accounts[0]
        rpc_url, escrow, token, payee_key = (
            chain.rpc_url,
            chain.escrow,
            chain.token,
            payee.private_key,
        )
    try:
        config = DevServerConfig(
            rpc_url=rpc_url,
            escrow=escrow,
            token=token,
            payee_private_key=SecretStr(payee_key),
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
            state_path=args.state or ":memory:",
        )
        async with RunningServer(config, host=args.host, port=args.port) as server:
            base = f"{server.url}/v1"
            out.emit(
                "serve",
                baseUrl=base,
                rpcUrl=rpc_url,
                escrow=escrow,
                token=token,
                price=args.price,
                auth=args.auth,
            )
            out.say(
                f"reference MPP server on {base} (auth {args.auth}, "
                f"{args.price} base units per token)"
            )
            if chain is not None:
                env = chain.env(chain.accounts[1])
                out.say("a paying wallet on this devchain (dev keys only):")
                for key, value in env.items():
                    out.say(f"  export {key}={shlex.quote(value)}")
                out.say(f"  mppagent chat --base-url {base} 'Hello'")
            out.say("Ctrl-C to stop")
            await _forever()
    finally:
        if chain is not None:
            await chain.stop()
    return 0
