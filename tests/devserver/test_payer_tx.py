"""What a sponsoring server agrees to pay for: gas and fee caps on co-signed transactions."""

from __future__ import annotations

import pytest

from mppagent.devserver.payer_tx import (
    MAX_SPONSORED_FEE,
    PayerTransactionRefused,
    read_payer_transaction,
)
from mppagent.tempo.chain import Wallet
from mppagent.tempo.tempo_chain import PATH_USD, OutgoingTempoTransaction
from mppagent.tempo.tempotx import EXPIRING_NONCE_KEY, Call, TempoTransaction

PAYER = Wallet("0x" + "11" * 32)
SPONSOR = Wallet("0x" + "22" * 32)
GWEI = 10**9


def handover(*, gas: int, max_fee: int, tip: int) -> str:
    """A payer's sponsored 0x76 in its 0x78 hand-over form."""
    tx = TempoTransaction(
        chain_id=4217,
        calls=(Call(PATH_USD, b"\x01\x02"),),
        gas=gas,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=tip,
        nonce_key=EXPIRING_NONCE_KEY,
        valid_before=2_000_000_000,
        sponsored=True,
    )
    outgoing = OutgoingTempoTransaction.of(tx.sign(PAYER.private_key_hex))
    assert outgoing.handover is not None
    return outgoing.handover


def test_an_ordinary_fee_is_co_signed() -> None:
    # An open's gas at the devchain's fee caps: about 0.02 pathUSD at most.
    raw = handover(gas=1_300_000, max_fee=14 * GWEI, tip=GWEI)
    prepared = read_payer_transaction(raw).prepare(SPONSOR, PATH_USD)
    assert prepared.sender == PAYER.address.lower()


@pytest.mark.parametrize(
    ("max_fee", "tip"),
    [(10**6 * GWEI, 10**6 * GWEI), (10**6 * GWEI, GWEI)],
    ids=["greedy-tip", "greedy-max-fee"],
)
def test_a_fee_cap_beyond_what_the_server_pays_for_is_refused(max_fee: int, tip: int) -> None:
    raw = handover(gas=1_300_000, max_fee=max_fee, tip=tip)
    with pytest.raises(PayerTransactionRefused, match=f"at most {MAX_SPONSORED_FEE} base units"):
        read_payer_transaction(raw).prepare(SPONSOR, PATH_USD)


def test_the_fee_cap_is_the_product_of_gas_and_max_fee() -> None:
    # Just at the cap passes; one wei per gas more does not.
    gas = 1_000_000
    at_cap = MAX_SPONSORED_FEE * 10**12 // gas
    read_payer_transaction(handover(gas=gas, max_fee=at_cap, tip=0)).prepare(SPONSOR, None)
    with pytest.raises(PayerTransactionRefused):
        read_payer_transaction(handover(gas=gas, max_fee=at_cap + 1, tip=0)).prepare(SPONSOR, None)
