"""The seam between the protocol-agnostic session layer and one session protocol.

A session protocol (v1: the ``TempoStreamChannel`` escrow; v2: the TIP-1034
channel reserve) differs in how a channel id is derived, what an ``open`` or
``topUp`` transaction contains, which EIP-712 domain a voucher is signed in,
what the credential payloads carry and how channel state is read from the
chain. Everything else -- the gate, the engine, the store, the transport --
is the same, so a protocol is a :class:`SessionBackend` and never an ``if``
elsewhere.

Backends build and sign; they never record. The session layer records every
signed transaction (write-ahead) before it sends it or hands it to a server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mppagent.tempo.chain import SignedTransaction, Wallet
from mppagent.tempo.escrow import ChannelState
from mppagent.tempo.hexutil import ZERO_ADDRESS
from mppagent.tempo.schemas import (
    ClosePayload,
    OpenPayload,
    TopUpPayload,
    VoucherPayload,
    WireDescriptor,
)
from mppagent.tempo.tempo_chain import for_server
from mppagent.tempo.voucher import VoucherSigner

__all__ = [
    "ChannelTerms",
    "ClosedAmounts",
    "FundingPlan",
    "NewChannel",
    "PriorSender",
    "SessionBackend",
    "build_open_payload",
]


@dataclass(frozen=True)
class FundingPlan:
    """The transaction that funds a channel (open or top-up), for the server to broadcast."""

    main: SignedTransaction


@dataclass(frozen=True)
class ChannelTerms:
    """What identifies a channel: payer, payee, token, contract, chain, salt, signer.

    ``operator`` (v2: who besides the payee may settle; zero if none) and
    ``descriptor`` (the protocol's own description of an existing channel, as
    stored with its record) are empty where a protocol has no use for them.
    ``fee_token`` and ``fee_payer`` come from the challenge (``methodDetails``)
    when it asks for them: the token a Tempo transaction pays its fee in (none:
    the channel's token), and whether the server co-signs as fee payer.
    """

    payer: str
    payee: str
    token: str
    escrow: str
    chain_id: int
    salt: str
    authorized_signer: str
    operator: str = "0x" + "00" * 20
    descriptor: str | None = None
    fee_token: str | None = None
    fee_payer: bool = False


@dataclass(frozen=True)
class NewChannel:
    """A channel about to be opened: its id, and what a protocol must decide up front.

    Where the id depends on the open transaction itself (v2's
    ``expiringNonceHash``), the backend signs the open here and hands it over
    as ``plan``; ``descriptor`` is stored with the channel's record so a
    restarted agent can still top up and close it.
    """

    channel_id: str
    descriptor: str | None = None
    plan: FundingPlan | None = None


PriorSender = Callable[[str, SignedTransaction], Awaitable[None]]
"""Records, sends and confirms a transaction the client must mine itself first
(an ERC-20 ``approve`` on chains without batched calls), given its kind."""


@dataclass(frozen=True)
class ClosedAmounts:
    """What a close transaction paid, read from its events."""

    paid: int
    refunded: int


class SessionBackend(Protocol):
    """One session protocol's chain and wire details."""

    protocol: str
    initial_units: int
    """Units the initial (open) voucher pays for: 0 (v1), or 1 where servers require
    the open to authorize one unit (the v2 reference server refuses less)."""

    async def new_channel(self, wallet: Wallet, terms: ChannelTerms, deposit: int) -> NewChannel:
        """The id (and anything signed up front) of a channel about to be opened."""
        ...

    async def check_contract(self, escrow: str) -> bool:
        """Whether ``escrow`` runs code this backend knows (so it may be funded)."""
        ...

    async def plan_open(
        self, wallet: Wallet, terms: ChannelTerms, deposit: int, prior: PriorSender
    ) -> FundingPlan:
        """Sign what opens a channel with ``deposit`` (approvals sent first via ``prior``)."""
        ...

    async def plan_top_up(
        self,
        wallet: Wallet,
        terms: ChannelTerms,
        channel_id: str,
        amount: int,
        prior: PriorSender,
    ) -> FundingPlan:
        """Sign what adds ``amount`` to the deposit."""
        ...

    def sign_voucher(
        self, signer: VoucherSigner, channel_id: str, amount: int, escrow: str, chain_id: int
    ) -> str:
        """An EIP-712 voucher signature for cumulative ``amount`` (hex, 65 bytes)."""
        ...

    def open_payload(
        self, terms: ChannelTerms, channel_id: str, tx: SignedTransaction, amount: int, sig: str
    ) -> OpenPayload:
        """The ``open`` credential payload."""
        ...

    def top_up_payload(
        self, terms: ChannelTerms, channel_id: str, tx: SignedTransaction, amount: int
    ) -> TopUpPayload:
        """The ``topUp`` credential payload."""
        ...

    def voucher_payload(
        self, terms: ChannelTerms, channel_id: str, amount: int, sig: str
    ) -> VoucherPayload:
        """The ``voucher`` credential payload."""
        ...

    def close_payload(
        self, terms: ChannelTerms, channel_id: str, amount: int, sig: str
    ) -> ClosePayload:
        """The ``close`` credential payload."""
        ...

    async def read_channel(
        self, terms: ChannelTerms, channel_id: str, *, opened_tx: str | None = None
    ) -> ChannelState:
        """The channel as the chain has it.

        A closed channel reads as ``finalized`` (with what it paid out), also where
        the contract forgets closed channels; one the chain never saw does not exist.
        ``opened_tx``, the hash of the transaction that opened it if known, bounds
        the search for its close event to the blocks since.
        """
        ...

    async def close_grace_period(self, escrow: str) -> int:
        """Seconds between ``requestClose`` and the earliest ``withdraw``."""
        ...

    async def sign_request_close(
        self, wallet: Wallet, terms: ChannelTerms, channel_id: str
    ) -> SignedTransaction:
        """Sign the payer's forced-close request."""
        ...

    async def sign_withdraw(
        self, wallet: Wallet, terms: ChannelTerms, channel_id: str
    ) -> SignedTransaction:
        """Sign the payer's withdrawal after the grace period."""
        ...

    def closed_amounts(
        self, escrow: str, channel_id: str, receipt: dict[str, Any]
    ) -> ClosedAmounts | None:
        """Amounts a transaction's close event paid and refunded (``None``: no close)."""
        ...

    async def final_settled(
        self, escrow: str, channel_id: str, *, opened_tx: str | None = None
    ) -> int | None:
        """What a closed channel paid the payee, once the contract has wiped its state.

        Both the deployed v1 escrow and the v2 reserve delete a channel's record on
        close; only the close event keeps the amount (``None``: not found). The
        event is searched for from the block of ``opened_tx`` (if known) on: a
        node's ``eth_getLogs`` may refuse the whole history.
        """
        ...


def build_open_payload(
    terms: ChannelTerms,
    channel_id: str,
    tx: SignedTransaction,
    amount: int,
    sig: str,
    *,
    descriptor: WireDescriptor | None = None,
) -> OpenPayload:
    """``open`` with the transaction as the server takes it (a sponsored one in its
    hand-over form), the initial voucher, a non-zero authorized signer, and the
    protocol's ``descriptor`` where it has one (v2)."""
    signer = terms.authorized_signer
    return OpenPayload(
        channel_id=channel_id,
        transaction=for_server(tx),
        authorized_signer=None if signer == ZERO_ADDRESS else signer,
        cumulative_amount=amount,
        signature=sig,
        descriptor=descriptor,
    )
