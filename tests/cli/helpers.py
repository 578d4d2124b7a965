"""Running the ``mppagent`` command as a real process, and reading its JSON lines."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ENTRY = (sys.executable, "-c", "import sys; from mppagent.cli import main; sys.exit(main())")
"""The console script's code, run with this interpreter."""


async def spawn(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start ``mppagent ARGS`` with pipes on stdin, stdout and stderr."""
    return await asyncio.create_subprocess_exec(
        *ENTRY,
        *args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> tuple[int, str, str]:
    """Run ``mppagent ARGS`` as a process and collect exit code, stdout and stderr."""
    process = await spawn(*args, env=env)
    out, err = await asyncio.wait_for(process.communicate(stdin), 170)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def lines(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects of ``--json`` output, one per line."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


async def faulty_request(
    base: str, fault: str, env: dict[str, str], *, tokens: int = 20
) -> tuple[int, str, str]:
    """``mppagent request`` a paid stream from a test-mode server told to misbehave."""
    body = {
        "model": "mpp-fake-1",
        "stream": True,
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": "hi"}],
    }
    return await cli(
        "request",
        "POST",
        f"{base}/v1/chat/completions",
        "-H",
        "content-type: application/json",
        "-H",
        f"x-mpp-fault: {fault}",
        "--data",
        json.dumps(body),
        env=env,
    )


def chat_args(base: str, *extra: str, prompt: str = "hi") -> tuple[str, ...]:
    """``chat`` against the server at ``base`` (``.../v1``) with the plain fake model."""
    return ("chat", prompt, "--base-url", base, "--model", "mpp-fake-1", *extra)


def local_chat_args(base: str, prompt: str) -> tuple[str, ...]:
    """The ``chat`` that ``serve`` suggests (the ``local`` profile), in JSON."""
    return ("chat", prompt, "--provider", "local", "--base-url", base, "--json")
