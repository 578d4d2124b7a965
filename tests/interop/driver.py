"""Run a Node driver from ``tests/interop/node/`` (the reference SDK, from node_modules).

Shared by the interop tests: each driver reads one JSON object on stdin and answers one.
:func:`run_node` blocks (for drivers that talk to other processes only);
:func:`run_node_async` leaves the event loop free, for drivers that talk to a server
running in the test's own loop.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = ROOT / "tests" / "interop" / "node"


def node_binary() -> str:
    """The ``node`` executable (a missing one fails the test: the SDK needs it)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is required for the interop tests (scripts/setup installs the SDK)")
    return node


def run_node(script: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Feed ``payload`` as JSON to ``script``; its JSON answer (a failure fails the test)."""
    done = subprocess.run(
        [node_binary(), str(DRIVERS / script)],
        input=json.dumps(payload).encode(),
        capture_output=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def run_node_async(
    script: str, payload: dict[str, Any], *, within: float = 120
) -> dict[str, Any]:
    """:func:`run_node` without blocking the loop (a server in this loop can answer)."""
    process = await asyncio.create_subprocess_exec(
        node_binary(),
        str(DRIVERS / script),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        async with asyncio.timeout(within):
            out, err = await process.communicate(json.dumps(payload).encode())
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()[-3000:]
    result: dict[str, Any] = json.loads(out)
    return result
