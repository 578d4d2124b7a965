"""Client CPU per 1,000 paid tokens, and where it goes.

One paid stream of ``--tokens`` tokens through :class:`mppagent.Agent`
(need-voucher interval ``--interval``; the server in its own process, as fast
as it can -- 64 tokens per chunk -- or, with ``--rate``, paced at one token
per chunk as real LLM APIs send them; the channel is opened before timing),
measured three ways:

1. **plain runs** (``--runs``, median): wall time and the CPU time of this
   process only (``time.process_time``: user + system, all threads) -- the
   headline figures, undisturbed by any profiler;
2. **CPU profile**: the same stream under :mod:`cProfile` with a per-thread
   CPU timer, in the event loop and in the worker thread that commits
   vouchers; every function's own time is put in a bucket by its module, and
   a C function's (``sqlite3``, ``re``, ``select``, ...) in the bucket of the
   Python code that called it. Shares are scaled to the plain runs' CPU;
3. **wall profile**: the event loop under a wall-clock timer, so time it
   spends *blocked* -- an fsync under ``synchronous=FULL``, waiting for the
   server in ``epoll`` -- shows too.

The same stream unpaid (Bearer key, same ``Agent.stream`` code path, same
parser, no payment) gives the baseline: what paying adds per token.

    .venv/bin/python benchmarks/cpu.py [--tokens 20000] [--interval 100] [--runs 3]
                                       [--rate TOKENS_PER_S] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import API_KEY, devserver, machine

from mppagent import Agent, PaymentEvent, SpendPolicy, SqliteChannelStore
from mppagent.devchain import DevChain

PRICE = 25

# (bucket, path fragments of the function's file); first match wins.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    (
        "signing",
        (
            "mppagent/tempo/voucher.py",
            "mppagent/tempo/hexutil.py",
            "coincurve/",
            "eth_hash/",
            "Crypto/",
            "eth_utils/",
            "eth_keys/",
            "eth_account/",
        ),
    ),
    (
        "SSE parser + meter",
        ("mppagent/transport/sse.py", "mppagent/llm/meters.py"),
    ),
    (
        "JSON + payment models",
        ("json/", "pydantic", "mppagent/protocol/", "mppagent/tempo/schemas.py", "rfc8785/"),
    ),
    ("store (sqlite)", ("mppagent/session/store.py", "sqlite3/")),
    (
        "HTTP (httpx/httpcore/h11)",
        ("httpx/", "httpcore/", "h11/", "anyio/", "sniffio/", "idna/", "ssl.py", "socket.py"),
    ),
    ("asyncio", ("asyncio/", "selectors.py", "contextlib.py")),
    (
        "payment logic",
        (
            "mppagent/transport/paying.py",
            "mppagent/session/engine.py",
            "mppagent/session/policy.py",
            "mppagent/session/channels.py",
            "mppagent/agent.py",
            "mppagent/failpoints.py",
        ),
    ),
    ("logging", ("structlog/", "logging/", "mppagent/logging.py")),
    ("benchmark loop", ("benchmarks/cpu.py",)),
]
# C functions recognised by name rather than by caller.
NAMED_BUILTINS: list[tuple[str, str]] = [
    ("sqlite3", "store (sqlite)"),
    ("_json", "JSON + payment models"),
    ("pydantic_core", "JSON + payment models"),
    ("coincurve", "signing"),
    ("_cffi", "signing"),
    ("keccak", "signing"),
    ("select.epoll", "idle: epoll wait"),
]
ORDER = [name for name, _ in BUCKETS] + ["other", "idle: epoll wait"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def body(tokens: int) -> dict[str, object]:
    return {
        "model": "mpp-fake-1",
        "messages": [{"role": "user", "content": "benchmark"}],
        "stream": True,
        "max_tokens": tokens,
    }


def bucket_of_file(filename: str) -> str:
    path = filename.replace("\\", "/")
    for name, fragments in BUCKETS:
        if any(fragment in path for fragment in fragments):
            return name
    return "other"


def attribute(profile: cProfile.Profile, more: list[cProfile.Profile]) -> dict[str, float]:
    """Own time per bucket; a C function's own time goes to its callers' buckets."""
    merged = pstats.Stats(profile)
    for extra in more:
        merged.add(extra)
    stats: dict[Any, Any] = merged.stats  # type: ignore[attr-defined]
    totals: dict[str, float] = defaultdict(float)

    def bucket(func: tuple[str, int, str], depth: int = 0) -> dict[str, float]:
        """Bucket shares for ``func``: Python by file, C by name or by its callers."""
        filename, _, name = func
        if filename != "~":
            return {bucket_of_file(filename): 1.0}
        for fragment, named in NAMED_BUILTINS:
            if fragment in name:
                return {named: 1.0}
        callers = stats.get(func, (0, 0, 0.0, 0.0, {}))[4]
        weight = sum(edge[2] for edge in callers.values())
        if depth > 3 or not callers or weight <= 0:
            return {"other": 1.0}
        shares: dict[str, float] = defaultdict(float)
        for caller, edge in callers.items():
            for key, share in bucket(caller, depth + 1).items():
                shares[key] += share * edge[2] / weight
        return shares

    for func, (_, _, own, _, _) in stats.items():
        for key, share in bucket(func).items():
            totals[key] += own * share
    return dict(totals)


async def stream_once(agent: Agent, url: str, tokens: int, headers: dict[str, str]) -> int:
    seen = 0
    async for event in agent.stream("POST", url, json=body(tokens), headers=headers):
        if event.data and event.data != "[DONE]":
            seen += 1
    return seen


async def timed(
    agent: Agent, url: str, tokens: int, headers: dict[str, str]
) -> tuple[float, float]:
    """(wall s, CPU s) of one stream."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    seen = await stream_once(agent, url, tokens, headers)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if seen < tokens:
        raise RuntimeError(f"short stream: {seen} of {tokens}")
    return wall, cpu


