"""Durable per-channel accounting of the reference server (SQLite).

The session draft requires the server to persist ``acceptedCumulative``
before relying on it and ``spent`` before delivering what it pays for. This
store does both, one committed transaction per change, so a server restart
loses nothing. Amounts are uint128 and do not fit SQLite's int64, so they are
stored as decimal text and handled as Python ``int``.

The server process is the only writer; rows are cached in memory and written
through on every change.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from mppagent.tempo.hexutil import ZERO_ADDRESS

__all__ = ["IdempotentResponse", "ServerChannel", "ServerState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    channel_id TEXT PRIMARY KEY,
    payer TEXT NOT NULL,
    authorized_signer TEXT NOT NULL,
    deposit TEXT NOT NULL,
    settled TEXT NOT NULL,
    accepted TEXT NOT NULL,
    accepted_signature TEXT,
    spent TEXT NOT NULL,
    finalized INTEGER NOT NULL DEFAULT 0,
    close_tx TEXT,
    refund_owed TEXT NOT NULL DEFAULT '0',
    descriptor TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    challenge_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    receipt TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (challenge_id, idempotency_key)
);
"""


@dataclass(frozen=True)
class ServerChannel:
    """What the server knows of one channel; amounts in base units."""

    channel_id: str
    payer: str
    authorized_signer: str
    deposit: int
    settled: int
    accepted: int
    accepted_signature: str | None
    spent: int
    finalized: bool = False
    close_tx: str | None = None
    # What the close paid the payee beyond ``spent`` and the payee still has to send back
    # (v1's close pays the redeemed voucher's amount; see SessionPayee._close).
    refund_owed: int = 0
    # v2: the channel's descriptor (JSON), without which the reserve cannot be asked to
    # close it -- kept so a restarted server can still collect. ``None`` for v1 channels.
    descriptor: str | None = None

    @property
    def expected_signer(self) -> str:
        """The address vouchers must recover to."""
        return self.payer if self.authorized_signer == ZERO_ADDRESS else self.authorized_signer

    @property
    def available(self) -> int:
        """Paid for but not yet delivered: ``accepted - spent``."""
        return self.accepted - self.spent

    def __repr__(self) -> str:
        return (
            f"ServerChannel({self.channel_id[:10]}..., deposit={self.deposit}, "
            f"accepted={self.accepted}, spent={self.spent}, finalized={self.finalized})"
        )


@dataclass(frozen=True)
class IdempotentResponse:
    """A completed paid response, replayed for a retry with the same Idempotency-Key."""

    status: int
    content_type: str
    body: bytes
    receipt: str | None


class ServerState:
    """SQLite-backed channel accounting with a write-through cache."""

    def __init__(self, path: str | Path, *, durability: Literal["full", "normal"] = "full") -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(channels)")}
        if "refund_owed" not in columns:  # a database written before the column existed
            self._db.execute(
                "ALTER TABLE channels ADD COLUMN refund_owed TEXT NOT NULL DEFAULT '0'"
            )
        if "descriptor" not in columns:  # written before session protocol v2
            self._db.execute("ALTER TABLE channels ADD COLUMN descriptor TEXT")
        self._cache: dict[str, ServerChannel] = {}

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def get(self, channel_id: str) -> ServerChannel | None:
        """The channel's row, or ``None`` if this server never saw it."""
        cached = self._cache.get(channel_id)
        if cached is not None:
            return cached
        with self._lock:
            row = self._db.execute(
                "SELECT channel_id, payer, authorized_signer, deposit, settled, accepted,"
                " accepted_signature, spent, finalized, close_tx, refund_owed, descriptor"
                " FROM channels WHERE channel_id = ?",
                (channel_id,),
            ).fetchone()
        if row is None:
            return None
        channel = ServerChannel(
            channel_id=row[0],
            payer=row[1],
            authorized_signer=row[2],
            deposit=int(row[3]),
            settled=int(row[4]),
            accepted=int(row[5]),
            accepted_signature=row[6],
            spent=int(row[7]),
            finalized=bool(row[8]),
            close_tx=row[9],
            refund_owed=int(row[10]),
            descriptor=row[11],
        )
        self._cache[channel_id] = channel
        return channel

    def put(self, channel: ServerChannel) -> ServerChannel:
        """Persist ``channel`` (one committed transaction) and cache it."""
        with self._lock:
            self._db.execute(
                "INSERT INTO channels (channel_id, payer, authorized_signer, deposit, settled,"
                " accepted, accepted_signature, spent, finalized, close_tx, refund_owed,"
                " descriptor, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(channel_id) DO UPDATE SET payer=excluded.payer,"
                " authorized_signer=excluded.authorized_signer, deposit=excluded.deposit,"
                " settled=excluded.settled, accepted=excluded.accepted,"
                " accepted_signature=excluded.accepted_signature, spent=excluded.spent,"
                " finalized=excluded.finalized, close_tx=excluded.close_tx,"
                " refund_owed=excluded.refund_owed, descriptor=excluded.descriptor,"
                " updated_at=excluded.updated_at",
                (
                    channel.channel_id,
                    channel.payer,
                    channel.authorized_signer,
                    str(channel.deposit),
                    str(channel.settled),
                    str(channel.accepted),
                    channel.accepted_signature,
                    str(channel.spent),
                    int(channel.finalized),
                    channel.close_tx,
                    str(channel.refund_owed),
                    channel.descriptor,
                    time.time(),
                ),
            )
        self._cache[channel.channel_id] = channel
        return channel

    def owed_refunds(self) -> list[ServerChannel]:
        """Finalized channels whose payer is still owed an over-captured close amount."""
        with self._lock:
            rows = self._db.execute(
                "SELECT channel_id FROM channels WHERE finalized = 1 AND refund_owed != '0'"
            ).fetchall()
        return [channel for (cid,) in rows if (channel := self.get(cid)) is not None]

    def charge(self, channel_id: str, amount: int) -> ServerChannel:
        """Add ``amount`` to ``spent`` -- durably, before the service is delivered."""
        channel = self.get(channel_id)
        if channel is None:
            raise KeyError(channel_id)
        if channel.spent + amount > channel.accepted:
            raise ValueError("charge exceeds the accepted voucher")
        return self.put(replace(channel, spent=channel.spent + amount))

    def cached_response(self, challenge_id: str, key: str) -> IdempotentResponse | None:
        """A previous response for ``(challenge_id, Idempotency-Key)``, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT status, content_type, body, receipt FROM idempotency"
                " WHERE challenge_id = ? AND idempotency_key = ?",
                (challenge_id, key),
            ).fetchone()
        if row is None:
            return None
        return IdempotentResponse(int(row[0]), str(row[1]), bytes(row[2]), row[3])

    def remember_response(self, challenge_id: str, key: str, response: IdempotentResponse) -> None:
        """Store a completed response so a retry replays it without charging again."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO idempotency (challenge_id, idempotency_key, status,"
                " content_type, body, receipt, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    challenge_id,
                    key,
                    response.status,
                    response.content_type,
                    response.body,
                    response.receipt,
                    time.time(),
                ),
            )
