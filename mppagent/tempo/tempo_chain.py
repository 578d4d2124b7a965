"""Sending Tempo (``0x76``) transactions: gas from the calls, fees in a token, receipts.

Three things about Tempo nodes (and anvil's Tempo mode) shape this module:

* ``eth_estimateGas`` and ``eth_call`` ignore a ``0x76`` transaction's
  ``calls`` (a flat figure, ``0x``), so gas is estimated by running the calls
  from the sender with ``eth_simulateV1`` -- which also surfaces a revert, named,
  before anything is signed -- plus the ``0x76`` overhead and a margin.
* A node may answer ``eth_sendRawTransaction`` before the receipt is visible:
  callers wait for the *receipt* (polled), never for a new block, which on an
  idle dev chain may never come.
* Write-ahead: :func:`sign_calls` returns a :class:`OutgoingTempoTransaction`,
  signed but unsent, so the caller can record it first. An expiring-nonce
  transaction can be resent with the same bytes until ``valid_before``; once
  that has passed (:meth:`OutgoingTempoTransaction.expired`, judged by chain
  time) it can never land, and :func:`outcome` tells whether it did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from mppagent.errors import ChainError
from mppagent.tempo.chain import ChainClient, ContractReverted, SignedTransaction, Wallet
from mppagent.tempo.hexutil import checksum_address, keccak, normalize_address
from mppagent.tempo.tempotx import (
    EXPIRING_NONCE_KEY,
    MAX_EXPIRING_WINDOW,
    Call,
    SignedTempoTransaction,
    TempoTransaction,
    decode_tempo_transaction,
    expiring_valid_before,
    sign_as_fee_payer,
)

__all__ = [
    "PATH_USD",
    "SEND_MARGIN",
    "TEMPO_CHAIN_IDS",
    "TIP20_ERRORS",
    "OutgoingTempoTransaction",
    "TransactionExpired",
    "TxOutcome",
    "chain_now",
    "estimate_calls_gas",
    "expiry_outcome",
    "for_server",
    "outcome",
    "resend_recorded",
    "send_tempo",
    "sign_calls",
    "sponsor",
]

TEMPO_CHAIN_IDS = frozenset({4217, 42431})
"""Tempo mainnet and the Moderato testnet (the chains whose ids alone say "Tempo")."""

PATH_USD = "0x20c0000000000000000000000000000000000000"
"""The first TIP-20 stablecoin; Tempo's default fee token."""

SEND_MARGIN = 3
"""Nodes refuse a transaction whose ``validBefore`` is not more than this many seconds ahead."""

# Allowance for what a 0x76 transaction costs beyond its calls' execution (sender
# signature, nonce bookkeeping, fee-token transfer, a fee payer's signature).
# Generous: a too-small limit fails the whole transaction (and still costs its fee),
# while on anvil T4 the simulated calls already over-count a batched open.
_TEMPO_OVERHEAD_GAS = 60_000
_INTRINSIC_GAS = 21_000  # charged once per simulated call; the batch pays it once


def _errors(*signatures: str) -> dict[bytes, tuple[str, list[str]]]:
    table = {}
    for signature in signatures:
        name, _, args = signature.partition("(")
        types = [t for t in args.rstrip(")").split(",") if t]
        table[keccak(signature.encode())[:4]] = (name, types)
    return table


TIP20_ERRORS = _errors(
    "InsufficientBalance(uint256,uint256,address)",
    "InsufficientAllowance()",
    "PolicyForbids()",
    "ContractPaused()",
    "InvalidRecipient()",
)
"""Custom errors of TIP-20 tokens (pathUSD, ...), so their reverts come back named."""


