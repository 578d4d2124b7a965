"""The reference server on the Tempo devchain: ``0x76`` opens and top-ups, sponsored or not.

Credentials are built from :mod:`mppagent.tempo` directly (never the Agent),
as in ``test_payments.py``; the chain is anvil in Tempo mode (T4).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mppagent.devchain import DevChain
from mppagent.tempo import ZERO_ADDRESS, ChainClient, Escrow, compute_channel_id, random_salt
from mppagent.tempo.escrow import encode_open, encode_transfer
from mppagent.tempo.schemas import OpenPayload, TopUpPayload
from mppagent.tempo.tempo_chain import PATH_USD, OutgoingTempoTransaction, sign_calls
from mppagent.tempo.tempotx import Call

from .helpers import (
    Payer,
    asgi_client,
    assert_problem,
    fresh_challenge,
    header_receipt,
    make_config,
    pay_head,
    payer_at,
    stored,
)

DEPOSIT = 400_000


@pytest.fixture
def chain(tempo_chain: DevChain) -> DevChain:
    """Every test here runs on the Tempo devchain (pathUSD is the currency)."""
    return tempo_chain


@pytest.fixture
def payer(chain: DevChain, client: ChainClient) -> Payer:
    return payer_at(chain, client, 1)


def _new_channel(payer: Payer) -> tuple[str, str]:
    """A fresh salt and the id of the channel ``payer`` would open with it."""
    salt = random_salt()
    chain = payer.chain
    channel_id = compute_channel_id(
        payer.address, payer.payee, chain.token, salt, ZERO_ADDRESS, chain.escrow, chain.chain_id
    )
    return salt, channel_id


async def _open_tx(
    payer: Payer, deposit: int, *, sponsored: bool = False
) -> tuple[str, OutgoingTempoTransaction]:
    salt, channel_id = _new_channel(payer)
    tx = await payer.escrow.sign_open_tempo(
        payer.account.wallet(),
        payee=payer.payee,
        token=payer.chain.token,
        deposit=deposit,
        salt=salt,
        sponsored=sponsored,
    )
    return channel_id, tx


def _open_payload(payer: Payer, channel_id: str, raw: str) -> OpenPayload:
    return OpenPayload(
        channel_id=channel_id,
        transaction=raw,
        cumulative_amount=0,
        signature=payer.sign(channel_id, 0),
    )


async def test_tempo_open_and_top_up_are_one_transaction_each(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient
) -> None:
    """approve + open and approve + topUp each land as one 0x76 the payer pays fees for."""
    config = make_config(chain, tmp_path)
    escrow = Escrow(client, chain.escrow)
    before = await payer.balance()
    async with asgi_client(config) as http:
        channel_id, tx = await _open_tx(payer, DEPOSIT)
        assert tx.raw.startswith("0x76")
        response = await pay_head(http, _open_payload(payer, channel_id, tx.raw))
        assert response.status_code == 200, response.text
        assert header_receipt(response).tx_hash == tx.hash
        state = await escrow.get_channel(channel_id)
        assert (state.deposit, state.payer) == (DEPOSIT, payer.address)
        assert await client.get_receipt(tx.hash) is not None

        top = await payer.escrow.sign_top_up_tempo(
            payer.account.wallet(), channel_id, 50_000, token=chain.token
        )
        lie = TopUpPayload(channel_id=channel_id, transaction=top.raw, additional_deposit=60_000)
        assert_problem(await pay_head(http, lie), "verification-failed", body=False)
        topped = TopUpPayload(channel_id=channel_id, transaction=top.raw, additional_deposit=50_000)
        response = await pay_head(http, topped)
        assert response.status_code == 200, response.text
        assert header_receipt(response).tx_hash == top.hash
        assert (await escrow.get_channel(channel_id)).deposit == DEPOSIT + 50_000
        row = stored(config, channel_id)
        assert row is not None
        assert row["deposit"] == str(DEPOSIT + 50_000)
    spent = before - await payer.balance()
    # Deposits plus fees in pathUSD (the fee token): fees are real but small.
    assert DEPOSIT + 50_000 < spent < DEPOSIT + 50_000 + 100_000


async def test_smuggled_calls_and_unasked_sponsorship_are_refused_unsent(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient
) -> None:
    config = make_config(chain, tmp_path)
    escrow = Escrow(client, chain.escrow)
    before = await payer.balance()
    async with asgi_client(config) as http:
        # A transfer to the payer's friend riding along with the open.
        salt, channel_id = _new_channel(payer)
        calls = (
            Call(chain.token, encode_transfer(chain.accounts[3].address, 1)),
            Call(chain.escrow, encode_open(payer.payee, chain.token, DEPOSIT, salt, ZERO_ADDRESS)),
        )
        smuggler = await sign_calls(client, payer.account.wallet(), calls, gas=2_000_000)
        response = await pay_head(http, _open_payload(payer, channel_id, smuggler.raw))
        assert_problem(response, "verification-failed", body=False)
        assert not (await escrow.get_channel(channel_id)).exists

        # Asking for a fee payer from a server that does not sponsor.
        channel_id, sponsored = await _open_tx(payer, DEPOSIT, sponsored=True)
        assert sponsored.handover is not None
        response = await pay_head(http, _open_payload(payer, channel_id, sponsored.handover))
        assert_problem(response, "verification-failed", body=False)
        assert not (await escrow.get_channel(channel_id)).exists
    assert await payer.balance() == before  # nothing was broadcast


async def test_sponsoring_server_co_signs_and_pays_the_fee(
    chain: DevChain, tmp_path: Path, payer: Payer, client: ChainClient
) -> None:
    """``feePayer: true``: the payer signs the 0x78 hand-over, the server pays the fee."""
    config = make_config(chain, tmp_path, sponsor_fees=True)
    escrow = Escrow(client, chain.escrow)
    payee = chain.accounts[0].address
    before, payee_before = await payer.balance(), await payer.token.balance_of(payee)
    async with asgi_client(config) as http:
        challenge = await fresh_challenge(http)
        details = challenge.request_data["methodDetails"]
        assert details["feePayer"] is True
        assert details["feeToken"] == PATH_USD
        channel_id, tx = await _open_tx(payer, DEPOSIT, sponsored=True)
        assert tx.handover is not None
        assert tx.handover.startswith("0x78")
        response = await pay_head(http, _open_payload(payer, channel_id, tx.handover), challenge)
        assert response.status_code == 200, response.text
        mined = header_receipt(response).tx_hash
        assert mined is not None
        assert mined != tx.hash
        assert (await escrow.get_channel(channel_id)).deposit == DEPOSIT
        assert await client.get_receipt(mined) is not None
    assert before - await payer.balance() == DEPOSIT  # exactly the deposit: no fee
    assert await payer.token.balance_of(payee) < payee_before  # the server paid it
