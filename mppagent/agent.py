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
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx

from mppagent.errors import ConfigError, NetworkError, PolicyViolation, StoreError
from mppagent.llm.meters import MeterSpec
from mppagent.protocol import parse_problem
from mppagent.session.channels import ChannelManager
from mppagent.session.closing import CloseResult, ForcedCloseResult
from mppagent.session.policy import Offer, SpendPolicy, select_offer
from mppagent.session.pool import scope_of
from mppagent.session.store import (
    ChannelRecord,
    ChannelStatus,
    ChannelStore,
    SqliteChannelStore,
)
from mppagent.tempo.chain import ChainClient, Wallet
from mppagent.tempo.schemas import ClosePayload, SessionReceipt
from mppagent.tempo.v1 import V1Backend
from mppagent.tempo.v2.backend import V2Backend
from mppagent.transport.delivery import fresh_challenges
from mppagent.transport.paying import (
    PAID_STREAM,
    Observer,
    PaidStream,
    PaymentTransport,
    default_meter,
    deliver,
    meter_factory,
)
from mppagent.transport.sse import SSEEvent, SSEParser

__all__ = ["Agent", "AgentChannels", "CloseResult"]


class Agent:
    """Pays MPP ``tempo``/``session`` challenges on behalf of one wallet.

    ``store`` defaults to the per-user SQLite store (shared with other
    processes of the same user); ``policy`` to :class:`SpendPolicy`'s defaults.
    ``transport`` is the inner HTTP transport (tests pass an ASGI one).
    ``delegate_signer=True`` opens channels whose vouchers are signed by a
    fresh per-channel key, so the main key only signs on-chain transactions.
    ``chain_timeout`` bounds each JSON-RPC call (an unresponsive node surfaces as
    ``ChainUnavailable`` after that many seconds). ``bootstrap=False`` never asks a
    v2 server (``HEAD``) for a snapshot of our channels when the store has none open
    for its scope; snapshots servers send unasked are still verified and used.
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
        meter: MeterSpec | None = None,
        bootstrap: bool = True,
    ) -> None:
        if wallet is None:
            if private_key is None:
                raise ConfigError("an Agent needs a private_key or a wallet")
            wallet = Wallet(private_key)
        self.wallet = wallet
        self.policy = policy or SpendPolicy()
        self.store: ChannelStore = store if store is not None else SqliteChannelStore.default()
        # Nonces handed out live in the store, so processes sharing it and the key never
        # sign two transactions with one nonce.
        self.chain = ChainClient(rpc_url, timeout=chain_timeout, nonces=self.store)
        self.manager = ChannelManager(
            wallet=wallet,
            chain=self.chain,
            store=self.store,
            policy=self.policy,
            backends=[V1Backend(self.chain), V2Backend(self.chain)],
            delegate_signer=delegate_signer,
        )
        self.transport = PaymentTransport(
            self.manager,
            inner=transport,
            observer=observer,
            voucher_deadline=voucher_deadline,
            meter_factory=default_meter if meter is None else meter_factory(meter),
            bootstrap=bootstrap,
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
        try:
            return await self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise _network_error(exc, url) from None

    async def stream(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[SSEEvent]:
        """Stream a (paid if needed) SSE response, yielding application events only.

        Payment events never reach the caller. Errors are typed: a refused
        payment (``PolicyViolation``), a misbehaving server
        (``ServerMisbehaviour``), a server problem (``ProblemError``) or a
        broken stream (``NetworkError``); the channel state is saved first.
        """
        await self.start()
        try:
            async with self.http.stream(method, url, **kwargs) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise parse_problem(response)
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
        except httpx.HTTPError as exc:
            raise _network_error(exc, url) from None

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
        await agent.start()
        return await agent.manager.close(channel_id, _HttpCloseSender(agent))


class _HttpCloseSender:
    """The HTTP half of a cooperative close: a fresh challenge, then the close credential."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    async def offer_for(self, record: ChannelRecord) -> Offer:
        assert record.url is not None
        try:
            challenges = await fresh_challenges(self._agent.transport, record.url)
        except NetworkError as exc:
            raise NetworkError(
                f"cannot reach {record.url} to close channel {record.channel_id} "
                f"({exc}); close it by force instead: request-close now, "
                "then withdraw once the escrow's grace period has passed"
            ) from None
        offer = select_offer(self._agent.policy, challenges, datetime.now(UTC))
        if scope_of(offer) != record.scope:
            raise PolicyViolation(
                "scope", "the server's challenge is for a different payee, token or escrow"
            )
        return offer

    async def send_close(
        self, url: str, offer: Offer, payload: ClosePayload
    ) -> SessionReceipt | None:
        return await deliver(self._agent.transport, url, offer, payload, None)


def _network_error(exc: httpx.HTTPError, url: str) -> NetworkError:
    """Every HTTP failure reaching the caller is typed and names the URL."""
    return NetworkError(f"request to {url} failed: {type(exc).__name__}: {exc}")


_DONE = (ChannelStatus.CLOSED, ChannelStatus.FAILED)
