"""Voucher signing and recovery: mppagent's fast path against eth-account.

Signs and recovers ``--n`` vouchers with :mod:`mppagent.tempo.voucher` (precomputed domain
separator, libsecp256k1 through coincurve) and, in the same run, ``--baseline-n`` with
eth-account's generic EIP-712 code (``Account.sign_typed_data`` and
``Account.recover_message(encode_typed_data(...))``). Every operation is timed on its own with
``time.perf_counter_ns`` after a warm-up; inputs are built before timing starts, for both paths.
The baseline signatures are checked byte for byte against the fast path's, and every recovery
against the signer, so a fast wrong answer cannot pass as a result.

Usage::

    .venv/bin/python benchmarks/vouchers.py [--n 10000] [--baseline-n 500] [--json]

Goal: sign <= 100 us and recover <= 150 us per voucher (mean).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

from mppagent.tempo.voucher import VoucherSigner, recover_voucher_signer, voucher_typed_data

ESCROW = "0x" + "5e" * 20
CHAIN_ID = 4217
SIGN_GOAL_US = 100.0
RECOVER_GOAL_US = 150.0
WARMUP_FAST = 500
WARMUP_BASELINE = 20


@dataclass(frozen=True)
class Stats:
    """Per-operation timings of one phase, in microseconds."""

    path: str
    op: str
    n: int
    mean_us: float
    p50_us: float
    p99_us: float
    min_us: float


@dataclass(frozen=True)
class Voucher:
    channel_id: str
    amount: int


def _stats(path: str, op: str, samples_ns: Sequence[int]) -> Stats:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return Stats(
        path=path,
        op=op,
        n=len(ordered),
        mean_us=statistics.fmean(ordered) / 1000,
        p50_us=statistics.median(ordered) / 1000,
        p99_us=p99 / 1000,
        min_us=ordered[0] / 1000,
    )


def _timed(items: Sequence[Any], fn: Callable[[Any], Any]) -> tuple[list[Any], list[int]]:
    """Run ``fn`` on each item, timing each call; returns (results, nanoseconds per call)."""
    results: list[Any] = []
    samples: list[int] = []
    clock = time.perf_counter_ns
    gc.collect()
    for item in items:
        start = clock()
        out = fn(item)
        samples.append(clock() - start)
        results.append(out)
    return results, samples


def _vouchers(n: int, rng: random.Random) -> list[Voucher]:
    """A stream's worth of vouchers: a few channels, cumulative amounts that only grow."""
    channels = ["0x" + rng.randbytes(32).hex() for _ in range(8)]
    return [
        Voucher(channels[i % len(channels)], 1_000 * (i + 1) + rng.randrange(1_000))
        for i in range(n)
    ]


