"""A local chain for development, tests and the demo: anvil plus our contracts.

:meth:`DevChain.start` runs anvil on 127.0.0.1 with port 0 and reads the
port anvil actually bound from its output (no port races between parallel
runs), deploys the test token and the escrow from the artifacts shipped in
the package, and funds fresh random accounts with gas and tokens.
:meth:`DevChain.stop` ends anvil and its process group.

anvil is looked up in ``$MPPAGENT_ANVIL``, then in ``node_modules/.bin`` of
the project checkout (``scripts/setup`` installs it from npm), then on PATH.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from mppagent.errors import ChainError, ConfigError
from mppagent.tempo.artifacts import load_artifact
from mppagent.tempo.chain import ChainClient, Wallet
from mppagent.tempo.escrow import Escrow, Token
from mppagent.tempo.hexutil import checksum_address
from mppagent.tempo.voucher import VoucherSigner

__all__ = ["DevAccount", "DevChain", "find_tool"]

_LISTENING = re.compile(rb"Listening on (127\.0\.0\.1|\[?::1\]?|localhost|0\.0\.0\.0):(\d+)")
_ETH = 10**18


@dataclass(frozen=True)
class DevAccount:
    """A funded dev-chain account. The key is omitted from ``repr``."""

    address: str
    private_key: str = field(repr=False)

    @classmethod
    def generate(cls) -> DevAccount:
        """A fresh random account (not yet funded)."""
        signer = VoucherSigner.generate()
        return cls(address=signer.address, private_key=signer.private_key_hex)

    def wallet(self) -> Wallet:
        """A :class:`Wallet` for this account's key."""
        return Wallet(self.private_key)


def find_tool(name: str) -> str:
    """Locate ``anvil``/``forge``: env override, project node_modules, then PATH."""
    override = os.environ.get(f"MPPAGENT_{name.upper()}")
    if override:
        return override
    here = Path(__file__).resolve().parent
    for base in (Path.cwd(), *here.parents):
        candidate = base / "node_modules" / ".bin" / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise ConfigError(
        f"{name} not found: run scripts/setup (installs it from npm) or set MPPAGENT_{name.upper()}"
    )


