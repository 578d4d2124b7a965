"""``mppagent devnet --chain tempo --json``: one JSON object other tools can use."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import pytest

from mppagent.tempo.tempo_chain import PATH_USD

pytestmark = pytest.mark.chain

ROOT = Path(__file__).resolve().parents[2]


async def test_devnet_tempo_json_describes_a_usable_chain() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from mppagent.cli import main; sys.exit(main())",
        "devnet",
        "--chain",
        "tempo",
        "--json",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        devnet = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))
        assert devnet["type"] == "devnet"
        assert devnet["network"] == "tempo"
        assert devnet["currency"] == devnet["fee_token"] == PATH_USD
        assert devnet["MPPAGENT_FEE_TOKEN"] == PATH_USD
        assert len(devnet["accounts"]) == 2
        for account in devnet["accounts"]:
            assert set(account) == {"address", "private_key"}
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                devnet["rpc_url"],
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "eth_getCode",
                    "params": [devnet["escrow"], "latest"],
                },
            )
            assert len(answer.json()["result"]) > 200
            chain_id = await http.post(
                devnet["rpc_url"],
                json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            )
            assert int(chain_id.json()["result"], 16) == int(devnet["chain_id"])
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 130
