"""The reference server's payment verification, driven with raw HTTP on a real anvil chain.

Credentials are built with :mod:`mppagent.protocol` and :mod:`mppagent.tempo` only (see
``helpers.py``). Amounts are checked to the base unit, on the wire, in the server's
SQLite state and on chain.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from mppagent.devchain import DevChain
from mppagent.devserver import create_app
from mppagent.devserver.wire import MODELS
from mppagent.protocol import Challenge, parse_rfc3339
from mppagent.tempo import ChainClient, Escrow
from mppagent.tempo.hexutil import keccak
from mppagent.tempo.schemas import ClosePayload, OpenPayload, TopUpPayload, VoucherPayload
from tests.support import signature_forms

from .helpers import (
    FUNDED,
    MODEL,
    PATH,
    PRICE,
    SECRET,
    Payer,
    asgi_client,
    assert_problem,
    authorization,
    chat,
    devserver,
    expired_challenge,
    fresh_challenge,
    header_receipt,
    make_config,
    only_challenge,
    open_channel,
    pay_head,
    stored,
)

pytestmark = [pytest.mark.chain, pytest.mark.timeout(60)]

DEPOSIT = 100_000


# -- 1. challenges ----------------------------------------------------------------------------


async def test_no_credential_gets_a_bound_challenge(chain: DevChain, tmp_path: Path) -> None:
    config = make_config(chain, tmp_path)
    async with asgi_client(config) as http:
        before = datetime.now(UTC)
        response = await http.post(PATH, json=chat())
        body = assert_problem(response, "payment-required")
        assert body["title"] == "Payment Required"
        challenge = only_challenge(response)
        assert challenge.realm == "mppagent-devserver"
        assert challenge.request_data == {
            "amount": "25",
            "unitType": "llm_token",
            "suggestedDeposit": "1000000",
            "currency": chain.token.lower(),
            "recipient": chain.accounts[0].address.lower(),
            "methodDetails": {"escrowContract": chain.escrow.lower(), "chainId": chain.chain_id},
        }
        assert challenge.expires is not None
        expires = parse_rfc3339(challenge.expires)
        assert before + timedelta(seconds=295) <= expires <= before + timedelta(seconds=305)
        assert challenge.verify_id(SECRET)
        assert not challenge.verify_id(b"another secret")

        head = await http.head(PATH)
        assert head.status_code == 402
        assert head.content == b""
        assert head.headers["cache-control"] == "no-store"
        assert "payment-receipt" not in head.headers
        again = only_challenge(head)
        assert again.id != challenge.id  # fresh, not a cached challenge
        assert again.request_data == challenge.request_data

        # No body and no credential: still a challenge, not a wire error.
        assert_problem(await http.post(PATH), "payment-required")


async def test_min_voucher_delta_is_advertised(chain: DevChain, tmp_path: Path) -> None:
    async with asgi_client(make_config(chain, tmp_path, min_voucher_delta=1000)) as http:
        challenge = await fresh_challenge(http)
        assert challenge.request_data["methodDetails"] == {
            "escrowContract": chain.escrow.lower(),
            "chainId": chain.chain_id,
            "minVoucherDelta": "1000",
        }


# -- 2. open and pay -----------------------------------------------------------------------------


async def test_open_with_covering_voucher_serves_and_bills_exactly(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient
) -> None:
    config = make_config(chain, tmp_path)
    async with asgi_client(config) as http:
        challenge = await fresh_challenge(http)
        payload = await payer.open_payload(DEPOSIT, initial=8 * PRICE)
        response = await http.post(PATH, json=chat(8), headers=authorization(challenge, payload))
        assert response.status_code == 200, response.text
        receipt = header_receipt(response)
        assert receipt.challenge_id == challenge.id
        assert receipt.channel_id == payload.channel_id
        assert (receipt.accepted_cumulative, receipt.spent, receipt.units) == (200, 200, 8)
        assert receipt.tx_hash is None
        body = response.json()
        assert body["usage"]["completion_tokens"] == 8
        assert body["choices"][0]["finish_reason"] == "length"

    state = await Escrow(client, chain.escrow).get_channel(payload.channel_id)
    assert state.exists
    assert (state.payer, state.payee, state.token) == (
        payer.address,
        chain.accounts[0].address.lower(),
        chain.token.lower(),
    )
    assert (state.deposit, state.settled, state.finalized) == (DEPOSIT, 0, False)
    assert await payer.balance() == FUNDED - DEPOSIT
    row = stored(config, payload.channel_id)
    assert row is not None
    assert (row["deposit"], row["accepted"], row["spent"]) == (str(DEPOSIT), "200", "200")


async def test_open_with_zero_voucher_asks_for_exactly_the_missing_amount(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    config = make_config(chain, tmp_path)
    async with asgi_client(config) as http:
        challenge = await fresh_challenge(http)
        payload = await payer.open_payload(DEPOSIT, initial=0)
        channel_id = payload.channel_id
        response = await http.post(PATH, json=chat(8), headers=authorization(challenge, payload))
        body = assert_problem(response, "session/insufficient-balance")
        assert body["requiredTopUp"] == "200"  # 8 tokens x 25, nothing available
        assert body["channelId"] == channel_id
        row = stored(config, channel_id)
        assert row is not None
        assert (row["accepted"], row["spent"]) == ("0", "0")  # channel open, nothing charged

        # The voucher covering it: served, billed 8 x 25 exactly.
        challenge = only_challenge(response)
        paid = await http.post(
            PATH, json=chat(8), headers=authorization(challenge, payer.voucher(channel_id, 200))
        )
        assert paid.status_code == 200, paid.text
        receipt = header_receipt(paid)
        assert receipt.challenge_id == challenge.id
        assert (receipt.accepted_cumulative, receipt.spent, receipt.units) == (200, 200, 8)

        # Partly covered: 300 accepted, 200 spent -> 100 available, 5 tokens cost 125.
        challenge = await fresh_challenge(http)
        short = await http.post(
            PATH, json=chat(5), headers=authorization(challenge, payer.voucher(channel_id, 300))
        )
        body = assert_problem(short, "session/insufficient-balance")
        assert body["requiredTopUp"] == "25"
        row = stored(config, channel_id)
        assert row is not None
        assert (row["accepted"], row["spent"]) == ("300", "200")  # voucher kept, nothing spent

        # The same voucher again (idempotent) with a request it covers: 4 tokens = 100.
        ok = await http.post(
            PATH, json=chat(4), headers=authorization(challenge, payer.voucher(channel_id, 300))
        )
        assert ok.status_code == 200, ok.text
        receipt = header_receipt(ok)
        assert (receipt.accepted_cumulative, receipt.spent, receipt.units) == (300, 300, 4)


async def test_idempotency_key_replays_without_charging_again(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    config = make_config(chain, tmp_path)
    async with asgi_client(config) as http:
        channel_id, _ = await open_channel(http, payer, DEPOSIT)
        challenge = await fresh_challenge(http)
        headers = authorization(challenge, payer.voucher(channel_id, 1000)) | {
            "idempotency-key": "req-1"
        }
        first = await http.post(PATH, json=chat(8), headers=headers)
        assert first.status_code == 200
        again = await http.post(PATH, json=chat(8), headers=headers)
        assert again.status_code == 200
        assert again.content == first.content
        assert again.headers["payment-receipt"] == first.headers["payment-receipt"]
        row = stored(config, channel_id)
        assert row is not None
        assert (row["accepted"], row["spent"]) == ("1000", "200")  # charged once

        other = headers | {"idempotency-key": "req-2"}
        third = await http.post(PATH, json=chat(8), headers=other)
        assert header_receipt(third).spent == 400


# -- 3. rejections -------------------------------------------------------------------------------


async def test_voucher_signature_rejections(chain: DevChain, tmp_path: Path, payer: Payer) -> None:
    config = make_config(chain, tmp_path)
    async with asgi_client(config) as http:
        channel_id, _ = await open_channel(http, payer, DEPOSIT)
        challenge = await fresh_challenge(http)

        garbage = VoucherPayload(
            channel_id=channel_id, cumulative_amount=1000, signature="0x" + "00" * 65
        )
        response = await http.post(PATH, json=chat(), headers=authorization(challenge, garbage))
        body = assert_problem(response, "session/invalid-signature")
        assert body["channelId"] == channel_id
        head = await http.head(PATH, headers=authorization(challenge, garbage))
        assert_problem(head, "session/invalid-signature", body=False)

        stranger = chain.accounts[2].private_key
        foreign = VoucherPayload(
            channel_id=channel_id,
            cumulative_amount=1000,
            signature=payer.sign(channel_id, 1000, key=stranger),
        )
        response = await http.post(PATH, json=chat(), headers=authorization(challenge, foreign))
        body = assert_problem(response, "session/signer-mismatch")
        assert body["channelId"] == channel_id

        # A valid signature over another amount than the one claimed.
        swapped = VoucherPayload(
            channel_id=channel_id, cumulative_amount=1000, signature=payer.sign(channel_id, 2000)
        )
        response = await http.head(PATH, headers=authorization(challenge, swapped))
        assert_problem(response, "session/signer-mismatch", body=False)

        over = payer.voucher(channel_id, DEPOSIT + PRICE)
        response = await http.post(PATH, json=chat(), headers=authorization(challenge, over))
        body = assert_problem(response, "session/amount-exceeds-deposit")
        assert body["channelId"] == channel_id

        row = stored(config, channel_id)
        assert row is not None
        assert (row["accepted"], row["spent"]) == ("0", "0")


async def test_min_voucher_delta_enforced(chain: DevChain, tmp_path: Path, payer: Payer) -> None:
    config = make_config(chain, tmp_path, min_voucher_delta=1000)
    async with asgi_client(config) as http:
        channel_id, _ = await open_channel(http, payer, DEPOSIT)
        response = await pay_head(http, payer.voucher(channel_id, 999))
        assert_problem(response, "session/delta-too-small", body=False)
        response = await http.post(
            PATH,
            json=chat(),
            headers=authorization(await fresh_challenge(http), payer.voucher(channel_id, 999)),
        )
        body = assert_problem(response, "session/delta-too-small")
        assert body["channelId"] == channel_id

        response = await pay_head(http, payer.voucher(channel_id, 1000))
        assert response.status_code == 200
        assert header_receipt(response).accepted_cumulative == 1000
        response = await pay_head(http, payer.voucher(channel_id, 1999))
        assert_problem(response, "session/delta-too-small", body=False)
        response = await pay_head(http, payer.voucher(channel_id, 2000))
        assert response.status_code == 200
        assert header_receipt(response).accepted_cumulative == 2000


async def test_voucher_monotonicity_and_idempotency(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    config = make_config(chain, tmp_path)
    async with asgi_client(config) as http:
        channel_id, opened = await open_channel(http, payer, DEPOSIT)
        assert (opened.accepted_cumulative, opened.spent) == (0, 0)

        challenge = await fresh_challenge(http)
        voucher = payer.voucher(channel_id, 5000)
        response = await http.head(PATH, headers=authorization(challenge, voucher))
        assert response.status_code == 200
        assert response.content == b""
        receipt = header_receipt(response)
        assert receipt.challenge_id == challenge.id
        assert (receipt.accepted_cumulative, receipt.spent, receipt.units) == (5000, 0, None)
        row = stored(config, channel_id)
        assert row is not None

        # The same voucher again: success, nothing changes (not even the row's timestamp).
        await asyncio.sleep(0.01)
        again = await pay_head(http, payer.voucher(channel_id, 5000))
        assert again.status_code == 200
        receipt = header_receipt(again)
        assert (receipt.accepted_cumulative, receipt.spent) == (5000, 0)
        assert stored(config, channel_id) == row

        # Lower: refused, state unchanged.
        lower = await pay_head(http, payer.voucher(channel_id, 4000))
        assert_problem(lower, "verification-failed", body=False)
        response = await http.post(
            PATH,
            json=chat(),
            headers=authorization(await fresh_challenge(http), payer.voucher(channel_id, 4000)),
        )
        body = assert_problem(response, "verification-failed")
        assert body["channelId"] == channel_id
        assert stored(config, channel_id) == row


async def test_challenge_binding_rejections(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient
) -> None:
    config = make_config(chain, tmp_path)
    async with asgi_client(config) as http:
        channel_id, _ = await open_channel(http, payer, DEPOSIT)
        challenge = await fresh_challenge(http)
        voucher = payer.voucher(channel_id, 1000)

        tampered = Challenge(**{**challenge.echo(), "id": challenge.id[:-2] + "AA"})
        assert not tampered.verify_id(SECRET)
        response = await http.post(PATH, json=chat(), headers=authorization(tampered, voucher))
        assert_problem(response, "invalid-challenge")

        # Another server's challenge: same parameters, another secret.
        foreign = Challenge.issue(
            secret=secrets.token_bytes(32),
            realm=challenge.realm,
            method="tempo",
            intent="session",
            request=challenge.request_data,
            expires=datetime.now(UTC) + timedelta(minutes=5),
        )
        response = await http.head(PATH, headers=authorization(foreign, voucher))
        assert_problem(response, "invalid-challenge", body=False)

        # Altering a bound parameter (the price) breaks the binding too.
        cheaper = challenge.request_data
        cheaper["amount"] = "1"
        altered = Challenge.issue(
            secret=b"x",
            realm=challenge.realm,
            method="tempo",
            intent="session",
            request=cheaper,
            expires=challenge.expires_at,
        )
        altered = Challenge(**{**altered.echo(), "id": challenge.id})
        response = await http.head(PATH, headers=authorization(altered, voucher))
        assert_problem(response, "invalid-challenge", body=False)

        expired = expired_challenge(challenge.request_data)
        assert expired.verify_id(SECRET)
        response = await http.post(PATH, json=chat(), headers=authorization(expired, voucher))
        assert_problem(response, "invalid-challenge")

        # An expired challenge must stop an open before anything is broadcast.
        await payer.approve(DEPOSIT)
        unsent_id, tx = await payer.signed_open(DEPOSIT)
        opening = OpenPayload(
            channel_id=unsent_id,
            transaction=tx.raw,
            cumulative_amount=0,
            signature=payer.sign(unsent_id, 0),
        )
        response = await http.head(PATH, headers=authorization(expired, opening))
        assert_problem(response, "invalid-challenge", body=False)
        payer.unsent()
        assert not (await Escrow(client, chain.escrow).get_channel(unsent_id)).exists

        row = stored(config, channel_id)
        assert row is not None
        assert row["accepted"] == "0"


async def test_malformed_credentials(chain: DevChain, tmp_path: Path, payer: Payer) -> None:
    async with asgi_client(make_config(chain, tmp_path)) as http:
        for value in ("Payment !!not-base64url!!", "Payment eyJub3QiOiJjbG9zZWQ", "Payment a b"):
            response = await http.post(PATH, json=chat(), headers={"authorization": value})
            assert_problem(response, "malformed-credential")
        response = await http.head(PATH, headers={"authorization": "Payment %%%"})
        assert_problem(response, "malformed-credential", body=False)

        challenge = await fresh_challenge(http)
        unknown_action = {"action": "refund", "channelId": "0x" + "11" * 32}
        response = await http.post(
            PATH, json=chat(), headers=authorization(challenge, unknown_action)
        )
        assert_problem(response, "malformed-credential")
        decimal_number = {
            "action": "voucher",
            "channelId": "0x" + "11" * 32,
            "cumulativeAmount": 1000,  # amounts are decimal *strings* on the wire
            "signature": "0x" + "11" * 65,
        }
        response = await http.post(
            PATH, json=chat(), headers=authorization(challenge, decimal_number)
        )
        assert_problem(response, "malformed-credential")


async def test_open_transaction_checks(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient
) -> None:
    config = make_config(chain, tmp_path)
    escrow = Escrow(client, chain.escrow)
    async with asgi_client(config) as http:
        await payer.approve(DEPOSIT)
        challenge = await fresh_challenge(http)

        async def refused(channel_id: str, raw: str) -> None:
            payload = OpenPayload(
                channel_id=channel_id,
                transaction=raw,
                cumulative_amount=0,
                signature=payer.sign(channel_id, 0),
            )
            response = await http.post(PATH, json=chat(), headers=authorization(challenge, payload))
            assert_problem(response, "verification-failed")
            payer.unsent()
            assert stored(config, channel_id) is None

        other_payee = chain.accounts[3].address.lower()
        channel_id, tx = await payer.signed_open(DEPOSIT, payee=other_payee)
        await refused(channel_id, tx.raw)
        assert not (await escrow.get_channel(channel_id)).exists

        other_token = "0x" + "12" * 20
        channel_id, tx = await payer.signed_open(DEPOSIT, token=other_token, gas=300_000)
        await refused(channel_id, tx.raw)

        real_id, tx = await payer.signed_open(DEPOSIT)
        await refused("0x" + secrets.token_bytes(32).hex(), tx.raw)
        assert not (await escrow.get_channel(real_id)).exists

        # Not an open() at all (an approve), and not a transaction at all.
        approve = await payer.token.sign_approve(payer.account.wallet(), chain.escrow, 1)
        await refused(real_id, approve.raw)
        await refused(real_id, "0x" + "ab" * 40)

        assert await payer.balance() == FUNDED  # nothing was ever broadcast


async def test_unknown_and_finalized_channels_are_gone(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with asgi_client(make_config(chain, tmp_path)) as http:
        unknown = "0x" + secrets.token_bytes(32).hex()
        response = await pay_head(http, payer.voucher(unknown, 1000))
        assert_problem(response, "session/channel-not-found", 410, body=False)
        response = await http.post(
            PATH,
            json=chat(),
            headers=authorization(await fresh_challenge(http), payer.voucher(unknown, 1000)),
        )
        body = assert_problem(response, "session/channel-not-found", 410)
        assert body["channelId"] == unknown

        channel_id, _ = await open_channel(http, payer, DEPOSIT)
        closed = await pay_head(http, payer.close(channel_id, 0))
        assert closed.status_code == 200
        response = await http.post(
            PATH,
            json=chat(),
            headers=authorization(await fresh_challenge(http), payer.voucher(channel_id, 1000)),
        )
        body = assert_problem(response, "session/channel-finalized", 410)
        assert body["channelId"] == channel_id
        response = await pay_head(http, payer.close(channel_id, 0))
        assert_problem(response, "session/channel-finalized", 410, body=False)

    # A server that never saw the channel (fresh state) reads it from the chain, where the
    # escrow has wiped it except ``finalized``: still channel-finalized, not "not found".
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    async with asgi_client(make_config(chain, fresh)) as http:
        response = await pay_head(http, payer.voucher(channel_id, 1000))
        assert_problem(response, "session/channel-finalized", 410, body=False)


# -- 4. top-up -----------------------------------------------------------------------------------


async def test_top_up_raises_the_deposit(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient
) -> None:
    config = make_config(chain, tmp_path)
    escrow = Escrow(client, chain.escrow)
    async with asgi_client(config) as http:
        channel_id, _ = await open_channel(http, payer, DEPOSIT)
        response = await pay_head(http, payer.voucher(channel_id, DEPOSIT + 1000))
        assert_problem(response, "session/amount-exceeds-deposit", body=False)

        await payer.approve(50_000)
        # A transaction for 20 000 claiming 50 000: refused and not broadcast.
        tx = await payer.escrow.sign_top_up(payer.account.wallet(), channel_id, 20_000)
        lie = TopUpPayload(channel_id=channel_id, transaction=tx.raw, additional_deposit=50_000)
        response = await pay_head(http, lie)
        assert_problem(response, "verification-failed", body=False)
        payer.unsent()
        assert (await escrow.get_channel(channel_id)).deposit == DEPOSIT

        # A topUp transaction for another channel than the payload names.
        other = "0x" + secrets.token_bytes(32).hex()
        tx = await payer.escrow.sign_top_up(payer.account.wallet(), other, 50_000, gas=200_000)
        response = await pay_head(
            http, TopUpPayload(channel_id=channel_id, transaction=tx.raw, additional_deposit=50_000)
        )
        assert_problem(response, "verification-failed", body=False)
        payer.unsent()

        tx = await payer.escrow.sign_top_up(payer.account.wallet(), channel_id, 50_000)
        challenge = await fresh_challenge(http)
        topped = TopUpPayload(channel_id=channel_id, transaction=tx.raw, additional_deposit=50_000)
        response = await http.head(PATH, headers=authorization(challenge, topped))
        assert response.status_code == 200
        receipt = header_receipt(response)
        assert receipt.challenge_id == challenge.id
        assert receipt.tx_hash == tx.hash
        assert (receipt.accepted_cumulative, receipt.spent) == (0, 0)

        state = await escrow.get_channel(channel_id)
        assert state.deposit == DEPOSIT + 50_000
        row = stored(config, channel_id)
        assert row is not None
        assert row["deposit"] == str(DEPOSIT + 50_000)
        assert await payer.balance() == FUNDED - DEPOSIT - 50_000

        # The new deposit is usable at once.
        response = await pay_head(http, payer.voucher(channel_id, DEPOSIT + 1000))
        assert response.status_code == 200
        assert header_receipt(response).accepted_cumulative == DEPOSIT + 1000


async def test_top_up_needs_a_live_challenge(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient
) -> None:
    async with asgi_client(make_config(chain, tmp_path)) as http:
        channel_id, _ = await open_channel(http, payer, DEPOSIT)
        challenge = await fresh_challenge(http)
        tx = await payer.escrow.sign_top_up(payer.account.wallet(), channel_id, 1000, gas=200_000)
        payload = TopUpPayload(channel_id=channel_id, transaction=tx.raw, additional_deposit=1000)

        stale = expired_challenge(challenge.request_data)
        response = await http.post(PATH, json=chat(), headers=authorization(stale, payload))
        assert_problem(response, "session/challenge-not-found")
        tampered = Challenge(**{**challenge.echo(), "id": "not-a-challenge-we-issued"})
        response = await http.head(PATH, headers=authorization(tampered, payload))
        assert_problem(response, "session/challenge-not-found", body=False)
        payer.unsent()
        assert (await Escrow(client, chain.escrow).get_channel(channel_id)).deposit == DEPOSIT


async def test_deposit_topped_up_directly_on_chain_is_seen(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    # A long chain-state cache: the server must still re-read before refusing.
    config = make_config(chain, tmp_path, chain_check_interval=600.0)
    async with asgi_client(config) as http:
        channel_id, _ = await open_channel(http, payer, DEPOSIT)
        assert (await pay_head(http, payer.voucher(channel_id, 1000))).status_code == 200
        await payer.approve(5000)
        tx = await payer.escrow.sign_top_up(payer.account.wallet(), channel_id, 5000)
        await payer.client.send_and_wait(tx)  # behind the server's back
        response = await pay_head(http, payer.voucher(channel_id, DEPOSIT + 5000))
        assert response.status_code == 200
        assert header_receipt(response).accepted_cumulative == DEPOSIT + 5000
        response = await pay_head(http, payer.voucher(channel_id, DEPOSIT + 5001))
        assert_problem(response, "session/amount-exceeds-deposit", body=False)
        row = stored(config, channel_id)
        assert row is not None
        assert (row["deposit"], row["accepted"]) == (str(DEPOSIT + 5000), str(DEPOSIT + 5000))


# -- 5. close -----------------------------------------------------------------------------------


async def _transfers(client: ChainClient, token: str, tx_hash: str) -> list[tuple[str, str, int]]:
    """The token's ``Transfer(from, to, value)`` logs in one mined transaction."""
    receipt = await client.get_receipt(tx_hash)
    assert receipt is not None
    topic = keccak(b"Transfer(address,address,uint256)")
    return [
        (
            "0x" + bytes(log["topics"][1])[-20:].hex(),
            "0x" + bytes(log["topics"][2])[-20:].hex(),
            int.from_bytes(bytes(log["data"]), "big"),
        )
        for log in receipt["logs"]
        if str(log["address"]).lower() == token.lower() and bytes(log["topics"][0]) == topic
    ]


