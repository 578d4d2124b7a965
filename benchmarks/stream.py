"""Paid vs unpaid streaming throughput, and the need-voucher stall.

One devserver process (auth ``either``) serves the same completion two ways
in the same run: unpaid with a Bearer key, read with plain httpx + httpx-sse,
and paid through :class:`mppagent.Agent`, which answers a need-voucher every
``interval`` tokens. Prints tokens/s for both, their ratio (goal >= 0.9 at an
interval of 100), and the stall from need-voucher event to accepted voucher
(p50/p99; goal p50 <= 5 ms on loopback).

    .venv/bin/python benchmarks/stream.py [--tokens 20000] [--runs 3] [--intervals 10,100,1000]
        [--chain evm|tempo] [--protocols v1,v2] [--sdk]

``--chain tempo`` runs on anvil in Tempo mode (T4): pathUSD is the currency,
the channel is opened with one ``0x76`` (outside the timing, as on ``evm``).
``--protocols`` runs the server in each session protocol in turn (v2, the default
on Tempo, needs the Tempo chain's reserve; plain anvil speaks v1). ``--sdk`` adds,
against the same v2 server and in the same run, the reference SDK's own client
(mppx's session manager, ``tests/interop/node/sdk_v2_client.mjs`` with its wire
recorder off): its per-request time from inside Node, the channel opened by a
first request outside the timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import API_KEY, devserver, machine, percentile

from mppagent import Agent, PaymentEvent, SpendPolicy, SqliteChannelStore
from mppagent.devchain import DevChain


def body(tokens: int) -> dict[str, object]:
    return {
        "model": "mpp-fake-1",
        "messages": [{"role": "user", "content": "benchmark"}],
        "stream": True,
        "max_tokens": tokens,
    }


async def unpaid(url: str, tokens: int) -> float:
    """Seconds to read ``tokens`` tokens unpaid (Bearer) with httpx + httpx-sse."""
    async with httpx.AsyncClient(timeout=120) as client:
        start = time.perf_counter()
        seen = 0
        headers = {"authorization": f"Bearer {API_KEY}"}
        async with aconnect_sse(client, "POST", url, json=body(tokens), headers=headers) as sse:
            async for event in sse.aiter_sse():
                if event.data and event.data != "[DONE]":
                    seen += 1
        elapsed = time.perf_counter() - start
    assert seen >= tokens, seen
    return elapsed


async def paid(agent: Agent, url: str, tokens: int) -> float:
    """Seconds to read ``tokens`` tokens through the paying agent."""
    start = time.perf_counter()
    seen = 0
    async for event in agent.stream("POST", url, json=body(tokens)):
        if event.data and event.data != "[DONE]":
            seen += 1
    elapsed = time.perf_counter() - start
    assert seen >= tokens, seen
    return elapsed


SDK_DRIVER = Path(__file__).resolve().parent.parent / "tests/interop/node/sdk_v2_client.mjs"


async def sdk_paid(chain: DevChain, url: str, tokens: int, runs: int) -> list[float]:
    """Seconds per request for the SDK's client reading ``tokens`` tokens, ``runs`` times."""
    payer = chain.accounts[2]
    payload = {
        "rpcUrl": chain.rpc_url,
        "chainId": chain.chain_id,
        "payerKey": payer.private_key,
        "url": url,
        "body": body(tokens),
        "requests": runs + 1,  # the first opens the channel: not timed
        "close": False,
        "record": False,
    }
    process = await asyncio.create_subprocess_exec(
        "node",
        str(SDK_DRIVER),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=SDK_DRIVER.parents[3],
    )
    out, err = await process.communicate(json.dumps(payload).encode())
    if process.returncode != 0:
        raise RuntimeError(f"the SDK client failed: {err.decode()[-2000:]}")
    report = json.loads(out)
    if report["errors"]:
        raise RuntimeError(f"the SDK client failed: {report['errors']}")
    requests = report["requests"][1:]
    for request in requests:
        assert request["messages"] >= tokens, request
    return [float(r["ms"]) / 1000 for r in requests]


