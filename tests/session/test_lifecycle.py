"""Channel status: the transition table, and the store applying it atomically."""

from __future__ import annotations

import pytest

from mppagent.errors import StoreError
from mppagent.session.lifecycle import (
    ChannelStatus,
    Event,
    IllegalTransition,
    allowed_from,
    next_status,
)
from mppagent.session.store import (
    ChannelRecord,
    MemoryChannelStore,
    OperationKind,
    OperationState,
    Scope,
)

S = ChannelStatus
CHANNEL = "0x" + "aa" * 32


@pytest.mark.parametrize(
    ("current", "event", "target"),
    [
        (S.OPENING, Event.OPENED, S.OPEN),
        (S.FAILED, Event.OPENED, S.OPEN),
        (S.OPENING, Event.OPEN_FAILED, S.FAILED),
        (S.OPEN, Event.MISBEHAVED, S.SUSPECT),
        (S.OPEN, Event.FORGOTTEN, S.GONE),
        (S.OPEN, Event.CLOSE_STARTED, S.CLOSING),
        (S.CLOSING, Event.CLOSE_ABANDONED, S.OPEN),
        (S.SUSPECT, Event.CLOSE_REQUESTED, S.CLOSE_REQUESTED),
        (S.CLOSE_REQUESTED, Event.CLOSE_CANCELLED, S.OPEN),
        (S.GONE, Event.FINALIZED, S.CLOSED),
        (S.CLOSED, Event.FINALIZED, S.CLOSED),  # idempotent
    ],
)
def test_legal_transitions(current: ChannelStatus, event: Event, target: ChannelStatus) -> None:
    assert next_status(CHANNEL, current, event) == target


@pytest.mark.parametrize(
    ("current", "event"),
    [
        (S.CLOSED, Event.OPENED),  # a closed channel never reopens
        (S.SUSPECT, Event.CLOSE_STARTED),  # no cooperative close with a misbehaving server
        (S.SUSPECT, Event.CLOSE_ABANDONED),  # ... so suspicion cannot be laundered to open
        (S.CLOSED, Event.MISBEHAVED),
        (S.FAILED, Event.CLOSE_STARTED),
    ],
)
def test_illegal_transitions_raise(current: ChannelStatus, event: Event) -> None:
    with pytest.raises(IllegalTransition) as info:
        next_status(CHANNEL, current, event)
    assert isinstance(info.value, StoreError)
    assert event in str(info.value)


def test_every_event_has_a_source_and_closed_is_terminal() -> None:
    for event in Event:
        assert allowed_from(event), event
    leaving_closed = [e for e in Event if S.CLOSED in allowed_from(e)]
    assert leaving_closed == []


def record() -> ChannelRecord:
    scope = Scope("0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20, 31337)
    return ChannelRecord(
        channel_id=CHANNEL,
        scope=scope,
        payer="0x" + "44" * 20,
        authorized_signer="0x" + "00" * 20,
        salt="0x" + "55" * 32,
        deposit=1_000,
        status=S.OPENING,
    )


def test_store_refuses_status_through_update_and_applies_events() -> None:
    store = MemoryChannelStore()
    store.insert(record())
    with pytest.raises(ValueError, match="status"):
        store.update(CHANNEL, status=S.OPEN)
    assert store.apply(CHANNEL, Event.OPENED, deposit=2_000).status == S.OPEN
    with pytest.raises(IllegalTransition):
        store.apply(CHANNEL, Event.OPEN_FAILED)
    assert store.mark_suspect(CHANNEL, evidence="{}").status == S.SUSPECT


def test_an_operation_outcome_and_its_status_commit_together() -> None:
    store = MemoryChannelStore()
    store.insert(record())
    op = store.begin_operation(CHANNEL, OperationKind.OPEN, 1_000, payload="0x00", tx_hash="0x1")
    updated = store.finish_operation(
        op.op_id, OperationState.CONFIRMED, event=Event.OPENED, deposit=1_000
    )
    assert updated is not None
    assert updated.status == S.OPEN
    assert store.operations(CHANNEL)[0].state == OperationState.CONFIRMED
    # An illegal event rolls back the operation's outcome too: nothing half-done.
    op2 = store.begin_operation(CHANNEL, OperationKind.OPEN, 1, payload="0x00", tx_hash="0x2")
    with pytest.raises(IllegalTransition):
        store.finish_operation(op2.op_id, OperationState.FAILED, event=Event.OPEN_FAILED)
    assert store.operations(CHANNEL)[1].state == OperationState.PENDING


def test_running_vouchers_only_while_opening_or_open() -> None:
    store = MemoryChannelStore()
    store.insert(record())
    assert store.sign_voucher(CHANNEL, 10, lambda a: f"sig{a}").fresh
    store.apply(CHANNEL, Event.OPENED)
    store.apply(CHANNEL, Event.FORGOTTEN)
    with pytest.raises(StoreError, match="gone"):
        store.sign_voucher(CHANNEL, 20, lambda a: f"sig{a}")


def test_cross_process_lock_and_nonce_book() -> None:
    store = MemoryChannelStore()
    owner_a = "elsewhere:1:a"  # another host: live until it expires
    assert store.try_lock("funding:x:1", owner_a, ttl=60)
    assert not store.try_lock("funding:x:1", "elsewhere:2:b", ttl=60)
    store.unlock("funding:x:1", owner_a)
    assert store.try_lock("funding:x:1", "elsewhere:2:b", ttl=60)
    assert store.handed_out_nonce("0xAb", 7) == 0
    store.set_handed_out_nonce("0xAb", 7, 5)
    assert store.handed_out_nonce("0xab", 7) == 5
    store.set_handed_out_nonce("0xab", 7, None)
    assert store.handed_out_nonce("0xab", 7) == 0
