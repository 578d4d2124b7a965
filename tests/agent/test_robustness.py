"""Robustness: the server dies mid-stream, the chain RPC is gone, slow or stalls, transactions
revert, nonces are left unused. Every failure is typed and bounded in time, and afterwards the
store, the server's books and the chain still agree to the base unit.

The chain-trouble tests put :class:`tests.agent.rpcproxy.RpcProxy` (127.0.0.1) between the
agent and anvil; the reference server talks to anvil directly, like a payee with its own node.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_abi.abi import encode as abi_encode

from mppagent import (
    Agent,
    ChannelStatus,
    NetworkError,
    SpendPolicy,
    SqliteChannelStore,
    StreamInterrupted,
)
from mppagent import failpoints as failpoints_module
from mppagent.devchain import DevAccount, DevChain
from mppagent.devserver import RunningServer
from mppagent.errors import ChainError
from mppagent.protocol import parse_challenges
from mppagent.session.policy import Offer, select_offer
from mppagent.session.store import OperationKind, OperationState
from mppagent.tempo.chain import (
    ChainUnavailable,
    ContractReverted,
    TransactionFailed,
)
from mppagent.tempo.escrow import ChannelState, Escrow, EscrowEvent, Token
from mppagent.tempo.hexutil import checksum_address, keccak
from tests.agent.rpcproxy import RpcProxy
from tests.support import (
    CHAT,
    AgentFactory,
    ServerFactory,
    chat_body,
    drain,
    open_auth,
    token_balances,
)

PRICE = 25
CHAIN_TIMEOUT = 1.0  # per JSON-RPC call, for agents behind a stalling proxy

pytestmark = pytest.mark.timeout(120)


# -- helpers ---------------------------------------------------------------------------------


async def onchain(chain: DevChain, channel_id: str) -> ChannelState:
    client = chain.client()
    try:
        return await Escrow(client, chain.escrow).get_channel(channel_id)
    finally:
        await client.close()


async def onchain_closed(chain: DevChain, channel_id: str) -> EscrowEvent | None:
    client = chain.client()
    try:
        return await Escrow(client, chain.escrow).closed_event(channel_id)
    finally:
        await client.close()


async def transfer(chain: DevChain, sender: DevAccount, to: str, amount: int) -> None:
    """Move test tokens with a separate client (the agent's nonce counter never sees it)."""
    client = chain.client()
    try:
        data = keccak(b"transfer(address,uint256)")[:4] + abi_encode(
            ["address", "uint256"], [checksum_address(to), amount]
        )
        tx = await client.sign_call(sender.wallet(), chain.token, data, context="transfer")
        await client.send_and_wait(tx, context="transfer")
    finally:
        await client.close()


def assert_store_consistent(agent: Agent, *, pending_ok: bool = False) -> None:
    """No lease held, vouchers only ever up, ``spent <= accepted <= signed <= deposit``."""
    for record in agent.channels.list():
        assert record.lease_owner is None, record
        assert record.spent <= record.accepted <= record.signed <= record.deposit, record
        ops = agent.store.operations(record.channel_id, kind=OperationKind.VOUCHER)
        vouchers = [op.amount for op in ops]
        assert vouchers == sorted(set(vouchers)), record.channel_id
        if vouchers:
            assert record.signed == vouchers[-1]
    if not pending_ok:
        assert agent.store.operations(state=OperationState.PENDING) == []
        assert not [r for r in agent.channels.list() if r.status == ChannelStatus.OPENING]


async def close_all_and_check(
    chain: DevChain,
    agent: Agent,
    payer: DevAccount,
    payee: DevAccount,
    before: list[int],
    books: Callable[[str], Awaitable[int]],
) -> int:
    """Close every live channel; receipts, server books and token balances must agree."""
    paid = 0
    for record in agent.channels.list(include_closed=False):
        result = await agent.channels.close(record.channel_id)
        assert result.paid == await books(record.channel_id)
        assert result.refunded == result.deposit - result.paid
        state = await onchain(chain, record.channel_id)
        assert state.finalized
        closed = await onchain_closed(chain, record.channel_id)  # the record itself is wiped
        assert closed is not None
        assert closed.values["settledToPayee"] == result.paid
        paid += result.paid
    for record in agent.channels.list():
        state = await onchain(chain, record.channel_id)
        assert not state.exists or state.finalized, record  # no deposit left locked anywhere
    assert_store_consistent(agent)
    payer_after, payee_after = await token_balances(chain, payer.address, payee.address)
    assert before[0] - payer_after == paid
    assert payee_after - before[1] == paid
    return paid


def running_books(server: RunningServer) -> Callable[[str], Awaitable[int]]:
    """What an in-process server counts as spent on a channel."""

    async def spent(channel_id: str) -> int:
        payee = await server.app.state.devserver.payee()
        channel = payee.state.get(channel_id)
        assert channel is not None
        return int(channel.spent)

    return spent


def file_books(path: Path) -> Callable[[str], Awaitable[int]]:
    """What a server process counts as spent on a channel, from its state file."""

    async def spent(channel_id: str) -> int:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            found = db.execute(
                "SELECT spent FROM channels WHERE channel_id = ?", (channel_id,)
            ).fetchone()
        finally:
            db.close()
        assert found is not None
        return int(found[0])

    return spent


async def fresh_offer(agent: Agent, url: str) -> Offer:
    """The offer the agent would pay for ``url`` (from a fresh 402 challenge)."""
    async with httpx.AsyncClient() as http:
        response = await http.head(url)
    challenges = parse_challenges(response.headers.get_list("www-authenticate"))
    return select_offer(agent.policy, challenges, datetime.now(UTC))


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def proxy(chain: DevChain) -> AsyncIterator[RpcProxy]:
    rpc = await RpcProxy(chain.rpc_url).start()
    try:
        yield rpc
    finally:
        await rpc.stop()


@pytest.fixture
async def make_proxied_agent(
    proxy: RpcProxy, payer: DevAccount, tmp_path: Path
) -> AsyncIterator[AgentFactory]:
    """Agents paying from ``payer`` whose chain RPC goes through ``proxy``."""
    agents: list[Agent] = []

    async def make(**kwargs: Any) -> Agent:
        kwargs.setdefault("policy", SpendPolicy())
        kwargs.setdefault("chain_timeout", CHAIN_TIMEOUT)
        agent = Agent(
            private_key=payer.private_key,
            rpc_url=proxy.url,
            store=SqliteChannelStore(tmp_path / "proxied.db"),
            **kwargs,
        )
        agents.append(agent)
        await agent.start()
        return agent

    yield make
    for agent in agents:
        await agent.aclose()


class DevServerProcess:
    """``python -m mppagent.devserver`` in a child process that the test may SIGKILL."""

    def __init__(self, config: dict[str, Any], log: Path) -> None:
        self.config = config
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, port: int = 0) -> str:
        env = {**os.environ, "MPPAGENT_DEVSERVER_CONFIG": json.dumps(self.config)}
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mppagent.devserver",
                "--port",
                str(port),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        assert self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), 30)).decode().strip()
        assert line.startswith("listening "), (line, self.log.read_text()[-2000:])
        return line.split(" ", 1)[1]

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush -- like a power cut."""
        assert self.process is not None
        self.process.kill()
        await asyncio.wait_for(self.process.wait(), 10)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await asyncio.wait_for(self.process.wait(), 10)


@asynccontextmanager
async def devserver_process(
    chain: DevChain, payee: DevAccount, tmp_path: Path, **overrides: Any
) -> AsyncIterator[DevServerProcess]:
    config: dict[str, Any] = {
        "rpc_url": chain.rpc_url,
        "escrow": chain.escrow,
        "token": chain.token,
        "payee_private_key": payee.private_key,
        "state_path": str(tmp_path / "devserver-state.db"),
        "session_protocol": "v1",  # the plain EVM devchain has no v2 reserve
    }
    config.update(overrides)
    server = DevServerProcess(config, tmp_path / "devserver.log")
    try:
        yield server
    finally:
        await server.stop()


# -- 1. the server dies mid-stream -------------------------------------------------------------


@pytest.mark.slow
async def test_server_killed_mid_stream_then_restarted(
    chain: DevChain,
    make_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
    tmp_path: Path,
) -> None:
    before = await token_balances(chain, payer.address, payee.address)
    state_path = tmp_path / "devserver-state.db"
    async with devserver_process(chain, payee, tmp_path, tokens_per_second=500) as server:
        url = await server.start()
        port = int(url.rsplit(":", 1)[1])
        agent = await make_agent()

        received = 0

        async def read_and_kill() -> None:
            nonlocal received
            async for _ in agent.stream("POST", url + CHAT, json=chat_body(2_000)):
                received += 1
                if received == 300:
                    await server.kill()

        started = time.monotonic()
        with pytest.raises(NetworkError) as info:  # StreamInterrupted is a NetworkError
            await read_and_kill()
        assert isinstance(info.value, StreamInterrupted), repr(info.value)
        assert 300 <= received < 2_000
        assert time.monotonic() - started < 15

        # The store saved everything consistently and nothing is leased.
        assert_store_consistent(agent)
        (record,) = agent.channels.list()
        assert record.status == ChannelStatus.OPEN  # a dead server is not a misbehaving one
        books = file_books(state_path)
        # The server charged before it sent, and only what our vouchers covered.
        assert (received - 1) * PRICE <= await books(record.channel_id) <= record.signed

        # Same port, same books: the channel is used again and the request completes.
        assert await server.start(port) == url
        assert await drain(agent, url + CHAT, 100) == 103
        channels = agent.channels.list()
        assert [c.channel_id for c in channels] == [record.channel_id]
        assert channels[0].spent == await books(record.channel_id)
        assert_store_consistent(agent)

        paid = await close_all_and_check(chain, agent, payer, payee, before, books)
        assert paid >= (received - 1 + 100) * PRICE


# -- 2. chain trouble ------------------------------------------------------------------------


async def test_unreachable_rpc_fails_fast_and_leaves_nothing(
    server: RunningServer, payer: DevAccount, tmp_path: Path
) -> None:
    agent = Agent(
        private_key=payer.private_key,
        rpc_url=f"http://127.0.0.1:{closed_port()}",
        store=SqliteChannelStore(tmp_path / "agent.db"),
        chain_timeout=CHAIN_TIMEOUT,
    )
    try:
        started = time.monotonic()
        with pytest.raises(ChainUnavailable) as info:
            await drain(agent, server.url + CHAT, 10)
        assert isinstance(info.value, ChainError)
        assert time.monotonic() - started < 5
        assert_store_consistent(agent)
        assert [r for r in agent.channels.list() if r.status != ChannelStatus.FAILED] == []
    finally:
        await agent.aclose()


async def test_rpc_lost_before_the_open_leaves_no_stuck_channel(
    chain: DevChain,
    server: RunningServer,
    proxy: RpcProxy,
    make_proxied_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
) -> None:
    """The node stops answering after the channel was reserved: the reservation is undone.

    With one channel allowed per payee, a reservation left ``opening`` would block
    every later request; it is marked failed instead (nothing was signed for it).
    """
    before = await token_balances(chain, payer.address, payee.address)
    agent = await make_proxied_agent(policy=SpendPolicy(max_channels_per_scope=1))
    proxy.stall_on = b'"eth_call"'  # the allowance check, the first call after the checkout
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(ChainUnavailable):
            await drain(agent, server.url + CHAT, 10)
        assert time.monotonic() - started < 3 * CHAIN_TIMEOUT + 2
        assert_store_consistent(agent)
        assert {r.status for r in agent.channels.list()} == {ChannelStatus.FAILED}
    assert await token_balances(chain, payer.address, payee.address) == before

    proxy.resume()
    assert await drain(agent, server.url + CHAT, 10) == 13
    assert len(agent.channels.list(include_closed=False)) == 1
    await close_all_and_check(chain, agent, payer, payee, before, running_books(server))


@pytest.mark.slow
async def test_slow_rpc_still_pays_correctly(
    chain: DevChain,
    start_server: ServerFactory,
    proxy: RpcProxy,
    make_proxied_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
) -> None:
    """Every node answer 200 ms late: open, top-up and close still come out exact."""
    server = await start_server(suggested_deposit=60 * PRICE, lookahead_tokens=50)
    before = await token_balances(chain, payer.address, payee.address)
    proxy.delay = 0.2
    agent = await make_proxied_agent(chain_timeout=10.0)
    assert await drain(agent, server.url + CHAT, 120) == 123
    (record,) = agent.channels.list()
    assert record.deposit > 60 * PRICE  # topped up through the slow node
    assert record.spent == 120 * PRICE
    assert_store_consistent(agent)
    await close_all_and_check(chain, agent, payer, payee, before, running_books(server))


async def test_rpc_stalls_after_the_server_opened(
    chain: DevChain,
    server: RunningServer,
    proxy: RpcProxy,
    make_proxied_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The node goes silent right after the server broadcast our open.

    The agent cannot confirm the channel: a typed error within its RPC timeout. Once the
    node answers again, the next request finds the channel open on chain and uses it.
    """
    before = await token_balances(chain, payer.address, payee.address)
    original = failpoints_module.hit

    stalled: list[str] = []

    def stall_at_open_sent(name: str) -> None:
        if name == "open.sent" and not stalled:
            stalled.append(name)
            proxy.pause()
        original(name)

    monkeypatch.setattr(failpoints_module, "hit", stall_at_open_sent)
    agent = await make_proxied_agent()
    started = time.monotonic()
    with pytest.raises(ChainUnavailable):
        await drain(agent, server.url + CHAT, 20)
    assert time.monotonic() - started < 3 * CHAIN_TIMEOUT + 5
    (record,) = agent.channels.list()
    assert record.status == ChannelStatus.OPENING
    assert record.lease_owner is None
    (pending,) = agent.store.operations(state=OperationState.PENDING)
    assert pending.kind == OperationKind.OPEN
    state = await onchain(chain, record.channel_id)
    assert state.exists
    assert state.deposit == record.deposit

    # The next request settles the pending open first (same bytes, already mined) and
    # uses that channel rather than locking a second deposit.
    proxy.resume()
    assert await drain(agent, server.url + CHAT, 20) == 23
    assert [r.channel_id for r in agent.channels.list()] == [record.channel_id]
    (opened,) = agent.store.operations(record.channel_id, kind=OperationKind.OPEN)
    assert opened.state == OperationState.CONFIRMED
    assert_store_consistent(agent)
    await agent.channels.sync()
    assert agent.channels.get(record.channel_id).status == ChannelStatus.OPEN
    await close_all_and_check(chain, agent, payer, payee, before, running_books(server))