async def _open_and_spend_300_of_2000(http: httpx.AsyncClient, payer: Payer) -> str:
    """Open a channel, authorize 2000 and consume 12 tokens = 300; returns the channel id."""
    channel_id, _ = await open_channel(http, payer, DEPOSIT)
    challenge = await fresh_challenge(http)
    response = await http.post(
        PATH, json=chat(12), headers=authorization(challenge, payer.voucher(channel_id, 2000))
    )
    assert response.status_code == 200, response.text
    assert header_receipt(response).spent == 300
    return channel_id


async def test_close_voucher_outside_spent_to_accepted_is_refused(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient
) -> None:
    config = make_config(chain, tmp_path)
    async with asgi_client(config) as http:
        channel_id = await _open_and_spend_300_of_2000(http, payer)
        for wrong in (299, 0, 2001, DEPOSIT):
            response = await pay_head(http, payer.close(channel_id, wrong))
            assert_problem(response, "verification-failed", body=False)
            response = await http.post(
                PATH,
                json=chat(),
                headers=authorization(await fresh_challenge(http), payer.close(channel_id, wrong)),
            )
            body = assert_problem(response, "verification-failed")
            assert (body["requiredCloseAmount"], body["acceptedCumulative"]) == ("300", "2000")
            assert body["channelId"] == channel_id
        assert not (await Escrow(client, chain.escrow).get_channel(channel_id)).finalized
    assert await payer.balance() == FUNDED - DEPOSIT