async def measure(
    chain: DevChain,
    interval: int,
    tokens: int,
    runs: int,
    rate: float | None,
    protocol: str,
    sdk: bool,
) -> dict[str, object]:
    payee, payer = chain.accounts[0], chain.accounts[1]
    price = 25
    deposit = tokens * price * (runs + 1) + 1_000_000
    stalls: list[float] = []
    async with devserver(
        chain,
        payee,
        lookahead_tokens=interval,
        suggested_deposit=deposit,
        price_per_token=price,
        tokens_per_second=rate,
        session_protocol=protocol,
    ) as server:
        with tempfile.TemporaryDirectory() as tmp:
            events: list[PaymentEvent] = []
            agent = Agent(
                private_key=payer.private_key,
                rpc_url=chain.rpc_url,
                store=SqliteChannelStore(Path(tmp) / "bench.db"),
                policy=SpendPolicy(max_deposit=deposit, lookahead_units=2 * interval),
                observer=events.append,
            )
            async with agent:
                await paid(agent, server.chat, 10)  # open the channel outside the timing
                await unpaid(server.chat, 10)
                events.clear()
                unpaid_s, paid_s = [], []
                for _ in range(runs):
                    unpaid_s.append(await unpaid(server.chat, tokens))
                    paid_s.append(await paid(agent, server.chat, tokens))
                stalls = [e.seconds * 1000 for e in events if e.kind == "voucher"]
        sdk_s = await sdk_paid(chain, server.chat, tokens, runs) if sdk else []
    unpaid_rate = tokens / statistics.median(unpaid_s)
    paid_rate = tokens / statistics.median(paid_s)
    sdk_rate = tokens / statistics.median(sdk_s) if sdk_s else None
    return {
        "protocol": protocol,
        "interval": interval,
        "tokens": tokens,
        "unpaid_tokens_per_s": round(unpaid_rate),
        "paid_tokens_per_s": round(paid_rate),
        "ratio": round(paid_rate / unpaid_rate, 3),
        "vouchers": len(stalls),
        "stall_p50_ms": round(percentile(stalls, 50), 2) if stalls else None,
        "stall_p99_ms": round(percentile(stalls, 99), 2) if stalls else None,
        "sdk_tokens_per_s": round(sdk_rate) if sdk_rate else None,
        "sdk_ratio": round(sdk_rate / unpaid_rate, 3) if sdk_rate else None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--intervals", default="100")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="server pace in tokens/s (default: as fast as possible)",
    )
    parser.add_argument("--chain", choices=["evm", "tempo"], default="evm", help="anvil mode")
    parser.add_argument(
        "--protocols", default=None, help="session protocols, e.g. v1,v2 (default: the chain's)"
    )
    parser.add_argument("--sdk", action="store_true", help="also time the SDK's v2 client")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    protocols = (args.protocols or ("v2" if args.chain == "tempo" else "v1")).split(",")
    chain = await DevChain.start(accounts=3, tokens_per_account=10_000 * 10**6, network=args.chain)
    try:
        results = [
            await measure(
                chain,
                int(i),
                args.tokens,
                args.runs,
                args.rate,
                protocol,
                args.sdk and protocol == "v2",
            )
            for protocol in protocols
            for i in args.intervals.split(",")
        ]
    finally:
        await chain.stop()
    if args.json:
        report = {"machine": machine(), "chain": args.chain, "rate": args.rate, "results": results}
        print(json.dumps(report, indent=2))
        return
    print(f"machine: {machine()}")
    pace = f"server paced at {args.rate:g} tokens/s" if args.rate else "server at full speed"
    print(
        f"{args.tokens} tokens per stream, median of {args.runs} runs, {pace}, own process, "
        f"{args.chain} chain"
    )
    print(
        f"{'proto':>5} {'interval':>8} {'unpaid tok/s':>13} {'paid tok/s':>11} {'ratio':>6} "
        f"{'vouchers':>8} {'stall p50 ms':>13} {'stall p99 ms':>13} {'SDK tok/s':>10} "
        f"{'SDK ratio':>9}"
    )
    for r in results:
        print(
            f"{r['protocol']:>5} {r['interval']:>8} {r['unpaid_tokens_per_s']:>13} "
            f"{r['paid_tokens_per_s']:>11} {r['ratio']:>6} {r['vouchers']:>8} "
            f"{r['stall_p50_ms']!s:>13} {r['stall_p99_ms']!s:>13} "
            f"{r['sdk_tokens_per_s']!s:>10} {r['sdk_ratio']!s:>9}"
        )


if __name__ == "__main__":
    asyncio.run(main())
