"""Interop, direction 1: the reference SDK's v2 session client pays a v2 server.

The Node driver (``node/sdk_v2_client.mjs``) is ``mppx``'s own session manager with
ordinary options; it streams ``requests`` paid completions over SSE, answering every
``payment-need-voucher`` event and topping up when the deposit runs out, then closes.
It reports what it sent and got on the wire; here the wire and the chain must agree
with what the server delivered: an open on the content request, at least five
need-voucher rounds, a top-up, receipts whose ``spent`` is the delivered events
times the price, and a close whose settlement on the reserve pays the payee exactly
``spent`` and refunds the payer the rest (token balances exact to the unit, fees
accounted from the fee manager's transfers), with the reserve's state deleted.

Servers are a parameter (:data:`SERVER_KINDS`, :data:`CASES`): our reference server
(:func:`our_server`, session v2) and the SDK's own v2 server, the baseline, each with
the payer paying fees and with the server sponsoring them. Only the SDK's server offers
the SDK's same-route ``HEAD`` bootstrap (a zero-amount charge proof), so only it runs
the resume test.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mppagent.devchain import DevAccount, DevChain
from mppagent.devserver import DevServerConfig, RunningServer
from mppagent.tempo.backend import ChannelTerms
from mppagent.tempo.chain import ChainClient
from mppagent.tempo.hexutil import keccak
from mppagent.tempo.v2.backend import V2Backend
from mppagent.tempo.v2.calls import (
    decode_channel_closed,
    decode_channel_opened,
    decode_channel_state,
    encode_get_channel_state,
)
from mppagent.tempo.v2.channel_id import compute_channel_id
from mppagent.tempo.v2.constants import RESERVE_ADDRESS
from mppagent.tempo.v2.descriptor import ChannelDescriptor
from tests.interop.driver import run_node_async
from tests.interop.sdk_server import sdk_v2_server
from tests.support import CHAT, chat_body, fresh_block, token_balances

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

REQUESTS = 2  # the second request reuses the channel (a voucher on the content request)
FEE_MANAGER = "0xfeec000000000000000000000000000000000000"  # Tempo's fee manager precompile
TRANSFER = "0x" + keccak(b"Transfer(address,address,uint256)").hex()


@dataclass(frozen=True)
class PaidServer:
    """A running v2 server as the test needs to know it.

    ``billed(events)`` is what the server charges for one request that delivered
    ``events`` SSE data events (``[DONE]`` excluded); ``client`` holds extra driver
    options (deposit settings) this server needs so that the deposit runs out.
    """

    url: str
    payee: str
    events: int
    billed: Callable[[int], int]
    sponsored: bool
    body: dict[str, Any] = field(
        default_factory=lambda: {
            "model": "mpp-fake-1",
            "stream": True,
            "messages": [{"role": "user", "content": "interop"}],
        }
    )
    client: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerSetup:
    """How a test wants its server: ``sponsored`` -- it pays the fees of opens and
    top-ups (``feePayer``); ``bootstrap`` -- it answers the same-route ``HEAD`` recovery
    with ``Payment-Session-Snapshot`` (only the resume test asks for it)."""

    sponsored: bool
    bootstrap: bool = False


ServerKind = Callable[[DevChain, ServerSetup, Path], AbstractAsyncContextManager[PaidServer]]

SDK_PRICE = 10  # base units per SSE data event ("0.00001" at 6 decimals)
SDK_EVENTS = 12


@asynccontextmanager
async def sdk_server(
    chain: DevChain, setup: ServerSetup, tmp_path: Path
) -> AsyncIterator[PaidServer]:
    """The SDK's own v2 server; it suggests a deposit of ten events, so the client opens
    with 10 events' worth and tops up by as much each time it runs out (twice here)."""
    del tmp_path
    payee = chain.accounts[1]
    with sdk_v2_server(
        chain,
        payee,
        amount="0.00001",
        suggested_deposit="0.0001",
        tokens=SDK_EVENTS,
        fee_payer=setup.sponsored,
        bootstrap=setup.bootstrap,
    ) as url:
        yield PaidServer(
            url=url,
            payee=payee.address,
            events=SDK_EVENTS,
            billed=lambda events: events * SDK_PRICE,
            sponsored=setup.sponsored,
        )


OUR_PRICE = 25  # base units per token
OUR_TOKENS = 40


