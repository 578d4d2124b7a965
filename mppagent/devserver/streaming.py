"""A metered chat-completion stream: charge, then deliver; pause for vouchers.

For each batch of tokens the server first commits ``spent += tokens x price``
(only within what accepted vouchers cover), then sends them. When the paid
balance runs out it emits ``payment-need-voucher``, pauses, and resumes as
soon as a voucher arrives on any request to the same URL -- or ends the
stream cleanly after ``voucher_timeout``. The stream closes with the
OpenAI ``[DONE]`` marker and, last, a ``payment-receipt`` event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from mppagent.devserver.fakemodel import Token
from mppagent.devserver.faults import Fault
from mppagent.devserver.payee import SessionPayee
from mppagent.devserver.wire import SSE_DONE, ChunkWriter, FinishReason, Usage, sse
from mppagent.logging import get_logger

__all__ = ["MeteredStream", "Pacer", "StreamPlan"]

log = get_logger("mppagent.devserver")


class Pacer:
    """Holds a stream to ``rate`` tokens per second on a fixed schedule.

    Sleeping a fixed interval *after* each token would add the server's own work
    to every step, so a paid stream (which also charges) would run slower than a
    free one at the same setting; keeping a schedule makes both run at the rate.
    After a long pause (waiting for a voucher) the schedule restarts instead of
    bursting to catch up. Without a rate it just yields to other tasks.
    """

    def __init__(self, rate: float | None) -> None:
        self.interval = 1 / rate if rate else 0.0
        self._next: float | None = None

    @property
    def paced(self) -> bool:
        """Whether a rate is set (then tokens go out one by one)."""
        return bool(self.interval)

    async def tick(self) -> None:
        """Wait until the next token is due."""
        if not self.interval:
            await asyncio.sleep(0)
            return
        now = asyncio.get_running_loop().time()
        if self._next is None or now - self._next > 10 * self.interval:
            self._next = now
        self._next += self.interval
        await asyncio.sleep(max(self._next - now, 0.0))


@dataclass(frozen=True)
class StreamPlan:
    """What to stream and how: the tokens, the channel, and the faults in force."""

    tokens: list[Token]
    finish_reason: FinishReason
    prompt_tokens: int
    channel_id: str
    challenge_id: str
    faults: frozenset[Fault]
    fault_after: int


class MeteredStream:
    """Produces the SSE body of one paid streaming completion."""

    def __init__(self, payee: SessionPayee, writer: ChunkWriter, plan: StreamPlan) -> None:
        self.payee = payee
        self.config = payee.config
        self.writer = writer
        self.plan = plan
        self.units = 0
        self.price = self.config.price_per_token * (2 if Fault.PRICE_CHANGE in plan.faults else 1)
        self.ticket = object()
        self._claimed = False
        self._paid = 0
        self._faulted = False

    def claim(self) -> None:
        """Make this the channel's active stream; an older one ends (draft §concurrency).

        Call it when the response is created, before the handler next awaits: an
        older stream woken by the voucher that came with this request then sees it
        is superseded before it can spend that voucher. A stream paused for a
        voucher is woken so that it ends now rather than at ``voucher_timeout``.
        """
        self._claimed = True
        active = self.payee.active_streams
        previous = active.get(self.plan.channel_id)
        active[self.plan.channel_id] = self.ticket
        if previous is not None and previous is not self.ticket:
            self.payee.wake(self.plan.channel_id)

    @property
    def superseded(self) -> bool:
        """Whether a newer stream has taken over this stream's channel."""
        return self.payee.active_streams.get(self.plan.channel_id) is not self.ticket

    async def body(self) -> AsyncIterator[bytes]:
        """The byte stream (Starlette's ``StreamingResponse`` iterates it)."""
        plan = self.plan
        active = self.payee.active_streams
        if not self._claimed:
            self.claim()
        if not self.superseded:
            self.payee.stream_faults[plan.channel_id] = plan.faults
        try:
            yield sse(self.writer.role_chunk())
            index = 0
            total = len(plan.tokens)
            pacer = Pacer(self.config.tokens_per_second)
            while index < total:
                if self.superseded:
                    break  # a newer stream on this channel took over
                async for fault_bytes in self._faults(index):
                    yield fault_bytes
                batch = 1 if pacer.paced else min(self.config.charge_batch, total - index)
                async for demand in self._pay_for(batch, total - index):
                    yield demand
                paid = self._paid
                if paid == 0:
                    break  # no voucher in time: end cleanly
                chunk = b"".join(
                    sse(self.writer.token_chunk(token))
                    for token in plan.tokens[index : index + paid]
                )
                index += paid
                yield chunk
                await pacer.tick()  # also lets voucher requests and other streams run
            finish: FinishReason = plan.finish_reason if index == total else "length"
            usage = Usage.of(plan.prompt_tokens, plan.tokens[:index])
            for final in self.writer.final_chunks(finish, usage):
                yield sse(final)
            yield SSE_DONE
            yield self._receipt_event()
        finally:
            if active.get(plan.channel_id) is self.ticket:
                del active[plan.channel_id]
                self.payee.stream_faults.pop(plan.channel_id, None)

    async def _pay_for(self, wanted: int, remaining: int) -> AsyncIterator[bytes]:
        """Charge for up to ``wanted`` tokens, yielding voucher demands while waiting.

        Sets ``self._paid`` to the number of tokens paid for (0: no voucher in time).
        """
        payee = self.payee
        plan = self.plan
        deadline = time.monotonic() + self.config.voucher_timeout
        self._paid = 0
        while True:
            if self.superseded:
                return  # never spend what the newer stream's vouchers paid for
            channel = payee.state.get(plan.channel_id)
            if channel is None or channel.finalized:
                return
            endless = Fault.ENDLESS_NEED_VOUCHER in plan.faults and self.units >= plan.fault_after
            affordable = 0 if endless else min(wanted, channel.available // self.price)
            if affordable > 0:
                if await payee.charge(plan.channel_id, affordable * self.price) is not None:
                    self.units += affordable
                    self._paid = affordable
                    return
                continue
            required = channel.spent + self.price * min(self.config.lookahead_tokens, remaining)
            if endless:
                required = channel.accepted + self.price * self.config.lookahead_tokens
            if Fault.ASK_AHEAD in plan.faults and self.units >= plan.fault_after:
                required = channel.spent + self.price * 100_000
            if self.config.min_voucher_delta:
                required = max(required, channel.accepted + self.config.min_voucher_delta)
            arrived = payee.demand(plan.channel_id, required)
            event = self._need_voucher_event(required, channel.accepted, channel.deposit)
            yield event
            if Fault.DUPLICATE_NEED_VOUCHER in plan.faults:
                yield event
            left = deadline - time.monotonic()
            try:
                await asyncio.wait_for(arrived.wait(), max(left, 0))
            except TimeoutError:
                log.info("stream.voucher_timeout", channel=plan.channel_id)
                return

    def _need_voucher_event(self, required: int, accepted: int, deposit: int) -> bytes:
        channel_id = self.plan.channel_id
        if Fault.WRONG_CHANNEL in self.plan.faults:
            channel_id = "0x" + "ee" * 32
        data = {
            "channelId": channel_id,
            "requiredCumulative": str(required),
            "acceptedCumulative": str(accepted),
            "deposit": str(deposit),
        }
        return b"event: payment-need-voucher\ndata: " + json.dumps(data).encode() + b"\n\n"

    def _receipt_event(self) -> bytes:
        channel = self.payee.state.get(self.plan.channel_id)
        assert channel is not None
        receipt = self.payee.receipt(
            channel, self.plan.challenge_id, units=self.units, faults=self.plan.faults
        )
        return b"event: payment-receipt\ndata: " + json.dumps(receipt).encode() + b"\n\n"

    async def _faults(self, index: int) -> AsyncIterator[bytes]:
        """Stream faults fire once, at the first batch at or after ``fault_after`` tokens."""
        plan = self.plan
        if self._faulted or index < plan.fault_after:
            return
        self._faulted = True
        if Fault.DROP in plan.faults:
            raise ConnectionAbortedError("fault injection: drop")
        if Fault.STALL in plan.faults:
            await asyncio.sleep(3600)
        if Fault.HUGE_EVENT in plan.faults:
            yield b"data: " + b"x" * self.config.huge_event_bytes + b"\n\n"
