"""The Tempo payment method: vouchers, channel ids, the v1 escrow and its transactions.

This is the only layer that knows about EIP-712, secp256k1 and the escrow
contract; :mod:`mppagent.tempo.chain` is the only module that talks to a node.
"""

from mppagent.tempo.chain import (
    ChainClient,
    ChainUnavailable,
    ContractReverted,
    SignedTransaction,
    TransactionFailed,
    Wallet,
)
from mppagent.tempo.channel_id import compute_channel_id, random_salt
from mppagent.tempo.escrow import ChannelState, Escrow, EscrowEvent, Token
from mppagent.tempo.hexutil import ZERO_ADDRESS, checksum_address, normalize_address
from mppagent.tempo.voucher import (
    InvalidSignature,
    VoucherSigner,
    recover_voucher_signer,
    sign_voucher,
    voucher_digest,
)

__all__ = [
    "ZERO_ADDRESS",
    "ChainClient",
    "ChainUnavailable",
    "ChannelState",
    "ContractReverted",
    "Escrow",
    "EscrowEvent",
    "InvalidSignature",
    "SignedTransaction",
    "Token",
    "TransactionFailed",
    "VoucherSigner",
    "Wallet",
    "checksum_address",
    "compute_channel_id",
    "normalize_address",
    "random_salt",
    "recover_voucher_signer",
    "sign_voucher",
    "voucher_digest",
]