async def profiled(
    agent: Agent, url: str, tokens: int, timer: Callable[[], float], *, threads: bool
) -> tuple[dict[str, float], float]:
    """Bucketed own time of one paid stream under cProfile with ``timer``, and its total.

    cProfile sees one thread only. With ``threads``, work the agent hands to
    ``asyncio.to_thread`` (the voucher commit) is profiled in its worker thread too,
    and merged: for CPU time (``time.thread_time`` per thread) that is exact; for
    wall time it would count twice, so the wall profile is the event loop's alone.
    """
    profile = cProfile.Profile(timer)
    workers: list[cProfile.Profile] = []
    original = asyncio.to_thread

    async def to_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            worker = cProfile.Profile(timer)
            worker.enable()
            try:
                return func(*args, **kwargs)
            finally:
                worker.disable()
                workers.append(worker)

        return await original(run)

    if threads:
        asyncio.to_thread = to_thread
    profile.enable()
    try:
        await stream_once(agent, url, tokens, {})
    finally:
        profile.disable()
        asyncio.to_thread = original
    totals = attribute(profile, workers)
    return totals, sum(totals.values())


async def measure(chain: DevChain, args: argparse.Namespace) -> dict[str, Any]:
    payee, payer = chain.accounts[0], chain.accounts[1]
    tokens = args.tokens
    deposit = PRICE * tokens * (2 * args.runs + 4) + 1_000_000
    events: list[PaymentEvent] = []
    bearer = {"authorization": f"Bearer {API_KEY}"}
    async with devserver(
        chain,
        payee,
        lookahead_tokens=args.interval,
        suggested_deposit=deposit,
        price_per_token=PRICE,
        tokens_per_second=args.rate,
    ) as server:
        with tempfile.TemporaryDirectory() as tmp:
            agent = Agent(
                private_key=payer.private_key,
                rpc_url=chain.rpc_url,
                store=SqliteChannelStore(Path(tmp) / "cpu.db"),
                policy=SpendPolicy(max_deposit=deposit, lookahead_units=2 * args.interval),
                observer=events.append,
            )
            async with agent:
                url = server.chat
                await stream_once(agent, url, 500, {})  # open the channel, warm every path
                await stream_once(agent, url, 500, bearer)
                unpaid = [await timed(agent, url, tokens, bearer) for _ in range(args.runs)]
                events.clear()
                server_cpu = cpu_seconds(server.process.pid)
                paid = [await timed(agent, url, tokens, {}) for _ in range(args.runs)]
                server_cpu = (cpu_seconds(server.process.pid) - server_cpu) / args.runs
                vouchers = sum(1 for e in events if e.kind == "voucher") / args.runs
                cpu_buckets, cpu_total = await profiled(
                    agent, url, tokens, time.thread_time, threads=True
                )
                wall_buckets, wall_total = await profiled(
                    agent, url, tokens, time.perf_counter, threads=False
                )
    paid_wall = statistics.median(w for w, _ in paid)
    paid_cpu = statistics.median(c for _, c in paid)
    unpaid_wall = statistics.median(w for w, _ in unpaid)
    unpaid_cpu = statistics.median(c for _, c in unpaid)
    busy_wall = wall_total - wall_buckets.get("idle: epoll wait", 0.0)
    rows = []
    for name in ORDER:
        cpu_share = cpu_buckets.get(name, 0.0) / cpu_total if cpu_total else 0.0
        wall_share = wall_buckets.get(name, 0.0) / wall_total if wall_total else 0.0
        rows.append(
            {
                "bucket": name,
                "cpu_share_pct": round(100 * cpu_share, 1),
                "cpu_us_per_token": round(cpu_share * paid_cpu / tokens * 1e6, 2),
                "wall_share_pct": round(100 * wall_share, 1),
                "wall_us_per_token": round(wall_share * paid_wall / tokens * 1e6, 2),
            }
        )
    return {
        "tokens": tokens,
        "rate": args.rate,
        "interval": args.interval,
        "runs": args.runs,
        "vouchers_per_stream": vouchers,
        "paid_wall_s": round(paid_wall, 3),
        "paid_tokens_per_s": round(tokens / paid_wall),
        "paid_cpu_s": round(paid_cpu, 3),
        "paid_cpu_ms_per_1000_tokens": round(paid_cpu / tokens * 1e6, 1),
        "paid_cpu_us_per_token": round(paid_cpu / tokens * 1e6, 2),
        "paid_wall_us_per_token": round(paid_wall / tokens * 1e6, 2),
        "paid_cpu_busy_pct": round(100 * paid_cpu / paid_wall),
        "server_cpu_us_per_token": round(server_cpu / tokens * 1e6, 2),
        "unpaid_wall_s": round(unpaid_wall, 3),
        "unpaid_tokens_per_s": round(tokens / unpaid_wall),
        "unpaid_cpu_ms_per_1000_tokens": round(unpaid_cpu / tokens * 1e6, 1),
        "unpaid_cpu_us_per_token": round(unpaid_cpu / tokens * 1e6, 2),
        "profiled_busy_wall_share_pct": round(100 * busy_wall / wall_total, 1)
        if wall_total
        else None,
        "buckets": rows,
    }


