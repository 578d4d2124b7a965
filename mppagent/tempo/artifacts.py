"""Compiled contract artifacts shipped inside the package.

``scripts/contracts build`` compiles ``contracts/src`` and writes ABI and
bytecode here, so the library needs neither Node nor a Solidity compiler at
run time; ``scripts/contracts check`` (run by the test suite) fails when the
shipped files differ from a fresh build.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from mppagent.tempo.hexutil import keccak

__all__ = ["Artifact", "load_artifact"]


@dataclass(frozen=True)
class Artifact:
    """ABI and creation bytecode of one contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str = ""
    immutable_ranges: tuple[tuple[int, int], ...] = ()

    def matches_runtime(self, code: bytes) -> bool:
        """Whether ``code`` (from ``eth_getCode``) is this contract as we compiled it.

        Immutables (the EIP-712 domain's cached address and chain id) differ per
        deployment, so their byte ranges are ignored; every other byte must match.
        """
        expected = bytes.fromhex(self.deployed_bytecode.removeprefix("0x"))
        if not expected or len(code) != len(expected):
            return False
        masked = bytearray(code)
        for start, length in self.immutable_ranges:
            masked[start : start + length] = expected[start : start + length]
        return bytes(masked) == expected

    def error_signatures(self) -> dict[bytes, tuple[str, list[str]]]:
        """Map each custom error's 4-byte selector to its name and argument types."""
        out: dict[bytes, tuple[str, list[str]]] = {}
        for item in self.abi:
            if item.get("type") != "error":
                continue
            types = [str(arg["type"]) for arg in item.get("inputs", [])]
            signature = f"{item['name']}({','.join(types)})"
            out[keccak(signature.encode())[:4]] = (str(item["name"]), types)
        return out


@functools.cache
def load_artifact(name: str) -> Artifact:
    """Load a shipped contract (``TempoStreamChannel``, ``TestToken``, ``TIP20ChannelReserve``)."""
    text = resources.files("mppagent.tempo").joinpath("artifacts", f"{name}.json").read_text()
    data = json.loads(text)
    return Artifact(
        name=name,
        abi=list(data["abi"]),
        bytecode=str(data["bytecode"]),
        deployed_bytecode=str(data.get("deployedBytecode", "")),
        immutable_ranges=tuple((int(s), int(n)) for s, n in data.get("immutableReferences", [])),
    )
