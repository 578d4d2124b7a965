"""The durable channel store: write-ahead, monotonic vouchers, leases, many processes."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from mppagent.errors import PolicyViolation, StoreError
from mppagent.session import store as store_module
from mppagent.session.store import (
    SCHEMA_VERSION,
    ChannelRecord,
    ChannelStatus,
    MemoryChannelStore,
    OperationKind,
    OperationState,
    Scope,
    SqliteChannelStore,
)

SCOPE = Scope("0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20, 31337)


def record(
    channel_id: str = "0x" + "aa" * 32,
    status: ChannelStatus = ChannelStatus.OPEN,
    deposit: int = 1_000,
) -> ChannelRecord:
    return ChannelRecord(
        channel_id=channel_id,
        scope=SCOPE,
        payer="0x" + "44" * 20,
        authorized_signer="0x" + "00" * 20,
        salt="0x" + "55" * 32,
        deposit=deposit,
        status=status,
    )


def test_file_is_private_and_schema_versioned(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "channels.db"
    store = SqliteChannelStore(path)
    store.insert(record())
    store.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteChannelStore(path)


def test_vouchers_never_go_down_and_are_recorded_before_use() -> None:
    store = MemoryChannelStore()
    store.insert(record())
    signed: list[int] = []

    def sign(amount: int) -> str:
        signed.append(amount)
        return f"0x{amount:0130x}"

    first = store.sign_voucher(record().channel_id, 100, sign)
    assert (first.cumulative_amount, first.fresh) == (100, True)
    lower = store.sign_voucher(record().channel_id, 50, sign)
    assert (lower.cumulative_amount, lower.signature, lower.fresh) == (100, first.signature, False)
    same = store.sign_voucher(record().channel_id, 100, sign)
    assert same.fresh is False
    store.sign_voucher(record().channel_id, 300, sign)
    assert signed == [100, 300]  # nothing was ever signed below what was already recorded
    vouchers = store.operations(kind=OperationKind.VOUCHER)
    assert [op.amount for op in vouchers] == [100, 300]
    assert store.get(record().channel_id).signed == 300  # type: ignore[union-attr]


def test_budget_check_vetoes_inside_the_transaction() -> None:
    store = MemoryChannelStore()
    store.insert(record())

    def veto(increment: int, last_day: int) -> None:
        if last_day + increment > 150:
            raise PolicyViolation("budget_per_day", "over")

    store.sign_voucher(record().channel_id, 100, lambda a: "0x01", check=veto)
    with pytest.raises(PolicyViolation):
        store.sign_voucher(record().channel_id, 200, lambda a: "0x02", check=veto)
    assert store.get(record().channel_id).signed == 100  # type: ignore[union-attr]
    assert store.spent_since(0) == 100


def test_suspect_channels_sign_nothing() -> None:
    store = MemoryChannelStore()
    store.insert(record())
    store.mark_suspect(record().channel_id, evidence="{}")
    with pytest.raises(StoreError, match="suspect"):
        store.sign_voucher(record().channel_id, 10, lambda a: "0x01")


def test_a_version_1_store_migrates_and_keeps_its_channels(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript(store_module._MIGRATIONS[1] + "; PRAGMA user_version = 1;")
    db.close()
    store = SqliteChannelStore(path)
    store.insert(record())
    migrated = store.get(record().channel_id)
    assert migrated is not None
    assert (migrated.protocol, migrated.unverified, migrated.descriptor) == ("v1", False, None)
    assert store.try_lock("x", "elsewhere:1:a", ttl=1)


def test_leases_and_pool_cap() -> None:
    store = MemoryChannelStore()
    store.insert(record("0x" + "01" * 32, deposit=500))
    store.insert(record("0x" + "02" * 32, deposit=900))
    first = store.acquire(SCOPE, "a", ttl=60)
    assert first is not None
    assert first.channel_id == "0x" + "02" * 32
    second = store.acquire(SCOPE, "b", ttl=60)
    assert second is not None
    assert second.channel_id == "0x" + "01" * 32
    assert store.acquire(SCOPE, "c", ttl=60) is None
    store.release(first.channel_id, "b")  # not b's lease: no effect
    assert store.acquire(SCOPE, "c", ttl=60) is None
    store.release(first.channel_id, "a")
    assert store.acquire(SCOPE, "c", ttl=60, min_remaining=901) is None
    assert store.acquire(SCOPE, "c", ttl=60) is not None
    assert (
        store.reserve(record("0x" + "03" * 32, ChannelStatus.OPENING), "d", ttl=60, cap=2) is False
    )
    assert (
        store.reserve(record("0x" + "03" * 32, ChannelStatus.OPENING), "d", ttl=60, cap=3) is True
    )


def test_expired_leases_can_be_taken() -> None:
    store = MemoryChannelStore()
    store.insert(record())
    assert store.acquire(SCOPE, "a", ttl=-1) is not None
    assert store.acquire(SCOPE, "b", ttl=60) is not None


def test_operations_are_write_ahead() -> None:
    store = MemoryChannelStore()
    store.insert(record())
    op = store.begin_operation(
        record().channel_id,
        OperationKind.OPEN,
        1000,
        payload="0xdead",
        tx_hash="0x" + "ff" * 32,
        nonce=3,
    )
    pending = store.operations(state=OperationState.PENDING)
    assert [(o.op_id, o.payload, o.nonce) for o in pending] == [(op.op_id, "0xdead", 3)]
    assert "0xdead" not in repr(pending[0])
    store.finish_operation(op.op_id, OperationState.CONFIRMED)
    assert store.operations(state=OperationState.PENDING) == []


def test_records_hide_keys_and_signatures() -> None:
    rec = record()
    text = repr(
        ChannelRecord(
            **{**rec.__dict__, "signer_key": "0x" + "99" * 32, "signed_signature": "0x" + "77" * 65}
        )
    )
    assert "99" * 32 not in text
    assert "77" * 65 not in text


def _sign_many(path: str, start: int, out: multiprocessing.Queue[list[int]]) -> None:
    store = SqliteChannelStore(path)
    seen = []
    for amount in range(start, start + 200, 2):
        voucher = store.sign_voucher("0x" + "aa" * 32, amount, lambda a: f"0x{a:0130x}")
        seen.append(voucher.cumulative_amount)
    store.close()
    out.put(seen)


def test_monotonic_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SqliteChannelStore(path).insert(record())
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[list[int]] = ctx.Queue()
    workers = [ctx.Process(target=_sign_many, args=(path, start, queue)) for start in (1, 2, 3)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    for seen in results:
        assert seen == sorted(seen)  # each process only ever saw the amount grow
    store = SqliteChannelStore(path)
    history = [op.amount for op in store.operations(kind=OperationKind.VOUCHER)]
    assert history == sorted(history)
    assert len(history) == len(set(history))
    assert store.get("0x" + "aa" * 32).signed == max(history)  # type: ignore[union-attr]


def test_acknowledged_delivery_survives_until_a_final_receipt() -> None:
    """A stream cut off before its final receipt leaves what our meter saw delivered."""
    store = MemoryChannelStore()
    store.insert(record())
    channel = record().channel_id
    store.sign_voucher(channel, 500, lambda a: f"s{a}", acknowledged=300)
    store.sign_voucher(channel, 600, lambda a: f"s{a}", acknowledged=250)  # never lowered
    assert store.get(channel).acknowledged == 300  # type: ignore[union-attr]
    store.record_receipt(channel, accepted=500, spent=200)  # mid-stream: kept
    assert store.get(channel).acknowledged == 300  # type: ignore[union-attr]
    store.record_receipt(channel, accepted=600, spent=280, final=True)  # books settled
    settled = store.get(channel)
    assert settled is not None
    assert (settled.spent, settled.acknowledged) == (280, 280)
