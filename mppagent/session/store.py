"""Durable channel state: the agent's record of what it has *signed*.

The store is the source of truth for signatures. Three rules hold across
tasks and across processes sharing one database file:

1. **Write-ahead.** A voucher or signed transaction is committed here before
   it leaves the process (:meth:`SqliteChannelStore.sign_voucher`,
   :meth:`SqliteChannelStore.begin_operation`). After a crash, an operation of
   unknown outcome is resent with the *same bytes*, never re-signed.
2. **Monotonic vouchers.** ``sign_voucher`` signs inside an ``IMMEDIATE``
   transaction and never signs a cumulative amount at or below one already
   recorded: asking for less returns the recorded voucher unchanged.
3. **One stream per channel.** Channels are leased (:meth:`acquire`) to one
   owner at a time; a lease expires if its owner dies.

SQLite in WAL mode with ``synchronous=FULL``: a committed voucher survives a
power cut. The default file lives in the platform's user data directory with
mode 0600 -- it can hold delegated signer keys. Amounts are uint128, stored as
decimal text (SQLite integers are 64-bit).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, Self

import platformdirs

from mppagent.errors import StoreError
from mppagent.session.lifecycle import ChannelStatus, Event, next_status

__all__ = [
    "ChannelRecord",
    "ChannelStatus",
    "ChannelStore",
    "Event",
    "MemoryChannelStore",
    "Operation",
    "OperationKind",
    "OperationState",
    "Scope",
    "SignedVoucher",
    "SqliteChannelStore",
    "lease_is_live",
    "new_owner_id",
]

SCHEMA_VERSION = 2

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE channels (
        channel_id TEXT PRIMARY KEY,
        scope TEXT NOT NULL,
        payer TEXT NOT NULL,
        authorized_signer TEXT NOT NULL,
        signer_key TEXT,
        salt TEXT NOT NULL,
        deposit TEXT NOT NULL,
        signed TEXT NOT NULL,
        signed_signature TEXT,
        accepted TEXT NOT NULL,
        spent TEXT NOT NULL,
        settled TEXT NOT NULL,
        status TEXT NOT NULL,
        url TEXT,
        realm TEXT,
        unit_type TEXT,
        unit_price TEXT,
        evidence TEXT,
        lease_owner TEXT,
        lease_until REAL NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX channels_scope ON channels (scope, status);
    CREATE TABLE operations (
        op_id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount TEXT NOT NULL,
        payload TEXT,
        tx_hash TEXT,
        nonce INTEGER,
        state TEXT NOT NULL,
        detail TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX operations_channel ON operations (channel_id, kind);
    CREATE INDEX operations_state ON operations (state);
    CREATE TABLE spending (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        channel_id TEXT NOT NULL,
        amount TEXT NOT NULL
    );
    CREATE INDEX spending_at ON spending (at);
    """,
    2: """
    ALTER TABLE channels ADD COLUMN unverified INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE channels ADD COLUMN protocol TEXT NOT NULL DEFAULT 'v1';
    ALTER TABLE channels ADD COLUMN descriptor TEXT;
    ALTER TABLE channels ADD COLUMN acknowledged TEXT NOT NULL DEFAULT '0';
    CREATE TABLE locks (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until REAL NOT NULL
    );
    CREATE TABLE nonces (
        address TEXT NOT NULL,
        chain_id INTEGER NOT NULL,
        next INTEGER NOT NULL,
        PRIMARY KEY (address, chain_id)
    );
    """,
}


class OperationKind(StrEnum):
    """What a write-ahead operation records."""

    APPROVE = "approve"
    OPEN = "open"
    TOP_UP = "topUp"
    VOUCHER = "voucher"
    CLOSE = "close"
    REQUEST_CLOSE = "requestClose"
    WITHDRAW = "withdraw"


class OperationState(StrEnum):
    """Outcome of a write-ahead operation."""

    PENDING = "pending"  # recorded; may or may not have left the process
    CONFIRMED = "confirmed"  # known to have taken effect
    FAILED = "failed"  # known not to have taken effect