def _typed(voucher: Voucher) -> dict[str, Any]:
    return voucher_typed_data(voucher.channel_id, voucher.amount, ESCROW, CHAIN_ID)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def machine() -> dict[str, str]:
    return {
        "cpu": _cpu_model(),
        "cpus": str(os.cpu_count() or "?"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(terse=True),
        "coincurve": _version("coincurve"),
        "eth-account": _version("eth-account"),
    }


def run(n: int, baseline_n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    key = "0x" + rng.randbytes(32).hex()
    signer = VoucherSigner(key)
    expected = signer.address

    # -- fast path -------------------------------------------------------------------------
    def fast_sign(v: Voucher) -> str:
        return signer.sign(v.channel_id, v.amount, ESCROW, CHAIN_ID)

    def fast_recover(pair: tuple[Voucher, str]) -> str:
        v, sig = pair
        return recover_voucher_signer(sig, v.channel_id, v.amount, ESCROW, CHAIN_ID)

    warm = _vouchers(WARMUP_FAST, rng)
    for v in warm:
        fast_recover((v, fast_sign(v)))

    vouchers = _vouchers(n, rng)
    fast_sigs, sign_ns = _timed(vouchers, fast_sign)
    recovered, recover_ns = _timed(list(zip(vouchers, fast_sigs, strict=True)), fast_recover)
    if any(who != expected for who in recovered):
        raise SystemExit("fast path: a voucher recovered to the wrong signer")

    # -- eth-account baseline --------------------------------------------------------------
    def base_sign(message: dict[str, Any]) -> str:
        return "0x" + bytes(Account.sign_typed_data(key, full_message=message).signature).hex()

    def base_recover(pair: tuple[dict[str, Any], str]) -> str:
        message, sig = pair
        return str(Account.recover_message(encode_typed_data(full_message=message), signature=sig))

    for v in warm[:WARMUP_BASELINE]:
        message = _typed(v)
        base_recover((message, base_sign(message)))

    sample = vouchers[:baseline_n]
    messages = [_typed(v) for v in sample]
    base_sigs, base_sign_ns = _timed(messages, base_sign)
    base_recovered, base_recover_ns = _timed(
        list(zip(messages, base_sigs, strict=True)), base_recover
    )
    if base_sigs != fast_sigs[:baseline_n]:
        raise SystemExit("eth-account and the fast path produced different signatures")
    if any(who != expected for who in base_recovered):
        raise SystemExit("eth-account recovered a voucher to the wrong signer")

    results = [
        _stats("fast", "sign", sign_ns),
        _stats("fast", "recover", recover_ns),
        _stats("eth-account", "sign", base_sign_ns),
        _stats("eth-account", "recover", base_recover_ns),
    ]
    fast_sign_us, fast_recover_us = results[0].mean_us, results[1].mean_us
    return {
        "machine": machine(),
        "results": [asdict(r) for r in results],
        "speedup": {
            "sign": results[2].mean_us / fast_sign_us,
            "recover": results[3].mean_us / fast_recover_us,
        },
        "goal": {
            "sign_us": SIGN_GOAL_US,
            "recover_us": RECOVER_GOAL_US,
            "sign_met": fast_sign_us <= SIGN_GOAL_US,
            "recover_met": fast_recover_us <= RECOVER_GOAL_US,
        },
        "identical_signatures_checked": baseline_n,
    }


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"machine: {m['cpu']} ({m['cpus']} CPUs), {m['python']}, {m['platform']}",
        f"         coincurve {m['coincurve']}, eth-account {m['eth-account']}",
        "",
        f"{'path':<12} {'op':<8} {'n':>6} {'mean µs':>9} {'p50 µs':>9} {'p99 µs':>9} {'min µs':>9}",
    ]
    lines.extend(
        f"{r['path']:<12} {r['op']:<8} {r['n']:>6} {r['mean_us']:>9.1f} {r['p50_us']:>9.1f} "
        f"{r['p99_us']:>9.1f} {r['min_us']:>9.1f}"
        for r in report["results"]
    )
    speed, goal = report["speedup"], report["goal"]
    fast = {r["op"]: r["mean_us"] for r in report["results"] if r["path"] == "fast"}
    lines += [
        "",
        f"speed-up (eth-account mean / fast mean): sign {speed['sign']:.1f}x, "
        f"recover {speed['recover']:.1f}x",
        f"goal: sign <= {goal['sign_us']:.0f} µs: {fast['sign']:.1f} µs "
        f"({'met' if goal['sign_met'] else 'MISSED'}); "
        f"recover <= {goal['recover_us']:.0f} µs: {fast['recover']:.1f} µs "
        f"({'met' if goal['recover_met'] else 'MISSED'})",
        f"eth-account signatures checked byte-identical: {report['identical_signatures_checked']}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="vouchers for the fast path")
    parser.add_argument(
        "--baseline-n", type=int, default=500, help="vouchers for the eth-account baseline"
    )
    parser.add_argument("--seed", type=int, default=4217, help="seed for keys and inputs")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.n < 1 or not 1 <= args.baseline_n <= args.n:
        parser.error("need n >= 1 and 1 <= baseline-n <= n")
    report = run(args.n, args.baseline_n, args.seed)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