@dataclass(frozen=True, repr=False)
class OutgoingTempoTransaction(SignedTransaction):
    """A signed ``0x76`` transaction: what to record before sending, and resend after.

    ``nonce`` is 0 and ``nonce_key`` is ``2**256 - 1`` for an expiring nonce.
    ``awaiting_fee_payer`` marks a sponsored transaction whose fee payer has not
    signed yet (its ``raw`` carries the ``0x00`` placeholder and cannot be sent;
    hand :attr:`handover` to the sponsor).
    """

    nonce_key: int = 0
    valid_before: int | None = None
    fee_token: str | None = None
    awaiting_fee_payer: bool = False
    handover: str | None = None

    @classmethod
    def of(cls, signed: SignedTempoTransaction) -> OutgoingTempoTransaction:
        """Wrap a signed transaction from :mod:`mppagent.tempo.tempotx`."""
        return cls(
            raw=signed.raw_hex,
            hash=signed.hash,
            nonce=signed.tx.nonce,
            sender=signed.sender,
            nonce_key=signed.tx.nonce_key,
            valid_before=signed.tx.valid_before,
            fee_token=signed.tx.fee_token,
            awaiting_fee_payer=signed.awaiting_fee_payer,
            handover="0x" + signed.fee_payer_envelope().hex() if signed.tx.sponsored else None,
        )

    def expired(self, now: int) -> bool:
        """True once chain time ``now`` reached ``valid_before``: these bytes can never land."""
        return self.valid_before is not None and now >= self.valid_before

    def sendable(self, now: int) -> bool:
        """True while a node still accepts these bytes (``valid_before`` > now + margin)."""
        return self.valid_before is None or now + SEND_MARGIN < self.valid_before

    def __repr__(self) -> str:
        return (
            f"OutgoingTempoTransaction(hash={self.hash!r}, sender={self.sender!r}, "
            f"nonce_key={self.nonce_key:#x}, valid_before={self.valid_before})"
        )


class TransactionExpired(ChainError):
    """A recorded transaction was never mined and its ``validBefore`` has passed: it never will."""


class TxOutcome(Enum):
    """What became of a signed transaction, as far as the chain can tell."""

    MINED = "mined"
    PENDING = "pending"  # not mined, still valid: resend the same bytes
    EXPIRED = "expired"  # not mined and can never be: safe to sign anew


async def chain_now(chain: ChainClient) -> int:
    """Chain time for validity windows: the later of the latest block and the wall clock.

    An idle dev chain's latest block can be minutes old while the node judges
    ``validBefore`` against its clock; a chain moved forward (``evm_increaseTime``)
    is ahead of the wall clock.
    """
    return max(await chain.block_timestamp(), int(time.time()))


async def estimate_calls_gas(chain: ChainClient, sender: str, calls: Sequence[Call]) -> int:
    """Gas for one ``0x76`` transaction running ``calls`` from ``sender``.

    The calls are simulated in order in one block (``eth_simulateV1``, no fee
    validation); a failing call raises :class:`ContractReverted` with the
    contract's error name. Each simulated call pays the 21k intrinsic gas that
    the batch pays once, so summing them already leaves room; the ``0x76``
    overhead and a quarter on top make the limit.
    """
    chain.add_error_decoders(TIP20_ERRORS)
    block = {"calls": _sim_calls(sender, calls)}
    result = await chain.request(
        "eth_simulateV1", [{"blockStateCalls": [block], "validation": False}, "latest"]
    )
    try:
        outcomes: list[Mapping[str, Any]] = list(result[0]["calls"])
    except (TypeError, KeyError, IndexError):
        raise ContractReverted("unknown", context="eth_simulateV1 answered no calls") from None
    failed = _first_failure(chain, outcomes, "simulating the calls")
    if failed is not None:
        raise failed
    return (_calls_gas(outcomes) + _TEMPO_OVERHEAD_GAS) * 5 // 4


