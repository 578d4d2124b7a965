"""The Tempo payment method: vouchers, channel ids, the v1 escrow and its transactions.

This is the only layer that knows about EIP-712, secp256k1 and the escrow
contract; :mod:`mppagent.tempo.chain` is the only module that talks to a node.

The names below are imported on first use: importing any submodule (say
:mod:`mppagent.tempo.hexutil` for address checks) must not load web3 and
eth-account through this package, which alone take seconds to import. A paid
request on an open channel needs neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mppagent._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "ChainClient": "mppagent.tempo.chain",
    "ChainUnavailable": "mppagent.tempo.chain",
    "ContractReverted": "mppagent.tempo.chain",
    "SignedTransaction": "mppagent.tempo.chain",
    "TransactionFailed": "mppagent.tempo.chain",
    "Wallet": "mppagent.tempo.chain",
    "compute_channel_id": "mppagent.tempo.channel_id",
    "random_salt": "mppagent.tempo.channel_id",
    "ChannelState": "mppagent.tempo.escrow",
    "Escrow": "mppagent.tempo.escrow",
    "EscrowEvent": "mppagent.tempo.escrow",
    "Token": "mppagent.tempo.escrow",
    "ZERO_ADDRESS": "mppagent.tempo.hexutil",
    "checksum_address": "mppagent.tempo.hexutil",
    "normalize_address": "mppagent.tempo.hexutil",
    "InvalidSignature": "mppagent.tempo.voucher",
    "VoucherSigner": "mppagent.tempo.voucher",
    "recover_voucher_signer": "mppagent.tempo.voucher",
    "sign_voucher": "mppagent.tempo.voucher",
    "voucher_digest": "mppagent.tempo.voucher",
}

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

if TYPE_CHECKING:
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

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
