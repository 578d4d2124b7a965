"""The reference server's honest billing flavours and hostile faults, seen from the wire.

Each test switches one behaviour on for one request (``X-Mpp-Billing`` /
``X-Mpp-Fault`` in test mode) and proves with raw HTTP, credentials built from the
protocol and Tempo layers, and the server's own SQLite books that the server really
behaves as documented -- so the client's end-to-end tests against it mean something.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mppagent.devchain import DevChain
from mppagent.devserver import Billing, parse_billing
from mppagent.devserver.fakemodel import FakeModel
from mppagent.devserver.faults import HUGE_AMOUNT, REGRESSED_CHALLENGE_ID
from mppagent.devserver.wire import parse_chat_request
from mppagent.protocol import Challenge
from mppagent.tempo.schemas import NeedVoucher, parse_model

from .helpers import (
    PATH,
    PRICE,
    Payer,
    Served,
    Transcript,
    assert_problem,
    authorization,
    chat,
    fresh_challenge,
    header_receipt,
    make_config,
    only_challenge,
    read_stream,
    serve,
    session_receipt,
    sse_events,
    stored,
    token_text,
    voucher_answer,
)

pytestmark = [pytest.mark.chain, pytest.mark.timeout(60)]

DEPOSIT = 1_000_000
PROMPT_TOKENS = 6  # chat(): one message of two words, plus four per message


@dataclass
class Channel:
    """An open channel on a running server, and the payer's credentials for it."""

    served: Served
    payer: Payer
    challenge: Challenge
    channel_id: str
    paid: int  # the voucher each request carries unless told otherwise

    def credential(self, amount: int | None = None) -> dict[str, str]:
        voucher = self.payer.voucher(self.channel_id, self.paid if amount is None else amount)
        return authorization(self.challenge, voucher)

    async def stream(
        self,
        total: int,
        *,
        billing: str | None = None,
        fault: str | None = None,
        header: bool = True,
        answer: bool = True,
    ) -> Transcript:
        """One streamed request, demands answered exactly on the side connection."""
        headers = self.credential() | behaviour(billing, fault)
        on_need = voucher_answer(self.served, self.payer, self.challenge) if answer else None
        async with self.served.stream.stream(
            "POST", PATH, json=chat(total, stream=True), headers=headers
        ) as response:
            return await read_stream(response, on_need, header=header)

    def spent(self) -> int:
        """``spent`` in the server's SQLite books."""
        row = stored(self.served.config, self.channel_id)
        assert row is not None
        return int(row["spent"])


def behaviour(billing: str | None = None, fault: str | None = None) -> dict[str, str]:
    """The test-mode headers switching ``billing`` and ``fault`` on."""
    headers = {"x-mpp-billing": billing} if billing else {}
    return headers | ({"x-mpp-fault": fault} if fault else {})


@asynccontextmanager
async def opened(
    chain: DevChain, tmp_path: Path, payer: Payer, initial: int, **config: Any
) -> AsyncIterator[Channel]:
    """A server in test mode and a channel opened (``HEAD``) with ``initial`` paid."""
    settings = {"test_mode": True, "voucher_timeout": 10} | config
    async with serve(make_config(chain, tmp_path, **settings)) as served:
        challenge = await fresh_challenge(served.side)
        payload = await payer.open_payload(DEPOSIT, initial)
        response = await served.side.head(PATH, headers=authorization(challenge, payload))
        assert response.status_code == 200, response.status_code
        yield Channel(served, payer, challenge, payload.channel_id, initial)


def data_events(transcript: Transcript) -> list[dict[str, Any]]:
    """The application chunks, ``[DONE]`` and payment events left out."""
    return [e.json() for e in transcript.events if e.name == "message" and e.data != "[DONE]"]


def expected_words(total: int) -> list[str]:
    """The reference model's tokens for :func:`chat` with ``total`` tokens."""
    prompt = parse_chat_request(chat(total, stream=True)).prompt_text()
    return [t.text for t in FakeModel().generate(prompt, max_tokens=total)]


# -- honest billing flavours -----------------------------------------------------------------------


