"""How long the ``mppagent`` command takes before it does anything, against a bare interpreter.

Agents call the CLI in loops, so commands that need no chain or network
(``--help``, ``--version``, ``providers``, usage and configuration errors) must
finish in at most 10x a bare ``python -c pass`` on the same machine, and
``chat`` against a local server must show its first token within 0.5 s of
start (the server's own pacing excluded: it runs at full speed here).

Each command runs ``--runs`` times as a real process (the installed console
script); the table shows the median wall time and its ratio to the median of
``python -c pass``. Runs of the different commands are interleaved, so a burst
of load on a shared machine spreads over all of them instead of one.

    .venv/bin/python benchmarks/startup.py [--runs 15] [--no-chat] [--no-bytecode-cache] [--json]

Python caches compiled modules (``__pycache__``), as a pip install does at install
time; an environment with ``PYTHONDONTWRITEBYTECODE`` set recompiles every module on
every start. The benchmark measures the installed case: its processes write their
bytecode to a private temporary ``PYTHONPYCACHEPREFIX`` (nothing is written to the
tree), filled by the warm-up run. ``--no-bytecode-cache`` measures without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import devserver, machine

LIMIT = 10.0  # x a bare interpreter, for commands that touch no chain or network
FIRST_TOKEN_LIMIT = 0.5  # seconds from start to the first streamed token


_CHILD_ENV: dict[str, str] = {}
"""Environment overrides for every measured process (set up in :func:`main`)."""


def _environ(overrides: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **_CHILD_ENV, **overrides}
    if _CHILD_ENV:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _entry() -> list[str]:
    script = Path(sys.executable).with_name("mppagent")
    if script.exists():
        return [str(script)]
    found = shutil.which("mppagent")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from mppagent.cli import main; sys.exit(main())"]


def _cases(tmp: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (argv, environment overrides) for the fast-path commands."""
    cli = _entry()
    quiet = {"MPPAGENT_CONFIG": str(tmp / "absent.toml"), "MPPAGENT_PRIVATE_KEY": ""}
    return {
        "python -c pass": ([sys.executable, "-c", "pass"], {}),
        "mppagent --help": ([*cli, "--help"], quiet),
        "mppagent --version": ([*cli, "--version"], quiet),
        "mppagent providers": ([*cli, "providers"], quiet),
        "usage error (unknown flag)": ([*cli, "chat", "--no-such-flag"], quiet),
        "config error (no key)": (
            [*cli, "chat", "hi", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"],
            quiet,
        ),
        "mppagent channels list (no key)": (
            [*cli, "channels", "list"],
            {**quiet, "MPPAGENT_STORE": str(tmp / "empty.db")},
        ),
    }


async def _time(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=_environ(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await process.wait()
    return time.perf_counter() - started


async def fast_path(runs: int) -> dict[str, float]:
    """Median seconds per case, the runs of all cases interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        cases = _cases(Path(tmp))
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for argv, env in cases.values():  # warm-up: compiled bytecode, page cache
            await _time(argv, env)
        for _ in range(runs):
            for name, (argv, env) in cases.items():
                samples[name].append(await _time(argv, env))
    return {name: statistics.median(values) for name, values in samples.items()}


async def first_token(runs: int) -> dict[str, list[float]]:
    """Seconds from starting ``mppagent chat`` to its first answer byte on stdout.

    ``cold``: the first request of a fresh store (opens a channel on chain);
    ``warm``: a later request, which reuses the open channel (the common case).
    Each cold run has a store of its own; the warm runs then reuse those stores.
    """
    from mppagent.devchain import DevChain

    chain = await DevChain.start(accounts=2)
    try:
        payee, payer = chain.accounts
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **_environ({}),
                "MPPAGENT_PRIVATE_KEY": payer.private_key,
                "MPPAGENT_RPC_URL": chain.rpc_url,
                "MPPAGENT_STORE": str(Path(tmp) / "client.db"),
                "MPPAGENT_CONFIG": str(Path(tmp) / "absent.toml"),
            }
            # The server runs in its own process so its CPU time is not the client's.
            async with devserver(chain, payee, state_path=str(Path(tmp) / "server.db")) as server:
                # Warm-up (bytecode and page cache) on a store of its own, so the first
                # measured request still opens a channel.
                await _first_token(server.url, env | {"MPPAGENT_STORE": str(Path(tmp) / "w.db")})
                stores = [{"MPPAGENT_STORE": str(Path(tmp) / f"c{run}.db")} for run in range(runs)]
                cold = [await _first_token(server.url, env | store) for store in stores]
                warm = [await _first_token(server.url, env | store) for store in stores]
    finally:
        await chain.stop()
    return {"cold (opens a channel)": cold, "warm (reuses it)": warm}


async def _first_token(url: str, env: dict[str, str]) -> float:
    argv = [*_entry(), "chat", "hi", "--base-url", f"{url}/v1", "--model", "mpp-fake-1"]
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv,
        "--max-tokens",
        "20",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    first = await process.stdout.read(1)
    elapsed = time.perf_counter() - started
    await process.stdout.read()
    if await process.wait() != 0 or not first:
        raise RuntimeError("mppagent chat failed during the benchmark")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (median)")
    parser.add_argument("--no-chat", action="store_true", help="skip the first-token figure")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="compile every module on every start (as with PYTHONDONTWRITEBYTECODE=1)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mppagent-pycache-") as cache:
        if not args.no_bytecode_cache:
            _CHILD_ENV["PYTHONPYCACHEPREFIX"] = cache
        _run(args)


def _run(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()[0]
    medians = asyncio.run(fast_path(args.runs))
    bare = medians["python -c pass"]
    samples = {} if args.no_chat else asyncio.run(first_token(max(3, args.runs // 3)))
    chat = {name: statistics.median(values) for name, values in samples.items()}
    load = f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    if args.json:
        print(
            json.dumps(
                {
                    "machine": machine(),
                    "load": [load_before, os.getloadavg()[0]],
                    "bare": bare,
                    "fast": medians,
                    "chat": chat,
                    "chat_best": {name: min(values) for name, values in samples.items()},
                }
            )
        )
        return
    cache = "no bytecode cache" if args.no_bytecode_cache else "bytecode cached"
    print(f"{machine()}; {load}; median of {args.runs} runs, {cache}; limit {LIMIT:.0f}x bare")
    print(f"| {'command':<32} | {'median ms':>9} | {'x bare':>6} | ok |")
    print(f"|{'-' * 34}|{'-' * 11}|{'-' * 8}|----|")
    for name, seconds in medians.items():
        ratio = seconds / bare
        ok = "yes" if ratio <= LIMIT else "NO"
        print(f"| {name:<32} | {seconds * 1000:9.1f} | {ratio:6.1f} | {ok:<3}|")
    for name, seconds in chat.items():
        ok = "yes" if seconds <= FIRST_TOKEN_LIMIT else "NO"
        best = f"best {min(samples[name]) * 1000:.0f} ms of {len(samples[name])}"
        print(f"| chat first token, {name:<22} | {seconds * 1000:9.1f} | {'':>6} | {ok:<3}| {best}")


if __name__ == "__main__":
    main()
