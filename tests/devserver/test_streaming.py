"""Metered SSE streams of the reference server, over real sockets (uvicorn) and a real chain.

``httpx.ASGITransport`` buffers whole responses, so every test here runs the server with
:class:`RunningServer` and reads the stream as it arrives, answering
``payment-need-voucher`` events on a *second* connection while the first stays open.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from mppagent.devchain import DevChain
from mppagent.tempo import ChainClient, Escrow
from mppagent.tempo.schemas import NeedVoucher, OpenPayload

from .helpers import (
    FUNDED,
    PATH,
    PRICE,
    Event,
    Payer,
    Transcript,
    assert_problem,
    authorization,
    chat,
    fresh_challenge,
    header_receipt,
    make_config,
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
LOOKAHEAD = 100


async def open_payload(payer: Payer, initial: int = 0) -> OpenPayload:
    return await payer.open_payload(DEPOSIT, initial)


def check_needs(transcript: Transcript, channel_id: str, total: int, deposit: int) -> None:
    """Each demand asks for exactly the next lookahead window, after exhausting the last."""
    for need, delivered in transcript.needs:
        assert need.channel_id == channel_id
        assert need.accepted_cumulative == delivered * PRICE  # paid balance fully used
        window = min(LOOKAHEAD, total - delivered)
        assert need.required_cumulative == delivered * PRICE + window * PRICE
        assert need.deposit == deposit


# -- 8. the metered stream ---------------------------------------------------------------------


async def test_stream_pauses_for_vouchers_and_settles_exactly(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient
) -> None:
    total = 500
    config = make_config(chain, tmp_path, voucher_timeout=10)
    payee = chain.accounts[0].address
    payee_before = await payer.token.balance_of(payee)
    async with serve(config) as served:
        challenge = await fresh_challenge(served.side)
        payload = await open_payload(payer)
        channel_id = payload.channel_id
        answered: list[httpx.Response] = []
        async with served.stream.stream(
            "POST",
            PATH,
            json=chat(total, stream=True),
            headers=authorization(challenge, payload),
        ) as response:
            transcript = await read_stream(
                response, voucher_answer(served, payer, challenge, log=answered)
            )
        header = transcript.header
        assert header is not None
        assert header.challenge_id == challenge.id
        assert header.channel_id == channel_id
        assert (header.accepted_cumulative, header.spent, header.units) == (0, 0, 0)

        assert len(transcript.tokens) == total
        assert [d for _, d in transcript.needs] == [0, 100, 200, 300, 400]
        check_needs(transcript, channel_id, total, DEPOSIT)
        assert [n.required_cumulative for n, _ in transcript.needs] == [
            2500,
            5000,
            7500,
            10000,
            12500,
        ]
        assert len(answered) == 5
        transcript.check_ending()
        final = transcript.final
        assert final.challenge_id == challenge.id
        assert final.channel_id == channel_id
        assert (final.units, final.spent, final.accepted_cumulative) == (total, 12500, 12500)
        first = json.loads(transcript.events[0].data)
        assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        finish = json.loads(transcript.events[-3].data)
        assert finish["choices"][0]["finish_reason"] == "length"

        close = await served.side.head(
            PATH, headers=authorization(challenge, payer.close(channel_id, total * PRICE))
        )
        assert close.status_code == 200
        closed = header_receipt(close)
        assert closed.tx_hash is not None
        assert (closed.spent, closed.accepted_cumulative) == (12500, 12500)

    escrow = Escrow(client, chain.escrow)
    state = await escrow.get_channel(channel_id)
    assert (state.finalized, state.cleared) == (True, True)  # amounts: the event below
    assert await payer.token.balance_of(payee) == payee_before + total * PRICE
    assert await payer.balance() == FUNDED - total * PRICE
    tx_receipt = await client.get_receipt(closed.tx_hash)
    assert tx_receipt is not None
    [event] = [e for e in escrow.events(tx_receipt) if e.name == "ChannelClosed"]
    assert dict(event.values) == {
        "settledToPayee": total * PRICE,
        "refundedToPayer": DEPOSIT - total * PRICE,
    }


async def test_post_without_body_is_the_head_alternative(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    total = 150
    config = make_config(chain, tmp_path, voucher_timeout=10)
    async with serve(config) as served:
        challenge = await fresh_challenge(served.side)
        payload = await open_payload(payer)
        async with served.stream.stream(
            "POST", PATH, json=chat(total, stream=True), headers=authorization(challenge, payload)
        ) as response:
            transcript = await read_stream(
                response, voucher_answer(served, payer, challenge, method="POST")
            )
        assert len(transcript.tokens) == total
        assert [n.required_cumulative for n, _ in transcript.needs] == [2500, 3750]
        check_needs(transcript, payload.channel_id, total, DEPOSIT)
        transcript.check_ending()
        assert (transcript.final.units, transcript.final.spent) == (total, total * PRICE)


async def test_stream_ends_cleanly_without_a_voucher(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    config = make_config(chain, tmp_path, voucher_timeout=1.0)
    async with serve(config) as served:
        challenge = await fresh_challenge(served.side)
        payload = await open_payload(payer, initial=10 * PRICE)
        needed_at = 0.0

        async def note(_need: NeedVoucher, _delivered: int) -> None:
            nonlocal needed_at
            needed_at = time.monotonic()

        async with served.stream.stream(
            "POST", PATH, json=chat(50, stream=True), headers=authorization(challenge, payload)
        ) as response:
            transcript = await read_stream(response, note)
        waited = time.monotonic() - needed_at
        assert 0.9 <= waited < 5, waited
        assert len(transcript.tokens) == 10
        assert [(n.required_cumulative, d) for n, d in transcript.needs] == [(250 + 40 * PRICE, 10)]
        transcript.check_ending()
        finish = json.loads(transcript.events[-3].data)
        assert finish["choices"][0]["finish_reason"] == "length"
        final = transcript.final
        assert (final.units, final.spent, final.accepted_cumulative) == (10, 250, 250)
        assert transcript.header is not None
        assert transcript.header.accepted_cumulative == 250

        # The channel is still usable: a later voucher is accepted and reported.
        response = await served.side.head(
            PATH, headers=authorization(challenge, payer.voucher(payload.channel_id, 500))
        )
        assert response.status_code == 200
        assert (header_receipt(response).spent, header_receipt(response).accepted_cumulative) == (
            250,
            500,
        )


async def test_solicited_vouchers_bypass_the_rate_limit(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    config = make_config(
        chain, tmp_path, voucher_timeout=10, voucher_burst=1, voucher_rate_per_second=0.1
    )
    total = 40  # 10 prepaid, then one demand for the last 30 (a small increase of 750)
    async with serve(config) as served:
        challenge = await fresh_challenge(served.side)
        payload = await open_payload(payer, initial=10 * PRICE)
        channel_id = payload.channel_id
        answer = voucher_answer(served, payer, challenge)
        unsolicited: list[int] = []

        async def flood_then_answer(need: NeedVoucher, delivered: int) -> None:
            # While the demand is outstanding, a flood of stale vouchers is throttled
            # (the first is refused on its merits, the rest by the limit)...
            stale = authorization(challenge, payer.voucher(channel_id, 4 * PRICE))
            unsolicited.extend(
                [(await served.side.head(PATH, headers=stale)).status_code for _ in range(3)]
            )
            await answer(need, delivered)  # ...but the one answering it is not.

        async with served.stream.stream(
            "POST", PATH, json=chat(total, stream=True), headers=authorization(challenge, payload)
        ) as response:
            transcript = await read_stream(response, flood_then_answer)
        assert unsolicited == [402, 429, 429]
        assert [(n.required_cumulative, d) for n, d in transcript.needs] == [(40 * PRICE, 10)]
        assert len(transcript.tokens) == total
        transcript.check_ending()
        assert (transcript.final.spent, transcript.final.units) == (total * PRICE, total)

        late = await served.side.head(
            PATH, headers=authorization(challenge, payer.voucher(channel_id, 4 * PRICE))
        )
        assert late.status_code == 429  # the bucket is still empty
        assert int(late.headers["retry-after"]) >= 1


# -- faults -------------------------------------------------------------------------------------


async def test_slow_voucher_fault(chain: DevChain, tmp_path: Path, payer: Payer) -> None:
    config = make_config(
        chain, tmp_path, voucher_timeout=10, test_mode=True, slow_voucher_delay=0.5
    )
    total = 150
    async with serve(config) as served:
        challenge = await fresh_challenge(served.side)
        payload = await open_payload(payer)
        timings: list[float] = []
        answer = voucher_answer(served, payer, challenge)

        async def timed(need: NeedVoucher, delivered: int) -> None:
            start = time.monotonic()
            await answer(need, delivered)
            timings.append(time.monotonic() - start)

        headers = authorization(challenge, payload) | {"x-mpp-fault": "slow-voucher"}
        async with served.stream.stream(
            "POST", PATH, json=chat(total, stream=True), headers=headers
        ) as response:
            transcript = await read_stream(response, timed)
        assert len(timings) == 2
        assert all(t >= 0.45 for t in timings), timings
        assert len(transcript.tokens) == total
        transcript.check_ending()
        assert transcript.final.spent == total * PRICE

        # Outside the stream the fault is off again: vouchers are answered at once.
        start = time.monotonic()
        response = await served.side.head(
            PATH,
            headers=authorization(challenge, payer.voucher(payload.channel_id, total * PRICE)),
        )
        assert response.status_code == 200
        assert time.monotonic() - start < 0.45


async def test_duplicate_need_voucher_fault(chain: DevChain, tmp_path: Path, payer: Payer) -> None:
    config = make_config(chain, tmp_path, voucher_timeout=10, test_mode=True)
    total = 250
    async with serve(config) as served:
        challenge = await fresh_challenge(served.side)
        payload = await open_payload(payer)
        answer = voucher_answer(served, payer, challenge)
        paid = 0

        async def once(need: NeedVoucher, delivered: int) -> None:
            nonlocal paid
            if need.required_cumulative > paid:
                paid = need.required_cumulative
                await answer(need, delivered)

        headers = authorization(challenge, payload) | {"x-mpp-fault": "duplicate-need-voucher"}
        async with served.stream.stream(
            "POST", PATH, json=chat(total, stream=True), headers=headers
        ) as response:
            transcript = await read_stream(response, once)
        names = [e.name for e in transcript.events]
        needs = [i for i, name in enumerate(names) if name == "payment-need-voucher"]
        assert len(needs) == 6
        for first, second in zip(needs[::2], needs[1::2], strict=True):
            assert second == first + 1
            assert transcript.events[first] == transcript.events[second]
        assert [n.required_cumulative for n, _ in transcript.needs[::2]] == [2500, 5000, 6250]
        assert len(transcript.tokens) == total
        transcript.check_ending()
        assert transcript.final.spent == total * PRICE


async def test_faults_need_test_mode(chain: DevChain, tmp_path: Path, payer: Payer) -> None:
    config = make_config(chain, tmp_path, voucher_timeout=10, slow_voucher_delay=0.5)
    async with serve(config) as served:
        challenge = await fresh_challenge(served.side)
        payload = await open_payload(payer)
        headers = authorization(challenge, payload) | {"x-mpp-fault": "duplicate-need-voucher"}
        async with served.stream.stream(
            "POST", PATH, json=chat(120, stream=True), headers=headers
        ) as response:
            transcript = await read_stream(response, voucher_answer(served, payer, challenge))
        assert len(transcript.needs) == 2  # no duplicates: the header is ignored
        assert sum(e.name == "payment-need-voucher" for e in transcript.events) == 2


# -- concurrency --------------------------------------------------------------------------------


async def test_second_stream_ends_the_first(chain: DevChain, tmp_path: Path, payer: Payer) -> None:
    config = make_config(chain, tmp_path, voucher_timeout=10)
    async with serve(config) as served:
        challenge = await fresh_challenge(served.side)
        payload = await open_payload(payer)
        channel_id = payload.channel_id
        async with served.stream.stream(
            "POST", PATH, json=chat(300, stream=True), headers=authorization(challenge, payload)
        ) as first:
            assert first.status_code == 200
            events = sse_events(first)
            role = await anext(events)
            assert token_text(role) is None
            need = await anext(events)
            assert need.name == "payment-need-voucher"
            assert need.json()["requiredCumulative"] == "2500"

            # A new stream on the same channel, on another connection, paying the demand.
            voucher = authorization(challenge, payer.voucher(channel_id, 2500))
            async with served.side.stream(
                "POST", PATH, json=chat(40, stream=True), headers=voucher
            ) as second:
                started = time.monotonic()
                rest: list[Event] = [event async for event in events]
                ended_after = time.monotonic() - started
                second_transcript = await read_stream(second)

        assert ended_after < 3, ended_after  # not the 10 s voucher timeout
        assert [token_text(e) for e in rest if token_text(e) is not None] == []
        assert [e.name for e in rest if e.name.startswith("payment-")] == ["payment-receipt"]
        assert rest[-2].data == "[DONE]"
        first_final = session_receipt(rest[-1].json())
        assert first_final.units == 0

        assert len(second_transcript.tokens) == 40
        second_transcript.check_ending()
        final = second_transcript.final
        assert (final.units, final.spent, final.accepted_cumulative) == (40, 1000, 2500)


async def test_superseded_stream_does_not_spend_the_new_streams_vouchers(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    config = make_config(chain, tmp_path, voucher_timeout=10)
    async with serve(config) as served:
        challenge = await fresh_challenge(served.side)
        payload = await open_payload(payer, initial=20 * PRICE)
        channel_id = payload.channel_id
        async with served.stream.stream(
            "POST", PATH, json=chat(300, stream=True), headers=authorization(challenge, payload)
        ) as first:
            first_events: list[Event] = []
            events = sse_events(first)
            async for event in events:
                first_events.append(event)
                if event.name == "payment-need-voucher":
                    break
            assert sum(token_text(e) is not None for e in first_events) == 20

            # A new stream with the already-accepted voucher: no new money, so it pauses too.
            again = authorization(challenge, payer.voucher(channel_id, 20 * PRICE))
            async with served.side.stream(
                "POST", PATH, json=chat(40, stream=True), headers=again
            ) as second:
                started = time.monotonic()
                first_events += [event async for event in events]
                ended_after = time.monotonic() - started
                transcript = await read_stream(
                    second, voucher_answer(served, payer, challenge, method="POST")
                )

        assert ended_after < 3, ended_after  # ended by the new stream, not the timeout
        assert sum(token_text(e) is not None for e in first_events) == 20
        first_final = session_receipt(first_events[-1].json())
        assert (first_final.units, first_final.spent) == (20, 500)
        assert len(transcript.tokens) == 40
        assert [(n.required_cumulative, d) for n, d in transcript.needs] == [(500 + 1000, 0)]
        final = transcript.final
        assert (final.units, final.spent, final.accepted_cumulative) == (40, 1500, 1500)


async def test_stream_request_with_bad_voucher_is_refused_before_streaming(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    config = make_config(chain, tmp_path, voucher_timeout=10)
    async with serve(config) as served:
        challenge = await fresh_challenge(served.side)
        payload = await open_payload(payer)
        opened = await served.side.head(PATH, headers=authorization(challenge, payload))
        assert opened.status_code == 200
        bad = payer.voucher(payload.channel_id, 1000).model_copy(
            update={"signature": "0x" + "00" * 65}
        )
        response = await served.stream.post(
            PATH, json=chat(10, stream=True), headers=authorization(challenge, bad)
        )
        assert_problem(response, "session/invalid-signature")


async def test_retried_stream_with_the_same_idempotency_key_is_replayed_not_recharged(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    total = 40
    config = make_config(chain, tmp_path)
    async with serve(config) as served:
        challenge = await fresh_challenge(served.side)
        payload = await open_payload(payer, initial=total * PRICE)
        headers = {**authorization(challenge, payload), "idempotency-key": "req-1"}
        first = await served.stream.post(PATH, json=chat(total, stream=True), headers=headers)
        assert first.status_code == 200
        spent_after_first = stored(config, payload.channel_id)
        again_headers = {
            **authorization(challenge, payer.voucher(payload.channel_id, total * PRICE)),
            "idempotency-key": "req-1",
        }
        second = await served.side.post(PATH, json=chat(total, stream=True), headers=again_headers)
        assert second.status_code == 200
        assert second.content == first.content  # the same answer, replayed
        assert stored(config, payload.channel_id) == spent_after_first  # and not charged again
        assert header_receipt(second).spent == total * PRICE
