"""The high-level API: an agent that pays for HTTP resources as it uses them.

::

    policy = SpendPolicy(max_price={"llm_token": 50}, max_deposit=5_000_000)
    async with Agent(private_key=key, rpc_url=rpc, policy=policy) as agent:
        async for event in agent.stream("POST", url, json=body):   # app events only
            print(event.data)
        response = await agent.request("POST", url, json=body)     # non-streaming
        for channel in agent.channels.list():
            ...
        await agent.channels.close(channel_id)                      # cooperative close

Everything payment-related happens inside :class:`PaymentTransport`; the agent
adds the lifecycle (crash recovery on start, clean shutdown) and the channel
operations that need both HTTP and the chain (cooperative close).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx

from mppagent import failpoints
from mppagent.errors import ConfigError, PolicyViolation, ServerMisbehaviour, StoreError
from mppagent.manager import ChannelManager, ForcedCloseResult
from mppagent.protocol import (
    VerificationFailedProblem,
    parse_challenges,
)
from mppagent.session.policy import Offer, SpendPolicy, select_offer
from mppagent.session.store import (
    ChannelRecord,
    ChannelStatus,
    ChannelStore,
    OperationKind,
    OperationState,
    SqliteChannelStore,
    lease_is_live,
)
from mppagent.tempo.chain import ChainClient, Wallet
from mppagent.tempo.schemas import ClosePayload, SessionReceipt
from mppagent.transport.paying import (
    PAID_STREAM,
    Observer,
    PaidStream,
    PaymentTransport,
    deliver,
)
from mppagent.transport.sse import SSEEvent, SSEParser

__all__ = ["Agent", "AgentChannels", "CloseResult"]


@dataclass(frozen=True)
class CloseResult:
    """A verified cooperative close: amounts in base units, checked on chain."""

    channel_id: str
    deposit: int
    paid: int
    refunded: int
    tx_hash: str


class Agent:
    """Pays MPP ``tempo``/``session`` challenges on behalf of one wallet.

    ``store`` defaults to the per-user SQLite store (shared with other
    processes of the same user); ``policy`` to :class:`SpendPolicy`'s defaults.
    ``transport`` is the inner HTTP transport (tests pass an ASGI one).
    ``delegate_signer=True`` opens channels whose vouchers are signed by a
    fresh per-channel key, so the main key only signs on-chain transactions.
    ``chain_timeout`` bounds each JSON-RPC call (an unresponsive node surfaces as
    ``ChainUnavailable`` after that many seconds).
    """

    def __init__(
        self,
        *,
        private_key: str | None = None,
        wallet: Wallet | None = None,
        rpc_url: str,
        policy: SpendPolicy | None = None,
        store: ChannelStore | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 60.0,
        observer: Observer | None = None,
        delegate_signer: bool = False,
        voucher_deadline: float = 45.0,
        chain_timeout: float = 10.0,
    ) -> None:
        if wallet is None:
            if private_key is None:
                raise ConfigError("an Agent needs a private_key or a wallet")
            wallet = Wallet(private_key)
        self.wallet = wallet
        self.policy = policy or SpendPolicy()
        self.store: ChannelStore = store if store is not None else SqliteChannelStore.default()
        self.chain = ChainClient(rpc_url, timeout=chain_timeout)
        self.manager = ChannelManager(
            wallet=wallet,
            chain=self.chain,
            store=self.store,
            policy=self.policy,
            delegate_signer=delegate_signer,
        )
        self.transport = PaymentTransport(
            self.manager,
            inner=transport,
            observer=observer,
            voucher_deadline=voucher_deadline,
        )
        self.http = httpx.AsyncClient(
            transport=self.transport, timeout=httpx.Timeout(timeout, connect=10.0)
        )
        self.channels = AgentChannels(self)
        self._recovered = False

    def __repr__(self) -> str:
        return f"Agent(address={self.wallet.address!r}, store={self.store!r})"

    @property
    def address(self) -> str:
        """The paying wallet's address."""
        return self.wallet.address

    async def start(self) -> None:
        """Resolve operations a crash left pending (idempotent; called by ``async with``)."""
        if not self._recovered:
            await self.manager.recover()
            self._recovered = True

    async def aclose(self) -> None:
        """Close HTTP connections and the chain client (the store stays usable)."""
        await self.http.aclose()
        await self.chain.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- requests ---------------------------------------------------------------------------

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A (paid if needed) request; the body is read before returning."""
        await self.start()
        return await self.http.request(method, url, **kwargs)

    async def stream(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[SSEEvent]:
        """Stream a (paid if needed) SSE response, yielding application events only.

        Payment events never reach the caller. Errors are typed: a refused
        payment (``PolicyViolation``), a misbehaving server
        (``ServerMisbehaviour``), a server problem (``ProblemError``) or a
        broken stream (``NetworkError``); the channel state is saved first.
        """
        await self.start()
        async with self.http.stream(method, url, **kwargs) as response:
            if response.status_code >= 400:
                await response.aread()
                response.raise_for_status()
            paid = response.extensions.get(PAID_STREAM)
            if isinstance(paid, PaidStream):
                async for event in paid.events():  # parsed once, by the payment layer
                    yield event
                return
            parser = SSEParser()
            async for chunk in response.aiter_bytes():
                for event in parser.feed(chunk):
                    if event.data or event.event:
                        yield event

    def http_client(self) -> httpx.AsyncClient:
        """The agent's own paying ``httpx.AsyncClient``.

        For the ``openai`` SDK use :func:`mppagent.openai.http_client` instead:
        the SDK closes the client it is given and sends its API key as a Bearer
        header, and that function hands out a client built for both.
        """
        return self.http


class AgentChannels:
    """Channel operations: list, inspect, close cooperatively or by force, sync."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def list(self, *, include_closed: bool = True) -> list[ChannelRecord]:
        """Channels of this agent's wallet, newest first."""
        payer = self._agent.manager.payer
        records = [r for r in self._agent.store.channels() if r.payer == payer]
        if not include_closed:
            records = [r for r in records if r.status not in _DONE]
        return records

    def get(self, channel_id: str) -> ChannelRecord:
        """One channel record."""
        record = self._agent.store.get(channel_id)
        if record is None:
            raise StoreError(f"channel {channel_id} is not in the store")
        return record

    async def sync(self) -> builtins.list[ChannelRecord]:
        """Reconcile pending operations and every live channel with the chain."""
        manager = self._agent.manager
        await manager.recover()
        return [
            await manager.reconcile(record.channel_id)
            for record in self.list()
            if record.status not in _DONE
        ]

    async def request_close(self, channel_id: str) -> ForcedCloseResult:
        """Start a forced close on chain (when the server will not close cooperatively)."""
        return await self._agent.manager.request_close(channel_id)

    async def withdraw(self, channel_id: str) -> ForcedCloseResult:
        """Finish a forced close; refuses with the time left before the grace period ends."""
        return await self._agent.manager.withdraw(channel_id)

    async def close(self, channel_id: str) -> CloseResult:
        """Close cooperatively: the server settles what was spent and refunds the rest.

        Signs a final voucher for the spent amount from the latest verified
        receipt, sends it as a ``close`` credential to the channel's URL, and
        checks the close transaction on chain: the payee got exactly that
        amount and the payer the rest of the deposit.
        """
        agent = self._agent
        manager = agent.manager
        await agent.start()
        record = await manager.reconcile(channel_id)
        if record.status in _DONE:
            raise StoreError(f"channel {channel_id} is already {record.status}")
        if record.url is None:
            raise ConfigError(f"channel {channel_id} has no URL to send the close to")
        if record.lease_owner != manager.owner and lease_is_live(
            record.lease_owner, record.lease_until
        ):
            raise StoreError(f"channel {channel_id} is in use by a stream; close it later")
        offer = await self._offer_for(record)
        try:
            return await self._close(record, offer)
        except BaseException:
            # Refused or failed: unless the chain says it is closed, it is still open.
            current = await manager.reconcile(channel_id)
            if current.status == ChannelStatus.CLOSING:
                manager.store.update(channel_id, status=ChannelStatus.OPEN)
            raise

    async def _close(self, record: ChannelRecord, offer: Offer) -> CloseResult:
        agent = self._agent
        manager = agent.manager
        assert record.url is not None
        amount = max(record.spent, record.settled)
        for _attempt in range(2):
            signature = manager.sign_close_voucher(record, amount)
            manager.store.update(record.channel_id, status=ChannelStatus.CLOSING)
            payload = ClosePayload(
                channel_id=record.channel_id, cumulative_amount=amount, signature=signature
            )
            try:
                receipt = await deliver(agent.transport, record.url, offer, payload, None)
            except VerificationFailedProblem as problem:
                required = problem.extras.get("requiredCloseAmount")
                if not isinstance(required, str) or not required.isdigit():
                    raise
                wanted = int(required)
                if not record.settled <= wanted <= record.signed or wanted == amount:
                    raise
                # The server counts more spent than our last receipt (e.g. a final receipt
                # lost to a dropped stream). Anything up to what we already signed is money
                # the server could settle anyway, so closing there costs nothing extra.
                amount = wanted
                continue
            failpoints.hit("close.sent")
            return await self._verify_close(record, amount, receipt)
        raise ServerMisbehaviour("close_amount", "the server keeps refusing the close amount")

    async def _offer_for(self, record: ChannelRecord) -> Offer:
        assert record.url is not None
        inner = self._agent.transport.inner
        response = await inner.handle_async_request(httpx.Request("HEAD", record.url))
        await response.aread()
        await response.aclose()
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        offer = select_offer(self._agent.policy, challenges, datetime.now(UTC))
        if ChannelManager.scope_of(offer) != record.scope:
            raise PolicyViolation(
                "scope", "the server's challenge is for a different payee, token or escrow"
            )
        return offer

    async def _verify_close(
        self, record: ChannelRecord, amount: int, receipt: SessionReceipt | None
    ) -> CloseResult:
        manager = self._agent.manager
        if receipt is None or receipt.tx_hash is None:
            raise ServerMisbehaviour("close_receipt", "the close receipt carries no txHash")
        if receipt.channel_id != record.channel_id:
            raise ServerMisbehaviour("close_receipt", "the close receipt names another channel")
        tx_receipt = await manager.chain.wait(receipt.tx_hash, context="close")
        escrow = manager.escrow(record.scope.escrow)
        closed = [
            e
            for e in escrow.events(tx_receipt)
            if e.name == "ChannelClosed" and e.channel_id == record.channel_id
        ]
        if not closed:
            raise ServerMisbehaviour("close_tx", f"{receipt.tx_hash} did not close our channel")
        values: Mapping[str, int | str] = closed[0].values
        paid, refunded = int(values["settledToPayee"]), int(values["refundedToPayer"])
        # The escrow wipes a finalized channel (only ``finalized`` survives), so the deposit
        # to check the refund against is ours, kept in step with the chain at open/topUp.
        deposit = record.deposit
        state = await escrow.get_channel(record.channel_id)
        if paid != amount or refunded != deposit - amount or not state.finalized:
            raise ServerMisbehaviour(
                "close_amounts",
                f"close paid {paid} and refunded {refunded}; expected {amount} and "
                f"{deposit - amount}",
            )
        for op in manager.store.operations(
            record.channel_id, kind=OperationKind.CLOSE, state=OperationState.PENDING
        ):
            manager.store.finish_operation(op.op_id, OperationState.CONFIRMED)
        manager.store.update(record.channel_id, status=ChannelStatus.CLOSED, settled=paid)
        return CloseResult(record.channel_id, deposit, paid, refunded, receipt.tx_hash)


_DONE = (ChannelStatus.CLOSED, ChannelStatus.FAILED)