@asynccontextmanager
async def our_server(
    chain: DevChain, setup: ServerSetup, tmp_path: Path
) -> AsyncIterator[PaidServer]:
    """Our reference server, session v2: it bills per token and suggests a deposit of 30
    tokens, so the client opens with that and tops up by as much as it runs out; its
    look-ahead of 5 tokens makes every request several need-voucher rounds."""
    payee = chain.accounts[1]
    config = DevServerConfig(
        rpc_url=chain.rpc_url,
        token=chain.token,
        payee_private_key=payee.private_key,
        session_protocol="v2",
        fee_token=chain.fee_token,
        sponsor_fees=setup.sponsored,
        suggested_deposit=30 * OUR_PRICE,
        lookahead_tokens=5,
        price_per_token=OUR_PRICE,
        state_path=str(tmp_path / "server.db"),
    )
    async with RunningServer(config) as server:
        yield PaidServer(
            url=server.url + CHAT,
            payee=payee.address,
            events=OUR_TOKENS + 2,  # the role-only first chunk and the finish chunk
            billed=lambda events: (events - 2) * OUR_PRICE,
            sponsored=setup.sponsored,
            body=chat_body(OUR_TOKENS),
        )


SERVER_KINDS: dict[str, ServerKind] = {"ours": our_server, "sdk": sdk_server}
CASES = [("ours", False), ("ours", True), ("sdk", False), ("sdk", True)]
RESUME_CASES = ["sdk"]  # kinds whose server offers the HEAD bootstrap


