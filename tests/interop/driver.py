"""Run a Node driver from ``tests/interop/node/`` (the reference SDK, from node_modules).

Shared by the interop tests: each driver reads one JSON object on stdin and answers one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = ROOT / "tests" / "interop" / "node"


def run_node(script: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Feed ``payload`` as JSON to ``script``; its JSON answer (a failure fails the test)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is required for the interop tests (scripts/setup installs the SDK)")
    done = subprocess.run(
        [node, str(DRIVERS / script)],
        input=json.dumps(payload).encode(),
        capture_output=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result
