"""Rehydrating the store from a v2 session snapshot: only what signature and chain prove.

A real channel is opened on the Tempo devchain's local reserve; snapshots of it
(true ones and lies) are handed to an agent whose store lost the channel, or
holds a stale copy of it. A lie changes nothing; a true snapshot teaches the
store the voucher it signed, what the server accepted and spent, and the
chain's deposit -- never a server number above our own signature.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mppagent import Agent, ChannelStatus, PaymentEvent, SpendPolicy
from mppagent.devchain import DevAccount, DevChain
from mppagent.protocol import Challenge
from mppagent.session.policy import Offer
from mppagent.session.pool import scope_of
from mppagent.session.store import ChannelRecord, MemoryChannelStore, OperationKind
from mppagent.tempo.tempo_chain import send_tempo
from mppagent.tempo.v2 import RESERVE_ADDRESS, ChannelDescriptor
from mppagent.tempo.v2.backend import V2Backend
from mppagent.tempo.v2.snapshot import InvalidSnapshot, SessionSnapshot, snapshot_from_wire
from mppagent.tempo.voucher import VoucherSigner
from tests.support import fresh_block, v2_terms

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


@pytest.fixture
async def opened(tempo_chain: DevChain) -> AsyncIterator[Opened]:
    payer, payee, stranger = tempo_chain.accounts[:3]
    await fresh_block(tempo_chain)
    client = tempo_chain.client()
    try:
        backend = V2Backend(client)
        new = await backend.new_channel(
            payer.wallet(), v2_terms(tempo_chain, payer, payee), DEPOSIT
        )
        assert new.plan is not None
        assert new.descriptor is not None
        await send_tempo(client, new.plan.main)
        descriptor = ChannelDescriptor.from_wire(json.loads(new.descriptor))
        yield Opened(tempo_chain, payer, payee, stranger, new.channel_id, descriptor, backend)
    finally:
        await client.close()


@pytest.fixture
async def agent(opened: Opened) -> AsyncIterator[Agent]:
    """An agent of the channel's payer whose store lost everything."""
    agent = Agent(
        private_key=opened.payer.private_key,
        rpc_url=opened.chain.rpc_url,
        policy=_policy(),
        store=MemoryChannelStore(),
    )
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
    stale = ChannelRecord(
        channel_id=opened.channel_id,
        scope=scope_of(opened.offer()),
        payer=opened.payer.address.lower(),
        authorized_signer=opened.descriptor.authorized_signer,
        salt=opened.descriptor.salt,
        deposit=DEPOSIT - 1,
        status=ChannelStatus.OPEN,
        signed=400,
        signed_signature=opened.voucher(400)["signature"],
        accepted=400,
        spent=800,  # more than the snapshot says: kept
        protocol="v2",
        descriptor=json.dumps(opened.descriptor.to_wire(), sort_keys=True),
    )
    agent.store.insert(stale)
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
    stranger_agent = Agent(
        private_key=opened.stranger.private_key,
        rpc_url=opened.chain.rpc_url,
        policy=_policy(),
        store=MemoryChannelStore(),
    )
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
    record = agent.store.insert(
        ChannelRecord(
            channel_id=opened.channel_id,
            scope=scope_of(opened.offer()),
            payer=opened.payer.address.lower(),
            authorized_signer=opened.descriptor.authorized_signer,
            salt=opened.descriptor.salt,
            deposit=DEPOSIT,
            status=ChannelStatus.OPEN,
            signed=400,
            signed_signature=opened.voucher(400)["signature"],
            protocol="v2",
            descriptor=json.dumps(opened.descriptor.to_wire(), sort_keys=True),
        )
    )
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
    client = tempo_chain.client()
    try:
        terms = v2_terms(
            tempo_chain, opened.payer, opened.payee, authorized_signer=delegate.address.lower()
        )
        new = await opened.backend.new_channel(opened.payer.wallet(), terms, DEPOSIT)
        assert new.plan is not None
        assert new.descriptor is not None
        await send_tempo(client, new.plan.main)
    finally:
        await client.close()
    delegated = Opened(
        tempo_chain,
        opened.payer,
        opened.payee,
        opened.stranger,
        new.channel_id,
        ChannelDescriptor.from_wire(json.loads(new.descriptor)),
        opened.backend,
    )
    true = delegated.wire(highestVoucher=delegated.voucher(1_000, delegate.private_key_hex))
    with pytest.raises(InvalidSnapshot, match="delegate key"):
        await agent.manager.rehydrate(snapshot_from_wire(true), delegated.offer(), URL)
    assert agent.store.channels() == []