class DevChain:
    """A running anvil node with the token and escrow deployed."""

    def __init__(
        self,
        *,
        process: subprocess.Popen[bytes],
        log_path: Path,
        rpc_url: str,
        chain_id: int,
        token: str,
        escrow: str,
        deployer: DevAccount,
        accounts: list[DevAccount],
    ) -> None:
        self._process = process
        self._log_path = log_path
        self.rpc_url = rpc_url
        self.chain_id = chain_id
        self.token = token
        self.escrow = escrow
        self.deployer = deployer
        self.accounts = accounts
        self._http = httpx.AsyncClient(timeout=10.0)

    # -- lifecycle -------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        *,
        accounts: int = 4,
        tokens_per_account: int = 1_000 * 10**6,
        chain_id: int = 31337,
        block_time: int | None = None,
        startup_timeout: float = 30.0,
    ) -> DevChain:
        """Start anvil, deploy the contracts and fund ``accounts`` fresh accounts."""
        process, log_path = _spawn_anvil(chain_id, block_time)
        try:
            port = await _wait_for_port(process, log_path, within=startup_timeout)
            rpc_url = f"http://127.0.0.1:{port}"
            chain = await cls._deploy(process, log_path, rpc_url, chain_id)
            for _ in range(accounts):
                account = DevAccount.generate()
                await chain.fund(account.address, tokens=tokens_per_account)
                chain.accounts.append(account)
        except BaseException:
            _kill(process)
            _remove(log_path)
            raise
        return chain

    @classmethod
    async def _deploy(
        cls, process: subprocess.Popen[bytes], log_path: Path, rpc_url: str, chain_id: int
    ) -> DevChain:
        deployer = DevAccount.generate()
        async with httpx.AsyncClient(timeout=10.0) as http:
            await _rpc(http, rpc_url, "anvil_setBalance", [deployer.address, hex(1_000 * _ETH)])
        client = ChainClient(rpc_url)
        try:
            wallet = deployer.wallet()
            addresses = []
            for name in ("TestToken", "TempoStreamChannel"):
                tx = await client.sign_deploy(wallet, load_artifact(name).bytecode, context=name)
                receipt = await client.send_and_wait(tx, context=f"deploy {name}")
                addresses.append(str(receipt["contractAddress"]).lower())
        finally:
            await client.close()
        return cls(
            process=process,
            log_path=log_path,
            rpc_url=rpc_url,
            chain_id=chain_id,
            token=addresses[0],
            escrow=addresses[1],
            deployer=deployer,
            accounts=[],
        )

    async def stop(self) -> None:
        """Stop anvil and remove its log."""
        await self._http.aclose()
        _kill(self._process)
        _remove(self._log_path)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- helpers -----------------------------------------------------------------

    def client(self) -> ChainClient:
        """A new :class:`ChainClient` for this chain (caller closes it)."""
        return ChainClient(self.rpc_url)

    async def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """Raw JSON-RPC (anvil_* and evm_* methods included)."""
        return await _rpc(self._http, self.rpc_url, method, params or [])

    async def fund(self, address: str, *, eth: int = 100 * _ETH, tokens: int = 0) -> None:
        """Give ``address`` gas money and (by minting) test tokens."""
        await self.rpc("anvil_setBalance", [checksum_address(address), hex(eth)])
        if tokens:
            client = self.client()
            try:
                token = Token(client, self.token)
                tx = await token.sign_mint(self.deployer.wallet(), address, tokens)
                await client.send_and_wait(tx, context="mint")
            finally:
                await client.close()

    async def snapshot(self) -> str:
        """``evm_snapshot``: a state id to :meth:`revert` to."""
        return str(await self.rpc("evm_snapshot"))

    async def revert(self, snapshot_id: str) -> None:
        """``evm_revert`` to a snapshot (each snapshot can be used once)."""
        ok = await self.rpc("evm_revert", [snapshot_id])
        if ok is not True:
            raise ChainError(f"evm_revert to {snapshot_id} failed")

    async def increase_time(self, seconds: int) -> None:
        """Move the chain clock forward and mine a block at the new time."""
        await self.rpc("evm_increaseTime", [seconds])
        await self.rpc("evm_mine")

    def escrow_client(self, client: ChainClient) -> Escrow:
        """:class:`Escrow` bound to this chain's deployment."""
        return Escrow(client, self.escrow)

    def env(self, account: DevAccount) -> dict[str, str]:
        """Environment variables that point mppagent at this chain as ``account``."""
        return {
            "MPPAGENT_RPC_URL": self.rpc_url,
            "MPPAGENT_PRIVATE_KEY": account.private_key,
            "MPPAGENT_CHAIN_ID": str(self.chain_id),
            "MPPAGENT_ESCROW": self.escrow,
            "MPPAGENT_TOKEN": self.token,
        }


async def _rpc(http: httpx.AsyncClient, url: str, method: str, params: list[Any]) -> Any:
    try:
        response = await http.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        )
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ChainError(f"{method} failed: {type(exc).__name__}") from None
    if "error" in body:
        raise ChainError(f"{method} failed: {body['error'].get('message', body['error'])}")
    return body.get("result")


def _spawn_anvil(chain_id: int, block_time: int | None) -> tuple[subprocess.Popen[bytes], Path]:
    """Start anvil with its output going to a temporary log file.

    A file rather than a pipe: anvil logs every RPC call, and an undrained
    pipe would eventually block it.
    """
    anvil = find_tool("anvil")
    args = [anvil, "--host", "127.0.0.1", "--port", "0", "--chain-id", str(chain_id)]
    if block_time:
        args += ["--block-time", str(block_time)]
    with tempfile.NamedTemporaryFile(
        prefix="mppagent-anvil-", suffix=".log", delete=False
    ) as log_file:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            args,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return process, Path(log_file.name)


def _read_log(path: Path) -> bytes:
    return path.read_bytes()


async def _wait_for_port(process: subprocess.Popen[bytes], log_path: Path, *, within: float) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        text = _read_log(log_path)
        match = _LISTENING.search(text)
        if match:
            return int(match.group(2))
        if process.poll() is not None:
            tail = text[-500:].decode(errors="replace")
            raise ChainError(f"anvil exited with status {process.returncode}: {tail}")
        await asyncio.sleep(0.02)
    raise ChainError(f"anvil did not report a listening port within {within:.0f}s")


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
