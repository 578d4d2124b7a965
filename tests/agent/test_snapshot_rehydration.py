"""Rehydrating the store from a v2 session snapshot: only what signature and chain prove.

A real channel is opened on the Tempo devchain's local reserve; snapshots of it
(true ones and lies) are handed to an agent whose store lost the channel, or
holds a stale copy of it. A lie changes nothing; a true snapshot teaches the
store the voucher it signed, what the server accepted and spent, and the
chain's deposit -- never a server number above our own signature.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mppagent import Agent, ChannelStatus, PaymentEvent, SpendPolicy
from mppagent.devchain import DevAccount, DevChain
from mppagent.errors import ChainError
from mppagent.protocol import Challenge
from mppagent.session.policy import Offer
from mppagent.session.pool import scope_of
from mppagent.session.store import (
    ChannelRecord,
    MemoryChannelStore,
    OperationKind,
    OperationState,
)
from mppagent.tempo.tempo_chain import send_tempo, sponsor
from mppagent.tempo.v2 import RESERVE_ADDRESS, ChannelDescriptor
from mppagent.tempo.v2.backend import V2Backend
from mppagent.tempo.v2.snapshot import InvalidSnapshot, SessionSnapshot, snapshot_from_wire
from mppagent.tempo.voucher import VoucherSigner
from tests.support import fresh_block, open_v2_channel

DEPOSIT = 50_000
PRICE = 10
URL = "http://provider.test/v1/chat/completions"


@dataclass
class Opened:
    """A v2 channel open on chain, and what it takes to describe it."""

    chain: DevChain
    payer: DevAccount
    payee: DevAccount
    stranger: DevAccount
    channel_id: str
    descriptor: ChannelDescriptor
    backend: V2Backend

    def voucher(self, amount: int, key: str | None = None) -> dict[str, str]:
        sig = self.backend.sign_voucher(
            VoucherSigner(key or self.payer.private_key),
            self.channel_id,
            amount,
            RESERVE_ADDRESS,
            self.chain.chain_id,
        )
        return {"channelId": self.channel_id, "cumulativeAmount": str(amount), "signature": sig}

    def wire(self, **changes: Any) -> dict[str, Any]:
        """A true snapshot: 1,000 signed and accepted, 700 spent (as a field dict)."""
        true: dict[str, Any] = {
            "channelId": self.channel_id,
            "chainId": self.chain.chain_id,
            "escrow": RESERVE_ADDRESS,
            "descriptor": self.descriptor.to_wire(),
            "deposit": str(DEPOSIT),
            "settled": "0",
            "spent": "700",
            "acceptedCumulative": "1000",
            "requiredCumulative": "1010",
            "highestVoucher": self.voucher(1_000),
            "units": 70,
        }
        return {**true, **changes}

    def snapshot(self, **changes: Any) -> SessionSnapshot:
        return snapshot_from_wire(self.wire(**changes))

    def record(self, signed: int, **fields: Any) -> ChannelRecord:
        """Our own (stale) record of the channel, ``signed`` with a real voucher."""
        return ChannelRecord(
            **{
                "channel_id": self.channel_id,
                "scope": scope_of(self.offer()),
                "payer": self.payer.address.lower(),
                "authorized_signer": self.descriptor.authorized_signer,
                "salt": self.descriptor.salt,
                "deposit": DEPOSIT,
                "status": ChannelStatus.OPEN,
                "signed": signed,
                "signed_signature": self.voucher(signed)["signature"],
                "protocol": "v2",
                "descriptor": json.dumps(self.descriptor.to_wire(), sort_keys=True),
                **fields,
            }
        )

    def offer(self, **request_changes: Any) -> Offer:
        request: dict[str, Any] = {
            "amount": str(PRICE),
            "unitType": "llm_token",
            "suggestedDeposit": str(DEPOSIT),
            "currency": self.chain.token,
            "recipient": self.payee.address,
            "methodDetails": {
                "escrowContract": RESERVE_ADDRESS,
                "chainId": self.chain.chain_id,
                "sessionProtocol": "v2",
            },
            **request_changes,
        }
        challenge = Challenge.issue(
            realm="provider.test",
            method="tempo",
            intent="session",
            request=request,
            expires=datetime.now(UTC) + timedelta(minutes=5),
            secret=b"k" * 32,
        )
        return _policy().check_offer(challenge, datetime.now(UTC))


def _policy() -> SpendPolicy:
    return SpendPolicy(max_price={"llm_token": PRICE})


def _empty_agent(chain: DevChain, account: DevAccount) -> Agent:
    """An agent of ``account`` whose store holds nothing (it was lost)."""
    return Agent(
        private_key=account.private_key,
        rpc_url=chain.rpc_url,
        policy=_policy(),
        store=MemoryChannelStore(),
    )


@pytest.fixture
async def opened(tempo_chain: DevChain) -> AsyncIterator[Opened]:
    payer, payee, stranger = tempo_chain.accounts[:3]
    await fresh_block(tempo_chain)
    channel_id, descriptor = await open_v2_channel(tempo_chain, payer, payee, DEPOSIT)
    client = tempo_chain.client()
    try:
        yield Opened(tempo_chain, payer, payee, stranger, channel_id, descriptor, V2Backend(client))
    finally:
        await client.close()


@pytest.fixture
async def agent(opened: Opened) -> AsyncIterator[Agent]:
    """An agent of the channel's payer whose store lost everything."""
    agent = _empty_agent(opened.chain, opened.payer)
    try:
        yield agent
    finally:
        await agent.aclose()