async def sign_calls(
    chain: ChainClient,
    wallet: Wallet,
    calls: Sequence[Call],
    *,
    fee_token: str | None = PATH_USD,
    sponsored: bool = False,
    gas: int | None = None,
    nonce_key: int = EXPIRING_NONCE_KEY,
    nonce: int = 0,
    window: int = MAX_EXPIRING_WINDOW,
    valid_after: int | None = None,
) -> OutgoingTempoTransaction:
    """Sign one ``0x76`` transaction batching ``calls``; returned unsent (write-ahead).

    Defaults to an expiring nonce valid ``window`` seconds from chain time,
    fees paid in ``fee_token`` (for a sponsored transaction: the token the fee
    payer is asked to use; the sender does not sign over it). With another
    ``nonce_key`` the caller manages ``nonce`` (2D nonces; no expiry).

    Two expiring-nonce transactions with the same calls, gas and fees, signed
    at the same chain time (same ``validBefore``), are the same transaction
    (same bytes, same hash): the chain runs it once. That is the replay
    protection, not a bug -- distinct payments differ in their calls (a
    channel's salt, an amount); repeated identical calls want a 2D nonce.
    """
    if not calls:
        raise ValueError("a Tempo transaction needs at least one call")
    if gas is None:
        gas = await estimate_calls_gas(chain, wallet.address, calls)
    max_fee, tip = await chain.fee_caps()
    valid_before = None
    if nonce_key == EXPIRING_NONCE_KEY:
        valid_before = expiring_valid_before(await chain_now(chain), window)
        nonce = 0
    tx = TempoTransaction(
        chain_id=await chain.chain_id(),
        calls=tuple(calls),
        gas=gas,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=tip,
        nonce_key=nonce_key,
        nonce=nonce,
        valid_before=valid_before,
        valid_after=valid_after,
        fee_token=None if fee_token is None else normalize_address(fee_token, "feeToken"),
        sponsored=sponsored,
    )
    return OutgoingTempoTransaction.of(tx.sign(wallet.private_key_hex))


def sponsor(
    handover: str | bytes, fee_payer: Wallet, fee_token: str | None = None
) -> OutgoingTempoTransaction:
    """Co-sign a sponsored transaction (its ``0x78`` hand-over or ``0x76`` placeholder form).

    The fee payer picks the fee token (default: the one the sender suggested,
    if the hand-over kept it, else pathUSD). The result is broadcastable.
    """
    signed = decode_tempo_transaction(handover)
    token = fee_token or signed.tx.fee_token or PATH_USD
    return OutgoingTempoTransaction.of(sign_as_fee_payer(signed, fee_payer.private_key_hex, token))


async def send_tempo(
    chain: ChainClient, tx: OutgoingTempoTransaction, *, context: str = "tempo transaction"
) -> dict[str, Any]:
    """Broadcast ``tx`` (idempotent: the same bytes again are harmless) and wait for its receipt.

    A reverted transaction raises :class:`ContractReverted`, named by
    re-simulating its calls when possible.
    """
    if tx.awaiting_fee_payer:
        raise ValueError("a sponsored transaction must be co-signed by its fee payer first")
    await chain.send(tx, context=context)
    try:
        return await chain.wait(tx.hash, context=context)
    except ContractReverted as exc:
        if exc.error_name != "unknown":
            raise
        raise await _explain(chain, tx, context) from None


async def _explain(
    chain: ChainClient, tx: OutgoingTempoTransaction, context: str
) -> ContractReverted:
    """Re-run a reverted transaction's calls on the state before its block to name the error."""
    chain.add_error_decoders(TIP20_ERRORS)
    receipt = await chain.get_receipt(tx.hash)
    decoded = decode_tempo_transaction(tx.raw).tx
    calls = decoded.calls
    block = hex(int(receipt["blockNumber"]) - 1) if receipt else "latest"
    result = await chain.request(
        "eth_simulateV1",
        [{"blockStateCalls": [{"calls": _sim_calls(tx.sender, calls)}]}, block],
    )
    try:
        outcomes = list(result[0]["calls"])
        failed = _first_failure(chain, outcomes, context)
        needed = _calls_gas(outcomes)
    except (TypeError, KeyError, IndexError, ValueError):
        return ContractReverted("unknown", context=context)
    if failed is not None:
        return failed
    if needed > decoded.gas:
        # The calls succeed on the state before the block but need more than the limit.
        # (A Tempo receipt's gasUsed does not show it: T4 reports less than the limit.)
        return ContractReverted("OutOfGas", [decoded.gas, needed], context)
    return ContractReverted("unknown", context=context)


def _calls_gas(outcomes: Sequence[Mapping[str, Any]]) -> int:
    """Gas of simulated calls run as one batch (the 21k intrinsic counted once)."""
    total = sum(int(str(call["gasUsed"]), 16) for call in outcomes)
    return max(total - _INTRINSIC_GAS * (len(outcomes) - 1), _INTRINSIC_GAS)


