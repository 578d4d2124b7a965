"""What every part of the channel lifecycle shares: wallet, chain, store, policy, backend.

The lifecycle is split by job (:mod:`pool`, :mod:`funding`, :mod:`recovery`,
:mod:`closing`, behind the :class:`~mppagent.session.channels.ChannelManager`
facade); this is the one object they are all built from, so none of them
reaches into another's fields.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from mppagent.errors import PolicyViolation, StoreError
from mppagent.session.policy import SpendPolicy
from mppagent.session.store import ChannelRecord, ChannelStore, Operation, OperationKind
from mppagent.tempo.backend import ChannelTerms, SessionBackend
from mppagent.tempo.chain import ChainClient, SignedTransaction, Wallet
from mppagent.tempo.schemas import MethodDetails
from mppagent.tempo.voucher import VoucherSigner

__all__ = ["SessionContext", "terms_of", "with_fees"]


@dataclass
class SessionContext:
    """The collaborators and settings of one agent's channel lifecycle."""

    wallet: Wallet
    payer: str
    chain: ChainClient
    store: ChannelStore
    policy: SpendPolicy
    backends: Mapping[str, SessionBackend]
    owner: str
    lease_ttl: float = 300.0
    pool_wait: float = 30.0
    withdraw_margin: int = 60
    funding_wait: float = 90.0
    delegate_signer: bool = False
    main_signer: VoucherSigner = field(init=False, repr=False)
    _signers: dict[str, VoucherSigner] = field(default_factory=dict, repr=False)
    _funding: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.main_signer = VoucherSigner(self.wallet.private_key_hex)

    def backend(self, protocol: str) -> SessionBackend:
        """The backend of a session protocol, or a refusal naming it."""
        backend = self.backends.get(protocol)
        if backend is None:
            known = ", ".join(sorted(self.backends))
            raise PolicyViolation(
                "session_protocol",
                f"session protocol {protocol!r} is not one this agent speaks ({known})",
            )
        return backend

    def backend_for(self, record: ChannelRecord) -> SessionBackend:
        """The backend of the protocol ``record`` was opened in."""
        return self.backend(record.protocol)

    def signer_for(self, record: ChannelRecord) -> VoucherSigner:
        """The key that signs this channel's vouchers (delegate or main key)."""
        if record.signer_key is None:
            return self.main_signer
        cached = self._signers.get(record.channel_id)
        if cached is None:
            cached = VoucherSigner(record.signer_key)
            self._signers[record.channel_id] = cached
        return cached

    def record_tx(
        self, record: ChannelRecord, kind: OperationKind, amount: int, tx: SignedTransaction
    ) -> Operation:
        """Write a signed transaction ahead, before it leaves the process."""
        return self.store.begin_operation(
            record.channel_id, kind, amount, payload=tx.raw, tx_hash=tx.hash, nonce=tx.nonce
        )

    # -- the signing lock: one funding (nonce and allowance) at a time per key --------------

    def _lock_name(self, chain_id: int) -> str:
        return f"funding:{self.payer}:{chain_id}"

    async def begin_funding(self, key: str, chain_id: int) -> None:
        """Hold the per-key signing lock for ``key`` (a channel id) until :meth:`end_funding`.

        Allowances are exact and nonces sequential, and a signed ``open`` is
        broadcast by the server later: two fundings from one key at once --
        in one process or in several sharing the store -- would approve the
        same allowance twice or hand out the same nonce. The lock lives in
        the store, so sibling processes wait for it too; a holder that died
        does not block anyone.
        """
        name = self._lock_name(chain_id)
        holder = f"{self.owner}:{key}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.funding_wait
        delay = 0.005
        while not self.store.try_lock(name, holder, ttl=self.funding_wait):
            if loop.time() > deadline:
                raise StoreError(
                    f"another payment from {self.payer} kept the signing lock for over "
                    f"{self.funding_wait:.0f}s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        self._funding[key] = name

    def end_funding(self, key: str) -> None:
        """Release the signing lock taken for ``key`` (no-op if not held)."""
        name = self._funding.pop(key, None)
        if name is not None:
            with contextlib.suppress(StoreError):
                self.store.unlock(name, f"{self.owner}:{key}")


def terms_of(record: ChannelRecord) -> ChannelTerms:
    """The terms a recorded channel was opened with."""
    scope = record.scope
    return ChannelTerms(
        payer=record.payer,
        payee=scope.payee,
        token=scope.token,
        escrow=scope.escrow,
        chain_id=scope.chain_id,
        salt=record.salt,
        authorized_signer=record.authorized_signer,
        descriptor=record.descriptor,
    )


def with_fees(terms: ChannelTerms, details: MethodDetails | None) -> ChannelTerms:
    """``terms`` with the fee settings of the challenge a funding transaction answers.

    Fee settings belong to the challenge, not to the channel: the same channel
    may be opened under one challenge and topped up under another, and each
    transaction pays its fee as the challenge it answers asks (``feeToken``,
    else the channel's token; ``feePayer: true``, the server co-signs). ``None``
    (no challenge at hand): the payer pays in the channel's token.
    """
    if details is None:
        return replace(terms, fee_token=None, fee_payer=False)
    return replace(terms, fee_token=details.fee_token, fee_payer=bool(details.fee_payer))
