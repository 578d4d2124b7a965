"""What every session backend of one server shares: who is paid, in what, on which chain.

Kept apart from the payee's books so a backend (:mod:`.backend_v1`,
:mod:`.backend_v2`) can check transactions and vouchers against the server's
terms without reaching into its accounting.
"""

from __future__ import annotations

from dataclasses import dataclass

from mppagent.devserver.payer_tx import PayerTransaction
from mppagent.protocol import VerificationFailedProblem
from mppagent.tempo.chain import ChainClient, ContractReverted, Wallet

__all__ = ["PayeeTerms", "refused"]


@dataclass(frozen=True)
class PayeeTerms:
    """One server's terms (addresses lowercase).

    ``contract`` is the escrow (v1) or reserve (v2) its channels live in;
    ``fee_payer`` the server's wallet when it sponsors payers' fees (else
    ``None``), paying them in ``fee_token``; ``operator`` the v2 operator it
    announces (zero: none).
    """

    chain: ChainClient
    chain_id: int
    wallet: Wallet
    payee: str
    token: str
    contract: str
    operator: str
    fee_payer: Wallet | None
    fee_token: str | None

    def check_chain(self, tx: PayerTransaction, action: str) -> None:
        """Refuse a transaction signed for another chain."""
        if tx.chain_id != self.chain_id:
            raise VerificationFailedProblem(f"the {action} transaction is for chain {tx.chain_id}")


def refused(action: str, exc: ContractReverted) -> VerificationFailedProblem:
    """A reverted ``action`` as the problem the client gets."""
    return VerificationFailedProblem(f"{action} reverted: {exc.error_name}")