@dataclass(frozen=True)
class Scope:
    """Where a channel can be used: payee, token, escrow and chain.

    ``key`` is ``payee:token:escrow:chainId`` in lowercase, the key other
    MPP tools use in their channel databases.
    """

    payee: str
    token: str
    escrow: str
    chain_id: int

    @property
    def key(self) -> str:
        """Stable string form."""
        return f"{self.payee.lower()}:{self.token.lower()}:{self.escrow.lower()}:{self.chain_id}"

    @classmethod
    def from_key(cls, key: str) -> Scope:
        """Parse :attr:`key` back."""
        payee, token, escrow, chain_id = key.split(":")
        return cls(payee, token, escrow, int(chain_id))


@dataclass(frozen=True)
class ChannelRecord:
    """One channel as recorded by the agent. Amounts are integer base units.

    ``signed`` is the highest cumulative voucher signed for it; ``accepted``
    and ``spent`` come from the latest verified receipt; ``deposit`` and
    ``settled`` from the chain.
    """

    channel_id: str
    scope: Scope
    payer: str
    authorized_signer: str
    salt: str
    deposit: int
    status: ChannelStatus
    signer_key: str | None = field(default=None, repr=False)
    signed: int = 0
    signed_signature: str | None = field(default=None, repr=False)
    accepted: int = 0
    spent: int = 0
    settled: int = 0
    url: str | None = None
    realm: str | None = None
    unit_type: str | None = None
    unit_price: int | None = None
    evidence: str | None = None
    lease_owner: str | None = None
    lease_until: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0
    unverified: bool = False
    protocol: str = "v1"
    descriptor: str | None = None
    acknowledged: int = 0

    @property
    def remaining(self) -> int:
        """Deposit not yet committed by a signed voucher."""
        return self.deposit - self.signed


@dataclass(frozen=True)
class Operation:
    """A write-ahead record of something signed for the chain or the server."""

    op_id: int
    channel_id: str
    kind: OperationKind
    amount: int
    state: OperationState
    payload: str | None = field(default=None, repr=False)
    tx_hash: str | None = None
    nonce: int | None = None
    detail: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class SignedVoucher:
    """A voucher as recorded: cumulative amount and signature (hidden from repr)."""

    channel_id: str
    cumulative_amount: int
    signature: str = field(repr=False)
    fresh: bool = True  # False when the store returned an already-recorded voucher


class ChannelStore(Protocol):
    """What the session layer needs from durable storage."""

    def get(self, channel_id: str) -> ChannelRecord | None: ...
    def channels(
        self, scope: Scope | None = None, statuses: Sequence[ChannelStatus] | None = None
    ) -> list[ChannelRecord]: ...
    def insert(self, record: ChannelRecord) -> ChannelRecord: ...
    def update(self, channel_id: str, **changes: Any) -> ChannelRecord: ...
    def sign_voucher(
        self,
        channel_id: str,
        amount: int,
        sign: Callable[[int], str],
        *,
        check: Callable[[int, int], None] | None = None,
        acknowledged: int = 0,
    ) -> SignedVoucher: ...
    def record_receipt(
        self, channel_id: str, *, accepted: int, spent: int, final: bool = False
    ) -> ChannelRecord: ...
    def learn_voucher(
        self,
        channel_id: str,
        amount: int,
        signature: str,
        *,
        accepted: int,
        spent: int,
        adopt: ChannelRecord | None = None,
    ) -> ChannelRecord: ...
    def begin_operation(
        self,
        channel_id: str,
        kind: OperationKind,
        amount: int,
        *,
        payload: str | None = None,
        tx_hash: str | None = None,
        nonce: int | None = None,
    ) -> Operation: ...
    def finish_operation(
        self,
        op_id: int,
        state: OperationState,
        detail: str | None = None,
        *,
        event: Event | None = None,
        **changes: Any,
    ) -> ChannelRecord | None: ...
    def operations(
        self,
        channel_id: str | None = None,
        *,
        kind: OperationKind | None = None,
        state: OperationState | None = None,
    ) -> list[Operation]: ...
    def acquire(
        self, scope: Scope, owner: str, *, ttl: float, min_remaining: int = 0
    ) -> ChannelRecord | None: ...
    def reserve(self, record: ChannelRecord, owner: str, *, ttl: float, cap: int) -> bool: ...
    def renew(self, channel_id: str, owner: str, *, ttl: float) -> None: ...
    def release(self, channel_id: str, owner: str) -> None: ...
    def spent_since(self, since: float) -> int: ...
    def apply(self, channel_id: str, event: Event, **changes: Any) -> ChannelRecord: ...
    def mark_suspect(self, channel_id: str, *, evidence: str) -> ChannelRecord: ...
    def mark_unverified(self, channel_id: str) -> ChannelRecord: ...
    def try_lock(self, name: str, owner: str, *, ttl: float) -> bool: ...
    def unlock(self, name: str, owner: str) -> None: ...
    def handed_out_nonce(self, address: str, chain_id: int) -> int: ...
    def set_handed_out_nonce(self, address: str, chain_id: int, next_nonce: int | None) -> None: ...
    def close(self) -> None: ...