@pytest.mark.parametrize("close_at", [300, 1_000, 2_000])
async def test_cooperative_close_captures_exactly_spent(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient, close_at: int
) -> None:
    """Any close voucher in [spent, accepted] closes; the payee keeps exactly ``spent``.

    v1's close pays the redeemed voucher's amount, so above ``spent`` the server returns the
    difference to the payer in a transfer right after the close.
    """
    config = make_config(chain, tmp_path)
    payee = chain.accounts[0].address
    escrow = Escrow(client, chain.escrow)
    payee_before = await payer.token.balance_of(payee)
    async with asgi_client(config) as http:
        channel_id = await _open_and_spend_300_of_2000(http, payer)
        challenge = await fresh_challenge(http)
        response = await http.post(
            PATH, json=chat(), headers=authorization(challenge, payer.close(channel_id, close_at))
        )
        assert response.status_code == 200, response.text
        receipt = header_receipt(response)
        assert receipt.challenge_id == challenge.id
        assert (receipt.accepted_cumulative, receipt.spent) == (2000, 300)
        assert receipt.tx_hash is not None

    state = await escrow.get_channel(channel_id)
    assert (state.finalized, state.cleared) == (True, True)
    assert await payer.token.balance_of(payee) == payee_before + 300
    assert await payer.balance() == FUNDED - 300
    assert await payer.token.balance_of(chain.escrow) == 0
    tx_receipt = await client.get_receipt(receipt.tx_hash)
    assert tx_receipt is not None
    closed = [e for e in escrow.events(tx_receipt) if e.name == "ChannelClosed"]
    assert len(closed) == 1
    assert closed[0].channel_id == channel_id
    assert closed[0].payer == payer.address
    assert closed[0].payee == payee.lower()
    # The lowest voucher held at or above spent is redeemed: the close voucher itself here.
    assert dict(closed[0].values) == {
        "settledToPayee": close_at,
        "refundedToPayer": DEPOSIT - close_at,
    }
    # Exactly one transfer of the excess, payee -> payer, after the close.
    latest = await client.w3.eth.get_block("latest")
    refund_tx = "0x" + bytes(latest["transactions"][-1]).hex()  # type: ignore[arg-type]
    if close_at == 300:
        assert refund_tx == receipt.tx_hash
    else:
        assert await _transfers(client, chain.token, refund_tx) == [
            (payee.lower(), payer.address, close_at - 300)
        ]
    row = stored(config, channel_id)
    assert row is not None
    assert (row["finalized"], row["close_tx"], row["settled"]) == (1, receipt.tx_hash, "300")
    assert row["refund_owed"] == "0"  # paid back already