def print_table(r: dict[str, Any]) -> None:
    print(f"machine: {machine()}")
    print(
        f"one paid stream of {r['tokens']} tokens, need-voucher interval {r['interval']} "
        f"({r['vouchers_per_stream']:.0f} vouchers), server in its own process "
        + (
            f"pacing {r['rate']:g} tokens/s (one token per chunk)"
            if r["rate"]
            else "at full speed (64 tokens per chunk)"
        )
        + f", median of {r['runs']} runs"
    )
    print(f"{'':<8} {'tokens/s':>9} {'wall us/tok':>11} {'CPU us/tok':>10} {'CPU ms/1k tok':>13}")
    print(
        f"{'paid':<8} {r['paid_tokens_per_s']:>9} {r['paid_wall_us_per_token']:>11} "
        f"{r['paid_cpu_us_per_token']:>10} {r['paid_cpu_ms_per_1000_tokens']:>13}"
    )
    unpaid_wall_us = round(r["unpaid_wall_s"] / r["tokens"] * 1e6, 2)
    print(
        f"{'unpaid':<8} {r['unpaid_tokens_per_s']:>9} {unpaid_wall_us:>11} "
        f"{r['unpaid_cpu_us_per_token']:>10} {r['unpaid_cpu_ms_per_1000_tokens']:>13}"
    )
    print(
        f"client CPU busy during the paid stream: {r['paid_cpu_busy_pct']} % of wall; "
        f"server CPU meanwhile: {r['server_cpu_us_per_token']} us per token"
    )
    print()
    print(
        f"{'where the paid client time goes':<32} {'CPU %':>6} {'CPU us/tok':>10} "
        f"{'wall %':>7} {'wall us/tok':>11}"
    )
    for row in r["buckets"]:
        print(
            f"{row['bucket']:<32} {row['cpu_share_pct']:>6} {row['cpu_us_per_token']:>10} "
            f"{row['wall_share_pct']:>7} {row['wall_us_per_token']:>11}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--interval", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="pace the server (tokens/s, one token per chunk); default: as fast as it can",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chain = await DevChain.start(accounts=2, tokens_per_account=10_000 * 10**6)
    try:
        result = await asyncio.wait_for(measure(chain, args), 900)
    finally:
        await chain.stop()
    if args.json:
        print(json.dumps({"machine": machine(), **result}, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    asyncio.run(main())