async def test_a_lost_channel_is_adopted_from_a_true_snapshot(opened: Opened, agent: Agent) -> None:
    record = await agent.manager.rehydrate(opened.snapshot(), opened.offer(), URL)
    assert record is not None
    assert record == agent.store.get(opened.channel_id)
    assert record.status == ChannelStatus.OPEN
    assert record.protocol == "v2"
    assert record.scope.payee == opened.payee.address.lower()
    assert (record.deposit, record.settled) == (DEPOSIT, 0)  # the chain's
    # Our own signature is a fact; the server's requiredCumulative (1010) is not.
    assert (record.signed, record.accepted, record.spent) == (1_000, 1_000, 700)
    assert record.signed_signature == opened.voucher(1_000)["signature"]
    assert json.loads(record.descriptor or "{}") == opened.descriptor.to_wire()
    (op,) = agent.store.operations(opened.channel_id, kind=OperationKind.VOUCHER)
    assert op.amount == 1_000
    assert op.detail is not None
    assert "snapshot" in op.detail
    # A repeat teaches nothing (and needs no chain read).
    assert await agent.manager.rehydrate(opened.snapshot(), opened.offer(), URL) is None
    # The adopted channel can be paid on and closed: its next voucher verifies on chain.
    state = await agent.manager.reconcile(opened.channel_id)
    assert state.status == ChannelStatus.OPEN
    assert state.deposit == DEPOSIT


async def test_a_stale_record_learns_and_never_loses_what_it_knew(
    opened: Opened, agent: Agent
) -> None:
    # Spent 800: more than the snapshot says, so kept.
    agent.store.insert(opened.record(400, deposit=DEPOSIT - 1, accepted=400, spent=800))
    record = await agent.manager.rehydrate(opened.snapshot(), opened.offer(), URL)
    assert record is not None
    assert (record.signed, record.accepted, record.spent, record.deposit) == (
        1_000,
        1_000,
        800,
        DEPOSIT,
    )
    # A snapshot of an older state lowers nothing.
    older = opened.snapshot(
        acceptedCumulative="500", spent="500", highestVoucher=opened.voucher(500)
    )
    assert await agent.manager.rehydrate(older, opened.offer(), URL) is None
    assert agent.store.get(opened.channel_id) == record


LIES: list[tuple[str, dict[str, Any], str]] = [
    ("forged signature", {"highestVoucher": "stranger"}, "voucher"),
    ("voucher for more than signed", {"highestVoucher": "inflated"}, "voucher"),
    ("no voucher at all", {"highestVoucher": None}, "no voucher"),
    ("deposit the chain does not hold", {"deposit": str(DEPOSIT + 1)}, "on chain"),
    ("settlement the chain does not hold", {"settled": "100"}, "on chain"),
    ("foreign channel id", {"channelId": "0x" + "ab" * 32}, "channel id"),
    ("another chain", {"chainId": 4217}, "another chain"),
]


@pytest.mark.parametrize(("lie", "change", "reason"), LIES, ids=[lie for lie, _, _ in LIES])
async def test_a_lie_is_refused_and_changes_nothing(
    opened: Opened, agent: Agent, lie: str, change: dict[str, Any], reason: str
) -> None:
    del lie
    voucher = change.get("highestVoucher", "keep")
    if voucher == "stranger":
        change = {"highestVoucher": opened.voucher(1_000, opened.stranger.private_key)}
    elif voucher == "inflated":
        change = {"highestVoucher": {**opened.voucher(1_000), "cumulativeAmount": "2000"}}
    wire = opened.wire(**change)
    if wire.get("highestVoucher") is None:
        wire.pop("highestVoucher")
    with pytest.raises(InvalidSnapshot, match=reason):
        await agent.manager.rehydrate(snapshot_from_wire(wire), opened.offer(), URL)
    assert agent.store.channels() == []


async def test_a_channel_of_another_payer_or_payee_is_refused(opened: Opened, agent: Agent) -> None:
    stranger_agent = _empty_agent(opened.chain, opened.stranger)
    try:
        with pytest.raises(InvalidSnapshot, match="another payer"):
            await stranger_agent.manager.rehydrate(opened.snapshot(), opened.offer(), URL)
        assert stranger_agent.store.channels() == []
    finally:
        await stranger_agent.aclose()
    # Our channel, but met while paying someone else: not this scope's to adopt.
    other = opened.offer(recipient=opened.stranger.address)
    with pytest.raises(InvalidSnapshot, match="another payee"):
        await agent.manager.rehydrate(opened.snapshot(), other, URL)
    assert agent.store.channels() == []