async def test_owed_close_refund_is_paid_when_the_server_starts(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient
) -> None:
    """A refund the server could not send (crash, chain down) stays owed and is retried."""
    config = make_config(chain, tmp_path)
    async with asgi_client(config) as http:
        channel_id = await _open_and_spend_300_of_2000(http, payer)
        assert (await pay_head(http, payer.close(channel_id, 2000))).status_code == 200
    assert await payer.balance() == FUNDED - 300
    # As if the transfer after the close had failed: the debt is on record.
    db = sqlite3.connect(config.state_path)
    with db:
        db.execute("UPDATE channels SET refund_owed = '1700' WHERE channel_id = ?", (channel_id,))
    db.close()
    async with asgi_client(config) as http:
        assert (await http.head(PATH)).status_code == 402  # first use starts the payee
    assert await payer.balance() == FUNDED - 300 + 1700
    row = stored(config, channel_id)
    assert row is not None
    assert row["refund_owed"] == "0"
    async with asgi_client(config) as http:  # paid once, not again
        assert (await http.head(PATH)).status_code == 402
    assert await payer.balance() == FUNDED - 300 + 1700


async def test_close_with_nothing_spent_redeems_no_voucher(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient
) -> None:
    """spent == settled == 0: the close pays the payee nothing, whatever the voucher says."""
    config = make_config(chain, tmp_path)
    async with asgi_client(config) as http:
        channel_id, _ = await open_channel(http, payer, DEPOSIT)
        assert (await pay_head(http, payer.voucher(channel_id, 2000))).status_code == 200
        response = await pay_head(http, payer.close(channel_id, 2000))
        assert response.status_code == 200
        receipt = header_receipt(response)
    assert receipt.tx_hash is not None
    tx_receipt = await client.get_receipt(receipt.tx_hash)
    assert tx_receipt is not None
    (closed,) = Escrow(client, chain.escrow).events(tx_receipt)
    assert dict(closed.values) == {"settledToPayee": 0, "refundedToPayer": DEPOSIT}
    assert await payer.balance() == FUNDED


