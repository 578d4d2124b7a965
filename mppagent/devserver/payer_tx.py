"""The payer transaction inside an ``open`` or ``topUp`` credential, checked before broadcast.

A credential's ``transaction`` is either an ordinary signed EIP-1559 (or
legacy) transaction calling the escrow -- plain EVM chains, session v1 only --
or a Tempo transaction: a signed ``0x76``, or, when the challenge offered fee
sponsorship (``feePayer: true``), the sender-signed ``0x78`` hand-over (or
``0x76`` with the fee-payer placeholder) that this server co-signs as fee
payer before broadcasting it.

The server answers for what it broadcasts, and pays for what it co-signs, so
reading is two steps: :func:`read_payer_transaction` decodes the envelope into a
:class:`ReceivedTransaction` whose ``calls`` the session protocol's backend
checks (exactly the calls it allows for this payee, currency and contract);
only then does :meth:`ReceivedTransaction.prepare` co-sign it when fees are
sponsored. A refusal is a :class:`PayerTransactionRefused` with a message fit
for a ``verification-failed`` problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mppagent.tempo.chain import ChainClient, SignedTransaction, Wallet
from mppagent.tempo.tempo_chain import OutgoingTempoTransaction, send_tempo, sponsor
from mppagent.tempo.tempotx import (
    Call,
    SignedTempoTransaction,
    decode_tempo_transaction,
    is_tempo_transaction,
)
from mppagent.tempo.transactions import (
    InvalidTransaction,
    decode_signed_transaction,
    transaction_bytes,
)

__all__ = [
    "PayerTransaction",
    "PayerTransactionRefused",
    "ReceivedTransaction",
    "read_payer_transaction",
]

MAX_SPONSORED_GAS = 3_000_000
"""The most gas this server pays for when it co-signs (an open on Tempo needs ~1.3M)."""

MAX_SPONSORED_FEE = 100_000
"""The most a co-signed transaction may cost this server, in base units of a 6-decimal
fee token (0.1 of a dollar stablecoin): ``gas x maxFeePerGas``, the most the sender's
signed fee fields can charge the fee payer. An open costs well under 0.01 on the
devchain; without this cap a payer could set any priority fee on the server's bill."""

_GAS_PRICE_PER_BASE_UNIT = 10**12
"""Tempo prices gas in 18-decimal units of the fee token; a 6-decimal token's base unit
is 10^12 of them."""


class PayerTransactionRefused(InvalidTransaction):
    """A payer transaction this server will not broadcast (or co-sign)."""


@dataclass(frozen=True)
class PayerTransaction:
    """A checked payer transaction: who signed it and what to broadcast.

    ``outgoing`` is already co-signed when this server sponsors its fee, so
    ``hash`` is the hash that will appear on chain.
    """

    sender: str
    chain_id: int | None
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


@dataclass(frozen=True)
class ReceivedTransaction:
    """A decoded, not yet checked payer transaction.

    ``calls`` is what it would execute (a plain EVM transaction as one call);
    ``tempo`` the decoded Tempo transaction (``None`` for a plain one), whose
    signing payload v2 derives the channel's ``expiringNonceHash`` from.
    """

    raw: str
    sender: str
    chain_id: int | None
    calls: tuple[Call, ...]
    tempo: SignedTempoTransaction | None
    evm: SignedTransaction | None

    def prepare(self, fee_payer: Wallet | None, fee_token: str | None) -> PayerTransaction:
        """What to broadcast, co-signed by ``fee_payer`` if the sender asked for one.

        ``fee_payer`` is this server's wallet when its challenges offer
        sponsorship (``None``: a transaction asking for a fee payer is refused).
        ``fee_token`` is the token the server pays sponsored fees in (default:
        the one the sender suggested, else pathUSD). Call only once the calls
        have been checked.
        """
        if self.tempo is None:
            assert self.evm is not None
            return PayerTransaction(self.sender, self.chain_id, self.evm)
        signed = self.tempo
        if signed.awaiting_fee_payer:
            if fee_payer is None:
                raise PayerTransactionRefused(
                    "the transaction asks for a fee payer, but this server does not sponsor fees"
                )
            if signed.tx.gas > MAX_SPONSORED_GAS:
                raise PayerTransactionRefused(
                    f"a sponsored transaction may use at most {MAX_SPONSORED_GAS} gas"
                )
            most = -(-signed.tx.gas * signed.tx.max_fee_per_gas // _GAS_PRICE_PER_BASE_UNIT)
            if most > MAX_SPONSORED_FEE:
                raise PayerTransactionRefused(
                    f"a sponsored transaction may cost at most {MAX_SPONSORED_FEE} base units "
                    f"of fees; its gas and maxFeePerGas allow {most}"
                )
            outgoing = sponsor(transaction_bytes(self.raw), fee_payer, fee_token)
        else:  # the sender pays its own fee (or a fee payer already co-signed)
            outgoing = OutgoingTempoTransaction.of(signed)
        return PayerTransaction(self.sender, self.chain_id, outgoing)


def read_payer_transaction(raw: str, *, tempo_only: bool = False) -> ReceivedTransaction:
    """Decode ``raw`` (``tempo_only``: refuse anything but a Tempo transaction)."""
    data = transaction_bytes(raw)
    if is_tempo_transaction(data):
        signed = decode_tempo_transaction(data)
        return ReceivedTransaction(
            raw, signed.sender, signed.tx.chain_id, tuple(signed.tx.calls), signed, None
        )
    if tempo_only:
        raise PayerTransactionRefused("this session protocol takes only Tempo (0x76) transactions")
    tx = decode_signed_transaction(raw)
    if tx.to is None:
        raise PayerTransactionRefused("the transaction creates a contract")
    return ReceivedTransaction(
        raw,
        tx.sender,
        tx.chain_id,
        (Call(tx.to, tx.data, tx.value),),
        None,
        SignedTransaction(raw, tx.hash, tx.nonce, tx.sender),
    )