async def test_a_stale_record_is_untouched_by_a_lie(opened: Opened, agent: Agent) -> None:
    record = agent.store.insert(opened.record(400))
    forged = opened.snapshot(highestVoucher=opened.voucher(5_000, opened.stranger.private_key))
    with pytest.raises(InvalidSnapshot):
        await agent.manager.rehydrate(forged, opened.offer(), URL)
    assert agent.store.get(opened.channel_id) == record


async def test_the_transport_refuses_a_bad_snapshot_and_carries_on(
    opened: Opened, agent: Agent
) -> None:
    """A challenge's snapshot that does not prove itself: logged, reported, store unchanged."""
    events: list[PaymentEvent] = []
    agent.transport.observer = events.append
    forged = opened.wire(highestVoucher=opened.voucher(1_000, opened.stranger.private_key))
    details = {
        "escrowContract": RESERVE_ADDRESS,
        "chainId": opened.chain.chain_id,
        "sessionProtocol": "v2",
        "sessionSnapshot": forged,
    }
    await agent.transport.hints.learn(opened.offer(methodDetails=details), URL, None)
    assert [e.kind for e in events] == ["snapshot_refused"]
    assert "voucher" in events[0].detail["reason"]
    assert agent.store.channels() == []

    # The same path with the true snapshot, in the header's form, adopts the channel.
    header = _header(opened.wire())
    await agent.transport.hints.learn(opened.offer(), URL, header)
    assert [e.kind for e in events] == ["snapshot_refused", "snapshot"]
    assert agent.store.get(opened.channel_id) is not None
    assert agent.transport.hints.hint_for(URL) == opened.channel_id


def _header(wire: dict[str, Any]) -> str:
    """The draft's header form: base64url without padding."""
    return base64.urlsafe_b64encode(json.dumps(wire).encode()).decode().rstrip("=")


async def test_a_channel_signed_for_by_a_lost_delegate_key_is_not_adopted(
    tempo_chain: DevChain, agent: Agent, opened: Opened
) -> None:
    """The snapshot is true, but the agent no longer holds the key its vouchers need."""
    delegate = VoucherSigner.generate()
    channel_id, descriptor = await open_v2_channel(
        tempo_chain,
        opened.payer,
        opened.payee,
        DEPOSIT,
        authorized_signer=delegate.address.lower(),
    )
    delegated = replace(opened, channel_id=channel_id, descriptor=descriptor)
    true = delegated.wire(highestVoucher=delegated.voucher(1_000, delegate.private_key_hex))
    with pytest.raises(InvalidSnapshot, match="delegate key"):
        await agent.manager.rehydrate(snapshot_from_wire(true), delegated.offer(), URL)
    assert agent.store.channels() == []


# -- funding a channel the store holds, as the challenge asks -------------------------------


async def test_a_sponsored_top_up_is_confirmed_by_its_effect_or_fails_at_expiry(
    opened: Opened, agent: Agent
) -> None:
    """Sponsored bytes are the server's to broadcast: the agent waits for their effect."""
    record = agent.store.insert(opened.record(0))
    details = {
        "escrowContract": RESERVE_ADDRESS,
        "chainId": opened.chain.chain_id,
        "sessionProtocol": "v2",
        "feePayer": True,
    }
    sponsored = opened.offer(methodDetails=details).request.method_details

    # Nobody co-signs: at expiry the top-up fails, nothing is re-signed, the deposit stays.
    payload, op = await agent.manager.top_up_payload(record, 1_000, sponsored)
    assert payload.transaction.startswith("0x78")  # the hand-over form, for the server
    waiting = asyncio.create_task(agent.manager.confirm_top_up(record, op))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await opened.chain.rpc("evm_increaseTime", [120])
    await opened.chain.rpc("evm_mine")
    with pytest.raises(ChainError, match="never broadcast"):
        await asyncio.wait_for(waiting, 10)
    (failed,) = agent.store.operations(opened.channel_id, kind=OperationKind.TOP_UP)
    assert failed.state == OperationState.FAILED
    assert agent.store.get(opened.channel_id) == record

    # Co-signed and broadcast while the agent waits: confirmed by the deposit it added.
    await fresh_block(opened.chain)
    payload, op = await agent.manager.top_up_payload(record, 1_000, sponsored)
    waiting = asyncio.create_task(agent.manager.confirm_top_up(record, op))
    await asyncio.sleep(0.3)
    client = opened.chain.client()
    try:
        fee_payer = opened.payee.wallet()
        await send_tempo(client, sponsor(payload.transaction, fee_payer, opened.chain.token))
    finally:
        await client.close()
    updated = await asyncio.wait_for(waiting, 10)
    assert updated.deposit == DEPOSIT + 1_000
    assert agent.store.operations(opened.channel_id, kind=OperationKind.TOP_UP)[-1].state == (
        OperationState.CONFIRMED
    )