async def test_rpc_stalls_while_the_approval_is_sent(
    chain: DevChain,
    server: RunningServer,
    proxy: RpcProxy,
    make_proxied_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
) -> None:
    """The node swallows the approval transaction and goes silent.

    The request fails typed, the reservation is undone, and the unsent approval leaves
    a hole in the agent's nonces. Once the node is back, the next request is not stuck
    behind that hole; ``sync()`` then finds the approval superseded. No deposit is lost.
    """
    before = await token_balances(chain, payer.address, payee.address)
    proxy.stall_on = b"eth_sendRawTransaction"
    agent = await make_proxied_agent()
    started = time.monotonic()
    with pytest.raises(ChainUnavailable):
        await drain(agent, server.url + CHAT, 20)
    assert time.monotonic() - started < 3 * CHAIN_TIMEOUT + 5
    assert proxy.paused
    (failed,) = agent.channels.list()
    assert failed.status == ChannelStatus.FAILED
    assert failed.lease_owner is None
    (approve,) = agent.store.operations(state=OperationState.PENDING)
    assert approve.kind == OperationKind.APPROVE
    assert await token_balances(chain, payer.address, payee.address) == before

    proxy.resume()
    started = time.monotonic()
    assert await drain(agent, server.url + CHAT, 20) == 23
    assert time.monotonic() - started < agent.chain.nonce_gap_grace + 10
    (live,) = agent.channels.list(include_closed=False)
    (used,) = agent.store.operations(live.channel_id, kind=OperationKind.APPROVE)
    assert used.nonce == approve.nonce  # the hole was filled, not skipped
    await agent.channels.sync()
    (stalled,) = agent.store.operations(failed.channel_id, kind=OperationKind.APPROVE)
    if stalled.tx_hash == used.tx_hash:
        # Same nonce, amount and fees: the new approval is byte for byte the old one.
        assert stalled.state == OperationState.CONFIRMED
    else:
        assert (stalled.state, stalled.detail) == (OperationState.FAILED, "superseded")
    assert_store_consistent(agent)
    await close_all_and_check(chain, agent, payer, payee, before, running_books(server))


