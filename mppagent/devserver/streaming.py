"""A metered chat-completion stream: charge, then deliver; pause for vouchers.

For each batch of chunks the server first commits ``spent += units x price``
(only within what accepted vouchers cover), then sends them: a unit is a token
by default, a data event with the ``per-event`` flavour, and the prompt's tokens
are billed first with ``prompt-up-front``. When the paid
balance runs out it emits ``payment-need-voucher``, pauses, and resumes as
soon as a voucher arrives on any request to the same URL -- or ends the
stream cleanly after ``voucher_timeout``. The stream closes with the
OpenAI ``[DONE]`` marker and, last, a ``payment-receipt`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from mppagent.devserver.fakemodel import Token
from mppagent.devserver.faults import Billing, Fault, regress_receipt
from mppagent.devserver.payee import SessionPayee
from mppagent.devserver.wire import SSE_DONE, ChunkWriter, FinishReason, Usage, sse
from mppagent.logging import get_logger

__all__ = ["MeteredStream", "Pacer", "StreamPlan", "token_groups"]

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
    """What to stream and how: the tokens, the channel, and the behaviours in force."""

    tokens: list[Token]
    finish_reason: FinishReason
    prompt_tokens: int
    channel_id: str
    challenge_id: str
    faults: frozenset[Fault]
    fault_after: int
    billing: frozenset[Billing] = frozenset()


def token_groups(tokens: list[Token], size: int) -> list[list[Token]]:
    """Consecutive tokens of one kind, at most ``size`` a group: one SSE chunk each."""
    groups: list[list[Token]] = []
    for token in tokens:
        last = groups[-1] if groups else None
        if last is not None and len(last) < size and last[-1].kind == token.kind:
            last.append(token)
        else:
            groups.append([token])
    return groups


class MeteredStream:
    """Produces the SSE body of one paid streaming completion.

    Billing is in *units*: one per token by default; with ``per-event`` one per data
    event (role, text, finish and usage chunks); with ``prompt-up-front`` the prompt's
    tokens first. A chunk is sent only once every unit it costs is charged, so an
    honest stream never bills what it did not deliver.
    """

    def __init__(self, payee: SessionPayee, writer: ChunkWriter, plan: StreamPlan) -> None:
        self.payee = payee
        self.config = payee.config
        self.writer = writer
        self.plan = plan
        self.units = 0
        self.tokens_sent = 0
        self.price = self.config.price_per_token * (2 if Fault.PRICE_CHANGE in plan.faults else 1)
        self.ticket = object()
        channel = payee.state.get(plan.channel_id)
        self.spent_before = channel.spent if channel is not None else 0
        self.per_event = Billing.PER_EVENT in plan.billing
        size = self.config.tokens_per_chunk if Billing.PACKED_TOKENS in plan.billing else 1
        self.groups = token_groups(plan.tokens, size)
        self.final_count = len(writer.final_chunks(plan.finish_reason, Usage(0, 0)))
        self.units_left = self._planned_units()
        self._claimed = False
        self._paid = 0
        self._faulted = False

    def _planned_units(self) -> int:
        """Every unit the whole response would bill (need-voucher windows are cut to it)."""
        tokens = len(self.plan.tokens)
        units = 1 + len(self.groups) + self.final_count if self.per_event else tokens
        if Billing.PROMPT_UP_FRONT in self.plan.billing:
            units += self.plan.prompt_tokens
        return units

    def cost(self, group: list[Token]) -> int:
        """Units one token chunk bills."""
        return 1 if self.per_event else len(group)

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
            self.payee.stream_billing[plan.channel_id] = plan.billing
        try:
            complete = False
            async for part in self._opening():
                yield part
            if self._paid:
                async for part in self._tokens():
                    yield part
                complete = self.tokens_sent == len(plan.tokens)
            finish: FinishReason = plan.finish_reason if complete else "length"
            usage = Usage.of(plan.prompt_tokens, plan.tokens[: self.tokens_sent])
            finals = self.writer.final_chunks(finish, usage)
            if self.per_event and complete:
                async for demand in self._pay_for([1] * len(finals)):
                    yield demand
                finals = finals[: self._paid]
            elif self.per_event:
                finals = []  # an unpaid stream ends without the billed closing chunks
            for final in finals:
                yield sse(final)
            yield SSE_DONE
            if Fault.NO_RECEIPT not in plan.faults:
                yield self._receipt_event()
        finally:
            if active.get(plan.channel_id) is self.ticket:
                del active[plan.channel_id]
                self.payee.stream_faults.pop(plan.channel_id, None)
                self.payee.stream_billing.pop(plan.channel_id, None)

    async def _opening(self) -> AsyncIterator[bytes]:
        """The role chunk (billed per event) and the prompt (billed up front).

        Leaves ``self._paid`` non-zero if the stream may go on.
        """
        if self.per_event:
            async for demand in self._pay_for([1]):
                yield demand
            if not self._paid:
                return
        yield sse(self.writer.role_chunk())
        self._paid = 1
        prompt = self.plan.prompt_tokens
        if Billing.PROMPT_UP_FRONT in self.plan.billing and prompt:
            async for demand in self._pay_for([prompt]):
                yield demand

    async def _tokens(self) -> AsyncIterator[bytes]:
        """Token chunks, each charged before it is sent, in batches when unpaced."""
        groups = self.groups
        index = 0
        pacer = Pacer(self.config.tokens_per_second)
        while index < len(groups):
            if self.superseded:
                return  # a newer stream on this channel took over
            async for fault_bytes in self._faults(self.tokens_sent):
                yield fault_bytes
            batch = groups[index : index + (1 if pacer.paced else self.config.charge_batch)]
            async for demand in self._pay_for([self.cost(g) for g in batch]):
                yield demand
            paid = self._paid
            if paid == 0:
                return  # no voucher in time: end cleanly
            chunk = b"".join(
                sse(self.writer.token_chunk(Token("".join(t.text for t in g), g[0].kind)))
                for g in batch[:paid]
            )
            index += paid
            self.tokens_sent += sum(len(g) for g in batch[:paid])
            yield chunk
            await pacer.tick()  # also lets voucher requests and other streams run

    async def _pay_for(self, costs: list[int]) -> AsyncIterator[bytes]:
        """Charge for the longest affordable prefix of ``costs`` (units per item).

        Yields voucher demands while waiting; sets ``self._paid`` to the number of items
        paid for (0: no voucher in time). An item is never paid in part.
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
            faulted = self.units >= plan.fault_after
            endless = Fault.ENDLESS_NEED_VOUCHER in plan.faults and faulted
            if Fault.CONTRADICTORY_NEED_VOUCHER in plan.faults and faulted:
                async for event in self._contradict(deadline):
                    yield event
                return
            items, amount = 0, 0
            if not endless:
                affordable = channel.available // self.price
                while items < len(costs) and amount + costs[items] <= affordable:
                    amount += costs[items]
                    items += 1
            if items > 0:
                if await payee.charge(plan.channel_id, amount * self.price) is not None:
                    self.units += amount
                    self.units_left -= amount
                    self._paid = items
                    return
                continue
            window = max(costs[0], min(self.config.lookahead_tokens, self.units_left))
            required = channel.spent + self.price * window
            if endless:
                required = channel.accepted + self.price * self.config.lookahead_tokens
            if Fault.ASK_AHEAD in plan.faults and faulted:
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

    async def _contradict(self, deadline: float) -> AsyncIterator[bytes]:
        """``contradictory-need-voucher``: ask below the accepted amount until the deadline."""
        payee = self.payee
        while time.monotonic() < deadline and not self.superseded:
            channel = payee.state.get(self.plan.channel_id)
            if channel is None or channel.finalized:
                return
            required = max(channel.accepted - self.price, 0)
            arrived = payee.demand(self.plan.channel_id, required)
            yield self._need_voucher_event(required, channel.accepted, channel.deposit)
            wait = min(self.config.contradictory_interval, max(deadline - time.monotonic(), 0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), wait)
        log.info("stream.voucher_timeout", channel=self.plan.channel_id)

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
        if Fault.SPENT_REGRESS in self.plan.faults:
            receipt = regress_receipt(receipt, self.spent_before, self.price)
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
