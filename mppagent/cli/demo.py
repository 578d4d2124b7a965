"""``mppagent demo``: a complete paid LLM session on this machine, start to settlement.

Starts anvil -- by default in Tempo mode (T4), where the session currency and
the fee token are pathUSD, the session protocol is v2 (the TIP-1034 channel
reserve; ``--session-protocol v1`` for the v1 escrow) and the channel is opened
with one ``0x76`` transaction; ``--chain evm`` for plain anvil, the test token
tUSD and v1 -- funds a demo wallet, runs the reference server on loopback,
streams a paid chat completion through the whole path (402 → open → need-voucher
rounds → final receipt), closes the channel cooperatively and prints the
settlement as the chain records it. Everything it started is stopped again, also
on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
from pathlib import Path
from typing import Literal

from mppagent.agent import Agent
from mppagent.cli.common import run_async
from mppagent.cli.display import StreamDisplay, payment_observer
from mppagent.cli.output import Output, format_units
from mppagent.devchain import DevChain
from mppagent.devserver import DevServerConfig, RunningServer
from mppagent.errors import ConfigError
from mppagent.llm.chat import build_chat_request, parse_chunk
from mppagent.session.policy import SpendPolicy
from mppagent.session.store import SqliteChannelStore
from mppagent.tempo.escrow import Token
from mppagent.transport.paying import PaymentEvent

__all__ = ["run"]

PRICE = 25
_FEE_BOUND = 100_000  # 0.1 pathUSD: a few Tempo transactions cost far less on the devchain


def run(args: argparse.Namespace, out: Output) -> int:
    """Run the demo; returns the exit code."""
    return run_async(args, lambda: _demo(args, out))


def _protocol(args: argparse.Namespace, network: str) -> Literal["v1", "v2"]:
    """v2 (the reserve) on the Tempo devchain unless asked; a plain EVM one has only v1."""
    chosen: Literal["v1", "v2"] | None = args.session_protocol
    if chosen == "v2" and network != "tempo":
        raise ConfigError("session protocol v2 needs the Tempo chain's reserve: drop --chain evm")
    return chosen or ("v2" if network == "tempo" else "v1")


async def _demo(args: argparse.Namespace, out: Output) -> int:
    _protocol(args, args.chain)  # refuse v2 on plain anvil before starting anything
    out.say("mppagent demo: a paid LLM session, entirely on this machine")
    with tempfile.TemporaryDirectory(prefix="mppagent-demo-") as tmp:
        chain = await DevChain.start(accounts=2, network=args.chain)
        try:
            return await _session(args, out, chain, Path(tmp))
        finally:
            await chain.stop()
            out.say("stopped the local chain and server")


async def _session(args: argparse.Namespace, out: Output, chain: DevChain, tmp: Path) -> int:
    payee = chain.accounts[0]
    config = DevServerConfig(
        rpc_url=chain.rpc_url,
        escrow=chain.escrow,
        token=chain.token,
        payee_private_key=payee.private_key,
        price_per_token=PRICE,
        suggested_deposit=1_000_000,
        lookahead_tokens=100,
        tokens_per_second=args.rate or None,
        state_path=str(tmp / "server.db"),
        fee_token=chain.fee_token,
        session_protocol=_protocol(args, chain.network),
    )
    client = chain.client()
    try:
        return await _paid_session(args, out, chain, tmp, config, Token(client, chain.token))
    finally:
        await client.close()


async def _paid_session(
    args: argparse.Namespace,
    out: Output,
    chain: DevChain,
    tmp: Path,
    config: DevServerConfig,
    token: Token,
) -> int:
    payee, payer = chain.accounts
    unit = "pathUSD" if chain.network == "tempo" else "tUSD"
    async with RunningServer(config) as server:
        url = f"{server.url}/v1/chat/completions"
        out.say(f"  chain   anvil at {chain.rpc_url} (chain {chain.chain_id})")
        kind = "TIP-1034 channel reserve" if config.session_protocol == "v2" else "v1 escrow"
        out.say(f"  session {config.session_protocol}: {kind} at {config.contract}")
        out.say(f"          token {unit} {chain.token}")
        if chain.fee_token is not None:
            out.say(f"          Tempo mode: 0x76 transactions, fees paid in {unit}")
        out.say(f"  server  {url}, {PRICE} base units ({format_units(PRICE)} {unit}) per token")
        payer_start, payee_start = (
            await token.balance_of(payer.address),
            await token.balance_of(payee.address),
        )
        out.say(f"  wallet  {payer.address} holding {format_units(payer_start)} {unit}")
        out.emit(
            "setup",
            rpcUrl=chain.rpc_url,
            escrow=config.contract,
            sessionProtocol=config.session_protocol,
            token=chain.token,
            url=url,
            payer=payer.address,
            payee=payee.address,
            price=PRICE,
        )
        out.say(f"\n> {args.prompt}\n")

        display = None if out.json_mode else StreamDisplay(symbol=unit)
        events: list[PaymentEvent] = []
        observe = payment_observer(out, display, events)

        body = build_chat_request(
            model=args.model, prompt=args.prompt, stream=True, max_tokens=args.tokens
        )
        store = SqliteChannelStore(tmp / "channels.db")
        async with Agent(
            private_key=payer.private_key,
            rpc_url=chain.rpc_url,
            policy=SpendPolicy(max_price={"llm_token": 50}, max_deposit=5_000_000),
            store=store,
            observer=observe,
        ) as agent:
            with display if display is not None else contextlib.nullcontext():
                async for event in agent.stream("POST", url, json=body):
                    delta = parse_chunk(event.data)
                    if delta is None or not (delta.content or delta.reasoning):
                        continue
                    if display is not None:
                        display.count_token()
                        display.text(delta.content, delta.reasoning)
                    out.emit("delta", content=delta.content, reasoning=delta.reasoning)
            (record,) = agent.channels.list()
            out.say(f"\nclosing channel {record.channel_id} cooperatively ...")
            result = await agent.channels.close(record.channel_id)

        payer_end, payee_end = (
            await token.balance_of(payer.address),
            await token.balance_of(payee.address),
        )
    # On Tempo the currency is also the fee token: balances move by fees as well.
    payer_fees = payer_start - payer_end - result.paid
    payee_fees = result.paid - (payee_end - payee_start)
    final = [e for e in events if e.kind == "final_receipt"]
    tokens = int(final[-1].detail.get("units") or 0) if final else 0
    stalls = [e.seconds * 1000 for e in events if e.kind == "voucher"]
    out.emit(
        "summary",
        channelId=result.channel_id,
        deposit=result.deposit,
        paid=result.paid,
        refunded=result.refunded,
        tokens=tokens,
        price=PRICE,
        closeTx=result.tx_hash,
        payerBalanceBefore=payer_start,
        payerBalanceAfter=payer_end,
        payeeBalanceBefore=payee_start,
        payeeBalanceAfter=payee_end,
        vouchers=len(stalls),
        unit=unit,
        payerFees=payer_fees,
        payeeFees=payee_fees,
    )
    lines = [
        "",
        "settlement, as recorded on chain:",
        f"  deposit            {format_units(result.deposit):>12} {unit}",
        f"  paid to payee      {format_units(result.paid):>12} {unit}  "
        f"({tokens} tokens x {format_units(PRICE)})",
        f"  refunded to payer  {format_units(result.refunded):>12} {unit}",
        f"  payer balance      {format_units(payer_start)} -> {format_units(payer_end)} {unit}",
        f"  payee balance      {format_units(payee_start)} -> {format_units(payee_end)} {unit}",
        f"  vouchers signed    {len(stalls)}"
        + (f" (need-voucher stall p50 {statistics.median(stalls):.1f} ms)" if stalls else ""),
        f"  close transaction  {result.tx_hash}",
    ]
    if chain.fee_token is not None:
        lines.insert(
            -2,
            f"  fees in {unit}     payer {format_units(payer_fees)}, "
            f"payee {format_units(payee_fees)} (the rest of each balance change)",
        )
    for line in lines:
        out.say(line)
    # Fees are zero on a plain chain (gas in ETH) and small, never negative, on Tempo.
    fee_bound = 0 if chain.fee_token is None else _FEE_BOUND
    consistent = (
        0 <= payer_fees <= fee_bound
        and 0 <= payee_fees <= fee_bound
        and result.paid == tokens * PRICE
    )
    out.say("  ledger, receipts and chain agree" if consistent else "  MISMATCH between books")
    return 0 if consistent else 4
