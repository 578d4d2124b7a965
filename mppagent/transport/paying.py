"""The paying HTTP transport: 402 → credential → retry, and vouchers while streaming.

:class:`PaymentTransport` wraps any httpx transport. To the client above it
(``httpx.AsyncClient``, the ``openai`` SDK, :class:`mppagent.Agent`) a paid
endpoint looks like a free one:

1. a request that comes back ``402`` with a ``Payment`` challenge is paid --
   the policy picks an acceptable ``tempo``/``session`` offer, the channel
   manager leases or opens a channel -- and retried with the *same body*, an
   ``Authorization: Payment`` credential and an ``Idempotency-Key``;
2. a paid Server-Sent-Events response is wrapped in :class:`PaidStream`, which
   takes ``payment-need-voucher`` and ``payment-receipt`` events out of the
   byte stream, answers voucher demands on a separate request to the same URL
   (``HEAD``, or ``POST`` without a body), and checks every receipt;
3. problems the server reports (expired challenge, insufficient balance,
   deposit too small, channel gone) are handled where the protocol allows,
   and raised as typed errors where it does not.

Nothing is signed without the policy's consent, and nothing signed leaves the
process before the store has recorded it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from mppagent import failpoints
from mppagent.errors import NetworkError, PolicyViolation, ServerMisbehaviour
from mppagent.logging import get_logger
from mppagent.manager import ChannelManager, Checkout
from mppagent.protocol import (
    AmountExceedsDepositProblem,
    ChallengeNotFoundProblem,
    ChannelFinalizedProblem,
    ChannelNotFoundProblem,
    Credential,
    DeltaTooSmallProblem,
    InsufficientBalanceProblem,
    InvalidChallengeProblem,
    PaymentExpiredProblem,
    ProblemError,
    did_pkh,
    parse_challenges,
    parse_json_object,
    parse_problem,
)
from mppagent.protocol import b64url_json_decode as _b64_json
from mppagent.session.engine import PaidExchange, SignVoucher, TopUp
from mppagent.session.policy import Offer, select_offer
from mppagent.session.store import ChannelRecord, ChannelStatus, Operation, evidence_json
from mppagent.tempo.schemas import (
    ClosePayload,
    NeedVoucher,
    OpenPayload,
    SessionReceipt,
    TopUpPayload,
    VoucherPayload,
    parse_model,
)
from mppagent.transport.metering import UnitMeter, meter_for
from mppagent.transport.sse import SSEEvent, SSEParser

__all__ = [
    "PAID_STREAM",
    "PaidStream",
    "PaymentEvent",
    "PaymentTransport",
    "StreamInterrupted",
    "VoucherDeliveryFailed",
    "deliver",
    "header_receipt",
]

log = get_logger("mppagent.transport")

_CHALLENGE_PROBLEMS = (InvalidChallengeProblem, ChallengeNotFoundProblem, PaymentExpiredProblem)
_GONE_PROBLEMS = (ChannelNotFoundProblem, ChannelFinalizedProblem)
_STATUS_RETRYABLE = {429, 500, 502, 503, 504}

KEEPALIVE = 20
"""Idle connections the default inner transport keeps (see :class:`PaymentTransport`)."""

PAID_STREAM = "mppagent.paid_stream"
"""Response extension holding the :class:`PaidStream`, for consumers that want parsed events."""


class StreamInterrupted(NetworkError):
    """A paid stream ended before the server's final receipt; state was saved."""


class VoucherDeliveryFailed(NetworkError):
    """A voucher could not be delivered before the deadline; the stream was ended."""


@dataclass(frozen=True)
class PaymentEvent:
    """Something the transport did, for status lines, logs and benchmarks.

    ``kind`` is one of ``challenge``, ``open``, ``reuse`` (an open channel
    taken for this request; ``amount`` is its deposit), ``voucher``,
    ``top_up``, ``receipt``, ``final_receipt``. Amounts are base units; ``seconds`` is the
    time from a voucher demand to its acceptance (the stall).
    """

    kind: str
    channel_id: str
    amount: int = 0
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


