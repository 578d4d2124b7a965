"""Many concurrent paid streams from one agent process against one devserver process.

For every concurrency level (``--concurrency 1,10,100,500``) and pace
(``--modes paced,full``) a fresh child process -- the one agent process of
that level, so its RSS is not inflated by an earlier level -- starts a
devchain (anvil), the reference server in its own process, and one
:class:`mppagent.Agent` with a fresh SQLite store, then:

1. primes the agent with one paid request (imports, pools and code paths
   warm; this channel is reused), and reads the RSS baseline;
2. **opens** the channels: a warm-up round of ``C`` concurrent short paid
   streams, one new channel each (approve + open on anvil per channel);
   timed and reported as ``open s``;
3. **streams**: ``C`` concurrent paid streams of ``--tokens`` tokens on those
   channels (no opens), timed.

Per level: aggregate paid tokens/s of the streaming round, the need-voucher
stall (demand to accepted voucher, from the agent's ``voucher`` events that
answer a server demand; proactive pay-ahead vouchers are counted apart),
time to first token, client RSS growth per stream (peak ``VmHWM`` over the
level minus the primed ``VmRSS``, divided by ``C``), CPU of the client and
server per token and, like anvil's and everything else's on the machine
(``other``: contention from outside the benchmark), in % of one core during
the streaming round; client CPU per open; errors (failed or short streams).

Paces: ``paced`` = the server streams ``--rate`` tokens/s per stream (50,
like a real LLM); ``full`` = as fast as it can.

    .venv/bin/python benchmarks/scale.py [--concurrency 1,10,100,500] [--modes paced,full]
        [--tokens 500] [--rate 50] [--interval 100] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import devserver, machine, percentile

from mppagent import Agent, PaymentEvent, SpendPolicy, SqliteChannelStore
from mppagent.devchain import DevChain
from mppagent.llm.meters import text_chunk

PRICE = 25
WARM_TOKENS = 20
LEVEL_TIMEOUT = 1800.0  # seconds: a level that takes longer is reported as failed
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def body(tokens: int) -> dict[str, object]:
    return {
        "model": "mpp-fake-1",
        "messages": [{"role": "user", "content": "benchmark"}],
        "stream": True,
        "max_tokens": tokens,
    }


# -- process figures ---------------------------------------------------------------------


def status_kib(field_name: str, pid: int | str = "self") -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used so far (``/proc/stat``)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _CLK_TCK


@dataclass
class StreamResult:
    tokens: int = 0
    first_token_s: float | None = None
    seconds: float = 0.0
    error: str | None = None


@dataclass
class Level:
    mode: str
    concurrency: int
    tokens: int
    rate: float | None
    interval: int
    events: list[PaymentEvent] = field(default_factory=list)


async def one_stream(agent: Agent, url: str, tokens: int, start: float) -> StreamResult:
    """One paid stream; counts billed tokens exactly as the agent's meter does."""
    result = StreamResult()
    try:
        async for event in agent.stream("POST", url, json=body(tokens)):
            units = 1 if text_chunk(event) else 0
            if units and result.first_token_s is None:
                result.first_token_s = time.perf_counter() - start
            result.tokens += units
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {str(exc)[:160]}"
    result.seconds = time.perf_counter() - start
    if result.error is None and result.tokens < tokens:
        result.error = f"short stream: {result.tokens} of {tokens} tokens"
    return result


async def round_of(
    agent: Agent, url: str, concurrency: int, tokens: int
) -> tuple[float, list[StreamResult]]:
    start = time.perf_counter()
    results = await asyncio.gather(
        *(one_stream(agent, url, tokens, start) for _ in range(concurrency))
    )
    return time.perf_counter() - start, list(results)


