"""A local chain for development, tests and the demo: anvil plus our contracts.

:meth:`DevChain.start` runs anvil on 127.0.0.1 with port 0 and reads the
port anvil actually bound from its output (no port races between parallel
runs), deploys the escrow from the artifacts shipped in the package, and
funds fresh random accounts. :meth:`DevChain.stop` ends anvil and its
process group. Two networks:

* ``"evm"`` -- plain anvil; our ERC-20 test token is the session currency and
  accounts are funded by minting it.
* ``"tempo"`` -- ``anvil --network tempo --hardfork T4`` (T4: at the default
  fork a second expiring-nonce transaction from one account is dropped).
  pathUSD (predeployed TIP-20) is the session currency and the fee token.
  ``mint`` reverts there, so accounts are funded by ``transfer`` from anvil's
  first dev account (which holds 2^64-1 of each stablecoin), in one ``0x76``
  transaction; they also get a native balance, which anvil's pool demands of
  EIP-1559 senders even though their fees are paid in pathUSD.

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
from typing import Any, Literal, Self

import httpx

from mppagent.devchain_front import RpcFront
from mppagent.errors import ChainError, ConfigError
from mppagent.tempo.artifacts import load_artifact
from mppagent.tempo.chain import ChainClient, Wallet
from mppagent.tempo.escrow import Escrow, Token, encode_transfer
from mppagent.tempo.hexutil import checksum_address
from mppagent.tempo.tempo_chain import PATH_USD, send_tempo, sign_calls
from mppagent.tempo.tempotx import Call
from mppagent.tempo.voucher import VoucherSigner

__all__ = ["DevAccount", "DevChain", "Network", "find_tool"]

_LISTENING = re.compile(rb"Listening on (127\.0\.0\.1|\[?::1\]?|localhost|0\.0\.0\.0):(\d+)")
_ETH = 10**18

Network = Literal["evm", "tempo"]
TEMPO_HARDFORK = "T4"
# anvil's first dev account (the well-known "test test ... junk" mnemonic): on a
# Tempo-mode chain it holds the predeployed stablecoins and pays for deployment.
_ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


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
        network: Network = "evm",
    ) -> None:
        self._process = process
        self._log_path = log_path
        self.rpc_url = rpc_url
        self.anvil_url = rpc_url
        self._front: RpcFront | None = None
        self.chain_id = chain_id
        self.token = token
        self.escrow = escrow
        self.deployer = deployer
        self.accounts = accounts
        self.network: Network = network
        self._http = httpx.AsyncClient(timeout=10.0)

    @property
    def fee_token(self) -> str | None:
        """The token Tempo transactions pay fees in (pathUSD), ``None`` on a plain EVM chain."""
        return PATH_USD if self.network == "tempo" else None

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
        network: Network = "evm",
    ) -> DevChain:
        """Start anvil, deploy the contracts and fund ``accounts`` fresh accounts."""
        if network not in ("evm", "tempo"):
            raise ConfigError(f"unknown dev-chain network {network!r} (evm or tempo)")
        process, log_path = _spawn_anvil(chain_id, block_time, network)
        chain: DevChain | None = None
        try:
            port = await _wait_for_port(process, log_path, within=startup_timeout)
            rpc_url = f"http://127.0.0.1:{port}"
            chain = await cls._deploy(process, log_path, rpc_url, chain_id, network)
            if network == "tempo":
                await chain._start_front()
            fresh = [DevAccount.generate() for _ in range(accounts)]
            await chain.fund_many([a.address for a in fresh], tokens=tokens_per_account)
            chain.accounts.extend(fresh)
            if network == "tempo":
                from mppagent.devchain_reserve import install_reserve  # it imports this module

                await install_reserve(chain, accounts=[chain.deployer, *fresh])
        except BaseException:
            if chain is not None:
                await chain.stop()
            else:
                _kill(process)
                _remove(log_path)
            raise
        return chain

    async def _start_front(self) -> None:
        """Put the JSON-RPC front (:mod:`mppagent.devchain_front`) before anvil: it becomes
        :attr:`rpc_url`; anvil's own URL stays in :attr:`anvil_url`."""
        self._front = RpcFront(self.anvil_url)
        self.rpc_url = await self._front.start()

    @classmethod
    async def _deploy(
        cls,
        process: subprocess.Popen[bytes],
        log_path: Path,
        rpc_url: str,
        chain_id: int,
        network: Network,
    ) -> DevChain:
        """Deploy the contracts; on Tempo the escrow only, pathUSD being the currency.

        EVM: a fresh deployer with a native balance deploys the test token and the
        escrow. Tempo: anvil's funded dev account deploys the escrow with an ordinary
        EIP-1559 transaction (fee paid in pathUSD); at T4 that needs about 18 M gas,
        within anvil's 30 M block limit.
        """
        if network == "tempo":
            deployer = DevAccount(
                address=Wallet(_ANVIL_DEV_KEY).address, private_key=_ANVIL_DEV_KEY
            )
            names: tuple[str, ...] = ("TempoStreamChannel",)
        else:
            deployer = DevAccount.generate()
            names = ("TestToken", "TempoStreamChannel")
            async with httpx.AsyncClient(timeout=10.0) as http:
                await _rpc(http, rpc_url, "anvil_setBalance", [deployer.address, hex(1_000 * _ETH)])
        client = ChainClient(rpc_url)
        try:
            wallet = deployer.wallet()
            addresses = []
            for name in names:
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
            token=PATH_USD if network == "tempo" else addresses[0],
            escrow=addresses[-1],
            deployer=deployer,
            accounts=[],
            network=network,
        )

    async def stop(self) -> None:
        """Stop anvil and remove its log."""
        await self._http.aclose()
        if self._front is not None:
            await self._front.stop()
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
        """Give ``address`` a native balance and ``tokens`` of the session currency."""
        await self.fund_many([address], eth=eth, tokens=tokens)

    async def fund_many(
        self, addresses: list[str], *, eth: int = 100 * _ETH, tokens: int = 0
    ) -> None:
        """Fund several accounts: native balance, then tokens (EVM: mint each; Tempo: one
        ``0x76`` transaction of ``transfer`` calls from the dev account)."""
        for address in addresses:
            await self.rpc("anvil_setBalance", [checksum_address(address), hex(eth)])
        if not tokens or not addresses:
            return
        client = self.client()
        try:
            if self.network == "tempo":
                calls = [Call(self.token, encode_transfer(a, tokens)) for a in addresses]
                # The protocol nonce (key 0), not an expiring one: two identical fundings
                # signed before a new block would be one transaction (same bytes) sent twice.
                nonce = await client.transaction_count(self.deployer.address)
                wallet = self.deployer.wallet()
                tx = await sign_calls(
                    client, wallet, calls, fee_token=PATH_USD, nonce_key=0, nonce=nonce
                )
                await send_tempo(client, tx, context="fund")
                return
            token = Token(client, self.token)
            for address in addresses:
                mint = await token.sign_mint(self.deployer.wallet(), address, tokens)
                await client.send_and_wait(mint, context="mint")
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
        env = {
            "MPPAGENT_RPC_URL": self.rpc_url,
            "MPPAGENT_PRIVATE_KEY": account.private_key,
            "MPPAGENT_CHAIN_ID": str(self.chain_id),
            "MPPAGENT_ESCROW": self.escrow,
            "MPPAGENT_TOKEN": self.token,
        }
        if self.fee_token is not None:
            env["MPPAGENT_FEE_TOKEN"] = self.fee_token
        return env

    def describe(self) -> dict[str, Any]:
        """The chain as one JSON-able object (``mppagent devnet --json``), keys included.

        Dev-chain keys only: they guard nothing of value.
        """
        return {
            "network": self.network,
            "rpc_url": self.rpc_url,
            "chain_id": self.chain_id,
            "currency": self.token,
            "fee_token": self.fee_token,
            "escrow": self.escrow,
            "accounts": [
                {"address": a.address.lower(), "private_key": a.private_key} for a in self.accounts
            ],
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


def _spawn_anvil(
    chain_id: int, block_time: int | None, network: Network = "evm"
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start anvil with its output going to a temporary log file.

    A file rather than a pipe: anvil logs every RPC call, and an undrained
    pipe would eventually block it.
    """
    anvil = find_tool("anvil")
    args = [anvil, "--host", "127.0.0.1", "--port", "0", "--chain-id", str(chain_id)]
    if block_time:
        args += ["--block-time", str(block_time)]
    if network == "tempo":
        args += ["--network", "tempo", "--hardfork", TEMPO_HARDFORK]
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