_CHANNEL_COLUMNS = (
    "channel_id, scope, payer, authorized_signer, signer_key, salt, deposit, signed,"
    " signed_signature, accepted, spent, settled, status, url, realm, unit_type, unit_price,"
    " evidence, lease_owner, lease_until, created_at, updated_at, unverified, protocol,"
    " descriptor, acknowledged"
)
_INT_FIELDS = {"deposit", "signed", "accepted", "spent", "settled", "unit_price", "acknowledged"}
_UPDATABLE = {
    "authorized_signer",
    "signer_key",
    "deposit",
    "signed",
    "signed_signature",
    "accepted",
    "spent",
    "settled",
    "url",
    "realm",
    "unit_type",
    "unit_price",
    "evidence",
    "lease_owner",
    "lease_until",
    "unverified",
    "descriptor",
}


_VOUCHER_STATUSES = (ChannelStatus.OPENING, ChannelStatus.OPEN)
"""Statuses in which a running voucher may be signed (the close voucher is separate)."""


class SqliteChannelStore:
    """The default :class:`ChannelStore`: one SQLite file, safe for several processes."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        try:
            if self.path != ":memory:":
                _prepare_private_file(Path(self.path))
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=busy_timeout, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open channel store {self.path}: {exc}") from None

    @classmethod
    def default_path(cls) -> Path:
        """``<user data dir>/mppagent/channels.db`` (``$MPPAGENT_STORE`` overrides)."""
        override = os.environ.get("MPPAGENT_STORE")
        if override:
            return Path(override)
        return Path(platformdirs.user_data_dir("mppagent")) / "channels.db"

    @classmethod
    def default(cls) -> Self:
        """The store at :meth:`default_path`."""
        return cls(cls.default_path())

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    # -- schema ------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._transaction():
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"channel store {self.path} has schema version {version}; this mppagent "
                    f"understands up to {SCHEMA_VERSION}. Upgrade mppagent."
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _split_sql(_MIGRATIONS[target]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {target}")

    @contextlib.contextmanager
    def _transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: takes the write lock up front, so read-then-write is safe.

        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL``):
        only for what a power cut may take back without harm -- leases (void after a
        reboot anyway) and receipts (the server's word, which it repeats). In WAL mode
        such a commit cannot corrupt anything and is made durable by the next durable
        one, so nothing signed is ever affected: vouchers and operations stay ``FULL``.
        """
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise StoreError(f"channel store busy or unavailable: {exc}") from None
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._db.execute("ROLLBACK")
                    raise StoreError(f"channel store commit failed: {exc}") from None
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    # -- channels ------------------------------------------------------------------

    def get(self, channel_id: str) -> ChannelRecord | None:
        """The record of ``channel_id`` or ``None``."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE channel_id = ?",  # noqa: S608
                (channel_id.lower(),),
            ).fetchone()
        return _channel(row) if row else None

    def channels(
        self, scope: Scope | None = None, statuses: Sequence[ChannelStatus] | None = None
    ) -> list[ChannelRecord]:
        """Channels, newest first, optionally filtered by scope and status."""
        query = f"SELECT {_CHANNEL_COLUMNS} FROM channels"  # noqa: S608
        clauses: list[str] = []
        params: list[object] = []
        if scope is not None:
            clauses.append("scope = ?")
            params.append(scope.key)
        if statuses:
            clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(str(s) for s in statuses)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY created_at DESC"
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [_channel(r) for r in rows]

    def insert(self, record: ChannelRecord) -> ChannelRecord:
        """Add a new channel record."""
        with self._transaction() as db:
            self._insert(db, record)
        return self.get(record.channel_id) or record

    def _insert(self, db: sqlite3.Connection, record: ChannelRecord) -> None:
        now = time.time()
        values = _row(replace(record, created_at=record.created_at or now, updated_at=now))
        try:
            db.execute(
                f"INSERT INTO channels ({_CHANNEL_COLUMNS}) VALUES"  # noqa: S608
                f" ({', '.join('?' for _ in values)})",
                values,
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"channel {record.channel_id} is already recorded") from None

    def update(self, channel_id: str, **changes: Any) -> ChannelRecord:
        """Change fields of a record (amount fields as ``int``); never its status.

        Status changes go through :meth:`apply` (or an operation's outcome in
        :meth:`finish_operation`), which consult the transition table.
        """
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        with self._transaction() as db:
            self._update(db, channel_id, changes)
        return self._require(channel_id)

    def apply(self, channel_id: str, event: Event, **changes: Any) -> ChannelRecord:
        """Apply a lifecycle ``event`` (and field ``changes``) in one transaction."""
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        with self._transaction() as db:
            self._apply(db, channel_id, event, changes)
        return self._require(channel_id)

    def mark_suspect(self, channel_id: str, *, evidence: str) -> ChannelRecord:
        """Stop paying on a channel whose server misbehaved, keeping the evidence."""
        return self.apply(channel_id, Event.MISBEHAVED, evidence=evidence)

    def mark_unverified(self, channel_id: str) -> ChannelRecord:
        """A paid response came without any receipt: no pay-ahead until one verifies."""
        return self.update(channel_id, unverified=True)

    def _apply(
        self, db: sqlite3.Connection, channel_id: str, event: Event, changes: dict[str, Any]
    ) -> None:
        row = db.execute(
            "SELECT status FROM channels WHERE channel_id = ?", (channel_id.lower(),)
        ).fetchone()
        if row is None:
            raise StoreError(f"channel {channel_id} is not in the store")
        status = next_status(channel_id, ChannelStatus(row[0]), event)
        self._update(db, channel_id, {**changes, "status": status})

    def _require(self, channel_id: str) -> ChannelRecord:
        record = self.get(channel_id)
        if record is None:
            raise StoreError(f"channel {channel_id} is not in the store")
        return record

    def _update(self, db: sqlite3.Connection, channel_id: str, changes: dict[str, Any]) -> None:
        if not changes:
            return
        assignments = ", ".join(f"{name} = ?" for name in changes)
        params = [_db_value(name, value) for name, value in changes.items()]
        cursor = db.execute(
            f"UPDATE channels SET {assignments}, updated_at = ? WHERE channel_id = ?",  # noqa: S608
            [*params, time.time(), channel_id.lower()],
        )
        if cursor.rowcount != 1:
            raise StoreError(f"channel {channel_id} is not in the store")

    # -- vouchers ----------------------------------------------------------------------

    def sign_voucher(
        self,
        channel_id: str,
        amount: int,
        sign: Callable[[int], str],
        *,
        check: Callable[[int, int], None] | None = None,
        acknowledged: int = 0,
    ) -> SignedVoucher:
        """Record and return a voucher for ``amount``, signing only if it is new.

        ``acknowledged`` is what the agent's own meter says was delivered on the
        channel so far (as a cumulative amount); it is kept (never lowered) in the
        same transaction, so a process killed mid-stream leaves the next request a
        baseline for the goods it received but never saw a receipt for.

        Inside one IMMEDIATE transaction: if ``amount`` is at or below the
        highest recorded voucher, that voucher is returned unsigned-anew
        (``fresh=False``); otherwise ``check(increment, spent_last_24h)`` may
        veto (raise), then ``sign(amount)`` runs and the voucher is committed
        before this method returns -- before anything can send it.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT signed, signed_signature, status, acknowledged FROM channels"
                " WHERE channel_id = ?",
                (channel_id.lower(),),
            ).fetchone()
            if row is None:
                raise StoreError(f"channel {channel_id} is not in the store")
            signed, signature, status = int(row[0]), row[1], row[2]
            if acknowledged > int(row[3]):
                self._update(db, channel_id, {"acknowledged": acknowledged})
            if status not in _VOUCHER_STATUSES:
                raise StoreError(f"channel {channel_id} is {status}; no more vouchers")
            if amount <= signed and signature is not None:
                return SignedVoucher(channel_id, signed, signature, fresh=False)
            increment = amount - signed
            if check is not None:
                check(increment, self._spent_since(db, time.time() - 86_400))
            signature = sign(amount)
            self._record_voucher(db, channel_id, amount, signature, increment)
        return SignedVoucher(channel_id, amount, signature, fresh=True)

    @staticmethod
    def _record_voucher(
        db: sqlite3.Connection,
        channel_id: str,
        amount: int,
        signature: str,
        increment: int,
        detail: str | None = None,
    ) -> None:
        """Make ``amount`` the channel's highest voucher: record, history, daily spending."""
        now = time.time()
        db.execute(
            "UPDATE channels SET signed = ?, signed_signature = ?, updated_at = ?"
            " WHERE channel_id = ?",
            (str(amount), signature, now, channel_id.lower()),
        )
        db.execute(
            "INSERT INTO operations (channel_id, kind, amount, payload, state, detail,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                channel_id.lower(),
                str(OperationKind.VOUCHER),
                str(amount),
                signature,
                str(OperationState.CONFIRMED),
                detail,
                now,
                now,
            ),
        )
        if increment > 0:
            db.execute(
                "INSERT INTO spending (at, channel_id, amount) VALUES (?, ?, ?)",
                (now, channel_id.lower(), str(increment)),
            )

    def record_receipt(
        self, channel_id: str, *, accepted: int, spent: int, final: bool = False
    ) -> ChannelRecord:
        """Remember the latest verified receipt (amounts only ever grow; clears ``unverified``).

        A ``final`` receipt settles the request's books: what the agent had
        acknowledged as delivered gives way to the verified ``spent``.
        """
        with self._transaction(durable=False) as db:
            row = db.execute(
                "SELECT accepted, spent FROM channels WHERE channel_id = ?",
                (channel_id.lower(),),
            ).fetchone()
            if row is None:
                raise StoreError(f"channel {channel_id} is not in the store")
            self._update(
                db,
                channel_id,
                {
                    "accepted": max(int(row[0]), accepted),
                    "spent": max(int(row[1]), spent),
                    "unverified": False,
                    **({"acknowledged": max(int(row[1]), spent)} if final else {}),
                },
            )
        return self._require(channel_id)

    def learn_voucher(
        self,
        channel_id: str,
        amount: int,
        signature: str,
        *,
        accepted: int,
        spent: int,
        adopt: ChannelRecord | None = None,
    ) -> ChannelRecord:
        """Remember a voucher of ours that was proven elsewhere (a verified session snapshot).

        The caller has checked that ``signature`` is this channel's signer's for
        ``amount`` -- a fact, signed by us in a store we lost. In one transaction
        ``signed`` rises to ``amount`` (never falls: a higher voucher recorded
        meanwhile is kept), the voucher joins the history and the daily spending
        (its date is unknown; counting it now errs on the safe side), and
        ``accepted``/``spent`` rise like a receipt's. ``adopt``: the record of a
        channel the store did not know, inserted in the same transaction, so it
        never exists without its voucher. Nothing is signed here.
        """
        with self._transaction() as db:
            if adopt is not None:
                self._insert(db, adopt)
            row = db.execute(
                "SELECT signed, accepted, spent FROM channels WHERE channel_id = ?",
                (channel_id.lower(),),
            ).fetchone()
            if row is None:
                raise StoreError(f"channel {channel_id} is not in the store")
            signed = int(row[0])
            changes: dict[str, Any] = {
                "accepted": max(int(row[1]), accepted),
                "spent": max(int(row[2]), spent),
            }
            if amount > signed:
                self._record_voucher(
                    db,
                    channel_id,
                    amount,
                    signature,
                    amount - signed,
                    "learned from a verified session snapshot",
                )
            self._update(db, channel_id, changes)
        return self._require(channel_id)

    # -- operations ------------------------------------------------------------------------

    def begin_operation(
        self,
        channel_id: str,
        kind: OperationKind,
        amount: int,
        *,
        payload: str | None = None,
        tx_hash: str | None = None,
        nonce: int | None = None,
    ) -> Operation:
        """Record an operation *before* it is sent (state ``pending``)."""
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO operations (channel_id, kind, amount, payload, tx_hash, nonce, state,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    channel_id.lower(),
                    str(kind),
                    str(amount),
                    payload,
                    tx_hash,
                    nonce,
                    str(OperationState.PENDING),
                    now,
                    now,
                ),
            )
            op_id = int(cursor.lastrowid or 0)
        return Operation(
            op_id,
            channel_id.lower(),
            kind,
            amount,
            OperationState.PENDING,
            payload,
            tx_hash,
            nonce,
            None,
            now,
        )

    def finish_operation(
        self,
        op_id: int,
        state: OperationState,
        detail: str | None = None,
        *,
        event: Event | None = None,
        **changes: Any,
    ) -> ChannelRecord | None:
        """Mark an operation confirmed or failed, with what it implies for its channel.

        The channel's ``event`` and field ``changes`` commit in the *same*
        transaction as the outcome: a crash can never leave an open confirmed
        while its channel still reads ``opening``. Returns the channel record
        when anything about the channel changed.
        """
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        with self._transaction() as db:
            row = db.execute(
                "SELECT channel_id FROM operations WHERE op_id = ?", (op_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"operation {op_id} is not in the store")
            db.execute(
                "UPDATE operations SET state = ?, detail = ?, updated_at = ? WHERE op_id = ?",
                (str(state), detail, time.time(), op_id),
            )
            if event is not None:
                self._apply(db, row[0], event, changes)
            elif changes:
                self._update(db, row[0], changes)
        return self.get(row[0]) if event is not None or changes else None

    def operations(
        self,
        channel_id: str | None = None,
        *,
        kind: OperationKind | None = None,
        state: OperationState | None = None,
    ) -> list[Operation]:
        """Operations in the order they were recorded."""
        query = (
            "SELECT op_id, channel_id, kind, amount, state, payload, tx_hash, nonce, detail,"
            " created_at FROM operations"
        )
        clauses: list[str] = []
        params: list[object] = []
        if channel_id is not None:
            clauses.append("channel_id = ?")
            params.append(channel_id.lower())
        if kind is not None:
            clauses.append("kind = ?")
            params.append(str(kind))
        if state is not None:
            clauses.append("state = ?")
            params.append(str(state))
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY op_id"
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [
            Operation(
                op_id=int(r[0]),
                channel_id=r[1],
                kind=OperationKind(r[2]),
                amount=int(r[3]),
                state=OperationState(r[4]),
                payload=r[5],
                tx_hash=r[6],
                nonce=r[7],
                detail=r[8],
                created_at=float(r[9]),
            )
            for r in rows
        ]

    # -- leases ------------------------------------------------------------------------------

    def acquire(
        self, scope: Scope, owner: str, *, ttl: float, min_remaining: int = 0
    ) -> ChannelRecord | None:
        """Lease an idle open channel of ``scope`` with ``min_remaining`` deposit still unsigned.

        Prefers the channel with the most remaining deposit. Returns ``None``
        when every open channel is leased or too drained.
        """
        now = time.time()
        with self._transaction(durable=False) as db:
            rows = db.execute(
                "SELECT channel_id, deposit, signed, lease_owner, lease_until FROM channels"
                " WHERE scope = ? AND status = ?",
                (scope.key, str(ChannelStatus.OPEN)),
            ).fetchall()
            # Whether an unexpired lease binds depends only on its owner (host and pid):
            # ask once per owner, not once per row -- with hundreds of channels leased
            # by this very process, that was a syscall per row on every stream start.
            owners: dict[str, bool] = {}

            def leased(holder: str | None, until: float) -> bool:
                if holder is None or until < now:
                    return False
                if holder not in owners:
                    owners[holder] = lease_is_live(holder, until, now)
                return owners[holder]

            candidates = [
                (int(deposit) - int(signed), cid)
                for cid, deposit, signed, holder, until in rows
                if int(deposit) - int(signed) >= min_remaining and not leased(holder, float(until))
            ]
            if not candidates:
                return None
            _, channel_id = max(candidates)
            self._update(db, channel_id, {"lease_owner": owner, "lease_until": now + ttl})
        return self.get(channel_id)

    def reserve(self, record: ChannelRecord, owner: str, *, ttl: float, cap: int) -> bool:
        """Insert a new ``opening`` channel leased to ``owner`` unless the scope is at ``cap``.

        Counting and inserting happen in one transaction, so concurrent
        processes cannot open more than ``cap`` live channels per scope.
        """
        now = time.time()
        with self._transaction() as db:
            live = db.execute(
                "SELECT COUNT(*) FROM channels WHERE scope = ? AND status IN (?, ?)",
                (record.scope.key, str(ChannelStatus.OPENING), str(ChannelStatus.OPEN)),
            ).fetchone()[0]
            if int(live) >= cap:
                return False
            self._insert(db, replace(record, lease_owner=owner, lease_until=now + ttl))
        return True

    def renew(self, channel_id: str, owner: str, *, ttl: float) -> None:
        """Extend a lease held by ``owner``."""
        with self._transaction(durable=False) as db:
            db.execute(
                "UPDATE channels SET lease_until = ? WHERE channel_id = ? AND lease_owner = ?",
                (time.time() + ttl, channel_id.lower(), owner),
            )

    def release(self, channel_id: str, owner: str) -> None:
        """Give a lease back (no-op if ``owner`` does not hold it)."""
        with self._transaction(durable=False) as db:
            db.execute(
                "UPDATE channels SET lease_owner = NULL, lease_until = 0"
                " WHERE channel_id = ? AND lease_owner = ?",
                (channel_id.lower(), owner),
            )

    # -- cross-process locks and nonces ---------------------------------------------------

    def try_lock(self, name: str, owner: str, *, ttl: float) -> bool:
        """Take the named lock for ``owner`` unless another live owner holds it.

        Locks live in the database, so processes sharing one store (and one key)
        serialise the way tasks in one process do. A holder that died (its pid is
        gone) or overran ``ttl`` does not block anyone. Re-taking a lock one
        already holds extends it.
        """
        now = time.time()
        with self._transaction(durable=False) as db:
            row = db.execute("SELECT owner, until FROM locks WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] != owner and lease_is_live(row[0], float(row[1]), now):
                return False
            db.execute(
                "INSERT INTO locks (name, owner, until) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until",
                (name, owner, now + ttl),
            )
        return True

    def unlock(self, name: str, owner: str) -> None:
        """Release a lock ``owner`` holds (no-op otherwise)."""
        with self._transaction(durable=False) as db:
            db.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    def handed_out_nonce(self, address: str, chain_id: int) -> int:
        """The next nonce this store's processes have handed out for ``address`` (0: none)."""
        with self._lock:
            row = self._db.execute(
                "SELECT next FROM nonces WHERE address = ? AND chain_id = ?",
                (address.lower(), chain_id),
            ).fetchone()
        return int(row[0]) if row else 0

    def set_handed_out_nonce(self, address: str, chain_id: int, next_nonce: int | None) -> None:
        """Record the next nonce handed out (``None`` forgets it: re-read the chain)."""
        with self._transaction() as db:
            if next_nonce is None:
                db.execute(
                    "DELETE FROM nonces WHERE address = ? AND chain_id = ?",
                    (address.lower(), chain_id),
                )
            else:
                db.execute(
                    "INSERT INTO nonces (address, chain_id, next) VALUES (?, ?, ?)"
                    " ON CONFLICT (address, chain_id) DO UPDATE SET next = excluded.next",
                    (address.lower(), chain_id, next_nonce),
                )

    # -- budgets -------------------------------------------------------------------------------

    def spent_since(self, since: float) -> int:
        """Sum of voucher increments signed since ``since`` (epoch seconds)."""
        with self._lock:
            return self._spent_since(self._db, since)

    @staticmethod
    def _spent_since(db: sqlite3.Connection, since: float) -> int:
        rows = db.execute("SELECT amount FROM spending WHERE at >= ?", (since,)).fetchall()
        return sum(int(r[0]) for r in rows)


class MemoryChannelStore(SqliteChannelStore):
    """The same store in memory: for unit tests and throwaway agents. Nothing survives."""

    def __init__(self) -> None:
        super().__init__(":memory:")


def new_owner_id() -> str:
    """A lease owner id: host and pid (so dead owners can be detected) plus a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def lease_is_live(owner: str | None, until: float, now: float | None = None) -> bool:
    """Whether a lease still binds: not expired, and its owner process not known dead.

    A process killed mid-stream never releases its leases; when the owner ran
    on this host and its pid is gone, the lease is void at once instead of
    after its time-to-live.
    """
    if owner is None or until < (time.time() if now is None else now):
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prepare_private_file(path: Path) -> None:
    """Create the database file (and its folder) readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _db_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _INT_FIELDS:
        return str(int(value))
    if isinstance(value, StrEnum):
        return str(value)
    return value


def _row(record: ChannelRecord) -> tuple[Any, ...]:
    return (
        record.channel_id.lower(),
        record.scope.key,
        record.payer.lower(),
        record.authorized_signer.lower(),
        record.signer_key,
        record.salt,
        str(record.deposit),
        str(record.signed),
        record.signed_signature,
        str(record.accepted),
        str(record.spent),
        str(record.settled),
        str(record.status),
        record.url,
        record.realm,
        record.unit_type,
        None if record.unit_price is None else str(record.unit_price),
        record.evidence,
        record.lease_owner,
        record.lease_until,
        record.created_at,
        record.updated_at,
        int(record.unverified),
        record.protocol,
        record.descriptor,
        str(record.acknowledged),
    )


def _channel(row: Sequence[Any]) -> ChannelRecord:
    return ChannelRecord(
        channel_id=row[0],
        scope=Scope.from_key(row[1]),
        payer=row[2],
        authorized_signer=row[3],
        signer_key=row[4],
        salt=row[5],
        deposit=int(row[6]),
        signed=int(row[7]),
        signed_signature=row[8],
        accepted=int(row[9]),
        spent=int(row[10]),
        settled=int(row[11]),
        status=ChannelStatus(row[12]),
        url=row[13],
        realm=row[14],
        unit_type=row[15],
        unit_price=None if row[16] is None else int(row[16]),
        evidence=row[17],
        lease_owner=row[18],
        lease_until=float(row[19]),
        created_at=float(row[20]),
        updated_at=float(row[21]),
        unverified=bool(row[22]),
        protocol=row[23],
        descriptor=row[24],
        acknowledged=int(row[25]),
    )


def evidence_json(**facts: object) -> str:
    """Serialise misbehaviour evidence for :attr:`ChannelRecord.evidence`."""
    return json.dumps(facts, sort_keys=True, default=str)