def _first_failure(
    chain: ChainClient, outcomes: Sequence[Mapping[str, Any]], context: str
) -> ContractReverted | None:
    """The named revert of the first failed simulated call (``returnData`` holds it)."""
    for index, call in enumerate(outcomes):
        if int(str(call.get("status", "0x0")), 16) != 1:
            error = call.get("error") or {}
            data = str(call.get("returnData") or error.get("data") or "0x")
            return chain.revert_error(data, f"{context} (call {index + 1} of {len(outcomes)})")
    return None


def _sim_calls(sender: str, calls: Sequence[Call]) -> list[dict[str, str]]:
    frm = checksum_address(sender)
    return [
        {
            "from": frm,
            "to": checksum_address(c.to),
            "data": "0x" + c.data.hex(),
            "value": hex(c.value),
        }
        for c in calls
    ]


def for_server(tx: SignedTransaction) -> str:
    """What a credential carries: the broadcastable bytes, or the ``0x78`` hand-over.

    A sponsored transaction whose fee payer has not signed yet cannot be sent;
    the server co-signs its hand-over form and broadcasts the result.
    """
    if isinstance(tx, OutgoingTempoTransaction) and tx.awaiting_fee_payer and tx.handover:
        return tx.handover
    return tx.raw


async def outcome(chain: ChainClient, tx: OutgoingTempoTransaction) -> TxOutcome:
    """Whether ``tx`` landed, may still land (resend it), or never will (sign anew).

    Reads the receipt first, then chain time: an expired transaction without
    a receipt can never be mined. Not for a sponsored transaction awaiting its
    fee payer: the broadcast bytes (and hash) are the sponsor's, so look for its
    effect on chain instead (the channel it opens).
    """
    if tx.awaiting_fee_payer:
        raise ValueError("a sponsored transaction's hash is the fee payer's: check its effect")
    if await chain.get_receipt(tx.hash) is not None:
        return TxOutcome.MINED
    if tx.expired(await chain_now(chain)):
        # It may have been mined between the two reads: look once more.
        if await chain.get_receipt(tx.hash) is not None:
            return TxOutcome.MINED
        return TxOutcome.EXPIRED
    return TxOutcome.PENDING


async def expiry_outcome(chain: ChainClient, tx: OutgoingTempoTransaction) -> TxOutcome:
    """:func:`outcome`, also for sponsored bytes awaiting their fee payer.

    Those were handed to a server, whose broadcast has another hash: only their
    expiry is certain (``EXPIRED`` once ``valid_before`` passed, else ``PENDING``);
    whether they landed shows in their effect on chain.
    """
    if not tx.awaiting_fee_payer:
        return await outcome(chain, tx)
    return TxOutcome.EXPIRED if tx.expired(await chain_now(chain)) else TxOutcome.PENDING


async def resend_recorded(
    chain: ChainClient, tx: OutgoingTempoTransaction, *, context: str, poll: float = 0.5
) -> dict[str, Any]:
    """Write-ahead recovery of a recorded ``0x76``: the same bytes, or a verdict from the chain.

    Mined: its receipt (a revert raises :class:`ContractReverted`). Still valid:
    resend the same bytes and wait. Too close to ``validBefore`` for a node to
    take it: wait for the window to close and look again. Expired without a
    receipt: :class:`TransactionExpired` -- only then may the caller sign anew.
    Bounded: ``validBefore`` is at most :data:`MAX_EXPIRING_WINDOW` seconds ahead.
    """
    while True:
        state = await outcome(chain, tx)
        if state is TxOutcome.MINED:
            return await chain.wait(tx.hash, context=context)
        if state is TxOutcome.EXPIRED:
            raise TransactionExpired(
                f"{context}: transaction {tx.hash} was not mined before its validBefore"
            )
        if tx.sendable(await chain_now(chain)):
            try:
                return await send_tempo(chain, tx, context=context)
            except ContractReverted:
                raise
            except ChainError:
                if not tx.expired(await chain_now(chain)):
                    raise  # refused while still valid: not a question of time
        await asyncio.sleep(poll)
