"""Decode signed transactions handed over in ``open``/``topUp`` credentials.

A session server must not broadcast whatever bytes a client sends: it first
checks what the transaction does (which contract, which function, which
arguments, which chain) and who signed it. This module turns raw signed
bytes (EIP-1559, EIP-2930 or legacy) into :class:`DecodedTransaction`, or
raises :class:`InvalidTransaction`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mppagent.errors import ProtocolError
from mppagent.tempo.hexutil import keccak

__all__ = [
    "DecodedTransaction",
    "InvalidTransaction",
    "decode_signed_transaction",
    "transaction_bytes",
]

_MAX_TX_BYTES = 128 * 1024


class InvalidTransaction(ProtocolError):
    """Bytes that are not a well-formed signed transaction."""


@dataclass(frozen=True)
class DecodedTransaction:
    """What a signed transaction does and who signed it (addresses lowercase)."""

    hash: str
    sender: str
    to: str | None
    data: bytes
    value: int
    nonce: int
    chain_id: int | None


def transaction_bytes(raw: bytes | str) -> bytes:
    """The bytes of a transaction given as 0x-hex (or bytes), within a sane size."""
    if isinstance(raw, str):
        if not raw.startswith("0x"):
            raise InvalidTransaction("transaction must be 0x-prefixed hex")
        try:
            raw = bytes.fromhex(raw[2:])
        except ValueError:
            raise InvalidTransaction("transaction is not hex") from None
    if not isinstance(raw, bytes):
        raise InvalidTransaction("transaction must be 0x-prefixed hex")
    if not raw or len(raw) > _MAX_TX_BYTES:
        raise InvalidTransaction("transaction is empty or too large")
    return raw


def decode_signed_transaction(raw_hex: str) -> DecodedTransaction:
    """Decode and recover the sender of a signed transaction given as 0x-hex.

    eth-account is imported here, not at module load: clients import this module
    (through the Tempo transaction codec) and seldom decode anything with it.
    """
    import rlp
    from eth_account import Account
    from eth_account._utils.legacy_transactions import Transaction as LegacyTransaction
    from eth_account.typed_transactions.typed_transaction import TypedTransaction
    from hexbytes import HexBytes

    raw = transaction_bytes(raw_hex)
    try:
        sender = str(Account.recover_transaction(raw)).lower()
        if raw[0] <= 0x7F:  # typed transaction envelope (EIP-2718)
            typed = TypedTransaction.from_bytes(HexBytes(raw))
            fields = typed.as_dict()
            to_raw = fields.get("to")
            data = bytes(fields.get("data", b""))
            value = int(fields.get("value", 0))
            nonce = int(fields["nonce"])
            chain_id: int | None = int(fields["chainId"])
        else:
            legacy = rlp.decode(raw, LegacyTransaction)
            to_raw = legacy.to
            data = bytes(legacy.data)
            value = int(legacy.value)
            nonce = int(legacy.nonce)
            v = int(legacy.v)
            chain_id = (v - 35) // 2 if v >= 35 else None
    except Exception:
        raise InvalidTransaction(
            "transaction could not be decoded or its signer recovered"
        ) from None
    to = "0x" + bytes(to_raw).hex() if to_raw else None
    return DecodedTransaction(
        hash="0x" + keccak(raw).hex(),
        sender=sender,
        to=to,
        data=data,
        value=value,
        nonce=nonce,
        chain_id=chain_id,
    )