@pytest.mark.parametrize("form", ["v27", "v01", "compact", "high_s"])
async def test_voucher_signature_forms_reach_a_close_or_a_clean_refusal(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient, form: str
) -> None:
    """Only signatures the escrow redeems are accepted; compact ones are stored expanded.

    v = 27/28 and EIP-2098 compact: accepted as voucher and as close, and closed on chain.
    v = 0/1 and high s: refused with invalid-signature (the escrow's close would revert), the
    channel stays open, and a canonical close still works.
    """
    accepted = form in ("v27", "compact")
    config = make_config(chain, tmp_path)

    def in_form(payload: VoucherPayload | ClosePayload) -> VoucherPayload | ClosePayload:
        return payload.model_copy(update={"signature": signature_forms(payload.signature)[form]})

    async with asgi_client(config) as http:
        channel_id, _ = await open_channel(http, payer, DEPOSIT)
        voucher = in_form(payer.voucher(channel_id, 2000))
        response = await pay_head(http, voucher)
        if accepted:
            assert response.status_code == 200
            row = stored(config, channel_id)
            assert row is not None
            # Stored in the one form every escrow redeems (65 bytes, v = 27/28, low s).
            assert row["accepted_signature"] == payer.sign(channel_id, 2000)
        else:
            assert_problem(response, "session/invalid-signature", body=False)
            assert (await pay_head(http, payer.voucher(channel_id, 2000))).status_code == 200
        challenge = await fresh_challenge(http)
        response = await http.post(
            PATH, json=chat(12), headers=authorization(challenge, payer.voucher(channel_id, 2000))
        )
        assert response.status_code == 200, response.text

        response = await pay_head(http, in_form(payer.close(channel_id, 300)))
        if not accepted:
            assert_problem(response, "session/invalid-signature", body=False)
            assert not (await Escrow(client, chain.escrow).get_channel(channel_id)).finalized
            response = await pay_head(http, payer.close(channel_id, 300))
        assert response.status_code == 200
        receipt = header_receipt(response)
    assert receipt.tx_hash is not None
    tx_receipt = await client.get_receipt(receipt.tx_hash)
    assert tx_receipt is not None
    (closed,) = Escrow(client, chain.escrow).events(tx_receipt)
    assert dict(closed.values) == {"settledToPayee": 300, "refundedToPayer": DEPOSIT - 300}
    assert await payer.balance() == FUNDED - 300


