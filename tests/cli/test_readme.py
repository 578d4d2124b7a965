"""Every Python snippet in the README runs as pasted, against the reference server."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from mppagent.devchain import DevAccount, DevChain
from mppagent.devserver import RunningServer
from tests.cli.helpers import ROOT

pytestmark = pytest.mark.timeout(240)

SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)


def test_the_readme_has_python_snippets() -> None:
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
async def test_readme_snippet_runs(
    index: int, server: RunningServer, chain: DevChain, payer: DevAccount, tmp_path: Path
) -> None:
    script = tmp_path / f"snippet_{index}.py"
    await asyncio.to_thread(script.write_text, SNIPPETS[index])
    env = {
        **os.environ,
        # What `mppagent devnet` exports, and where `mppagent serve` listens.
        "MPPAGENT_PRIVATE_KEY": payer.private_key,
        "MPPAGENT_RPC_URL": chain.rpc_url,
        "MPPAGENT_BASE_URL": f"{server.url}/v1",
        # Keep the default channel store out of the real home directory.
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "MPPAGENT_STORE": "",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 200)
    assert process.returncode == 0, f"snippet {index}:\n{SNIPPETS[index]}\n{err.decode()[-3000:]}"
    assert out.strip(), f"snippet {index} printed nothing"
