"""Our ``TempoStreamChannel`` has the ABI of the v1 escrow deployed on Tempo, item by item.

The reference SDK ships the deployed contract's ABI (``mppx`` 0.11.0,
``dist/tempo/legacy/session/escrow.abi.js``); it is loaded from ``node_modules`` at test time,
so this compares against the published artifact rather than a copy that could drift. Every
function, event and error is checked by name, parameter names and types (structs field by
field), indexing and mutability; ``internalType`` is compiler bookkeeping and is ignored.
The Python encoders in :mod:`mppagent.tempo.escrow` are checked against the same ABI.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mppagent.tempo import escrow as escrow_module
from mppagent.tempo.artifacts import load_artifact
from mppagent.tempo.hexutil import keccak

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED_ABI_JS = ROOT / "node_modules/mppx/dist/tempo/legacy/session/escrow.abi.js"

# OpenZeppelin's ReentrancyGuard error: only a reentering (malicious) token can trigger it, and
# the deployed contract has no guard. It is the one item our ABI may have beyond the deployed one.
ALLOWED_EXTRA_ERRORS = {"ReentrancyGuardReentrantCall()"}


@functools.cache
def deployed_abi() -> tuple[dict[str, Any], ...]:
    """The deployed escrow's ABI as the reference SDK publishes it (needs scripts/setup)."""
    node = shutil.which("node")
    assert node is not None, "node is required (scripts/setup installs the reference SDK)"
    assert DEPLOYED_ABI_JS.is_file(), f"{DEPLOYED_ABI_JS} is missing; run scripts/setup"
    script = (
        f"import {{ escrowAbi }} from {json.dumps(DEPLOYED_ABI_JS.as_uri())};"
        "process.stdout.write(JSON.stringify(escrowAbi));"
    )
    out = subprocess.run(
        [node, "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return tuple(json.loads(out))


def our_abi() -> list[dict[str, Any]]:
    return load_artifact("TempoStreamChannel").abi


def _param(p: dict[str, Any]) -> dict[str, Any]:
    out = {"name": p.get("name", ""), "type": p["type"]}
    if "indexed" in p:
        out["indexed"] = p["indexed"]
    if "components" in p:
        out["components"] = [_param(c) for c in p["components"]]
    return out


def canonical(item: dict[str, Any]) -> dict[str, Any]:
    """An ABI item without ``internalType``: what encoding, decoding and selectors depend on."""
    out: dict[str, Any] = {"type": item["type"], "name": item.get("name")}
    out["inputs"] = [_param(p) for p in item.get("inputs", [])]
    if item["type"] == "function":
        out["outputs"] = [_param(p) for p in item.get("outputs", [])]
        out["stateMutability"] = item["stateMutability"]
    if item["type"] == "event":
        out["anonymous"] = item.get("anonymous", False)
    return out


def _type(p: dict[str, Any]) -> str:
    if p["type"].startswith("tuple"):
        inner = ",".join(_type(c) for c in p["components"])
        return f"({inner}){p['type'][len('tuple') :]}"
    return str(p["type"])


def signature(item: dict[str, Any]) -> str:
    return f"{item['name']}({','.join(_type(p) for p in item.get('inputs', []))})"


def by_kind(abi: Any, kind: str) -> dict[str, dict[str, Any]]:
    items = [item for item in abi if item["type"] == kind]
    named = {str(item["name"]): item for item in items}
    assert len(named) == len(items), f"overloaded {kind}s are not expected in the v1 escrow"
    return named


def names(kind: str) -> list[str]:
    return sorted(by_kind(deployed_abi(), kind))


# -- item by item ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", names("function"))
def test_function_matches_deployed(name: str) -> None:
    ours = by_kind(our_abi(), "function")
    assert name in ours, f"our escrow lacks {name}"
    assert canonical(ours[name]) == canonical(by_kind(deployed_abi(), "function")[name])


@pytest.mark.parametrize("name", names("event"))
def test_event_matches_deployed(name: str) -> None:
    ours = by_kind(our_abi(), "event")
    assert name in ours, f"our escrow lacks event {name}"
    assert canonical(ours[name]) == canonical(by_kind(deployed_abi(), "event")[name])


@pytest.mark.parametrize("name", names("error"))
def test_error_matches_deployed(name: str) -> None:
    ours = by_kind(our_abi(), "error")
    assert name in ours, f"our escrow lacks error {name}"
    assert canonical(ours[name]) == canonical(by_kind(deployed_abi(), "error")[name])


def test_nothing_beyond_the_deployed_abi() -> None:
    """Same function and event sets; errors differ only by the documented guard error."""
    for kind in ("function", "event"):
        assert set(by_kind(our_abi(), kind)) == set(by_kind(deployed_abi(), kind)), kind
    ours = {signature(e) for e in by_kind(our_abi(), "error").values()}
    theirs = {signature(e) for e in by_kind(deployed_abi(), "error").values()}
    assert ours - theirs == ALLOWED_EXTRA_ERRORS
    assert theirs <= ours
    # A constructor is not callable on a deployed contract; the published ABI omits it.
    assert {item["type"] for item in our_abi()} == {"constructor", "function", "event", "error"}


def test_the_comparison_can_fail() -> None:
    """A reordered struct or a narrower parameter is caught by the comparison above."""
    deployed = by_kind(deployed_abi(), "function")
    get_channel = json.loads(json.dumps(deployed["getChannel"]))
    fields = get_channel["outputs"][0]["components"]
    fields[0], fields[2] = fields[2], fields[0]
    assert canonical(get_channel) != canonical(deployed["getChannel"])
    top_up = json.loads(json.dumps(deployed["topUp"]))
    top_up["inputs"][1]["type"] = "uint128"
    assert signature(top_up) != signature(deployed["topUp"])


# -- the Python client encodes and decodes that ABI --------------------------------------------


def test_python_selectors_are_deployed_functions() -> None:
    functions = {signature(f) for f in by_kind(deployed_abi(), "function").values()}
    selectors = {keccak(sig.encode())[:4]: sig for sig in functions}
    token_functions = {"approve", "allowance", "balanceOf", "mint", "transfer"}
    for name, selector in escrow_module._SEL.items():
        if name in token_functions:
            continue
        assert selector in selectors, f"escrow.py's {name} selector is not in the deployed ABI"
        assert selectors[selector].startswith(f"{name}(")


def test_python_event_decoders_are_deployed_events() -> None:
    deployed = by_kind(deployed_abi(), "event")
    assert {v[0] for v in escrow_module._EVENTS.values()} == set(deployed)
    for topic, (name, data_types, data_names) in escrow_module._EVENTS.items():
        event = deployed[name]
        assert topic == keccak(signature(event).encode())
        unindexed = [p for p in event["inputs"] if not p["indexed"]]
        assert data_types == [p["type"] for p in unindexed]
        assert data_names == [p["name"] for p in unindexed]
        # The decoder reads channelId, payer, payee from the three topics.
        indexed = [(p["name"], p["type"]) for p in event["inputs"] if p["indexed"]]
        assert indexed == [("channelId", "bytes32"), ("payer", "address"), ("payee", "address")]


def test_python_channel_tuple_is_deployed_struct() -> None:
    (output,) = by_kind(deployed_abi(), "function")["getChannel"]["outputs"]
    assert _type(output) == escrow_module._CHANNEL_TUPLE
    assert [c["name"] for c in output["components"]] == [
        "finalized",
        "closeRequestedAt",
        "payer",
        "payee",
        "token",
        "authorizedSigner",
        "deposit",
        "settled",
    ]


def test_python_error_decoders_know_every_deployed_error() -> None:
    decoders = load_artifact("TempoStreamChannel").error_signatures()
    for error in by_kind(deployed_abi(), "error").values():
        assert keccak(signature(error).encode())[:4] in decoders