async def run_level(level: Level) -> dict[str, Any]:
    """Everything for one (mode, concurrency): own chain, own server, own agent."""
    c = level.concurrency
    # Enough for the warm-up, the timed round and a margin, so no stream tops up.
    deposit = PRICE * (WARM_TOKENS + level.tokens + 4 * level.interval) * 2
    chain = await DevChain.start(accounts=2, tokens_per_account=(c + 2) * deposit * 2)
    payee, payer = chain.accounts[0], chain.accounts[1]
    config: dict[str, Any] = {
        "lookahead_tokens": level.interval,
        "suggested_deposit": deposit,
        "price_per_token": PRICE,
        "tokens_per_second": level.rate,
    }
    try:
        async with devserver(chain, payee, **config) as server:
            with tempfile.TemporaryDirectory() as tmp:
                agent = Agent(
                    private_key=payer.private_key,
                    rpc_url=chain.rpc_url,
                    store=SqliteChannelStore(Path(tmp) / "scale.db"),
                    policy=SpendPolicy(
                        max_deposit=deposit,
                        max_channels_per_scope=c,
                        lookahead_units=2 * level.interval,
                    ),
                    observer=level.events.append,
                )
                async with agent:
                    return await measure(level, agent, server.chat, server.process.pid, chain)
    finally:
        await chain.stop()


async def measure(
    level: Level, agent: Agent, url: str, server_pid: int, chain: DevChain
) -> dict[str, Any]:
    c = level.concurrency
    # Prime: one paid stream opens the first channel and warms every code path.
    _, primed = await round_of(agent, url, 1, WARM_TOKENS)
    if primed[0].error:
        raise RuntimeError(f"priming failed: {primed[0].error}")
    rss_base = status_kib("VmRSS")

    # Open the other channels: C concurrent short streams (the primed channel is reused).
    level.events.clear()
    cpu_open = time.process_time()
    open_s, warm = await round_of(agent, url, c, WARM_TOKENS)
    cpu_open = time.process_time() - cpu_open
    opens = sum(1 for e in level.events if e.kind == "open")
    open_errors = [r.error for r in warm if r.error]

    # The timed round: C concurrent streams on open channels.
    level.events.clear()
    anvil_pid = chain._process.pid  # the devchain's anvil, for its CPU share
    pids = (server_pid, anvil_pid)
    cpu0 = (time.process_time(), *map(cpu_seconds, pids), machine_busy_seconds())
    wall, results = await round_of(agent, url, c, level.tokens)
    cpu1 = (time.process_time(), *map(cpu_seconds, pids), machine_busy_seconds())
    used = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    rss_peak = status_kib("VmHWM")

    tokens = sum(r.tokens for r in results)
    vouchers = [e for e in level.events if e.kind == "voucher"]
    stalls = [e.seconds * 1000 for e in vouchers if not e.detail.get("proactive")]
    proactive = sum(1 for e in vouchers if e.detail.get("proactive"))
    late_opens = sum(1 for e in level.events if e.kind == "open")
    errors = [r.error for r in results if r.error]
    ttft = [r.first_token_s * 1000 for r in results if r.first_token_s is not None]
    per_stream = [r.tokens / r.seconds for r in results if r.seconds > 0 and not r.error]
    return {
        "mode": level.mode,
        "rate_per_stream": level.rate,
        "concurrency": c,
        "tokens_per_stream": level.tokens,
        "interval": level.interval,
        "open_s": round(open_s, 2),
        "opens": opens,
        "opens_per_s": round(opens / open_s, 1) if open_s > 0 else None,
        "open_errors": len(open_errors),
        "wall_s": round(wall, 2),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall),
        "stream_tokens_per_s_p50": round(percentile(per_stream, 50), 1) if per_stream else None,
        "ttft_p50_ms": round(percentile(ttft, 50), 1) if ttft else None,
        "ttft_p99_ms": round(percentile(ttft, 99), 1) if ttft else None,
        "demands": len(stalls),
        "proactive": proactive,
        "stall_p50_ms": round(percentile(stalls, 50), 2) if stalls else None,
        "stall_p99_ms": round(percentile(stalls, 99), 2) if stalls else None,
        "rss_base_mib": round(rss_base / 1024, 1),
        "rss_peak_mib": round(rss_peak / 1024, 1),
        "rss_kib_per_stream": round((rss_peak - rss_base) / c, 1),
        "cpu_client_pct": round(100 * used[0] / wall),
        "cpu_server_pct": round(100 * used[1] / wall),
        "cpu_anvil_pct": round(100 * used[2] / wall),
        # Everything else on the machine meanwhile (other work competing for the cores).
        "cpu_other_pct": max(0, round(100 * (used[3] - sum(used[:3])) / wall)),
        "cpu_client_us_per_token": round(used[0] / tokens * 1e6, 1) if tokens else None,
        "cpu_server_us_per_token": round(used[1] / tokens * 1e6, 1) if tokens else None,
        "cpu_client_ms_per_open": round(cpu_open / opens * 1000, 1) if opens else None,
        "late_opens": late_opens,
        "errors": len(errors),
        "error_samples": sorted(set(errors + open_errors))[:3],
    }