Observer = Callable[[PaymentEvent], None]


class PaymentTransport(httpx.AsyncBaseTransport):
    """An httpx transport that pays MPP ``tempo``/``session`` challenges.

    ``inner`` does the actual HTTP (default: a pooled ``AsyncHTTPTransport``).
    ``voucher_deadline`` bounds how long a voucher may take to be delivered --
    well inside the server's ~60 s wait.
    """

    def __init__(
        self,
        manager: ChannelManager,
        *,
        inner: httpx.AsyncBaseTransport | None = None,
        voucher_deadline: float = 45.0,
        max_attempts: int = 4,
        observer: Observer | None = None,
        meter_factory: Callable[[str | None], UnitMeter] = meter_for,
    ) -> None:
        self.manager = manager
        # Few idle connections: httpcore re-checks every connection against the whole
        # pool for each idle one whenever a request starts or ends (O(idle x total)).
        # With hundreds of streams and 200 idle voucher connections kept, that scan was
        # most of the agent's CPU. Beyond 20 connections an idle one is closed instead
        # and a voucher opens a fresh connection (cheap on loopback, a TLS handshake to
        # a remote server: a small pool of its own for payment requests would avoid it).
        self.inner = inner or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=KEEPALIVE)
        )
        self.voucher_deadline = voucher_deadline
        self.max_attempts = max_attempts
        self.observer = observer
        self.meter_factory = meter_factory

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()

    def emit(self, event: PaymentEvent) -> None:
        """Report ``event`` to the observer (errors in observers are not ours to raise)."""
        if self.observer is not None:
            try:
                self.observer(event)
            except Exception:  # an observer must never break a payment
                log.exception("observer.failed", kind=event.kind)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; pay and retry if the server asks for payment."""
        auth = request.headers.get("authorization", "")
        if auth[:8].lower() == "payment ":
            return await self.inner.handle_async_request(request)  # the caller pays by hand
        body = await request.aread()
        request.headers.setdefault("accept-payment", "tempo/session")
        response = await self.inner.handle_async_request(request)
        if response.status_code != 402:
            return response
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        if not challenges:
            return response  # a 402 that is not ours to answer
        await response.aread()
        await response.aclose()
        return await _PaidRequest(self, request, body, challenges.copy()).run()


class _PaidRequest:
    """One logical paid request: checkout, credential, retries, and the response."""

    def __init__(
        self,
        transport: PaymentTransport,
        request: httpx.Request,
        body: bytes,
        challenges: list[Any],
    ) -> None:
        self.t = transport
        self.manager = transport.manager
        self.request = request
        self.body = body
        self.challenges = challenges
        self.idempotency_key = request.headers.get("idempotency-key") or f"mppagent-{uuid.uuid4()}"
        self.url = str(request.url)
        self.record: ChannelRecord
        self.payload: OpenPayload | VoucherPayload
        self.open_op: Operation | None = None
        self.exchange: PaidExchange
        self.lease_held = False

    async def run(self) -> httpx.Response:
        offer = select_offer(self.manager.policy, self.challenges, _now())
        self.t.emit(
            PaymentEvent("challenge", "", offer.price, detail={"realm": offer.challenge.realm})
        )
        replaced_gone = False
        try:
            await self._begin(await self.manager.checkout(offer, self.url), offer)
            for _attempt in range(self.t.max_attempts):
                response = await self._send(offer, self.payload)
                if response.is_success:
                    return await self._success(response, offer)
                await response.aread()
                await response.aclose()
                if response.status_code in _STATUS_RETRYABLE and self.open_op is None:
                    await asyncio.sleep(min(_retry_after(response) or 0.5, 5.0))
                    continue  # same credential again: nothing new is signed
                problem = parse_problem(response)
                if self.open_op is not None:
                    # An error answer to our open: the server may have broadcast it anyway.
                    opened = await self.manager.settle_open(self.record, self.open_op, str(problem))
                    self.open_op = None
                    if opened is None:
                        self.lease_held = False
                        if not isinstance(problem, _CHALLENGE_PROBLEMS):
                            raise problem
                        offer = self._fresh_offer(response, offer)
                        await self._begin(await self.manager.checkout(offer, self.url), offer)
                        continue
                    self.record = opened
                    self.exchange.deposit = opened.deposit
                    self.t.emit(PaymentEvent("open", opened.channel_id, opened.deposit))
                if isinstance(problem, _CHALLENGE_PROBLEMS):
                    offer = self._fresh_offer(response, offer)
                    self.exchange.challenge_id = offer.challenge.id
                elif isinstance(problem, _GONE_PROBLEMS) and not replaced_gone:
                    replaced_gone = True
                    await self._retire(problem)
                    await self._begin(await self.manager.checkout(offer, self.url), offer)
                elif isinstance(problem, InsufficientBalanceProblem):
                    need = _int_extra(problem, "requiredTopUp") or offer.price
                    await self._apply(self.exchange.required_for_balance(need), offer)
                elif isinstance(problem, AmountExceedsDepositProblem):
                    top_up = self.manager.policy.top_up_amount(
                        self.record.deposit, self.record.signed, self.exchange.initial_deposit
                    )
                    await self._apply(TopUp(amount=top_up, then_sign=self.record.signed), offer)
                elif isinstance(problem, DeltaTooSmallProblem):
                    delta = offer.request.method_details.min_voucher_delta or offer.price
                    await self._apply(SignVoucher(self.exchange.signed + delta), offer)
                else:
                    raise problem
            raise NetworkError(f"payment for {self.url} did not succeed after retries")
        finally:
            if self.lease_held:
                self.manager.release(self.record)

    async def _begin(self, checkout: Checkout, offer: Offer) -> None:
        """Prepare the first credential on a freshly leased channel."""
        self.record = checkout.record
        self.lease_held = True
        self.open_op = None
        if checkout.is_new:
            self.payload, self.open_op = await self.manager.open_payload(checkout)
        else:
            self.payload = self.manager.voucher_payload(self.record, self.record.signed)
            self.t.emit(
                PaymentEvent(
                    "reuse",
                    self.record.channel_id,
                    self.record.deposit,
                    detail={"signed": self.record.signed},
                )
            )
        self.exchange = self._exchange(self.record, offer)

    async def _apply(self, decision: SignVoucher | TopUp, offer: Offer) -> None:
        """Top up if decided, then sign the voucher the next attempt carries."""
        amount = decision.amount if isinstance(decision, SignVoucher) else decision.then_sign
        if isinstance(decision, TopUp):
            self.record = await _top_up(
                self.t, self.record, decision.amount, offer, self.url, self.exchange
            )
        payload = self.manager.voucher_payload(self.record, amount)
        self.exchange.voucher_signed(payload.cumulative_amount)
        self.record = self.manager.store.get(self.record.channel_id) or self.record
        self.payload = payload
        self.t.emit(
            PaymentEvent(
                "voucher",
                self.record.channel_id,
                payload.cumulative_amount,
                detail={"proactive": False, "reason": "insufficient-balance"},
            )
        )

    def _exchange(self, record: ChannelRecord, offer: Offer) -> PaidExchange:
        return PaidExchange(
            policy=self.manager.policy,
            channel_id=record.channel_id,
            challenge_id=offer.challenge.id,
            price=offer.price,
            deposit=record.deposit,
            signed=record.signed,
            accepted=record.accepted,
            spent=record.spent,
            initial_deposit=self.manager.policy.initial_deposit(offer),
        )

    def _credential_header(self, offer: Offer, payload: OpenPayload | VoucherPayload) -> str:
        source = did_pkh(offer.request.chain_id, self.manager.wallet.address)
        return Credential.for_challenge(offer.challenge, payload.to_wire(), source=source).encode()

    async def _send(self, offer: Offer, payload: OpenPayload | VoucherPayload) -> httpx.Response:
        """Send the paid request; on a transport error resend the *same* credential."""
        headers = httpx.Headers(self.request.headers)
        headers["authorization"] = self._credential_header(offer, payload)
        headers["idempotency-key"] = self.idempotency_key
        delay = 0.2
        attempt = 0
        while True:
            paid = httpx.Request(
                self.request.method,
                self.request.url,
                headers=headers,
                content=self.body,
                extensions=self.request.extensions,
            )
            try:
                return await self.t.inner.handle_async_request(paid)
            except httpx.TransportError as exc:
                attempt += 1
                if attempt >= 3:
                    raise NetworkError(
                        f"paid request to {self.url} failed: {type(exc).__name__}"
                    ) from None
                await asyncio.sleep(delay)
                delay *= 2

    def _fresh_offer(self, response: httpx.Response, previous: Offer) -> Offer:
        """A new challenge from a 402 (same scope required: no silent payee switch)."""
        return _offer_from(self.t, response, previous)

    async def _retire(self, problem: ProblemError) -> None:
        """The server says the channel is gone: reconcile with the chain, stop using it."""
        try:
            record = await self.manager.reconcile(self.record.channel_id)
        finally:
            self.manager.release(self.record)
            self.lease_held = False
        if record.status in (ChannelStatus.OPEN, ChannelStatus.OPENING):
            # Open on chain but unknown to the server: funds come back by forced close.
            self.manager.store.update(record.channel_id, status=ChannelStatus.GONE)
        log.warning("channel.gone", channel=record.channel_id, problem=problem.type)

    async def _success(self, response: httpx.Response, offer: Offer) -> httpx.Response:
        """Confirm an open, check the header receipt, and hand the body over."""
        try:
            if self.open_op is not None:
                failpoints.hit("open.sent")
                self.record = await self.manager.confirm_open(self.record, self.open_op)
                self.exchange.deposit = self.record.deposit
                self.open_op = None
                self.t.emit(PaymentEvent("open", self.record.channel_id, self.record.deposit))
            receipt = header_receipt(response)
            if receipt is not None:
                self.exchange.check_receipt(receipt)
                self.manager.store.record_receipt(
                    self.record.channel_id,
                    accepted=receipt.accepted_cumulative,
                    spent=receipt.spent,
                )
                self.t.emit(PaymentEvent("receipt", self.record.channel_id, receipt.spent))
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                stream = PaidStream(
                    transport=self.t,
                    response=response,
                    exchange=self.exchange,
                    record=self.record,
                    offer=offer,
                    url=self.url,
                    meter=self.t.meter_factory(offer.unit_type),
                )
                self.lease_held = False  # the stream releases it when it ends
                return httpx.Response(
                    status_code=response.status_code,
                    headers=response.headers,
                    stream=stream,
                    extensions={**response.extensions, PAID_STREAM: stream},
                    request=self.request,
                )
            # A plain body carries no payment events: the receipt was checked, the
            # lease is released when this returns, and the caller reads the body.
            return response
        except ServerMisbehaviour as exc:
            await response.aclose()
            _mark_suspect(self.manager, self.record.channel_id, exc, self.url)
            raise
        except BaseException:
            await response.aclose()
            raise


async def _top_up(
    t: PaymentTransport,
    record: ChannelRecord,
    amount: int,
    offer: Offer,
    url: str,
    exchange: PaidExchange,
) -> ChannelRecord:
    """Sign ``topUp``, hand it to the server, and confirm the new deposit on chain."""
    payload, op = await t.manager.top_up_payload(record, amount)
    await deliver(t, url, offer, payload, _checker(exchange))
    failpoints.hit("topup.sent")
    record = await t.manager.confirm_top_up(record, op)
    exchange.deposit_increased(record.deposit)
    t.emit(PaymentEvent("top_up", record.channel_id, amount, detail={"deposit": record.deposit}))
    return record


async def deliver(
    t: PaymentTransport,
    url: str,
    offer: Offer,
    payload: VoucherPayload | TopUpPayload | ClosePayload,
    check: Callable[[SessionReceipt, str], None] | None,
    *,
    challenge_id_holder: list[Offer] | None = None,
) -> SessionReceipt | None:
    """Deliver a voucher, top-up or close credential to ``url`` before the deadline.

    ``HEAD`` first (no body to transfer); a bodiless error or a server that
    does not allow ``HEAD`` gets the same credential again by ``POST`` without
    a body, which also carries the problem details. Network errors and 5xx
    are retried with backoff; an expired challenge is replaced by the fresh
    one the server sends with its 402.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + t.voucher_deadline
    method = "HEAD"
    delay = 0.05
    current = challenge_id_holder[0] if challenge_id_holder else offer
    while True:
        if current.challenge.is_expired(_now(), t.manager.policy.challenge_skew):
            current = await _refresh_offer(t, url, current)
        header = Credential.for_challenge(
            current.challenge,
            payload.to_wire(),
            source=did_pkh(current.request.chain_id, t.manager.wallet.address),
        ).encode()
        request = httpx.Request(
            method,
            url,
            headers={"authorization": header},
            extensions={"timeout": _timeouts(max(0.5, deadline - loop.time()))},
        )
        try:
            response = await t.inner.handle_async_request(request)
            await response.aread()
            await response.aclose()
        except httpx.TransportError as exc:
            if loop.time() + delay > deadline:
                raise VoucherDeliveryFailed(
                    f"could not deliver {payload.action} to {url} in time: {type(exc).__name__}"
                ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        if response.is_success:
            receipt = header_receipt(response)
            if receipt is not None and check is not None:
                check(receipt, current.challenge.id)
            if challenge_id_holder is not None:
                challenge_id_holder[0] = current
            return receipt
        if response.status_code in _STATUS_RETRYABLE:
            wait = _retry_after(response) or delay
            if loop.time() + wait > deadline:
                raise VoucherDeliveryFailed(
                    f"server kept answering {response.status_code} to {payload.action}"
                )
            await asyncio.sleep(wait)
            delay = min(delay * 2, 2.0)
            continue
        if method == "HEAD" and (response.status_code in (404, 405, 501) or not response.content):
            # HEAD not allowed, or an error without a body to explain it: the same
            # credential again by POST without a body, which carries problem details.
            method = "POST"
            continue
        problem = parse_problem(response)
        if response.status_code == 402 and isinstance(problem, _CHALLENGE_PROBLEMS):
            current = _offer_from(t, response, current)
            continue
        raise problem


async def _refresh_offer(t: PaymentTransport, url: str, current: Offer) -> Offer:
    """Ask the resource for a fresh challenge (``HEAD`` without credentials)."""
    response = await t.inner.handle_async_request(httpx.Request("HEAD", url))
    await response.aread()
    await response.aclose()
    return _offer_from(t, response, current)


def _offer_from(t: PaymentTransport, response: httpx.Response, current: Offer) -> Offer:
    challenges = parse_challenges(response.headers.get_list("www-authenticate"))
    offer = select_offer(t.manager.policy, challenges, _now())
    if ChannelManager.scope_of(offer) != ChannelManager.scope_of(current):
        raise ServerMisbehaviour(
            "scope_changed", "the server's fresh challenge names a different payee or escrow"
        )
    if offer.price != current.price:
        raise ServerMisbehaviour(
            "price_changed",
            f"the price changed mid-session from {current.price} to {offer.price}",
        )
    return offer


class PaidStream(httpx.AsyncByteStream):
    """The body of a paid SSE response, with payment events handled and removed.

    A reader task pulls bytes from the server into a small queue; this
    iterator parses events, hands application events on (their exact bytes)
    and answers voucher demands in a worker task, in order, so the stream is
    never blocked by payment traffic. A failed voucher or a misbehaving server
    ends the stream with a typed error; state is saved either way.
    """

    def __init__(
        self,
        *,
        transport: PaymentTransport,
        response: httpx.Response,
        exchange: PaidExchange,
        record: ChannelRecord,
        offer: Offer,
        url: str,
        meter: UnitMeter,
    ) -> None:
        self.t = transport
        self.response = response
        self.exchange = exchange
        self.record = record
        self.offer_holder = [offer]
        self.url = url
        self.meter = meter
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=64)
        self._needs: asyncio.Queue[tuple[NeedVoucher | SignVoucher, float] | None] = asyncio.Queue()
        self._worker_busy = False
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._last_renew = time.monotonic()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """The application's bytes, exactly as sent, minus the payment events."""
        async for batch in self._batches():
            yield b"".join(event.raw for event in batch) if len(batch) > 1 else batch[0].raw

    async def events(self) -> AsyncIterator[SSEEvent]:
        """The application's events, already parsed (no second parse for ``Agent.stream``)."""
        async for batch in self._batches():
            for event in batch:
                if event.data or event.event:
                    yield event

    async def _batches(self) -> AsyncIterator[list[SSEEvent]]:
        """Application events per network chunk; payment events are acted on, not passed."""
        parser = SSEParser()
        held: SSEEvent | None = None
        self._tasks = [
            asyncio.create_task(self._read(), name="mppagent-stream-reader"),
            asyncio.create_task(self._answer_vouchers(), name="mppagent-voucher-worker"),
        ]
        manager = self.t.manager
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                out: list[SSEEvent] = []
                for event in parser.feed(item):
                    if event.event == "payment-need-voucher":
                        need = parse_model(
                            NeedVoucher, parse_json_object(event.data), "payment-need-voucher"
                        )
                        self._needs.put_nowait((need, time.perf_counter()))
                    elif event.event == "payment-receipt":
                        self._final_receipt(event.data)
                    elif event.data == "[DONE]" and held is None:
                        # Hold the OpenAI end marker until the stream ends: an SDK stops
                        # reading at [DONE], and the final receipt may still follow it.
                        held = event
                    else:
                        units = self.meter.units(event)
                        if units:
                            self.exchange.delivered_units(units)
                        if held is not None:
                            out.append(held)
                            held = None
                        out.append(event)
                if out:
                    self._maybe_pay_ahead()
                    yield out
                if time.monotonic() - self._last_renew > manager.lease_ttl / 3:
                    manager.renew(self.record)
                    self._last_renew = time.monotonic()
            last, tail = parser.close()
            rest: list[SSEEvent] = []
            for event in last:
                if event.event == "payment-receipt":
                    self._final_receipt(event.data)
                else:
                    rest.append(event)
            if self.exchange.final is None:
                raise StreamInterrupted(
                    f"the paid stream from {self.url} ended without a final receipt "
                    f"({self.exchange.delivered} units delivered); channel state is saved"
                )
            if held is not None:
                rest.insert(0, held)
            if tail:
                rest.append(SSEEvent("", "", None, None, tail))  # unterminated: bytes only
            await self._finish_vouchers()
            if rest:
                yield rest
        except ServerMisbehaviour as exc:
            _mark_suspect(manager, self.record.channel_id, exc, self.url)
            raise
        finally:
            await self._shutdown()

    def _maybe_pay_ahead(self) -> None:
        """Queue a proactive voucher when the engine allows one and none is in flight."""
        if self._worker_busy or not self._needs.empty():
            return
        decision = self.exchange.proactive_voucher()
        if decision is not None:
            self._worker_busy = True
            self._needs.put_nowait((decision, time.perf_counter()))

    def _final_receipt(self, data: str) -> None:
        receipt = parse_model(SessionReceipt, parse_json_object(data), "payment-receipt")
        exchange = self.exchange
        start = exchange.spent if exchange.spent_at_start is None else exchange.spent_at_start
        self.exchange.check_final_receipt(receipt)
        self.t.manager.store.record_receipt(
            self.record.channel_id, accepted=receipt.accepted_cumulative, spent=receipt.spent
        )
        self.t.emit(
            PaymentEvent(
                "final_receipt",
                self.record.channel_id,
                receipt.spent,
                detail={
                    "units": receipt.units,
                    "delivered": self.exchange.delivered,
                    "billed": receipt.spent - start,  # this request's cost
                },
            )
        )

    async def aclose(self) -> None:
        """Stop reading, cancel payment work, release the channel."""
        await self._shutdown()

    # -- workers ---------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for chunk in self.response.stream:  # type: ignore[union-attr]
                await self._queue.put(chunk)
        except httpx.TransportError as exc:
            await self._queue.put(
                StreamInterrupted(
                    f"the paid stream from {self.url} broke: {type(exc).__name__}; "
                    "channel state is saved"
                )
            )
            return
        except BaseException as exc:
            await self._queue.put(exc)
            return
        await self._queue.put(None)

    async def _answer_vouchers(self) -> None:
        while True:
            item = await self._needs.get()
            if item is None:
                return
            need, received_at = item
            self._worker_busy = True
            try:
                await self._answer(need, received_at)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                await self._queue.put(exc)
                return
            finally:
                self._worker_busy = False

    async def _answer(self, need: NeedVoucher | SignVoucher, received_at: float) -> None:
        manager = self.t.manager
        proactive = isinstance(need, SignVoucher)
        decision = need if isinstance(need, SignVoucher) else self.exchange.on_need_voucher(need)
        if proactive and decision.amount <= self.exchange.signed:
            return  # a demand overtook it
        offer = self.offer_holder[0]
        if isinstance(decision, TopUp):
            self.record = await _top_up(
                self.t, self.record, decision.amount, offer, self.url, self.exchange
            )
            amount = decision.then_sign
        else:
            amount = decision.amount
        try:
            # Recorded before it is sent, as always -- but the commit waits for the disk
            # (synchronous=FULL: an fsync, 0.3-2 ms here), so it runs in a worker thread: the loop,
            # and every other stream on it, keeps going meanwhile.
            payload = await asyncio.to_thread(manager.voucher_payload, self.record, amount)
        except PolicyViolation:
            if proactive:
                return  # e.g. the daily budget: wait for a real demand to refuse it
            raise
        self.exchange.voucher_signed(payload.cumulative_amount)
        failpoints.hit("voucher.recorded")
        receipt = await deliver(
            self.t,
            self.url,
            offer,
            payload,
            _checker(self.exchange),
            challenge_id_holder=self.offer_holder,
        )
        failpoints.hit("voucher.sent")
        if receipt is not None:
            manager.store.record_receipt(
                self.record.channel_id, accepted=receipt.accepted_cumulative, spent=receipt.spent
            )
        self.t.emit(
            PaymentEvent(
                "voucher",
                self.record.channel_id,
                payload.cumulative_amount,
                seconds=time.perf_counter() - received_at,
                detail={"proactive": proactive},
            )
        )

    async def _finish_vouchers(self, grace: float = 2.0) -> None:
        """Let a voucher already on its way finish, so its receipt is checked and kept.

        The server may resume and finish the stream before the answer to the
        voucher that resumed it arrives on the other connection.
        """
        if len(self._tasks) < 2 or self._tasks[1].done():
            return
        self._needs.put_nowait(None)  # the worker exits once the queue is drained
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self._tasks[1]), grace)

    async def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.response.aclose()
        self.t.manager.release(self.record)


def _mark_suspect(
    manager: ChannelManager, channel_id: str, exc: ServerMisbehaviour, url: str
) -> None:
    """Stop paying on a channel whose server misbehaved, and keep the evidence."""
    manager.store.update(
        channel_id,
        status=ChannelStatus.SUSPECT,
        evidence=evidence_json(check=exc.check, message=exc.message, url=url),
    )
    log.warning("channel.suspect", channel=channel_id, check=exc.check)


def _checker(exchange: PaidExchange) -> Callable[[SessionReceipt, str], None]:
    def check(receipt: SessionReceipt, challenge_id: str) -> None:
        exchange.check_receipt(receipt, challenge_id=challenge_id)

    return check


def header_receipt(response: httpx.Response) -> SessionReceipt | None:
    value = response.headers.get("payment-receipt")
    if value is None:
        return None
    data = _b64_json(value)
    return parse_model(SessionReceipt, data, "Payment-Receipt header")


def _int_extra(problem: ProblemError, name: str) -> int | None:
    value = problem.extras.get(name)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(min(int(value), 30)) if value.isdigit() else None


def _timeouts(seconds: float) -> dict[str, float]:
    return {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}


def _now() -> datetime:
    return datetime.now(UTC)
