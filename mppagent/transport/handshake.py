"""The handshake: 402 → credential → retry, for one logical paid request.

The policy picks an acceptable offer and the gate's preflight refuses a
request that could never be paid -- both before any approval, deposit or
open. Then a channel is leased or opened, and the request is retried with the
*same body*, an ``Authorization: Payment`` credential and an
``Idempotency-Key``. Problems the server answers with are turned into engine
events; whatever they ask for passes the gate. The loop is bounded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from mppagent import failpoints
from mppagent.errors import NetworkError, ServerMisbehaviour
from mppagent.logging import get_logger
from mppagent.protocol import (
    AmountExceedsDepositProblem,
    ChannelFinalizedProblem,
    ChannelNotFoundProblem,
    Credential,
    DeltaTooSmallProblem,
    InsufficientBalanceProblem,
    ProblemError,
    did_pkh,
    parse_problem,
)
from mppagent.session.channels import Checkout
from mppagent.session.engine import (
    ChallengeRenewed,
    DepositChanged,
    PaidExchange,
    ProblemSeen,
    ReceiptSeen,
    SignVoucher,
    TopUp,
    VoucherSigned,
)
from mppagent.session.gate import PaymentGate, preflight
from mppagent.session.lifecycle import Event
from mppagent.session.policy import Offer, select_offer
from mppagent.session.store import ChannelRecord, ChannelStatus, Operation
from mppagent.tempo.schemas import OpenPayload, VoucherPayload
from mppagent.transport.bootstrap import SESSION_HEADER
from mppagent.transport.delivery import (
    CHALLENGE_PROBLEMS,
    STATUS_RETRYABLE,
    deliver_top_up,
    header_receipt,
    int_extra,
    offer_from,
    retry_after,
)
from mppagent.transport.events import PAYMENT_OUTCOME, PaymentEvent, PaymentOutcome
from mppagent.transport.stream import PaidStream, mark_suspect, receipt_check

if TYPE_CHECKING:
    from mppagent.protocol import Challenge
    from mppagent.transport.paying import PaymentTransport

__all__ = ["PAID_STREAM", "PaidRequest"]

log = get_logger("mppagent.transport")

PAID_STREAM = "mppagent.paid_stream"
"""Response extension holding the :class:`PaidStream`, for consumers that want parsed events."""

_GONE_PROBLEMS = (ChannelNotFoundProblem, ChannelFinalizedProblem)
_MORE_PROBLEMS = (InsufficientBalanceProblem, AmountExceedsDepositProblem, DeltaTooSmallProblem)


class PaidRequest:
    """One logical paid request: checkout, credential, bounded retries, the response."""

    def __init__(
        self,
        transport: PaymentTransport,
        request: httpx.Request,
        body: bytes,
        challenges: list[Challenge],
        *,
        snapshot: str | None = None,
    ) -> None:
        self.t = transport
        self.snapshot = snapshot
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
        self.outcome: PaymentOutcome
        self.lease_held = False

    async def run(self) -> httpx.Response:
        """Pay and retry; the response (its body a :class:`PaidStream` for SSE)."""
        policy = self.manager.policy
        offer = select_offer(policy, self.challenges, _now())
        daily = (
            self.manager.store.spent_since(time.time() - 86_400)
            if policy.budget_per_day is not None
            else None
        )
        preflight(policy, offer, spent_last_day=daily)
        self.t.emit(
            PaymentEvent("challenge", "", offer.price, detail={"realm": offer.challenge.realm})
        )
        # A v2 server's snapshot (or, for a cold scope, its HEAD bootstrap) may teach a
        # store that lost or missed state about our channel, once it proves itself.
        await self.t.hints.learn(offer, self.url, self.snapshot)
        replaced_gone = False
        delay = 0.1
        try:
            await self._begin(await self.manager.checkout(offer, self.url), offer)
            for _attempt in range(self.t.max_attempts):
                response = await self._send(offer, self.payload)
                if response.is_success:
                    return await self._success(response, offer)
                await response.aread()
                await response.aclose()
                if response.status_code in STATUS_RETRYABLE and self.open_op is None:
                    await asyncio.sleep(min(retry_after(response) or delay, 5.0))
                    delay *= 2
                    continue  # same credential again: nothing new is signed
                problem = parse_problem(response)
                if self.open_op is not None and not await self._settle_refused_open(problem):
                    if not isinstance(problem, CHALLENGE_PROBLEMS):
                        raise problem
                    offer = offer_from(self.t, response, offer)
                    await self._begin(await self.manager.checkout(offer, self.url), offer)
                    continue
                if isinstance(problem, CHALLENGE_PROBLEMS):
                    offer = offer_from(self.t, response, offer)
                    self.exchange.handle(ChallengeRenewed(offer.challenge.id))
                elif isinstance(problem, _GONE_PROBLEMS) and not replaced_gone:
                    replaced_gone = True
                    await self._retire(problem)
                    await self._begin(await self.manager.checkout(offer, self.url), offer)
                elif isinstance(
                    problem,
                    InsufficientBalanceProblem | AmountExceedsDepositProblem | DeltaTooSmallProblem,
                ):
                    await self._answer_problem(problem, offer)
                else:
                    raise problem
                await asyncio.sleep(delay)
                delay *= 2
            raise NetworkError(
                f"payment for {self.url} did not succeed after {self.t.max_attempts} attempts"
            )
        except ServerMisbehaviour as exc:
            if self.lease_held:
                mark_suspect(self.t, self.record.channel_id, exc, self.url)
            raise
        finally:
            if self.lease_held:
                self.manager.release(self.record)

    async def _settle_refused_open(self, problem: ProblemError) -> bool:
        """An error answer to our open: the server may have broadcast it anyway."""
        assert self.open_op is not None
        opened = await self.manager.settle_open(self.record, self.open_op, str(problem))
        self.open_op = None
        if opened is None:
            self.lease_held = False
            return False
        self.record = opened
        self.exchange.handle(DepositChanged(opened.deposit))
        self.t.emit(PaymentEvent("open", opened.channel_id, opened.deposit))
        return True

    async def _answer_problem(self, problem: ProblemError, offer: Offer) -> None:
        """Turn a 402 asking for more into an engine event; execute what the gate allows."""
        if isinstance(problem, InsufficientBalanceProblem):
            seen = ProblemSeen(
                "insufficient-balance", required_top_up=int_extra(problem, "requiredTopUp")
            )
        elif isinstance(problem, DeltaTooSmallProblem):
            seen = ProblemSeen("delta-too-small", min_delta=int_extra(problem, "minVoucherDelta"))
        else:
            seen = ProblemSeen("amount-exceeds-deposit")
        decision = self.exchange.handle(seen)
        assert decision is not None
        await self._apply(decision, offer, reason=seen.kind)

    async def _begin(self, checkout: Checkout, offer: Offer) -> None:
        """Prepare the first credential on a freshly leased channel."""
        record = checkout.record
        self.record = record
        self.lease_held = True
        self.open_op = None
        min_delta = offer.request.method_details.min_voucher_delta or 0
        gate = PaymentGate(
            self.manager.policy,
            channel_id=record.channel_id,
            price=offer.price,
            # What receipts verified, or -- after a stream cut off before its final
            # receipt -- what our own meter acknowledged as delivered, if more.
            baseline=max(record.spent, record.acknowledged),
            signed_at_start=record.signed,
            min_delta=min_delta,
        )
        self.exchange = PaidExchange(
            policy=self.manager.policy,
            gate=gate,
            meter=self.t.meter_factory(offer.unit_type, self.body),
            challenge_id=offer.challenge.id,
            deposit=record.deposit,
            signed=record.signed,
            initial_deposit=self.manager.policy.initial_deposit(offer),
            unverified=record.unverified,
        )
        self.outcome = PaymentOutcome(channel_id=record.channel_id, verified=False)
        if checkout.is_new:
            initial = self.exchange.initial_voucher(self.manager.initial_amount(offer))
            self.payload, self.open_op = await self.manager.open_payload(checkout, initial)
            self.exchange.handle(VoucherSigned(self.payload.cumulative_amount))
        else:
            auth = self.exchange.initial_voucher(record.signed)
            self.payload = self.manager.voucher_payload(record, auth)
            self.t.emit(
                PaymentEvent(
                    "reuse", record.channel_id, record.deposit, detail={"signed": record.signed}
                )
            )

    async def _apply(self, decision: SignVoucher | TopUp, offer: Offer, *, reason: str) -> None:
        """Top up if decided, then sign the voucher the next attempt carries."""
        if isinstance(decision, TopUp):
            self.record = await deliver_top_up(
                self.t,
                self.record,
                decision.amount,
                offer,
                self.url,
                receipt_check(self.exchange),
            )
            self.exchange.handle(DepositChanged(self.record.deposit))
            auth = decision.then
        else:
            auth = decision.auth
        payload = self.manager.voucher_payload(self.record, auth)
        self.exchange.handle(VoucherSigned(payload.cumulative_amount))
        self.record = self.manager.store.get(self.record.channel_id) or self.record
        self.payload = payload
        self.t.emit(
            PaymentEvent(
                "voucher",
                self.record.channel_id,
                payload.cumulative_amount,
                detail={"proactive": False, "reason": reason},
            )
        )

    def _credential_header(self, offer: Offer, payload: OpenPayload | VoucherPayload) -> str:
        source = did_pkh(offer.request.chain_id, self.manager.wallet.address)
        return Credential.for_challenge(offer.challenge, payload.to_wire(), source=source).encode()

    async def _send(self, offer: Offer, payload: OpenPayload | VoucherPayload) -> httpx.Response:
        """Send the paid request; on a transport error resend the *same* credential."""
        headers = httpx.Headers(self.request.headers)
        headers["authorization"] = self._credential_header(offer, payload)
        headers["idempotency-key"] = self.idempotency_key
        if self.open_op is None:
            # The hint: which open channel this request pays on (see transport.bootstrap).
            headers[SESSION_HEADER] = self.record.channel_id
        delay = 0.2
        for attempt in range(3):
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
                if attempt == 2:
                    raise NetworkError(
                        f"paid request to {self.url} failed: {type(exc).__name__}"
                    ) from None
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _retire(self, problem: ProblemError) -> None:
        """The server says the channel is gone: reconcile with the chain, stop using it."""
        try:
            record = await self.manager.reconcile(self.record.channel_id)
        finally:
            self.manager.release(self.record)
            self.lease_held = False
        if record.status in (ChannelStatus.OPEN, ChannelStatus.OPENING):
            # Open on chain but unknown to the server: funds come back by forced close.
            self.manager.store.apply(record.channel_id, Event.FORGOTTEN)
        log.warning("channel.gone", channel=record.channel_id, problem=problem.type)

    async def _success(self, response: httpx.Response, offer: Offer) -> httpx.Response:
        """Confirm an open, check the header receipt, and hand the body over."""
        try:
            if self.open_op is not None:
                failpoints.hit("open.sent")
                self.record = await self.manager.confirm_open(self.record, self.open_op)
                self.exchange.handle(DepositChanged(self.record.deposit))
                self.open_op = None
                self.t.emit(PaymentEvent("open", self.record.channel_id, self.record.deposit))
            self.t.hints.paid_through(self.url, self.record.channel_id)
            receipt = header_receipt(response)
            if receipt is not None:
                self.exchange.handle(ReceiptSeen(receipt))
                self.manager.store.record_receipt(
                    self.record.channel_id,
                    accepted=receipt.accepted_cumulative,
                    spent=receipt.spent,
                )
                self.outcome.verified = True
                self.outcome.billed = max(0, receipt.spent - self.exchange.gate.baseline)
                self.t.emit(
                    PaymentEvent(
                        "receipt",
                        self.record.channel_id,
                        receipt.spent,
                        detail={"billed": self.outcome.billed},
                    )
                )
            self.outcome.signed = self.exchange.signed
            extensions: dict[str, Any] = {**response.extensions, PAYMENT_OUTCOME: self.outcome}
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                stream = PaidStream(
                    transport=self.t,
                    response=response,
                    exchange=self.exchange,
                    record=self.record,
                    offer=offer,
                    url=self.url,
                    outcome=self.outcome,
                )
                self.lease_held = False  # the stream releases it when it ends
                return httpx.Response(
                    status_code=response.status_code,
                    headers=response.headers,
                    stream=stream,
                    extensions={**extensions, PAID_STREAM: stream},
                    request=self.request,
                )
            if receipt is None:
                # Paid, but nothing the server billed was checked: say so, and pay
                # nothing ahead on this channel until a receipt verifies it.
                self.manager.store.mark_unverified(self.record.channel_id)
                self.t.emit(PaymentEvent("unverified", self.record.channel_id))
                log.warning("response.unverified", channel=self.record.channel_id, url=self.url)
            response.extensions = extensions
            return response
        except BaseException:
            await response.aclose()
            raise


def _now() -> datetime:
    return datetime.now(UTC)