@pytest.fixture(
    params=CASES, ids=[f"{kind}-{'sponsored' if s else 'payer-fees'}" for kind, s in CASES]
)
async def paid_server(
    tempo_chain: DevChain, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[PaidServer]:
    kind, sponsored = request.param
    await fresh_block(tempo_chain)
    async with SERVER_KINDS[kind](tempo_chain, ServerSetup(sponsored), tmp_path) as server:
        yield server


@pytest.fixture(params=RESUME_CASES)
async def resumable_server(
    tempo_chain: DevChain, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[PaidServer]:
    await fresh_block(tempo_chain)
    setup = ServerSetup(sponsored=False, bootstrap=True)
    async with SERVER_KINDS[request.param](tempo_chain, setup, tmp_path) as server:
        yield server


async def test_sdk_v2_client_streams_tops_up_and_closes_to_an_exact_settlement(
    tempo_chain: DevChain, paid_server: PaidServer
) -> None:
    chain = tempo_chain
    payer: DevAccount = chain.accounts[2]
    books = await _Books.before(chain, payer, paid_server)
    report = await _run_client(chain, payer, paid_server, requests=REQUESTS)
    wire = report["wire"]
    channel_id = report["channelId"]

    # -- open: the open credential rides on the first content request, answered by the stream.
    opens = [w for w in wire if _action(w) == "open"]
    assert len(opens) == 1, _summary(report)
    assert opens[0]["hasBody"]
    assert opens[0]["status"] == 200
    assert opens[0]["contentType"].startswith("text/event-stream")
    assert opens[0]["credential"]["type"] == "transaction"
    assert wire[0]["status"] == 402
    assert wire[0]["credential"] is None

    # -- every request streamed all its events; its final receipt event bills exactly them.
    assert [r["messages"] for r in report["requests"]] == [paid_server.events] * REQUESTS
    per_request = paid_server.billed(paid_server.events)
    finals = [e["data"] for e in report["streamEvents"] if e["event"] == "payment-receipt"]
    assert [int(r["spent"]) for r in finals] == [(i + 1) * per_request for i in range(REQUESTS)]
    assert all(r["channelId"] == channel_id for r in finals)

    # -- need-voucher rounds, each answered by one voucher POST without a body.
    rounds = report["needVoucher"]
    assert len(rounds) >= 5
    answers = [w for w in wire if _action(w) == "voucher" and not w["hasBody"]]
    assert len(answers) == len(rounds)
    for need, answer in zip(rounds, answers, strict=True):
        assert int(answer["credential"]["cumulativeAmount"]) >= int(
            need["data"]["requiredCumulative"]
        )
        assert 200 <= answer["status"] < 300
        assert answer["receipt"] is not None
        assert answer["receipt"]["acceptedCumulative"] == answer["credential"]["cumulativeAmount"]
    assert report["topUps"], _summary(report)  # the deposit ran out at least once

    await books.check_settlement(report, spent=REQUESTS * per_request)


async def test_a_cold_sdk_client_resumes_the_channel_from_the_server_snapshot(
    tempo_chain: DevChain, resumable_server: PaidServer
) -> None:
    """A second, fresh manager (``bootstrap: true``, nothing stored) recovers the open
    channel through the same-route ``HEAD`` bootstrap and the server's
    ``Payment-Session-Snapshot``, keeps paying on it, and closes it."""
    chain = tempo_chain
    payer: DevAccount = chain.accounts[2]
    server = resumable_server
    books = await _Books.before(chain, payer, server)
    report = await _run_client(chain, payer, server, requests=1, resume=1)
    first, second = report["phases"]
    assert first["channelId"] == second["channelId"] == report["channelId"]
    per_request = server.billed(server.events)
    assert [r["messages"] for r in report["requests"]] == [server.events] * 2

    cold = [w for w in report["wire"] if w["phase"] == 1]
    # A HEAD without credential is challenged for a zero-amount proof of the payer...
    assert cold[0]["method"] == "HEAD"
    assert cold[0]["credential"] is None
    assert cold[0]["status"] == 402
    assert [(c["intent"], c["amount"]) for c in cold[0]["challenge"]] == [("charge", "0")]
    # ...the proof gets 204 with the channel and its snapshot, which the SDK verified.
    proof = cold[1]
    assert proof["method"] == "HEAD"
    assert proof["credential"]["intent"] == "charge"
    assert proof["status"] == 204
    assert proof["paymentSessionHeader"] == report["channelId"]
    snapshot = proof["snapshot"]
    assert snapshot["channelId"] == report["channelId"]
    assert snapshot["spent"] == str(per_request)
    assert snapshot["acceptedCumulative"] == first["cumulative"]
    assert ChannelDescriptor.from_wire(snapshot["descriptor"]) == ChannelDescriptor.from_wire(
        report["descriptor"]
    )
    # No second channel: the resumed content request carries a voucher, not an open.
    assert [_action(w) for w in report["wire"]].count("open") == 1
    resumed = next(w for w in cold if w["hasBody"] and w["credential"] is not None)
    assert _action(resumed) == "voucher"
    assert int(resumed["credential"]["cumulativeAmount"]) > int(first["cumulative"])
    assert resumed["status"] == 200

    await books.check_settlement(report, spent=2 * per_request)


async def _run_client(
    chain: DevChain, payer: DevAccount, server: PaidServer, *, requests: int, resume: int = 0
) -> dict[str, Any]:
    """Run the SDK's client against ``server``; its report, which must show no error."""
    report = await run_node_async(
        "sdk_v2_client.mjs",
        {
            "rpcUrl": chain.rpc_url,
            "chainId": chain.chain_id,
            "payerKey": payer.private_key,
            "url": server.url,
            "body": server.body,
            "requests": requests,
            "resume": resume,
            "close": True,
            **server.client,
        },
        within=60,
    )
    assert report["errors"] == [], _summary(report)
    signed = [int(v["cumulativeAmount"]) for v in report["vouchers"] if v["cumulativeAmount"]]
    assert signed == sorted(signed)  # cumulative, never going back
    assert all(v["hasSignature"] for v in report["vouchers"] if v["action"] != "topUp")
    descriptor = ChannelDescriptor.from_wire(report["descriptor"])
    assert descriptor.payer == payer.address.lower()
    assert descriptor.payee == server.payee.lower()
    channel_id = compute_channel_id(descriptor, RESERVE_ADDRESS, chain.chain_id)
    assert channel_id == report["channelId"].lower()
    return report


@dataclass
class _Books:
    """Balances before a run, to check the settlement after it to the unit."""

    chain: DevChain
    payer: DevAccount
    server: PaidServer
    first_block: int
    balances: list[int]

    @classmethod
    async def before(cls, chain: DevChain, payer: DevAccount, server: PaidServer) -> _Books:
        first_block = int(await chain.rpc("eth_blockNumber"), 16) + 1
        balances = await token_balances(chain, payer.address, server.payee)
        return cls(chain, payer, server, first_block, balances)

    async def check_settlement(self, report: dict[str, Any], *, spent: int) -> None:
        """Top-ups landed, the close was answered with the settlement, and the reserve
        paid the payee exactly ``spent``, refunded the rest and forgot the channel."""
        chain, payer, server = self.chain, self.payer, self.server
        wire = report["wire"]
        channel_id = report["channelId"]
        top_ups = report["topUps"]
        client = chain.client()
        try:
            for top_up in top_ups:
                assert not top_up["hasBody"]
                assert 200 <= top_up["status"] < 300
                assert top_up["receipt"] is not None
                # txHash is optional on a top-up's receipt (the SDK's server sends it);
                # the deposits below prove the top-ups landed either way.
                if tx := top_up["receipt"].get("txHash"):
                    mined = await client.request("eth_getTransactionReceipt", [tx])
                    assert int(mined["status"], 16) == 1

            # -- close: for the last voucher, answered with the settlement transaction.
            (close,) = [w for w in wire if _action(w) == "close"]
            assert not close["hasBody"]
            assert 200 <= close["status"] < 300
            final = report["close"]
            assert final is not None
            assert final["channelId"] == channel_id
            assert int(final["spent"]) == spent
            assert final["acceptedCumulative"] == close["credential"]["cumulativeAmount"]
            assert int(final["acceptedCumulative"]) >= spent
            assert report["afterClose"] == "closed"

            # -- on chain: opened with the SDK's descriptor, closed paying exactly spent.
            descriptor = ChannelDescriptor.from_wire(report["descriptor"])
            opened = await _opened(client, channel_id)
            assert opened.descriptor == descriptor
            deposits = opened.deposit + sum(
                int(t["credential"]["additionalDeposit"]) for t in top_ups
            )
            closing = await client.request("eth_getTransactionReceipt", [final["txHash"]])
            assert int(closing["status"], 16) == 1
            (closed,) = [
                c
                for c in (
                    decode_channel_closed(
                        [bytes.fromhex(t[2:]) for t in log["topics"]],
                        bytes.fromhex(log["data"][2:]),
                    )
                    for log in closing["logs"]
                    if log["address"].lower() == RESERVE_ADDRESS.lower()
                )
                if c is not None
            ]
            assert (closed.paid, closed.refunded) == (spent, deposits - spent)
            state = decode_channel_state(
                await client.call(RESERVE_ADDRESS, encode_get_channel_state(channel_id))
            )
            assert not state.exists  # the reserve deleted the channel
            read = await V2Backend(client).read_channel(_terms(chain, descriptor), channel_id)
            assert read.finalized
            assert read.settled == spent

            # -- balances, exact: token moved only as deposits, payout, refund and fees.
            after = await token_balances(chain, payer.address, server.payee)
            moved = await _transfers(client, chain.token, self.first_block)
            payer_fees = _fees(moved, payer.address)
            payee_fees = _fees(moved, server.payee)
            assert _sent(moved, payer.address, RESERVE_ADDRESS) == deposits
            assert _sent(moved, RESERVE_ADDRESS, server.payee) == spent
            assert _sent(moved, RESERVE_ADDRESS, payer.address) == deposits - spent
            assert self.balances[0] - after[0] == spent + payer_fees
            assert after[1] - self.balances[1] == spent - payee_fees
            if server.sponsored:  # the server paid for the open and the top-ups
                assert payer_fees == 0
            else:
                assert payer_fees > 0
        finally:
            await client.close()


def _action(entry: dict[str, Any]) -> str | None:
    credential = entry.get("credential") or {}
    action = credential.get("action")
    return None if action is None else str(action)


def _summary(report: dict[str, Any]) -> str:
    """The driver's wire log, one line a request, for a failing assertion."""
    lines = [f"errors: {report.get('errors')}"]
    for w in report.get("wire", []):
        credential = w.get("credential") or {}
        lines.append(
            f"{w['method']} body={w['hasBody']} {credential.get('action')} "
            f"{credential.get('cumulativeAmount') or credential.get('additionalDeposit') or ''}"
            f" -> {w.get('status')} receipt={json.dumps(w.get('receipt'))}"
        )
    return "\n".join(lines)


def _terms(chain: DevChain, descriptor: ChannelDescriptor) -> ChannelTerms:
    return ChannelTerms(
        payer=descriptor.payer,
        payee=descriptor.payee,
        token=descriptor.token,
        escrow=RESERVE_ADDRESS,
        chain_id=chain.chain_id,
        salt=descriptor.salt,
        authorized_signer=descriptor.authorized_signer,
        operator=descriptor.operator,
        descriptor=json.dumps(descriptor.to_wire()),
    )


async def _opened(client: ChainClient, channel_id: str) -> Any:
    """The reserve's ``ChannelOpened`` event for ``channel_id``."""
    logs = await client.request(
        "eth_getLogs",
        [{"address": RESERVE_ADDRESS, "fromBlock": "0x0", "toBlock": "latest"}],
    )
    found = [
        event
        for event in (
            decode_channel_opened(
                [bytes.fromhex(t[2:]) for t in log["topics"]], bytes.fromhex(log["data"][2:])
            )
            for log in logs
        )
        if event is not None and event.channel_id == channel_id.lower()
    ]
    assert len(found) == 1
    return found[0]


async def _transfers(
    client: ChainClient, token: str, first_block: int
) -> list[tuple[str, str, int]]:
    """Every ``token`` transfer since ``first_block``: (from, to, amount), lowercase."""
    logs = await client.request(
        "eth_getLogs",
        [
            {
                "address": token,
                "fromBlock": hex(first_block),
                "toBlock": "latest",
                "topics": [TRANSFER],
            }
        ],
    )
    return [
        ("0x" + log["topics"][1][-40:], "0x" + log["topics"][2][-40:], int(log["data"], 16))
        for log in logs
    ]


def _sent(moved: list[tuple[str, str, int]], sender: str, to: str) -> int:
    """All ``sender`` transferred ``to``."""
    return sum(a for s, t, a in moved if (s, t) == (sender.lower(), to.lower()))


def _fees(moved: list[tuple[str, str, int]], account: str) -> int:
    """Fees ``account`` paid: what it sent the fee manager, less what came back."""
    return _sent(moved, account, FEE_MANAGER) - _sent(moved, FEE_MANAGER, account)