# -- 6. rate limiting ------------------------------------------------------------------------------


async def test_valid_vouchers_paying_ahead_are_not_throttled(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    config = make_config(chain, tmp_path, voucher_burst=3, voucher_rate_per_second=0.5)
    async with asgi_client(config) as http:
        channel_id, _ = await open_channel(http, payer, DEPOSIT)
        challenge = await fresh_challenge(http)
        statuses = [
            (
                await http.head(
                    PATH, headers=authorization(challenge, payer.voucher(channel_id, amount))
                )
            ).status_code
            for amount in range(PRICE, 11 * PRICE, PRICE)
        ]
        assert statuses == [200] * 10
        row = stored(config, channel_id)
        assert row is not None
        assert row["accepted"] == str(10 * PRICE)


async def test_voucher_floods_are_rate_limited(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    config = make_config(chain, tmp_path, voucher_burst=3, voucher_rate_per_second=0.5)
    async with asgi_client(config) as http:
        channel_id, _ = await open_channel(http, payer, DEPOSIT, initial=1000)
        challenge = await fresh_challenge(http)
        stale = authorization(challenge, payer.voucher(channel_id, 500))
        garbage = authorization(
            challenge,
            VoucherPayload(
                channel_id=channel_id, cumulative_amount=2000, signature="0x" + "00" * 65
            ),
        )
        statuses = []
        for headers in [stale, garbage] * 4:
            response = await http.head(PATH, headers=headers)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                assert "payment-receipt" not in response.headers
                assert "www-authenticate" not in response.headers
        assert statuses == [402] * 3 + [429] * 5
        response = await http.post(PATH, json=chat(), headers=stale)
        assert response.status_code == 429
        body = response.json()
        assert (body["status"], body["retryAfter"]) == (429, response.headers["retry-after"])
        assert "payment-receipt" not in response.headers
        row = stored(config, channel_id)
        assert row is not None
        assert (row["accepted"], row["spent"]) == ("1000", "0")

        # Another channel has its own bucket.
        other = Payer(chain, payer.client, chain.accounts[2], payer.payee)
        other_id, _ = await open_channel(http, other, DEPOSIT)
        garbage_other = VoucherPayload(
            channel_id=other_id, cumulative_amount=2000, signature="0x" + "00" * 65
        )
        response = await http.head(PATH, headers=authorization(challenge, garbage_other))
        assert_problem(response, "session/invalid-signature", body=False)  # not 429


# -- 7. restart ---------------------------------------------------------------------------------


async def test_state_survives_a_restart(chain: DevChain, tmp_path: Path, payer: Payer) -> None:
    config = make_config(chain, tmp_path)
    app_a = create_app(config)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_a), base_url="http://a"
    ) as http:
        challenge = await fresh_challenge(http)
        payload = await payer.open_payload(DEPOSIT, initial=0)
        channel_id = payload.channel_id
        assert (await http.head(PATH, headers=authorization(challenge, payload))).status_code == 200
        voucher = payer.voucher(channel_id, 500)
        response = await http.post(PATH, json=chat(7), headers=authorization(challenge, voucher))
        assert response.status_code == 200
        before = header_receipt(response)
        assert (before.accepted_cumulative, before.spent) == (500, 175)
    await devserver(app_a).close()
    del app_a

    app_b = create_app(config)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app_b), base_url="http://b"
        ) as http:
            challenge = await fresh_challenge(http)  # same secret: B honours A's challenges too
            response = await http.head(PATH, headers=authorization(challenge, voucher))
            assert response.status_code == 200
            after = header_receipt(response)
            assert (after.accepted_cumulative, after.spent) == (500, 175)

            lower = payer.voucher(channel_id, 400)
            assert_problem(
                await http.head(PATH, headers=authorization(challenge, lower)),
                "verification-failed",
                body=False,
            )
            # The remaining 325 pays for 13 tokens, not 14.
            paid = authorization(challenge, voucher)
            response = await http.post(PATH, json=chat(14), headers=paid)
            assert assert_problem(response, "session/insufficient-balance")["requiredTopUp"] == "25"
            response = await http.post(PATH, json=chat(13), headers=paid)
            assert response.status_code == 200
            final = header_receipt(response)
            assert (final.accepted_cumulative, final.spent, final.units) == (500, 500, 13)
    finally:
        await devserver(app_b).close()


