"""The reference server speaking session v2 (the TIP-1034 reserve) on the Tempo devchain.

Credentials come from :mod:`tests.devserver.helpers_v2` (the reserve's primitives,
never the Agent). Every refusal is checked to have left the chain untouched.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mppagent.devchain import DevChain
from mppagent.devserver import RunningServer
from mppagent.devserver.snapshot import SESSION_HEADER, SNAPSHOT_HEADER
from mppagent.tempo import ChainClient
from mppagent.tempo.escrow import encode_approve, encode_transfer
from mppagent.tempo.schemas import WIRE, VoucherPayload
from mppagent.tempo.tempo_chain import PATH_USD, sign_calls
from mppagent.tempo.tempotx import Call
from mppagent.tempo.v2 import RESERVE_ADDRESS, UINT96_MAX, ChannelDescriptor, compute_channel_id
from mppagent.tempo.v2.backend import open_nonce_hash
from mppagent.tempo.v2.calls import encode_open
from mppagent.tempo.v2.snapshot import (
    SessionSnapshot,
    check_snapshot,
    parse_snapshot,
    verify_snapshot_on_chain,
)
from tests.support import fresh_block, signature_forms

from .helpers import (
    PATH,
    asgi_client,
    assert_problem,
    authorization,
    chat,
    fresh_challenge,
    header_receipt,
    only_challenge,
    pay_head,
    stored,
)
from .helpers_v2 import V2Payer, make_v2_config, opened, sponsored_wire

DEPOSIT = 400_000
PRICE = 25


@pytest.fixture
def chain(tempo_chain: DevChain) -> DevChain:
    """Every test here runs on the Tempo devchain, where the local reserve lives."""
    return tempo_chain


@pytest.fixture
async def payer(chain: DevChain, client: ChainClient) -> V2Payer:
    await fresh_block(chain)
    return V2Payer(chain, client, chain.accounts[1])


async def test_challenge_names_v2_and_the_reserve(chain: DevChain, tmp_path: Path) -> None:
    async with asgi_client(make_v2_config(chain, tmp_path)) as http:
        details = (await fresh_challenge(http)).request_data["methodDetails"]
    assert details["sessionProtocol"] == "v2"
    assert details["escrowContract"] == RESERVE_ADDRESS
    assert details["chainId"] == chain.chain_id
    assert "operator" not in details  # no operator: clients put zero in the descriptor


async def test_open_vouchers_top_up_and_close_capturing_spent(
    chain: DevChain, tmp_path: Path, payer: V2Payer
) -> None:
    config = make_v2_config(chain, tmp_path)
    async with asgi_client(config) as http:
        channel = await payer.new_channel(DEPOSIT)
        response = await pay_head(http, payer.open_payload(channel))
        assert response.status_code == 200, response.text
        assert header_receipt(response).tx_hash == channel.tx.hash
        assert await payer.reserve_state(channel.channel_id) == (DEPOSIT, 0)
        row = stored(config, channel.channel_id)
        assert row is not None
        assert ChannelDescriptor.from_wire(json.loads(row["descriptor"])) == channel.descriptor

        # A paid request on a voucher: billed 8 x 25, exactly.
        challenge = await fresh_challenge(http)
        paid = await http.post(
            PATH,
            json=chat(8),
            headers=authorization(challenge, payer.voucher(channel, 12 * PRICE)),
        )
        assert paid.status_code == 200, paid.text
        receipt = header_receipt(paid)
        assert (receipt.accepted_cumulative, receipt.spent, receipt.units) == (300, 200, 8)

        # A top-up: one 0x76 calling topUp(descriptor, amount), broadcast by the server.
        top_up, top_hash = await payer.top_up(channel, 50_000)
        response = await pay_head(http, top_up)
        assert response.status_code == 200, response.text
        assert header_receipt(response).tx_hash == top_hash
        assert await payer.reserve_state(channel.channel_id) == (DEPOSIT + 50_000, 0)

        # Close with the highest voucher (300): the reserve pays 200, refunds the rest.
        response = await pay_head(http, payer.close(channel, 300))
        assert response.status_code == 200, response.text
        close_hash = header_receipt(response).tx_hash
        assert close_hash is not None
    receipt_json = await payer.client.get_receipt(close_hash)
    assert receipt_json is not None
    closed = payer.backend.closed_amounts(RESERVE_ADDRESS, channel.channel_id, receipt_json)
    assert closed is not None
    assert (closed.paid, closed.refunded) == (200, DEPOSIT + 50_000 - 200)
    assert await payer.reserve_state(channel.channel_id) == (0, 0)  # deleted on close
    row = stored(config, channel.channel_id)
    assert row is not None
    assert (row["finalized"], row["settled"], row["refund_owed"]) == (1, "200", "0")


async def test_foreign_or_forged_descriptors_are_refused_unsent(
    chain: DevChain, tmp_path: Path, payer: V2Payer
) -> None:
    config = make_v2_config(chain, tmp_path)
    before = await payer.balance()
    async with asgi_client(config) as http:
        # A channel paying someone else (the id is that descriptor's: consistent, not ours).
        foreign = await payer.new_channel(DEPOSIT, payee=chain.accounts[3].address.lower())
        assert_problem(
            await pay_head(http, payer.open_payload(foreign)), "verification-failed", body=False
        )
        # Our terms but another operator than the one we announce (zero).
        operated = await payer.new_channel(DEPOSIT, operator=chain.accounts[3].address.lower())
        assert_problem(
            await pay_head(http, payer.open_payload(operated)), "verification-failed", body=False
        )

        # A descriptor edited after signing: its id no longer matches, nor the transaction.
        channel = await payer.new_channel(DEPOSIT)
        forged = channel.descriptor.model_copy(update={"salt": "0x" + "11" * 32})
        payload = payer.open_payload(channel).model_copy(update={"descriptor": forged.to_wire()})
        assert_problem(await pay_head(http, payload), "verification-failed", body=False)
        # The same edit with a matching id: the transaction opens another descriptor.
        forged_id = compute_channel_id(forged, RESERVE_ADDRESS, chain.chain_id)
        payload = payload.model_copy(update={"channel_id": forged_id})
        assert_problem(await pay_head(http, payload), "verification-failed", body=False)
        # A wrong expiringNonceHash (as if the open were another transaction).
        renonced = channel.descriptor.model_copy(update={"expiring_nonce_hash": "0x" + "22" * 32})
        payload = payer.open_payload(channel).model_copy(
            update={
                "descriptor": renonced.to_wire(),
                "channel_id": compute_channel_id(renonced, RESERVE_ADDRESS, chain.chain_id),
            }
        )
        assert_problem(await pay_head(http, payload), "verification-failed", body=False)
        # No descriptor at all.
        bare = payer.open_payload(channel).model_copy(update={"descriptor": None})
        assert_problem(await pay_head(http, bare), "verification-failed", body=False)
        for each in (foreign, operated, channel):
            assert await payer.reserve_state(each.channel_id) == (0, 0)

        # Open it properly; then a voucher whose descriptor is not the channel's is refused.
        assert (await pay_head(http, payer.open_payload(channel))).status_code == 200
        good = payer.voucher(channel, 100)
        wrong = good.model_copy(update={"descriptor": forged.to_wire()})
        assert_problem(await pay_head(http, wrong), "verification-failed", body=False)
        missing = good.model_copy(update={"descriptor": None})
        assert_problem(await pay_head(http, missing), "verification-failed", body=False)
        assert (await pay_head(http, good)).status_code == 200
    assert before - await payer.balance() >= DEPOSIT  # only the one open happened
    assert before - await payer.balance() < DEPOSIT + 100_000


async def test_open_transactions_with_other_calls_are_refused_unsent(
    chain: DevChain, tmp_path: Path, payer: V2Payer, client: ChainClient
) -> None:
    """Exactly [open(...)]: no approve (implicit approval), nothing riding along."""
    config = make_v2_config(chain, tmp_path)
    before = await payer.balance()
    template = await payer.new_channel(DEPOSIT)
    d = template.descriptor
    open_call = Call(
        RESERVE_ADDRESS,
        encode_open(d.payee, d.operator, d.token, DEPOSIT, d.salt, d.authorized_signer),
    )
    smuggled = [
        [Call(chain.token, encode_approve(RESERVE_ADDRESS, DEPOSIT)), open_call],
        [open_call, Call(chain.token, encode_transfer(chain.accounts[3].address, 1))],
        [Call(RESERVE_ADDRESS, open_call.data + b"\x00" * 32)],  # trailing bytes
        [Call(RESERVE_ADDRESS, open_call.data, value=1)],
    ]
    async with asgi_client(config) as http:
        for calls in smuggled:
            tx = await sign_calls(
                client, payer.account.wallet(), calls, fee_token=chain.token, gas=2_000_000
            )
            descriptor = d.model_copy(update={"expiring_nonce_hash": open_nonce_hash(tx)})
            channel_id = compute_channel_id(descriptor, RESERVE_ADDRESS, chain.chain_id)
            channel = replace(
                template,
                channel_id=channel_id,
                tx=tx,
                terms=replace(template.terms, descriptor=json.dumps(descriptor.to_wire())),
            )
            response = await pay_head(http, payer.open_payload(channel))
            assert_problem(response, "verification-failed", body=False)
            assert await client.get_receipt(tx.hash) is None
    assert await payer.balance() == before


async def test_vouchers_are_uint96_and_canonical(
    chain: DevChain, tmp_path: Path, payer: V2Payer
) -> None:
    config = make_v2_config(chain, tmp_path)
    async with asgi_client(config) as http:
        channel = await opened(http, payer, DEPOSIT)
        good = payer.voucher(channel, 100)
        for name, form in signature_forms(good.signature).items():
            if name == "v27":
                continue  # the canonical one
            response = await pay_head(http, good.model_copy(update={"signature": form}))
            assert_problem(response, "session/invalid-signature", body=False)
        huge = good.model_copy(update={"cumulative_amount": UINT96_MAX + 1})
        assert_problem(await pay_head(http, huge), "verification-failed", body=False)
        top_up, _ = await payer.top_up(channel, 1)
        overflow = top_up.model_copy(update={"additional_deposit": UINT96_MAX + 1})
        assert_problem(await pay_head(http, overflow), "verification-failed", body=False)
        response = await pay_head(http, good)
        assert response.status_code == 200, response.text
        assert header_receipt(response).accepted_cumulative == 100


async def test_sponsored_open_and_top_up_cost_the_payer_only_deposits(
    chain: DevChain, tmp_path: Path, payer: V2Payer, client: ChainClient
) -> None:
    config = make_v2_config(chain, tmp_path, sponsor_fees=True)
    before = await payer.balance()
    async with asgi_client(config) as http:
        challenge = await fresh_challenge(http)
        details = challenge.request_data["methodDetails"]
        assert (details["feePayer"], details["feeToken"]) == (True, PATH_USD)
        channel = await payer.new_channel(DEPOSIT, sponsored=True)
        payload = payer.open_payload(channel)
        assert payload.transaction == sponsored_wire(channel.tx)
        assert payload.transaction.startswith("0x78")
        response = await pay_head(http, payload, challenge)
        assert response.status_code == 200, response.text
        mined = header_receipt(response).tx_hash
        assert mined is not None
        assert await client.get_receipt(mined) is not None
        sponsored_terms = replace(channel.terms, fee_payer=True)
        topped = replace(channel, terms=sponsored_terms)
        top_up, _ = await payer.top_up(topped, 50_000)
        assert top_up.transaction.startswith("0x78")
        response = await pay_head(http, top_up)
        assert response.status_code == 200, response.text
        assert await payer.reserve_state(channel.channel_id) == (DEPOSIT + 50_000, 0)
    assert before - await payer.balance() == DEPOSIT + 50_000  # no fee paid by the payer


async def test_a_restarted_server_closes_from_its_stored_descriptor(
    chain: DevChain, tmp_path: Path, payer: V2Payer
) -> None:
    """The descriptor lives in the state file; a fresh server with no state adopts it too."""
    config = make_v2_config(chain, tmp_path)
    async with asgi_client(config) as http:
        channel = await opened(http, payer, DEPOSIT)
        assert (await pay_head(http, payer.voucher(channel, 200))).status_code == 200
    async with RunningServer(config):  # same state file: a restart
        pass
    async with asgi_client(config) as http:
        response = await pay_head(http, payer.close(channel, 200))
        assert response.status_code == 200, response.text
    # Nothing was spent, so the close captures nothing and refunds the whole deposit.
    assert await payer.reserve_state(channel.channel_id) == (0, 0)

    # A server that never saw the channel adopts it from the descriptor in the payload.
    async with asgi_client(config) as http:
        other = await opened(http, payer, DEPOSIT)
    blank = make_v2_config(chain, tmp_path, state_path=str(tmp_path / "blank.db"))
    async with asgi_client(blank) as http:
        response = await pay_head(http, payer.voucher(other, 100))
        assert response.status_code == 200, response.text
        unknown = VoucherPayload(
            channel_id="0x" + "33" * 32,
            cumulative_amount=100,
            signature=payer.sign("0x" + "33" * 32, 100),
            descriptor=other.descriptor.to_wire(),
        )
        assert_problem(await pay_head(http, unknown), "verification-failed", body=False)


async def test_a_402_for_a_known_channel_carries_its_verifiable_snapshot(
    chain: DevChain, tmp_path: Path, payer: V2Payer
) -> None:
    """The draft's Session Snapshot: in the challenge and the headers, provable by a client."""
    config = make_v2_config(chain, tmp_path)
    async with asgi_client(config) as http:
        channel = await opened(http, payer, DEPOSIT)
        challenge = await fresh_challenge(http)
        paid = await http.post(
            PATH, json=chat(8), headers=authorization(challenge, payer.voucher(channel, 300))
        )
        assert paid.status_code == 200, paid.text
        assert SNAPSHOT_HEADER not in paid.headers

        # An unpaid request naming the channel: the snapshot in the headers.
        hinted = await http.post(PATH, json=chat(8), headers={SESSION_HEADER: channel.channel_id})
        assert hinted.status_code == 402
        assert hinted.headers[SESSION_HEADER] == channel.channel_id
        raw = hinted.headers[SNAPSHOT_HEADER]
        assert "=" not in raw  # base64url without padding, as the draft says
        snapshot = parse_snapshot(raw)
        check_snapshot(
            snapshot, payer=payer.address, reserve=RESERVE_ADDRESS, chain_id=chain.chain_id
        )
        await verify_snapshot_on_chain(payer.backend, snapshot)
        assert (snapshot.deposit, snapshot.accepted_cumulative, snapshot.spent) == (
            DEPOSIT,
            300,
            200,
        )
        assert snapshot.required_cumulative == 200 + PRICE
        assert snapshot.descriptor == channel.descriptor
        # ...not in its challenge: a client keeping that challenge would hold a stale view.
        assert "sessionSnapshot" not in only_challenge(hinted).request_data["methodDetails"]

        # A refused credential for the channel (a close below spent): the challenge suggests
        # resuming it, with the server's current view.
        refused = await pay_head(http, payer.close(channel, 100))
        assert_problem(refused, "verification-failed", body=False)
        details = only_challenge(refused).request_data["methodDetails"]
        assert details["channelId"] == channel.channel_id
        suggested = SessionSnapshot.model_validate(details["sessionSnapshot"], context=WIRE)
        assert (
            suggested.model_dump() == parse_snapshot(refused.headers[SNAPSHOT_HEADER]).model_dump()
        )
        assert suggested.model_dump() == snapshot.model_dump()

        # A channel this server does not hold: a plain challenge.
        unknown = await http.post(PATH, json=chat(8), headers={SESSION_HEADER: "0x" + "44" * 32})
        assert unknown.status_code == 402
        assert SNAPSHOT_HEADER not in unknown.headers
        assert "sessionSnapshot" not in only_challenge(unknown).request_data["methodDetails"]


async def test_an_announced_operator_is_the_one_descriptors_must_name(
    chain: DevChain, tmp_path: Path, payer: V2Payer
) -> None:
    operator = chain.accounts[3].address.lower()
    config = make_v2_config(chain, tmp_path, operator=operator)
    async with asgi_client(config) as http:
        assert (await fresh_challenge(http)).request_data["methodDetails"]["operator"] == operator
        without = await payer.new_channel(DEPOSIT)  # operator zero: not what we announce
        assert_problem(
            await pay_head(http, payer.open_payload(without)), "verification-failed", body=False
        )
        channel = await payer.new_channel(DEPOSIT, operator=operator)
        assert (await pay_head(http, payer.open_payload(channel))).status_code == 200
        response = await pay_head(http, payer.close(channel, 0))  # the payee may still close
        assert response.status_code == 200, response.text
    assert await payer.reserve_state(channel.channel_id) == (0, 0)
