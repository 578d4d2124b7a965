"""The payer transaction inside an ``open`` or ``topUp`` credential, checked before broadcast.

A credential's ``transaction`` is either an ordinary signed EIP-1559 (or
legacy) transaction calling the escrow -- plain EVM chains -- or a Tempo
transaction: a signed ``0x76`` batching ``approve`` + the escrow call, or,
when the challenge offered fee sponsorship (``feePayer: true``), the
sender-signed ``0x78`` hand-over (or ``0x76`` with the fee-payer placeholder)
that this server co-signs as fee payer before broadcasting it.

The server answers for what it broadcasts, and pays for what it co-signs, so
every form is reduced to one checked :class:`EscrowCall` here: the calls of a
Tempo transaction must be exactly what
:func:`~mppagent.tempo.payer_calls.expect_payer_calls` allows for this payee's
currency and escrow. A refusal is a :class:`PayerTransactionRefused` with a
message fit for a ``verification-failed`` problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mppagent.tempo.chain import ChainClient, SignedTransaction, Wallet
from mppagent.tempo.escrow import EscrowCall, decode_payer_call
from mppagent.tempo.payer_calls import expect_payer_calls
from mppagent.tempo.tempo_chain import OutgoingTempoTransaction, send_tempo, sponsor
from mppagent.tempo.tempotx import decode_tempo_transaction, is_tempo_transaction
from mppagent.tempo.transactions import (
    InvalidTransaction,
    decode_signed_transaction,
    transaction_bytes,
)

__all__ = ["PayerTransaction", "PayerTransactionRefused", "read_payer_transaction"]

Action = Literal["open", "topUp"]

MAX_SPONSORED_GAS = 3_000_000
"""The most gas this server pays for when it co-signs (an open on Tempo needs ~1.3M)."""


class PayerTransactionRefused(InvalidTransaction):
    """A payer transaction this server will not broadcast (or co-sign)."""


@dataclass(frozen=True)
class PayerTransaction:
    """A checked payer transaction: who signed it, the escrow call, and what to broadcast.

    ``outgoing`` is already co-signed when this server sponsors its fee, so
    ``hash`` is the hash that will appear on chain.
    """

    sender: str
    chain_id: int | None
    call: EscrowCall
    outgoing: SignedTransaction

    @property
    def hash(self) -> str:
        """The hash of the broadcast transaction."""
        return self.outgoing.hash

    async def broadcast(self, chain: ChainClient, context: str) -> dict[str, Any]:
        """Send (idempotent) and wait for the receipt; a revert raises ``ContractReverted``."""
        if isinstance(self.outgoing, OutgoingTempoTransaction):
            return await send_tempo(chain, self.outgoing, context=context)
        return await chain.send_and_wait(self.outgoing, context=context)


def read_payer_transaction(
    raw: str,
    *,
    action: Action,
    escrow: str,
    currency: str,
    fee_payer: Wallet | None = None,
    fee_token: str | None = None,
) -> PayerTransaction:
    """Decode and check ``raw`` for ``action``; co-sign it if ``fee_payer`` sponsors fees.

    ``fee_payer`` is this server's wallet when its challenges offer sponsorship
    (``None``: a transaction asking for a fee payer is refused). ``fee_token`` is
    the token the server pays sponsored fees in (default: the one the sender
    suggested, else pathUSD).
    """
    data = transaction_bytes(raw)
    if not is_tempo_transaction(data):
        return _read_evm(raw, action=action, escrow=escrow)
    signed = decode_tempo_transaction(data)
    call = expect_payer_calls(signed.tx.calls, action=action, escrow=escrow, currency=currency)
    if signed.awaiting_fee_payer:
        if fee_payer is None:
            raise PayerTransactionRefused(
                "the transaction asks for a fee payer, but this server does not sponsor fees"
            )
        if signed.tx.gas > MAX_SPONSORED_GAS:
            raise PayerTransactionRefused(
                f"a sponsored transaction may use at most {MAX_SPONSORED_GAS} gas"
            )
        outgoing = sponsor(data, fee_payer, fee_token)
    else:  # the sender pays its own fee (or a fee payer already co-signed)
        outgoing = OutgoingTempoTransaction.of(signed)
    return PayerTransaction(
        sender=signed.sender, chain_id=signed.tx.chain_id, call=call, outgoing=outgoing
    )


def _read_evm(raw: str, *, action: Action, escrow: str) -> PayerTransaction:
    tx = decode_signed_transaction(raw)
    noun = "open" if action == "open" else "topUp"
    if tx.to != escrow:
        raise PayerTransactionRefused(f"the {noun} transaction does not call this escrow")
    if tx.value:
        raise PayerTransactionRefused(f"the {noun} transaction sends native value")
    call = decode_payer_call(tx.data)
    if call is None or call.function != action:
        raise PayerTransactionRefused(f"the transaction does not call {action}()")
    return PayerTransaction(
        sender=tx.sender,
        chain_id=tx.chain_id,
        call=call,
        outgoing=SignedTransaction(raw, tx.hash, tx.nonce, tx.sender),
    )
