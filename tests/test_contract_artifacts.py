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
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "mppagent" / "tempo" / "artifacts"
CONTRACTS = ("TempoStreamChannel", "TestToken", "TIP20ChannelReserve")


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


def _canonical_type(arg: dict[str, Any]) -> str:
    """An ABI parameter's canonical type, with tuples spelled out as in selectors."""
    kind = str(arg["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in arg["components"])
        return f"({inner}){kind.removeprefix('tuple')}"
    return kind


def _full_signatures(abi: list[dict[str, Any]], kind: str) -> set[str]:
    return {
        f"{item['name']}({','.join(_canonical_type(a) for a in item.get('inputs', []))})"
        for item in abi
        if item["type"] == kind
    }


def test_reserve_abi_has_the_tip1034_interface() -> None:
    abi = json.loads((ARTIFACTS / "TIP20ChannelReserve.json").read_text())["abi"]
    descriptor = "(address,address,address,address,bytes32,address,bytes32)"
    assert _full_signatures(abi, "function") >= {
        "CLOSE_GRACE_PERIOD()",
        "VOUCHER_TYPEHASH()",
        "open(address,address,address,uint96,bytes32,address)",
        f"settle({descriptor},uint96,bytes)",
        f"topUp({descriptor},uint96)",
        f"close({descriptor},uint96,uint96,bytes)",
        f"requestClose({descriptor})",
        f"withdraw({descriptor})",
        f"getChannel({descriptor})",
        "getChannelState(bytes32)",
        "getChannelStatesBatch(bytes32[])",
        "computeChannelId(address,address,address,address,bytes32,address,bytes32)",
        "getVoucherDigest(bytes32,uint96)",
        "domainSeparator()",
        "pendingExpiringNonceHash(address)",
    }
    errors = (
        "ChannelAlreadyExists ChannelNotFound NotPayer NotPayeeOrOperator InvalidPayee "
        "InvalidToken ZeroDeposit ExpiringNonceHashNotSet InvalidSignature AmountExceedsDeposit "
        "AmountNotIncreasing CaptureAmountInvalid CloseNotReady DepositOverflow"
    )
    assert _full_signatures(abi, "error") >= {f"{name}()" for name in errors.split()}
    state = next(item for item in abi if item.get("name") == "getChannelState")
    fields = [(c["name"], c["type"]) for c in state["outputs"][0]["components"]]
    assert fields == [("settled", "uint96"), ("deposit", "uint96"), ("closeRequestedAt", "uint32")]