async def test_packed_tokens_bills_each_token_of_a_multi_token_chunk(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with opened(chain, tmp_path, payer, 0, tokens_per_chunk=4) as channel:
        transcript = await channel.stream(40, billing="packed-tokens")
    words = expected_words(40)
    assert transcript.tokens == ["".join(words[i : i + 4]) for i in range(0, 40, 4)]
    assert [(n.required_cumulative, d) for n, d in transcript.needs] == [(40 * PRICE, 0)]
    [usage] = [c["usage"] for c in data_events(transcript) if c.get("usage")]
    assert (usage["completion_tokens"], usage["prompt_tokens"]) == (40, PROMPT_TOKENS)
    transcript.check_ending()
    assert (transcript.final.units, transcript.final.spent) == (40, 40 * PRICE)


async def test_prompt_up_front_bills_the_prompt_before_the_first_token(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    total = 30
    units = PROMPT_TOKENS + total
    async with opened(chain, tmp_path, payer, 0) as channel:
        transcript = await channel.stream(total, billing="prompt-up-front")
        assert channel.spent() == units * PRICE
    # The only demand comes before any token and covers the prompt as well.
    assert [(n.required_cumulative, d) for n, d in transcript.needs] == [(units * PRICE, 0)]
    names = [e.name for e in transcript.events]
    first_token = next(i for i, e in enumerate(transcript.events) if token_text(e) is not None)
    assert names.index("payment-need-voucher") < first_token
    assert len(transcript.tokens) == total
    assert (transcript.final.units, transcript.final.spent) == (units, units * PRICE)


async def test_prompt_up_front_sends_nothing_until_the_prompt_is_paid(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    # A balance for 3 tokens covers no prompt of 6: the server asks and, unanswered, stops.
    async with opened(chain, tmp_path, payer, 3 * PRICE, voucher_timeout=0.5) as channel:
        transcript = await channel.stream(10, billing="prompt-up-front", answer=False)
    assert transcript.tokens == []
    assert [n.required_cumulative for n, _ in transcript.needs] == [16 * PRICE]
    assert (transcript.final.units, transcript.final.spent) == (0, 0)


async def test_receipt_event_only_sends_no_receipt_header(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with opened(chain, tmp_path, payer, 20 * PRICE) as channel:
        transcript = await channel.stream(20, billing="receipt-event-only", header=False)
    assert transcript.header is None
    transcript.check_ending()
    assert (transcript.final.units, transcript.final.spent) == (20, 20 * PRICE)


async def test_late_voucher_receipt_lands_after_the_stream_resumed(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with opened(chain, tmp_path, payer, 10 * PRICE, late_receipt_delay=1.0) as channel:
        side = channel.served.side
        answered: list[float] = []
        token_times: list[float] = []
        tasks: list[asyncio.Task[None]] = []

        async def answer(required: int) -> None:
            response = await side.head(PATH, headers=channel.credential(required))
            answered.append(time.monotonic())
            assert response.status_code == 200
            assert header_receipt(response).accepted_cumulative == required

        headers = channel.credential() | behaviour("late-voucher-receipt")
        async with channel.served.stream.stream(
            "POST", PATH, json=chat(30, stream=True), headers=headers
        ) as response:
            async for event in sse_events(response):
                if token_text(event) is not None:
                    token_times.append(time.monotonic())
                elif event.name == "payment-need-voucher":
                    need = parse_model(NeedVoucher, event.json(), "need-voucher")
                    sent = time.monotonic()
                    tasks.append(asyncio.create_task(answer(need.required_cumulative)))
            final = session_receipt(event.json())
        await asyncio.gather(*tasks)
    assert len(tasks) == 1
    assert len(token_times) == 30
    assert token_times[10] < answered[0]  # the stream resumed before the voucher's answer
    assert answered[0] - sent >= 0.9
    assert (final.units, final.spent) == (30, 30 * PRICE)


async def test_prepaid_carry_over_serves_a_new_request_from_earlier_balance(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with opened(chain, tmp_path, payer, 100 * PRICE) as channel:
        first = await channel.stream(30)
        assert (first.final.spent, first.final.accepted_cumulative) == (30 * PRICE, 100 * PRICE)
        # No new money: the balance paid ahead on the first request covers the second.
        second = await channel.stream(50, billing="prepaid-carry-over", header=False, answer=False)
    assert second.needs == []
    assert len(second.tokens) == 50
    final = second.final
    assert (final.units, final.spent, final.accepted_cumulative) == (50, 80 * PRICE, 100 * PRICE)


async def test_per_event_bills_every_data_event_like_mppx(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    total = 20
    async with opened(chain, tmp_path, payer, 0) as channel:
        transcript = await channel.stream(total, billing="per-event")
    chunks = data_events(transcript)
    # role-only, 20 text chunks, the finish chunk and the usage-only chunk
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == total
    assert len(chunks) == total + 3
    # The demand came before the role chunk: even it is billed.
    assert transcript.events[0].name == "payment-need-voucher"
    assert [n.required_cumulative for n, _ in transcript.needs] == [len(chunks) * PRICE]
    final = transcript.final
    assert (final.units, final.spent) == (len(chunks), len(chunks) * PRICE)


async def test_books_lost_restarts_accepted_and_spent_from_settled(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with opened(chain, tmp_path, payer, 40 * PRICE) as channel:
        first = await channel.stream(30)
        assert first.final.spent == 30 * PRICE
        second = await channel.stream(10, billing="books-lost")
        assert channel.spent() == 10 * PRICE
    assert second.header is not None
    assert (second.header.spent, second.header.accepted_cumulative) == (0, 40 * PRICE)
    assert second.needs == []  # the forgotten spent makes the whole voucher look available
    assert (second.final.spent, second.final.units) == (10 * PRICE, 10)  # under-billed


# -- hostile faults --------------------------------------------------------------------------------


async def test_huge_top_up_is_asked_before_any_token(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with opened(chain, tmp_path, payer, 10 * PRICE) as channel:
        headers = channel.credential() | behaviour(fault="huge-top-up")
        response = await channel.served.stream.post(
            PATH, json=chat(10, stream=True), headers=headers
        )
        body = assert_problem(response, "session/insufficient-balance")
        assert body["requiredTopUp"] == str(HUGE_AMOUNT)
        assert channel.served.server.counters["huge-top-up"] == 1
        assert channel.spent() == 0


async def test_huge_min_delta_refuses_the_streams_voucher_answers(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with opened(chain, tmp_path, payer, 5 * PRICE, voucher_timeout=1.0) as channel:
        side = channel.served.side
        problems: list[dict[str, Any]] = []

        async def answer(need: NeedVoucher, _delivered: int) -> None:
            # No fault header here: the stream's faults govern its voucher requests.
            response = await side.post(PATH, headers=channel.credential(need.required_cumulative))
            problems.append(assert_problem(response, "session/delta-too-small"))
            resent = await side.head(PATH, headers=channel.credential())
            assert resent.status_code == 200  # an idempotent re-send still passes

        headers = channel.credential() | behaviour(fault="huge-min-delta")
        async with channel.served.stream.stream(
            "POST", PATH, json=chat(20, stream=True), headers=headers
        ) as response:
            transcript = await read_stream(response, answer)
    assert [p["minVoucherDelta"] for p in problems] == [str(HUGE_AMOUNT)]
    assert len(transcript.tokens) == 5
    assert transcript.final.spent == 5 * PRICE


async def test_huge_deposit_demand_refuses_raised_vouchers(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with opened(chain, tmp_path, payer, 0) as channel:
        side = channel.served.side
        raised = channel.credential(10 * PRICE)
        fault = behaviour(fault="huge-deposit-demand")
        response = await side.head(PATH, headers=raised | fault)
        assert_problem(response, "session/amount-exceeds-deposit", body=False)
        response = await side.post(PATH, headers=raised | fault)
        body = assert_problem(response, "session/amount-exceeds-deposit")
        assert body["requiredTopUp"] == str(HUGE_AMOUNT)
        assert (await side.head(PATH, headers=raised)).status_code == 200  # fault off


async def test_lookahead_as_spent_books_the_prepaid_window_before_any_token(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with opened(chain, tmp_path, payer, 50 * PRICE) as channel:
        transcript = await channel.stream(20, fault="lookahead-as-spent")
        assert channel.spent() == 70 * PRICE  # the 50 paid ahead, and the 20 delivered on top
    header = transcript.header
    assert header is not None
    assert (header.spent, header.accepted_cumulative, header.units) == (50 * PRICE, 50 * PRICE, 0)
    # With nothing left to spend, the first token already needs a new voucher.
    assert [(n.required_cumulative, d) for n, d in transcript.needs] == [(70 * PRICE, 0)]
    assert len(transcript.tokens) == 20
    assert (transcript.final.spent, transcript.final.units) == (70 * PRICE, 20)


async def test_voucher_402_loop_answers_every_voucher_delivery_with_a_fresh_402(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with opened(chain, tmp_path, payer, 0) as channel:
        fault = behaviour(fault="voucher-402-loop")
        seen: set[str] = set()
        for attempt in range(1, 6):
            response = await channel.served.side.head(
                PATH, headers=channel.credential(attempt * PRICE) | fault
            )
            assert_problem(response, "session/challenge-not-found", body=False)
            channel.challenge = only_challenge(response)
            seen.add(channel.challenge.id)
        assert len(seen) == 5  # a fresh challenge each time, inviting another try
        assert channel.served.server.counters["voucher-402-loop"] == 5
        # A paid request is not a voucher delivery: it is served.
        headers = channel.credential(10 * PRICE) | fault
        response = await channel.served.stream.post(PATH, json=chat(10), headers=headers)
        assert response.status_code == 200


async def test_contradictory_need_voucher_keeps_asking_below_accepted(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with opened(
        chain, tmp_path, payer, 10 * PRICE, voucher_timeout=1.0, contradictory_interval=0.2
    ) as channel:
        paid: list[int] = []

        async def pay_more(_need: NeedVoucher, _delivered: int) -> None:
            if not paid:  # paying does not help: it still asks below what it accepted
                headers = channel.credential(40 * PRICE)
                paid.append((await channel.served.side.head(PATH, headers=headers)).status_code)

        headers = channel.credential() | behaviour(fault="contradictory-need-voucher")
        headers["x-mpp-fault-after"] = "10"
        async with channel.served.stream.stream(
            "POST", PATH, json=chat(30, stream=True), headers=headers
        ) as response:
            transcript = await read_stream(response, pay_more)
    assert paid == [200]
    assert len(transcript.tokens) == 10
    assert len(transcript.needs) >= 3
    for need, delivered in transcript.needs:
        assert delivered == 10
        assert need.required_cumulative < need.accepted_cumulative
    assert transcript.final.spent == 10 * PRICE


async def test_spent_regress_reports_spent_below_the_previous_one(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with opened(chain, tmp_path, payer, 40 * PRICE) as channel:
        assert (await channel.stream(20)).final.spent == 20 * PRICE
        second = await channel.stream(10, fault="spent-regress")
        assert channel.spent() == 30 * PRICE  # the books are right
    for receipt in (second.header, second.final):
        assert receipt is not None
        assert (receipt.spent, receipt.challenge_id) == (19 * PRICE, REGRESSED_CHALLENGE_ID)


async def test_no_receipt_serves_paid_responses_without_any_receipt(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with opened(chain, tmp_path, payer, 40 * PRICE) as channel:
        transcript = await channel.stream(10, fault="no-receipt", header=False)
        assert [e.name for e in transcript.events].count("payment-receipt") == 0
        assert transcript.events[-1].data == "[DONE]"
        assert len(transcript.tokens) == 10
        headers = channel.credential() | behaviour(fault="no-receipt")
        response = await channel.served.stream.post(PATH, json=chat(10), headers=headers)
        assert response.status_code == 200
        assert "payment-receipt" not in response.headers
        assert json.loads(response.content)["usage"]["completion_tokens"] == 10


async def test_behaviours_need_test_mode(chain: DevChain, tmp_path: Path, payer: Payer) -> None:
    async with opened(chain, tmp_path, payer, 10 * PRICE, test_mode=False) as channel:
        transcript = await channel.stream(10, billing="receipt-event-only", fault="no-receipt")
    assert transcript.header is not None  # both headers were ignored
    transcript.check_ending()


async def test_server_wide_billing_from_config(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    billing = frozenset({Billing.RECEIPT_EVENT_ONLY, Billing.BOOKS_LOST})
    async with opened(chain, tmp_path, payer, 30 * PRICE, test_mode=False, billing=billing) as ch:
        first = await ch.stream(10, header=False)
        second = await ch.stream(10, header=False)
    first.check_ending()
    assert first.final.spent == 10 * PRICE
    assert second.final.spent == 10 * PRICE  # the books were lost again before it


def test_unknown_billing_flavours_are_named() -> None:
    assert parse_billing(" per-event, PACKED-TOKENS ,") == {"per-event", "packed-tokens"}
    with pytest.raises(ValueError, match="unknown billing flavour 'per-token'; known"):
        parse_billing("per-token")
