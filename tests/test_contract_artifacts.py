"""The compiled contracts shipped in ``mppagent/tempo/artifacts/`` match the Solidity sources.

The Python package deploys and calls the escrow from these JSON files (no Node at run time), so
a stale ABI or bytecode would silently test and ship something other than ``contracts/src``.
``scripts/contracts check`` rebuilds into a temporary directory and compares byte for byte.
Needs ``scripts/setup`` (forge and solc-js under ``node_modules``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "mppagent" / "tempo" / "artifacts"
CONTRACTS = ("TempoStreamChannel", "TestToken")


def _run_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(root / "scripts" / "contracts"), "check"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_shipped_artifacts_match_fresh_build() -> None:
    result = _run_check(ROOT)
    assert result.returncode == 0, (
        "scripts/contracts check failed (run `scripts/contracts build` and commit "
        f"mppagent/tempo/artifacts/):\n{result.stdout}\n{result.stderr}"
    )


def test_check_detects_a_stale_artifact(tmp_path: Path) -> None:
    # A private copy of the tree with one shipped file altered; node_modules is shared.
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("out", "cache")
    shutil.copytree(ROOT / "contracts", copy / "contracts", ignore=ignore)
    (copy / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "contracts", copy / "scripts" / "contracts")
    shutil.copytree(ARTIFACTS, copy / "mppagent" / "tempo" / "artifacts")
    (copy / "node_modules").symlink_to(ROOT / "node_modules", target_is_directory=True)

    stale = copy / "mppagent" / "tempo" / "artifacts" / "TempoStreamChannel.json"
    data = json.loads(stale.read_text())
    code: str = data["deployedBytecode"]
    data["deployedBytecode"] = code[:-2] + f"{int(code[-2:], 16) ^ 0xFF:02x}"  # flip the last byte
    stale.write_text(json.dumps(data, indent=2) + "\n")

    result = _run_check(copy)
    assert result.returncode != 0
    assert "TempoStreamChannel.json differs from a fresh build" in result.stderr


@pytest.mark.parametrize("name", CONTRACTS)
def test_artifact_shape(name: str) -> None:
    text = (ARTIFACTS / f"{name}.json").read_text()
    assert text.endswith("}\n")
    data = json.loads(text)
    assert list(data) == [
        "contractName",
        "abi",
        "bytecode",
        "deployedBytecode",
        "immutableReferences",
    ]
    for start, length in data["immutableReferences"]:
        assert 0 <= start < start + length <= (len(data["deployedBytecode"]) - 2) // 2
    assert data["contractName"] == name
    for field in ("bytecode", "deployedBytecode"):
        code = data[field]
        assert code.startswith("0x")
        assert len(code) > 2
        assert code == code.lower()
        bytes.fromhex(code[2:])


# The escrow ABI itself is compared with the deployed one in tests/tempo/test_escrow_abi.py.
