"""Fuzz every parser that reads peer input, with hypothesis, and report the figures.

Runs each target of ``tests/fuzz/targets.py`` -- Payment challenges, credentials,
receipts, problem details, Accept-Payment, base64url, JSON, the Tempo session
schemas, the SSE splitter and the LLM chunk parsers -- for ``--examples``
hypothesis examples, and prints per target: examples run, seconds, examples/s
and the outcome (no unexpected exception, or the first failure, minimised).
Exits 1 if any target fails or crashes.

    .venv/bin/python benchmarks/fuzz.py [--examples 100000] [--targets all|name,...]
                                        [--seed N] [--jobs N] [--json] [--list]

Every target runs in its own process (``--jobs`` at a time), so a crash in C code
(a segfault) is reported as that target's failure, with the input that was
running, instead of ending the whole run. A run is reproducible with its seed
(printed when not given), the same ``--examples`` and the same code.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import json
import multiprocessing
import os
import random
import re
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness
import hypothesis

from tests.fuzz.targets import BUFFER_BYTES, TARGETS, Outcome, Source, run_target, show

ROOT = Path(__file__).resolve().parent.parent
_COUNT_BYTES = 8
_FRAME = re.compile(r'File "(?P<path>[^"]+)", line (?P<line>\d+) in (?P<function>\S+)')


def machine() -> str:
    """The machine line of the other benchmarks, plus the hypothesis version."""
    return f"{harness.machine()}, hypothesis {hypothesis.__version__}"


def _worker(
    name: str, examples: int, seed: int, current: Any, crash_log: str, conn: Connection
) -> None:
    """Child process: run one target; the current example is mirrored into ``current``."""
    with open(crash_log, "w") as log:
        faulthandler.enable(file=log)

        def remember(count: int, data: bytes) -> None:
            # Read by the parent only if this process dies: it then knows the input.
            ctypes.memmove(current, count.to_bytes(_COUNT_BYTES, "little"), _COUNT_BYTES)
            ctypes.memmove(ctypes.addressof(current) + _COUNT_BYTES, data, len(data))

        outcome = run_target(TARGETS[name], examples=examples, seed=seed, on_example=remember)
        conn.send(asdict(outcome))
        conn.close()


def _crash_outcome(
    name: str, seed: int, seconds: float, exitcode: int, current: Any, log: str
) -> Outcome:
    raw = bytes(current)
    count = int.from_bytes(raw[:_COUNT_BYTES], "little")
    data = raw[_COUNT_BYTES:]
    try:
        cause = (
            f"killed by {signal.Signals(-exitcode).name}" if exitcode < 0 else f"exit {exitcode}"
        )
    except ValueError:
        cause = f"exit {exitcode}"
    try:  # faulthandler lists the innermost frame first
        frames = [
            (m["path"].removeprefix(str(ROOT) + "/"), m["line"], m["function"])
            for m in _FRAME.finditer(Path(log).read_text())
        ]
    except OSError:
        frames = []
    where = "".join(f" at {p}:{n} in {f}" for p, n, f in frames[:1])
    ours = [frame for frame in frames if frame[0].startswith("mppagent/")]
    if ours and ours[0] != frames[0]:
        where += " via {}:{} in {}".format(*ours[0])
    try:
        example = show(TARGETS[name].generate(Source(data)))
    except Exception as exc:  # the generator itself is not what crashed, but be safe
        example = f"(buffer {data.hex()}; regenerating failed: {exc!r})"
    failure = f"crash: process {cause}{where}\n  input (not minimised): {example}"
    return Outcome(name, count, seconds, seed, failure)


def run_all(names: list[str], examples: int, seed: int, jobs: int, progress: Any) -> list[Outcome]:
    """Run the targets ``jobs`` at a time, each in a fresh process; outcomes in input order."""
    context = multiprocessing.get_context("fork")
    pending = list(names)
    running: dict[Connection, tuple[str, Any, Any, float, str]] = {}
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="mppagent-fuzz-") as tmp:
        try:
            while pending or running:
                while pending and len(running) < jobs:
                    name = pending.pop(0)
                    current = context.RawArray(ctypes.c_ubyte, _COUNT_BYTES + BUFFER_BYTES)
                    log = os.path.join(tmp, f"{name}.log")
                    receiver, sender = context.Pipe(duplex=False)
                    process = context.Process(
                        target=_worker,
                        args=(name, examples, seed, current, log, sender),
                        name=f"fuzz-{name}",
                    )
                    process.start()
                    sender.close()
                    running[receiver] = (name, process, current, time.perf_counter(), log)
                for ready in wait(list(running)):
                    assert isinstance(ready, Connection)
                    receiver = ready
                    name, process, current, started, log = running.pop(receiver)
                    try:
                        outcome = Outcome(**receiver.recv())
                    except EOFError:  # the child died without an answer
                        process.join()
                        elapsed = time.perf_counter() - started
                        code = process.exitcode or 0
                        outcome = _crash_outcome(name, seed, elapsed, code, current, log)
                    process.join()
                    outcomes[name] = outcome
                    progress(outcome)
        finally:
            for _, process, _, _, _ in running.values():
                process.terminate()
                process.join()
    return [outcomes[name] for name in names]


def _line(outcome: Outcome) -> str:
    status = "ok" if outcome.ok else "FAIL"
    return (
        f"{outcome.target:<16} {outcome.examples:>9} {outcome.seconds:>9.1f}"
        f" {outcome.per_second:>11.0f}  {status}"
    )


HEADER = f"{'target':<16} {'examples':>9} {'seconds':>9} {'examples/s':>11}  outcome"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000, help="per target")
    parser.add_argument("--targets", default="all", help="'all' or comma-separated names")
    parser.add_argument("--seed", type=int, help="hypothesis seed (random if not given)")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="targets run in parallel"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)

    if args.list:
        for target in TARGETS.values():
            print(f"{target.name:<16} {target.function}: {target.checks}")
        return 0
    names = list(TARGETS) if args.targets == "all" else args.targets.split(",")
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    if args.examples < 1 or args.jobs < 1:
        parser.error("--examples and --jobs must be at least 1")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    jobs = min(args.jobs, len(names))

    out = sys.stderr if args.json else sys.stdout
    print(f"machine: {machine()}", file=out)
    print(
        f"fuzzing {len(names)} targets x {args.examples} examples, seed {seed}, {jobs} jobs",
        file=out,
    )
    print(HEADER, file=out, flush=True)

    def progress(outcome: Outcome) -> None:
        print(_line(outcome), file=out, flush=True)
        if outcome.failure:
            print("  " + outcome.failure, file=out, flush=True)

    # Ending by SIGTERM unwinds like Ctrl-C, so the running targets are stopped too.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    started = time.perf_counter()
    outcomes = run_all(names, args.examples, seed, jobs, progress)
    wall = time.perf_counter() - started
    failed = [o for o in outcomes if not o.ok]

    if args.json:
        print(
            json.dumps(
                {
                    "machine": machine(),
                    "seed": seed,
                    "examples_per_target": args.examples,
                    "jobs": jobs,
                    "wall_seconds": round(wall, 1),
                    "targets": [
                        {
                            "name": o.target,
                            "function": TARGETS[o.target].function,
                            "checks": TARGETS[o.target].checks,
                            "examples": o.examples,
                            "seconds": round(o.seconds, 2),
                            "examples_per_second": round(o.per_second),
                            "ok": o.ok,
                            "failure": o.failure,
                        }
                        for o in outcomes
                    ],
                }
            )
        )
    else:
        print(f"\nsummary (seed {seed}, {jobs} jobs, wall {wall:.0f} s)")
        print(HEADER)
        for outcome in outcomes:
            print(_line(outcome))
        total = sum(o.examples for o in outcomes)
        print(f"{'total':<16} {total:>9} {sum(o.seconds for o in outcomes):>9.1f}")
        print(f"{len(failed)} of {len(outcomes)} targets failed" if failed else "no failures")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