# -- 9/10. bearer mode, wire details ---------------------------------------------------------------


async def test_bearer_mode(chain: DevChain, tmp_path: Path) -> None:
    config = make_config(chain, tmp_path, auth_mode="bearer", api_keys=(SecretStr("sk-good"),))
    async with asgi_client(config) as http:
        response = await http.post(
            PATH, json=chat(6, stream=True), headers={"authorization": "Bearer sk-good"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "payment-receipt" not in response.headers
        assert "event: payment" not in response.text
        assert response.text.endswith("data: [DONE]\n\n")
        assert response.text.count('"content":"') == 7  # role chunk + 6 tokens

        response = await http.post(PATH, json=chat(6), headers={"authorization": "Bearer sk-good"})
        assert response.status_code == 200
        assert response.json()["usage"]["completion_tokens"] == 6

        missing = await http.post(PATH, json=chat())
        assert missing.status_code == 401
        error = missing.json()["error"]
        assert error["code"] == "missing_api_key"
        assert isinstance(error["message"], str)
        assert "www-authenticate" not in missing.headers
        wrong = await http.post(PATH, json=chat(), headers={"authorization": "Bearer sk-bad"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        assert wrong.json()["error"]["type"] == "invalid_request_error"


async def test_either_mode_accepts_keys_and_payments(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    config = make_config(chain, tmp_path, auth_mode="either", api_keys=(SecretStr("sk-good"),))
    async with asgi_client(config) as http:
        response = await http.post(PATH, json=chat(3), headers={"authorization": "Bearer sk-good"})
        assert response.status_code == 200
        assert "payment-receipt" not in response.headers
        wrong = await http.post(PATH, json=chat(), headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401

        assert_problem(await http.post(PATH, json=chat()), "payment-required")
        channel_id, _ = await open_channel(http, payer, DEPOSIT)
        response = await http.post(
            PATH,
            json=chat(3),
            headers=authorization(await fresh_challenge(http), payer.voucher(channel_id, 75)),
        )
        assert response.status_code == 200
        assert header_receipt(response).spent == 75


async def test_vendor_fields_multimodal_and_models(
    chain: DevChain, tmp_path: Path, payer: Payer
) -> None:
    async with asgi_client(make_config(chain, tmp_path)) as http:
        models = await http.get("/v1/models")
        assert models.status_code == 200
        listed = models.json()
        assert listed["object"] == "list"
        assert [m["id"] for m in listed["data"]] == list(MODELS)
        assert all(m["object"] == "model" for m in listed["data"])
        assert (await http.get("/health")).json() == {"ok": True}

        channel_id, _ = await open_channel(http, payer, DEPOSIT)
        body = chat(
            4,
            plugins=[{"id": "web"}],
            routing_strategy="cheapest",
            temperature=0.5,  # standard OpenAI field: not reflected as a vendor field
        )
        body["messages"] = [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                ],
            }
        ]
        response = await http.post(
            PATH,
            json=body,
            headers=authorization(await fresh_challenge(http), payer.voucher(channel_id, 100)),
        )
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["mpp_debug"] == {
            "vendor_fields": {"plugins": [{"id": "web"}], "routing_strategy": "cheapest"}
        }
        assert data["usage"]["completion_tokens"] == 4
        assert header_receipt(response).spent == 100

        # A broken body is an OpenAI-style 400 and charges nothing.
        response = await http.post(
            PATH,
            json={"model": MODEL, "messages": []},
            headers=authorization(await fresh_challenge(http), payer.voucher(channel_id, 200)),
        )
        assert response.status_code == 400
        assert "error" in response.json()
        assert "payment-receipt" not in response.headers