# -- the driver ----------------------------------------------------------------------------


def run_child(mode: str, concurrency: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run one level in a fresh process; return its JSON line."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        f"{mode}:{concurrency}",
        "--tokens",
        str(args.tokens),
        "--rate",
        str(args.rate),
        "--interval",
        str(args.interval),
    ]
    with tempfile.TemporaryFile() as err:
        try:
            done = subprocess.run(
                command, stdout=subprocess.PIPE, stderr=err, timeout=LEVEL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            return {"mode": mode, "concurrency": concurrency, "failed": "timeout"}
        if done.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            return {"mode": mode, "concurrency": concurrency, "failed": " | ".join(tail)}
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    print(
        f"{args.tokens} tokens per stream, need-voucher interval {args.interval}, price {PRICE}; "
        "one agent process per level; server and anvil in their own processes"
    )
    print("paced = the server streams --rate tokens/s per stream; full = as fast as it can")
    print(
        f"{'mode':<6} {'C':>4} | {'open s':>6} {'opens/s':>7} {'cli ms/open':>11} | "
        f"{'wall s':>6} {'tok/s':>6} {'tok/s/str':>9} {'ttft p99':>8} {'demands':>7} "
        f"{'stall p50':>9} {'stall p99':>9} {'KiB/str':>7} {'cli us/tok':>10} "
        f"{'srv us/tok':>10} {'cli%':>4} {'srv%':>4} {'oth%':>4} {'err':>3}"
    )
    for r in results:
        if "failed" in r:
            print(f"{r['mode']:<6} {r['concurrency']:>4} FAILED: {r['failed']}")
            continue
        print(
            f"{r['mode']:<6} {r['concurrency']:>4} | {r['open_s']:>6} {r['opens_per_s']!s:>7} "
            f"{r['cpu_client_ms_per_open']!s:>11} | {r['wall_s']:>6} {r['tokens_per_s']:>6} "
            f"{r['stream_tokens_per_s_p50']!s:>9} {r['ttft_p99_ms']!s:>8} {r['demands']:>7} "
            f"{r['stall_p50_ms']!s:>9} {r['stall_p99_ms']!s:>9} {r['rss_kib_per_stream']:>7} "
            f"{r['cpu_client_us_per_token']!s:>10} {r['cpu_server_us_per_token']!s:>10} "
            f"{r['cpu_client_pct']:>4} {r['cpu_server_pct']:>4} {r['cpu_other_pct']:>4} "
            f"{r['errors'] + r['open_errors']:>3}"
        )
        for sample in r["error_samples"]:
            print(f"       error: {sample}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", default="1,10,100,500")
    parser.add_argument("--modes", default="paced,full", help="paced (--rate tok/s), full")
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="tokens/s per stream, paced")
    parser.add_argument("--interval", type=int, default=100, help="need-voucher interval")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, _, concurrency = args.child.partition(":")
        level = Level(
            mode=mode,
            concurrency=int(concurrency),
            tokens=args.tokens,
            rate=args.rate if mode == "paced" else None,
            interval=args.interval,
        )
        result = asyncio.run(asyncio.wait_for(run_level(level), LEVEL_TIMEOUT - 30))
        print(json.dumps(result))
        return
    results: list[dict[str, Any]] = []
    for mode in args.modes.split(","):
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            result = run_child(mode, concurrency, args)
            results.append(result)
            if not args.json:
                print(f"  done: {mode} C={concurrency}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"machine": machine(), "results": results}, indent=2))
    else:
        print_table(results, args)


if __name__ == "__main__":
    main()
