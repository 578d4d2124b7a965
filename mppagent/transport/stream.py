"""The paid stream: an SSE body with payment events acted on and taken out.

A reader task pulls bytes from the server into a small queue; the iterator
parses events, hands application events on (their exact bytes) to the
application and to the engine's meter, and answers voucher demands in a
worker task, in order, so the stream is never blocked by payment traffic. A
failed voucher or a misbehaving server ends the stream with a typed error;
state is saved either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx

from mppagent import failpoints
from mppagent.errors import PolicyViolation, ServerMisbehaviour
from mppagent.logging import get_logger
from mppagent.protocol import parse_json_object
from mppagent.session.engine import (
    DeliveredEvent,
    DepositChanged,
    NeedVoucherSeen,
    PaidExchange,
    ReceiptSeen,
    SignVoucher,
    TopUp,
    VoucherSigned,
)
from mppagent.session.policy import Offer
from mppagent.session.store import ChannelRecord, evidence_json
from mppagent.tempo.schemas import NeedVoucher, SessionReceipt, parse_model
from mppagent.transport.delivery import ReceiptCheck, deliver, deliver_top_up
from mppagent.transport.events import PaymentEvent, PaymentOutcome, StreamInterrupted
from mppagent.transport.sse import SSEEvent, SSEParser

if TYPE_CHECKING:
    from mppagent.transport.paying import PaymentTransport

__all__ = ["PaidStream", "mark_suspect", "receipt_check"]

log = get_logger("mppagent.transport")


class PaidStream(httpx.AsyncByteStream):
    """The body of a paid SSE response, with payment events handled and removed."""

    def __init__(
        self,
        *,
        transport: PaymentTransport,
        response: httpx.Response,
        exchange: PaidExchange,
        record: ChannelRecord,
        offer: Offer,
        url: str,
        outcome: PaymentOutcome,
    ) -> None:
        self.t = transport
        self.response = response
        self.exchange = exchange
        self.record = record
        self.offer_holder = [offer]
        self.url = url
        self.outcome = outcome
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
        exchange = self.exchange
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
                        exchange.handle(DeliveredEvent(event))
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
            if exchange.final is None:
                if exchange.receipts_seen == 0:
                    # Paid, and not one receipt: nothing the server billed was checked.
                    manager.store.mark_unverified(self.record.channel_id)
                    self.t.emit(PaymentEvent("unverified", self.record.channel_id))
                raise StreamInterrupted(
                    f"the paid stream from {self.url} ended without a final receipt "
                    f"({exchange.delivered} units delivered); channel state is saved"
                )
            if held is not None:
                rest.insert(0, held)
            if tail:
                rest.append(SSEEvent("", "", None, None, tail))  # unterminated: bytes only
            await self._finish_vouchers()
            if rest:
                yield rest
        except ServerMisbehaviour as exc:
            mark_suspect(self.t, self.record.channel_id, exc, self.url)
            raise
        finally:
            await self._shutdown()

    def _maybe_pay_ahead(self) -> None:
        """Queue a proactive voucher when the engine allows one and none is in flight."""
        if self._worker_busy or not self._needs.empty():
            return
        decision = self.exchange.pay_ahead()
        if decision is not None:
            self._worker_busy = True
            self._needs.put_nowait((decision, time.perf_counter()))

    def _final_receipt(self, data: str) -> None:
        receipt = parse_model(SessionReceipt, parse_json_object(data), "payment-receipt")
        exchange = self.exchange
        exchange.handle(ReceiptSeen(receipt, final=True))
        self.t.manager.store.record_receipt(
            self.record.channel_id,
            accepted=receipt.accepted_cumulative,
            spent=receipt.spent,
            final=True,
        )
        self.outcome.verified = True
        self.outcome.billed = exchange.billed
        self.outcome.under_billed = exchange.under_billed
        self.outcome.signed = exchange.signed
        self.t.emit(
            PaymentEvent(
                "final_receipt",
                self.record.channel_id,
                receipt.spent,
                detail={
                    "units": receipt.units,
                    "delivered": exchange.delivered,
                    "bound": exchange.bound,
                    "billed": exchange.billed,
                    "under_billed": exchange.under_billed,
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
        exchange = self.exchange
        proactive = isinstance(need, SignVoucher)
        decision = need if isinstance(need, SignVoucher) else exchange.handle(NeedVoucherSeen(need))
        assert decision is not None
        offer = self.offer_holder[0]
        check = receipt_check(exchange)
        if isinstance(decision, TopUp):
            self.record = await deliver_top_up(
                self.t, self.record, decision.amount, offer, self.url, check
            )
            exchange.handle(DepositChanged(self.record.deposit))
            auth = decision.then
        else:
            if proactive and decision.amount <= exchange.signed:
                return  # a demand overtook it
            auth = decision.auth
        try:
            # Recorded before it is sent, as always -- but the commit waits for the disk
            # (synchronous=FULL: an fsync), so it runs in a worker thread: the loop, and
            # every other stream on it, keeps going meanwhile.
            payload = await asyncio.to_thread(manager.voucher_payload, self.record, auth)
        except PolicyViolation:
            if proactive:
                return  # e.g. the daily budget: wait for a real demand to refuse it
            raise
        exchange.handle(VoucherSigned(payload.cumulative_amount))
        failpoints.hit("voucher.recorded")
        receipt = await deliver(
            self.t, self.url, offer, payload, check, offer_holder=self.offer_holder
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


def mark_suspect(t: PaymentTransport, channel_id: str, exc: ServerMisbehaviour, url: str) -> None:
    """Stop paying on a channel whose server misbehaved, and keep the evidence."""
    with contextlib.suppress(Exception):
        t.manager.store.mark_suspect(
            channel_id, evidence=evidence_json(check=exc.check, message=exc.message, url=url)
        )
    log.warning("channel.suspect", channel=channel_id, check=exc.check)


def receipt_check(exchange: PaidExchange) -> ReceiptCheck:
    """A receipt check for credential delivery that feeds the engine."""

    def check(receipt: SessionReceipt, challenge_id: str) -> None:
        exchange.handle(ReceiptSeen(receipt, challenge_id))

    return check
