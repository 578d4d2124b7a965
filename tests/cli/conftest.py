"""Fixtures of the CLI tests: the environment of a paying wallet on the test chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from mppagent.devchain import DevAccount, DevChain


@pytest.fixture
def payer_env(chain: DevChain, payer: DevAccount, tmp_path: Path) -> dict[str, str]:
    return {
        "MPPAGENT_PRIVATE_KEY": payer.private_key,
        "MPPAGENT_RPC_URL": chain.rpc_url,
        "MPPAGENT_STORE": str(tmp_path / "cli.db"),
        "MPPAGENT_CONFIG": str(tmp_path / "absent.toml"),
    }
