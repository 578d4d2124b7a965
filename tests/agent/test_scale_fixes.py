"""Fixes found by benchmarks/scale.py: same behaviour, less waiting, no false alarms."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mppagent.errors import PolicyViolation
from mppagent.session.channels import ChannelManager
from mppagent.session.gate import PaymentGate, Purpose
from mppagent.session.policy import SpendPolicy
from mppagent.session.store import (
    ChannelRecord,
    ChannelStatus,
    MemoryChannelStore,
    Scope,
    SqliteChannelStore,
)
from mppagent.tempo.chain import ChainClient, Wallet

SCOPE = Scope("0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20, 31337)


# -- store: leases and receipts commit without an fsync, vouchers with one ---------------


def open_record(channel_id: str = "0x" + "aa" * 32) -> ChannelRecord:
    return ChannelRecord(
        channel_id=channel_id,
        scope=SCOPE,
        payer="0x" + "44" * 20,
        authorized_signer="0x" + "00" * 20,
        salt="0x" + "55" * 32,
        deposit=1_000,
        status=ChannelStatus.OPEN,
    )


def traced(store: SqliteChannelStore) -> list[str]:
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    return statements


def synchronous(store: SqliteChannelStore) -> int:
    return int(store._db.execute("PRAGMA synchronous").fetchone()[0])


def test_only_leases_and_receipts_commit_without_waiting_for_the_disk(tmp_path: Path) -> None:
    store = SqliteChannelStore(tmp_path / "s.db")
    store.insert(open_record())
    statements = traced(store)
    leased = store.acquire(SCOPE, "a", ttl=60)
    assert leased is not None
    store.renew(leased.channel_id, "a", ttl=60)
    store.record_receipt(leased.channel_id, accepted=0, spent=0)
    store.release(leased.channel_id, "a")
    relaxed = [s for s in statements if s.startswith(("PRAGMA synchronous", "BEGIN", "COMMIT"))]
    cycle = ["PRAGMA synchronous=NORMAL", "BEGIN IMMEDIATE", "COMMIT", "PRAGMA synchronous=FULL"]
    assert relaxed == cycle * 4  # acquire, renew, record_receipt, release
    statements.clear()
    store.sign_voucher(leased.channel_id, 100, lambda amount: f"sig-{amount}")
    assert not any("NORMAL" in s for s in statements)
    assert synchronous(store) == 2  # FULL
    record = store.get(leased.channel_id)
    assert record is not None
    assert (record.lease_owner, record.signed) == (None, 100)


def test_synchronous_full_is_restored_after_a_failed_relaxed_write(tmp_path: Path) -> None:
    store = SqliteChannelStore(tmp_path / "s.db")
    with pytest.raises(Exception, match="not in the store"):
        store.record_receipt("0x" + "ff" * 32, accepted=1, spent=1)
    assert synchronous(store) == 2
    assert not store._db.in_transaction


def test_relaxed_writes_are_durable_for_the_next_reader(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteChannelStore(path)
    store.insert(open_record())
    leased = store.acquire(SCOPE, "a", ttl=60)
    assert leased is not None
    store.record_receipt(leased.channel_id, accepted=40, spent=30)
    other = sqlite3.connect(path)
    row = other.execute("SELECT accepted, spent, lease_owner FROM channels").fetchone()
    assert row == ("40", "30", "a")


# -- manager: the 24-hour spending scan only when a daily budget is set ----------------------


class CountingStore(MemoryChannelStore):
    scans = 0

    @staticmethod
    def _spent_since(db: sqlite3.Connection, since: float) -> int:
        CountingStore.scans += 1
        return MemoryChannelStore._spent_since(db, since)


@pytest.mark.parametrize("budget", [None, 150])
def test_daily_budget_scan_only_with_a_budget(budget: int | None) -> None:
    CountingStore.scans = 0
    store = CountingStore()
    store.insert(open_record())
    manager = ChannelManager(
        wallet=Wallet("0x" + "12" * 32),
        chain=ChainClient("http://127.0.0.1:9"),  # never contacted
        store=store,
        policy=SpendPolicy(budget_per_day=budget),
    )
    record = store.get("0x" + "aa" * 32)
    assert record is not None
    gate = PaymentGate(
        manager.policy, channel_id=record.channel_id, price=1, baseline=0, signed_at_start=0
    )

    def sign(amount: int) -> int:
        auth = gate.authorize(
            amount, purpose=Purpose.DEMAND, bound_units=amount, signed=0, deposit=10**9
        )
        return manager.voucher_payload(record, auth).cumulative_amount

    assert sign(100) == 100
    if budget is None:
        assert sign(200) == 200
        assert CountingStore.scans == 0
    else:
        with pytest.raises(PolicyViolation) as info:
            sign(200)
        assert info.value.rule == "budget_per_day"
        assert CountingStore.scans == 2


# -- store: lease liveness asked once per owner, same choice as before -----------------------


def test_acquire_asks_once_per_owner_and_still_skips_live_leases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mppagent.session.store as store_module

    calls: list[str] = []
    real = store_module.lease_is_live

    def counting(owner: str | None, until: float, now: float | None = None) -> bool:
        calls.append(str(owner))
        return real(owner, until, now)

    monkeypatch.setattr(store_module, "lease_is_live", counting)
    store = MemoryChannelStore()
    ids = ["0x" + f"{i:02x}" * 32 for i in range(1, 6)]
    for channel_id in ids:
        store.insert(open_record(channel_id))
    me = store_module.new_owner_id()
    dead = f"{store_module.socket.gethostname()}:999999999:dead"  # no such pid
    for channel_id in ids[:3]:
        store.update(channel_id, lease_owner=me, lease_until=1e12)
    store.update(ids[3], lease_owner=dead, lease_until=1e12)
    taken = store.acquire(SCOPE, "other", ttl=60)
    assert taken is not None
    assert taken.channel_id == ids[4]  # free (equal deposits: the highest id wins, as before)
    assert sorted(calls) == sorted([me, dead])  # once per owner, not once per row
    again = store.acquire(SCOPE, "other", ttl=60)
    assert again is not None
    assert again.channel_id == ids[3]  # a dead owner's lease binds nobody
    assert store.acquire(SCOPE, "other", ttl=60) is None  # the rest: this process's leases


# -- transport: few idle connections (httpcore scans idle x total on every request) -----------


async def test_default_pool_reuses_connections_and_keeps_few_idle() -> None:
    import asyncio

    import httpx

    from mppagent.transport.paying import KEEPALIVE, PaymentTransport

    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        for _ in range(100):  # keep-alive: up to 100 requests per connection
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            await asyncio.sleep(0.05)  # long enough for a burst to overlap
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = PaymentTransport(None)  # type: ignore[arg-type]  # only its inner pool is used
    try:
        async with httpx.AsyncClient(transport=transport.inner) as client:
            url = f"http://127.0.0.1:{port}/health"
            for _ in range(5):
                assert (await client.get(url)).text == "ok"
            assert connections == 1  # sequential requests share one kept-alive connection
            burst = await asyncio.gather(*(client.get(url) for _ in range(3 * KEEPALIVE)))
            assert all(r.status_code == 200 for r in burst)
            assert connections > KEEPALIVE
            assert (await client.get(url)).text == "ok"
            pool = transport.inner._pool  # type: ignore[attr-defined]
            assert len(pool.connections) <= KEEPALIVE
    finally:
        server.close()
        await server.wait_closed()
