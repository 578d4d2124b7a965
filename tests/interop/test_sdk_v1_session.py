"""The reference SDK's v1 session client (mppx 0.11.0) pays our server on the Tempo devchain.

The Node driver (``node/sdk_v1_session.mjs``) lets the SDK open a channel its own
automatic way (one ``0x76``), answers at least five need-voucher rounds on an SSE
stream, interrupts the stream, and closes for the last ``acceptedCumulative`` it saw
(above ``spent``). Here the chain must show the settlement the server's books and the
delivered tokens imply.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mppagent.devchain import DevChain
from mppagent.devserver import RunningServer
from mppagent.tempo.chain import ChainClient
from mppagent.tempo.escrow import Escrow
from mppagent.tempo.hexutil import keccak
from tests.interop.driver import run_node_async
from tests.support import CHAT, ServerFactory

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PRICE = 25
LOOKAHEAD = 20


@pytest.fixture
def chain(tempo_chain: DevChain) -> DevChain:
    return tempo_chain


async def test_sdk_session_client_pays_our_server_to_an_on_chain_settlement(
    chain: DevChain, start_server: ServerFactory, tmp_path: Path
) -> None:
    server: RunningServer = await start_server(
        lookahead_tokens=LOOKAHEAD,
        price_per_token=PRICE,
        fee_token=chain.fee_token,
        tokens_per_second=200,  # the driver hangs up before the paid window is streamed
    )
    payer = chain.accounts[2]
    result = await run_node_async(
        "sdk_v1_session.mjs",
        {
            "url": server.url + CHAT,
            "rpcUrl": chain.rpc_url,
            "chainId": chain.chain_id,
            "privateKey": payer.private_key,
            "escrow": chain.escrow,
            "deposit": str(1_000_000),
            "tokens": 400,
            "interruptAfterRounds": 6,
        },
    )
    assert result["rounds"] >= 5
    assert result["delivered"] >= 5 * LOOKAHEAD
    assert result["receipts"] >= result["rounds"] + 2

    channel_id = result["channelId"]
    books = (await server.app.state.devserver.payee()).state.get(channel_id)
    assert books is not None
    spent = books.spent
    # The server billed what it sent: at least what the driver read before it hung up.
    assert result["delivered"] * PRICE <= spent <= int(result["lastAccepted"])
    assert int(result["lastAccepted"]) > spent  # the SDK closed above spent

    client = chain.client()
    try:
        escrow = Escrow(client, chain.escrow)
        closed = await escrow.closed_event(channel_id)
        assert closed is not None
        # v1's close pays the redeemed voucher (here the SDK's, above spent); the server
        # sends the excess back at once, so the payee keeps exactly spent.
        settled = int(closed.values["settledToPayee"])
        assert settled == int(result["lastAccepted"])
        assert books.refund_owed == 0
        refunded = await _transferred(client, chain.token, chain.accounts[0].address, payer.address)
        assert refunded == settled - spent
        assert not (await escrow.get_channel(channel_id)).exists  # finalized and wiped
        open_tx = await client.request("eth_getTransactionByHash", [result["openTx"]])
        assert int(open_tx["type"], 16) == 0x76  # approve + open, one Tempo transaction
    finally:
        await client.close()


TRANSFER = "0x" + keccak(b"Transfer(address,address,uint256)").hex()


async def _transferred(client: ChainClient, token: str, sender: str, to: str) -> int:
    """All ``token`` transferred from ``sender`` to ``to``, from the chain's logs."""
    logs = await client.request(
        "eth_getLogs",
        [
            {
                "address": token,
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [TRANSFER, _topic(sender), _topic(to)],
            }
        ],
    )
    return sum(int(entry["data"], 16) for entry in logs)


def _topic(address: str) -> str:
    return "0x" + "00" * 12 + address.lower()[2:]
