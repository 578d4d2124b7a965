"""The dev chain itself: anvil really starts and stops, snapshots and the clock behave."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mppagent.devchain import DevAccount, DevChain, find_tool
from mppagent.errors import ChainError, ConfigError
from mppagent.tempo.chain import ChainClient
from mppagent.tempo.escrow import Token

pytestmark = pytest.mark.chain

FUNDED = 1_000_000_000
ETH = 10**18


@pytest.fixture
async def client(chain: DevChain) -> AsyncIterator[ChainClient]:
    c = chain.client()
    try:
        yield c
    finally:
        await c.close()


def _port(rpc_url: str) -> int:
    parts = urlsplit(rpc_url)
    assert parts.hostname == "127.0.0.1"
    assert parts.port is not None
    return parts.port


def _refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


def _exists(path: Path) -> bool:
    return path.exists()


async def test_start_and_stop_a_separate_chain() -> None:
    dev = await DevChain.start(accounts=1)
    port = _port(dev.rpc_url)
    log_path: Path = dev._log_path
    try:
        assert not _refuses(port)
        assert _exists(log_path)
        assert len(dev.accounts) == 1
        (account,) = dev.accounts
        assert account.private_key not in repr(account)
        assert account.private_key[2:] not in repr(dev.accounts)
        assert account.wallet().address == account.address
        assert dev.chain_id == 31337
        assert dev.token == dev.token.lower()
        assert dev.escrow == dev.escrow.lower()
        assert dev.token != dev.escrow

        client = dev.client()
        try:
            assert await client.chain_id() == 31337
            for address in (dev.token, dev.escrow):
                code = await dev.rpc("eth_getCode", [address, "latest"])
                assert len(code) > 200
            assert await Token(client, dev.token).balance_of(account.address) == FUNDED
            assert (
                int(await dev.rpc("eth_getBalance", [account.address, "latest"]), 16) == 100 * ETH
            )
            assert await dev.escrow_client(client).close_grace_period() == 900
        finally:
            await client.close()

        assert dev.env(account) == {
            "MPPAGENT_RPC_URL": f"http://127.0.0.1:{port}",
            "MPPAGENT_PRIVATE_KEY": account.private_key,
            "MPPAGENT_CHAIN_ID": "31337",
            "MPPAGENT_ESCROW": dev.escrow,
            "MPPAGENT_TOKEN": dev.token,
        }
    finally:
        await dev.stop()

    assert dev._process.poll() is not None
    assert _refuses(port)
    assert not _exists(log_path)
    await dev.stop()  # stopping twice is harmless


async def test_context_manager_stops_anvil() -> None:
    async with await DevChain.start(accounts=0) as dev:
        port = _port(dev.rpc_url)
        assert dev.accounts == []
        assert await dev.rpc("eth_chainId") == "0x7a69"
    assert _refuses(port)
    assert dev._process.poll() is not None


async def test_start_fails_cleanly_when_anvil_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPPAGENT_ANVIL", "/bin/false")
    with pytest.raises(ChainError, match="anvil exited with status 1"):
        await DevChain.start(accounts=1, startup_timeout=5)


def test_find_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MPPAGENT_ANVIL", raising=False)
    anvil = Path(find_tool("anvil"))
    assert anvil.parts[-3:] == ("node_modules", ".bin", "anvil")
    monkeypatch.setenv("MPPAGENT_ANVIL", "/opt/anvil")
    assert find_tool("anvil") == "/opt/anvil"
    with pytest.raises(ConfigError, match="no-such-tool-xyz not found"):
        find_tool("no-such-tool-xyz")


async def test_snapshot_and_revert_restore_balances(chain: DevChain, client: ChainClient) -> None:
    token = Token(client, chain.token)
    account = chain.accounts[3]
    stranger = DevAccount.generate()
    block_before = await client.w3.eth.block_number

    snapshot = await chain.snapshot()
    await chain.fund(account.address, eth=5 * ETH, tokens=123)
    await chain.fund(stranger.address, eth=1, tokens=7)
    assert await token.balance_of(account.address) == FUNDED + 123
    assert await client.w3.eth.get_balance(account.address) == 5 * ETH  # type: ignore[arg-type]
    assert await token.balance_of(stranger.address) == 7
    assert await client.w3.eth.get_balance(stranger.address) == 1  # type: ignore[arg-type]
    assert await client.w3.eth.block_number == block_before + 2

    await chain.revert(snapshot)
    assert await token.balance_of(account.address) == FUNDED
    assert await client.w3.eth.get_balance(account.address) == 100 * ETH  # type: ignore[arg-type]
    assert await token.balance_of(stranger.address) == 0
    assert await client.w3.eth.get_balance(stranger.address) == 0  # type: ignore[arg-type]
    assert await client.w3.eth.block_number == block_before

    # A snapshot id is spent by reverting to it.
    with pytest.raises(ChainError, match="evm_revert"):
        await chain.revert(snapshot)


async def test_increase_time_moves_block_timestamp(chain: DevChain, client: ChainClient) -> None:
    before = await client.block_timestamp()
    block = await client.w3.eth.block_number
    await chain.increase_time(1_000)
    after = await client.block_timestamp()
    assert await client.w3.eth.block_number == block + 1
    assert 1_000 <= after - before <= 1_003
    await chain.increase_time(900)
    assert 1_900 <= await client.block_timestamp() - before <= 1_905


async def test_rpc_errors_are_chain_errors(chain: DevChain) -> None:
    with pytest.raises(ChainError, match="no_such_method"):
        await chain.rpc("no_such_method")
    assert int(await chain.rpc("eth_chainId"), 16) == chain.chain_id