async def test_too_few_tokens_is_named_before_anything_is_signed(
    chain: DevChain,
    server: RunningServer,
    make_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
) -> None:
    agent = await make_agent(policy=SpendPolicy(max_channels_per_scope=1))
    (balance,) = await token_balances(chain, payer.address)
    parking = chain.accounts[2].address
    await transfer(chain, payer, parking, balance - 1_000)  # far below the deposit
    before = await token_balances(chain, payer.address, payee.address)
    for _ in range(2):  # with one channel allowed, a stuck reservation would block the second
        started = time.monotonic()
        with pytest.raises(ChainError, match=r"holds 1000 of token .* needs \d+"):
            await drain(agent, server.url + CHAT, 10)
        assert time.monotonic() - started < 5
        assert agent.store.operations(kind=OperationKind.APPROVE) == []  # nothing signed
        assert {r.status for r in agent.channels.list()} == {ChannelStatus.FAILED}
        assert_store_consistent(agent)
    assert await token_balances(chain, payer.address, payee.address) == before

    await transfer(chain, chain.accounts[2], payer.address, balance - 1_000)
    assert await drain(agent, server.url + CHAT, 10) == 13
    await close_all_and_check(
        chain, agent, payer, payee, [balance, before[1]], running_books(server)
    )


async def test_reverts_are_named_and_recorded_as_failed(
    chain: DevChain,
    server: RunningServer,
    make_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = await token_balances(chain, payer.address, payee.address)
    agent = await make_agent()
    manager = agent.manager
    assert await drain(agent, server.url + CHAT, 20) == 23
    (first,) = agent.channels.list()
    await agent.channels.request_close(first.channel_id)

    # withdraw before the grace period, mined anyway (explicit gas, no estimation): the
    # contract's error comes back by name and the write-ahead operation is marked failed.
    escrow = manager.escrow(first.scope.escrow)
    sign_call = agent.chain.sign_call

    async def with_gas(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("gas", 300_000)
        return await sign_call(*args, **kwargs)

    async def no_grace() -> int:
        return 0

    with monkeypatch.context() as patch:
        patch.setattr(agent.chain, "sign_call", with_gas)
        patch.setattr(escrow, "close_grace_period", no_grace)
        patch.setattr(manager.ctx, "withdraw_margin", 0)
        with pytest.raises(ContractReverted) as info:
            await agent.channels.withdraw(first.channel_id)
    assert info.value.error_name == "CloseNotReady"
    (withdraw,) = agent.store.operations(kind=OperationKind.WITHDRAW)
    assert withdraw.state == OperationState.FAILED
    assert withdraw.detail == "CloseNotReady"
    receipt = await agent.chain.get_receipt(str(withdraw.tx_hash))
    assert receipt is not None
    assert int(receipt["status"]) == 0
    assert agent.channels.get(first.channel_id).status == ChannelStatus.CLOSE_REQUESTED
    assert_store_consistent(agent)

    # Nothing is stuck: the next request opens a new channel (approve + open mined).
    assert await drain(agent, server.url + CHAT, 20) == 23
    (second,) = [r for r in agent.channels.list() if r.status == ChannelStatus.OPEN]
    assert second.channel_id != first.channel_id
    await agent.channels.close(second.channel_id)

    # A top-up on a finalized channel is refused by the contract at estimation, by name;
    # nothing is left pending and the funding lock is free again (the retry does not hang).
    closed = agent.channels.get(second.channel_id)
    for _ in range(2):
        with pytest.raises(ContractReverted) as info:
            await asyncio.wait_for(manager.top_up_payload(closed, 1_000), 10)
        assert info.value.error_name == "ChannelFinalized"
    assert agent.store.operations(kind=OperationKind.TOP_UP) == []
    assert agent.store.operations(state=OperationState.PENDING) == []

    # The forced close still completes once the grace period is over; then the chain,
    # the server's books and the token balances agree: the payee got exactly the second
    # channel's spent (the first one was never settled), the payer everything else back.
    await chain.increase_time(await escrow.close_grace_period() + manager.withdraw_margin + 1)
    refund = await agent.channels.withdraw(first.channel_id)
    assert refund.refunded == first.deposit
    assert agent.channels.get(first.channel_id).status == ChannelStatus.CLOSED
    assert (await onchain(chain, second.channel_id)).cleared  # finalized, record wiped
    paid = agent.channels.get(second.channel_id).settled
    assert paid == await running_books(server)(second.channel_id) == 20 * PRICE
    payer_after, payee_after = await token_balances(chain, payer.address, payee.address)
    assert payee_after - before[1] == paid
    assert before[0] - payer_after == paid
    assert_store_consistent(agent)


async def test_unsent_transaction_leaves_no_stuck_nonce(
    chain: DevChain, server: RunningServer, make_agent: AgentFactory
) -> None:
    """A transaction signed with the agent's key but never broadcast opens a nonce gap.

    The agent's next transactions must not queue behind it for ever: after a short
    grace the gap's nonce is reused, and the unsent transaction can never be mined.
    """
    agent = await make_agent()
    token = Token(agent.chain, chain.token)
    gap = await token.sign_approve(agent.wallet, chain.escrow, 1)  # never sent
    assert gap.nonce == await agent.chain.transaction_count(agent.address)
    started = time.monotonic()
    assert await drain(agent, server.url + CHAT, 20) == 23
    assert time.monotonic() - started < agent.chain.nonce_gap_grace + 10
    (approve,) = agent.store.operations(kind=OperationKind.APPROVE)
    assert approve.nonce == gap.nonce
    assert approve.state == OperationState.CONFIRMED
    with pytest.raises(TransactionFailed, match="nonce too low"):
        await agent.chain.send(gap)
    assert_store_consistent(agent)


async def test_recorded_but_unsent_open_is_rebroadcast_on_start(
    chain: DevChain,
    server: RunningServer,
    make_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
    tmp_path: Path,
) -> None:
    """In-process crash: the signed open is in the store but never left the process."""
    before = await token_balances(chain, payer.address, payee.address)
    store = tmp_path / "crashed.db"
    crashed = await make_agent(store_path=store)
    url = server.url + CHAT
    offer = await fresh_offer(crashed, url)
    checkout = await crashed.manager.checkout(offer, url)
    _, op = await crashed.manager.open_payload(checkout, open_auth(checkout.record))
    channel_id = checkout.record.channel_id
    assert not (await onchain(chain, channel_id)).exists
    # The process "dies" here: its lease would lapse with it.
    crashed.store.update(channel_id, lease_owner=None, lease_until=0.0)
    await crashed.aclose()

    agent = await make_agent(store_path=store)  # start() recovers pending operations
    (resent,) = agent.store.operations(channel_id, kind=OperationKind.OPEN)
    assert resent.state == OperationState.CONFIRMED
    assert resent.tx_hash == op.tx_hash
    state = await onchain(chain, channel_id)
    assert state.exists
    assert state.deposit == checkout.record.deposit
    assert agent.channels.get(channel_id).status == ChannelStatus.OPEN
    assert_store_consistent(agent)

    assert await drain(agent, url, 20) == 23  # the server adopts the channel from the chain
    assert [r.channel_id for r in agent.channels.list()] == [channel_id]
    await close_all_and_check(chain, agent, payer, payee, before, running_books(server))


async def test_abandoned_open_whose_nonce_was_reused_ends_failed(
    chain: DevChain,
    server: RunningServer,
    make_agent: AgentFactory,
    payer: DevAccount,
    payee: DevAccount,
) -> None:
    """A signed open that never left the process, and a later transaction took its nonce.

    ``sync()`` finds the open superseded: the operation and the channel end ``failed``
    (not ``opening`` for ever), and no deposit moved.
    """
    agent = await make_agent()
    url = server.url + CHAT
    offer = await fresh_offer(agent, url)
    checkout = await agent.manager.checkout(offer, url)
    _, op = await agent.manager.open_payload(checkout, open_auth(checkout.record))  # never sent
    agent.manager.release(checkout.record)
    before = await token_balances(chain, payer.address, payee.address)

    token = Token(agent.chain, chain.token)
    other = await token.sign_approve(agent.wallet, chain.escrow, 1)  # after the grace: reuses it
    assert other.nonce == op.nonce
    await agent.chain.send_and_wait(other)

    await agent.channels.sync()
    (superseded,) = agent.store.operations(checkout.record.channel_id, kind=OperationKind.OPEN)
    assert (superseded.state, superseded.detail) == (OperationState.FAILED, "superseded")
    assert agent.channels.get(checkout.record.channel_id).status == ChannelStatus.FAILED
    assert not (await onchain(chain, checkout.record.channel_id)).exists
    assert await token_balances(chain, payer.address, payee.address) == before
    assert_store_consistent(agent)
