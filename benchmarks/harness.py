"""Shared set-up for the benchmarks: a devchain in this process, the server in another.

Keeping client and server in separate processes means the client's numbers
are not the server's CPU time, and the other way round.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mppagent.devchain import DevAccount, DevChain

API_KEY = "bench-key"


@dataclass
class Server:
    """A devserver process and its base URL."""

    url: str
    process: asyncio.subprocess.Process

    @property
    def chat(self) -> str:
        return f"{self.url}/v1/chat/completions"


@asynccontextmanager
async def devserver(chain: DevChain, payee: DevAccount, **config: Any) -> AsyncIterator[Server]:
    """Run ``python -m mppagent.devserver`` with ``config``; stop it afterwards."""
    values: dict[str, Any] = {
        "rpc_url": chain.rpc_url,
        "escrow": chain.escrow,
        "token": chain.token,
        # v2 needs the reserve, which only the Tempo devchain has; plain anvil speaks v1.
        "session_protocol": "v2" if chain.network == "tempo" else "v1",
        "fee_token": chain.fee_token,
        "payee_private_key": payee.private_key,
        "auth_mode": "either",
        "api_keys": [API_KEY],
        "durability": "normal",
        "charge_batch": 64,
    }
    values.update(config)
    env = {**os.environ, "MPPAGENT_DEVSERVER_CONFIG": json.dumps(values)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mppagent.devserver",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()
    if not line.startswith("listening "):
        process.kill()
        raise RuntimeError(f"devserver did not start: {line!r}")
    try:
        yield Server(line.split(" ", 1)[1], process)
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()


def machine() -> str:
    """One line describing this machine, for the figures."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
