"""What a v2 server knows about our channels: session snapshots and the ``HEAD`` bootstrap.

``draft-tempo-session-00`` ("Session Snapshot", "Bootstrap Preflight") lets a v2
server describe a reusable channel of ours -- in the challenge
(``methodDetails.sessionSnapshot``), in a ``Payment-Session-Snapshot`` header --
and offer a same-resource bootstrap: the client sends ``HEAD`` to the paid
resource; a server that needs to know the payer first challenges with a
zero-amount ``tempo``/``charge``; the client proves who it is
(:mod:`mppagent.tempo.proof`) and gets ``204`` with ``Payment-Session`` and
``Payment-Session-Snapshot``. Nothing advertises the bootstrap, so the client
simply asks -- once per scope and process, and only when the store holds no
open channel for it (an agent that lost its store, or first contact).

Every snapshot goes through
:meth:`~mppagent.session.channels.ChannelManager.rehydrate`, which believes only
what the snapshot's voucher signature and the reserve prove. One that does not
prove itself is refused: logged (``snapshot.refused``), reported as a
``snapshot_refused`` payment event, and the payment carries on with the
agent's own state -- a server's bad snapshot must not stop a payment the agent
can make safely without it. Any failure of the bootstrap itself is likewise
only logged.

The hint ``Payment-Session: <channelId>`` on a request (the reference SDK's
client sends it; the draft names the header only as a server's) tells a server
which channel of ours to describe: it rides on the first, unpaid request to a
URL this agent has paid through an open channel, and on every paid retry.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

from mppagent.errors import ChainError, MppagentError
from mppagent.logging import get_logger
from mppagent.protocol import Challenge, Credential, did_pkh, parse_challenges
from mppagent.session.pool import scope_of
from mppagent.session.store import ChannelStatus
from mppagent.tempo.proof import DRAFT_PROOF, SDK_PROOF, sign_proof
from mppagent.tempo.v2.snapshot import InvalidSnapshot, parse_snapshot, snapshot_from_wire
from mppagent.transport.events import PaymentEvent

if TYPE_CHECKING:
    from mppagent.session.policy import Offer
    from mppagent.transport.paying import PaymentTransport

__all__ = ["SESSION_HEADER", "SNAPSHOT_HEADER", "SessionHints"]

log = get_logger("mppagent.transport")

SESSION_HEADER = "payment-session"
SNAPSHOT_HEADER = "payment-session-snapshot"
_BOOTSTRAP_TIMEOUT = 10.0


class SessionHints:
    """Per transport: channel hints per URL, snapshots to learn from, bootstraps tried."""

    def __init__(self, transport: PaymentTransport, *, bootstrap: bool = True) -> None:
        self.t = transport
        self.bootstrap = bootstrap
        self._channels: dict[str, str | None] = {}
        self._tried: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    # -- the client's hint ------------------------------------------------------------------

    def hint_for(self, url: str) -> str | None:
        """The open channel this agent last paid ``url`` through (first use: the store's)."""
        if url not in self._channels:
            store = self.t.manager.store
            records = [r for r in store.channels(statuses=[ChannelStatus.OPEN]) if r.url == url]
            latest = max(records, key=lambda r: r.updated_at, default=None)
            self._channels[url] = latest.channel_id if latest else None
        return self._channels[url]

    def paid_through(self, url: str, channel_id: str) -> None:
        """Remember the channel a paid request to ``url`` used, for the next hint."""
        self._channels[url] = channel_id

    # -- snapshots ---------------------------------------------------------------------------

    async def learn(self, offer: Offer, url: str, header: str | None) -> None:
        """Learn from the snapshots a v2 challenge came with, or bootstrap a cold scope."""
        if offer.protocol != "v2":
            return
        carried = offer.request.method_details.session_snapshot
        if carried is not None:
            await self._apply("challenge", carried, offer, url)
        if header:
            await self._apply("header", header, offer, url)
        if carried is None and not header and self.bootstrap:
            await self._bootstrap(offer, url)

    async def _apply(self, source: str, value: object, offer: Offer, url: str) -> None:
        """Rehydrate from one snapshot; refuse (log, event) one that does not prove itself."""
        channel_id = ""
        try:
            if isinstance(value, str):
                snapshot = parse_snapshot(value)
            else:
                snapshot = snapshot_from_wire(value)
            channel_id = snapshot.channel_id
            record = await self.t.manager.rehydrate(snapshot, offer, url)
        except (InvalidSnapshot, ChainError) as exc:
            # ChainError: the reserve could not be read, so nothing is proven either.
            log.warning("snapshot.refused", source=source, channel=channel_id, reason=str(exc))
            self.t.emit(
                PaymentEvent(
                    "snapshot_refused", channel_id, detail={"source": source, "reason": str(exc)}
                )
            )
            return
        if record is not None:
            self._channels[url] = record.channel_id
            self.t.emit(
                PaymentEvent(
                    "snapshot",
                    record.channel_id,
                    record.signed,
                    detail={"source": source, "spent": record.spent, "deposit": record.deposit},
                )
            )

    async def _bootstrap(self, offer: Offer, url: str) -> None:
        """``HEAD`` the resource (proving who pays if asked); learn from its snapshot.

        Decided once per scope and process: a scope whose channels the store knew
        at first sight lost nothing a bootstrap could bring back.
        """
        scope = scope_of(offer)
        if scope.key in self._tried:
            return
        lock = self._locks.setdefault(scope.key, asyncio.Lock())
        async with lock:
            if scope.key in self._tried:
                return
            self._tried.add(scope.key)
            if self.t.manager.store.channels(scope, [ChannelStatus.OPEN]):
                return
            try:
                header = await self._head(offer, url)
            except (httpx.HTTPError, MppagentError) as exc:
                log.info("bootstrap.failed", url=url, error=type(exc).__name__)
                return
            if header:
                await self._apply("bootstrap", header, offer, url)

    async def _head(self, offer: Offer, url: str) -> str | None:
        """The bootstrap exchange; the ``Payment-Session-Snapshot`` it ends with, if any."""
        response = await self._send(url, None)
        for form in (DRAFT_PROOF, SDK_PROOF):
            if response.is_success:
                return _snapshot_header(response)
            challenge = _zero_charge(response, offer.request.chain_id)
            if challenge is None:
                return None  # no bootstrap here: an ordinary challenge, or an error
            signature = sign_proof(
                self.t.manager.ctx.main_signer,
                form,
                chain_id=offer.request.chain_id,
                challenge_id=challenge.id,
                realm=challenge.realm,
            )
            credential = Credential.for_challenge(
                challenge,
                {"type": "proof", "signature": signature},
                source=did_pkh(offer.request.chain_id, self.t.manager.wallet.address),
            )
            response = await self._send(url, credential.encode())
        return _snapshot_header(response) if response.is_success else None

    async def _send(self, url: str, authorization: str | None) -> httpx.Response:
        headers = {"accept-payment": "tempo/charge"}
        if authorization is not None:
            headers["authorization"] = authorization
        timeout = {"connect": _BOOTSTRAP_TIMEOUT, "read": _BOOTSTRAP_TIMEOUT}
        request = httpx.Request(
            "HEAD",
            url,
            headers=headers,
            extensions={"timeout": {**timeout, "write": _BOOTSTRAP_TIMEOUT, "pool": 5.0}},
        )
        response = await self.t.inner.handle_async_request(request)
        await response.aread()
        await response.aclose()
        return response


def _snapshot_header(response: httpx.Response) -> str | None:
    value: str | None = response.headers.get(SNAPSHOT_HEADER)
    return value


def _zero_charge(response: httpx.Response, chain_id: int) -> Challenge | None:
    """The zero-amount ``tempo``/``charge`` challenge of a 402 on this chain, if any."""
    if response.status_code != 402:
        return None
    for challenge in parse_challenges(response.headers.get_list("www-authenticate")):
        if challenge.method != "tempo" or challenge.intent != "charge":
            continue
        request = challenge.request_data
        details = request.get("methodDetails")
        challenge_chain = details.get("chainId") if isinstance(details, dict) else None
        if request.get("amount") == "0" and challenge_chain in (None, chain_id):
            return challenge
    return None
