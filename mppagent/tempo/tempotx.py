"""Tempo transactions (type ``0x76``): build, sign, encode, decode, hash, sponsor.

A Tempo transaction batches several calls that execute atomically, pays its
fee in a TIP-20 token (``feeToken``) and has a two-dimensional nonce
(``nonceKey``, ``nonce``). Its wire form is::

    0x76 || rlp([chainId, maxPriorityFeePerGas, maxFeePerGas, gas,
                 [[to, value, data], ...], accessList, nonceKey, nonce,
                 validBefore, validAfter, feeToken, feePayerSlot,
                 authorizationList, senderSignature])

Two details decide whether a node accepts the bytes, so this module is
tested byte for byte against the TypeScript references (``ox/tempo``,
``viem/tempo``):

* **Expiring nonces** (``nonceKey = 2**256 - 1``, ``nonce = 0``): replay is
  prevented by the transaction hash while ``validBefore`` holds, so one account
  can have many in flight without a nonce counter. Networks refuse
  ``validBefore`` more than about 30 s ahead; we build at most
  :data:`MAX_EXPIRING_WINDOW` seconds ahead.
* **Fee sponsorship**: the sender signs with ``feePayerSlot = 0x00`` (a
  placeholder) and an empty ``feeToken`` -- it does not commit to the token the
  fee payer will pay with. The fee payer then signs a different preimage
  (domain byte ``0x78``) that contains the fee token and the sender's address,
  and the broadcast envelope carries both signatures. The reference SDK hands a
  sponsored transaction over in the *fee-payer envelope* form: ``0x78 ||
  rlp([..., feeToken = empty, sender address, authorizationList,
  senderSignature])``; :func:`decode_tempo_transaction` reads both forms.

Only secp256k1 senders are supported (no P256/WebAuthn/keychain signatures,
no Tempo authorization lists, no key authorizations): anything else is
refused with :class:`UnsupportedTempoTransaction` rather than mis-read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mppagent.tempo.hexutil import keccak, normalize_address
from mppagent.tempo.transactions import InvalidTransaction, transaction_bytes
from mppagent.tempo.voucher import InvalidSignature, VoucherSigner, recover_digest_signer

__all__ = [
    "EXPIRING_NONCE_KEY",
    "FEE_PAYER_TYPE",
    "MAX_EXPIRING_WINDOW",
    "TEMPO_TX_TYPE",
    "AccessListEntry",
    "Call",
    "SignedTempoTransaction",
    "TempoTransaction",
    "UnsupportedTempoTransaction",
    "decode_tempo_transaction",
    "expiring_valid_before",
    "is_tempo_transaction",
    "sign_as_fee_payer",
]

TEMPO_TX_TYPE = 0x76
FEE_PAYER_TYPE = 0x78
EXPIRING_NONCE_KEY = (1 << 256) - 1
MAX_EXPIRING_WINDOW = 25
"""Seconds ahead an expiring-nonce transaction may be valid (networks allow ~30)."""

_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _N // 2
_PLACEHOLDER = b"\x00"


class UnsupportedTempoTransaction(InvalidTransaction):
    """A well-formed Tempo transaction using a feature this client does not handle."""


@dataclass(frozen=True)
class Call:
    """One call of a batch: ``to`` (lowercase address), calldata and native value."""

    to: str
    data: bytes = b""
    value: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "to", normalize_address(self.to, "call.to"))
        _check_uint(self.value, "call.value", 256)


@dataclass(frozen=True)
class AccessListEntry:
    """An EIP-2930 access-list entry (rarely used; kept so decoding loses nothing)."""

    address: str
    storage_keys: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalize_address(self.address, "accessList.address"))
        if any(len(k) != 32 for k in self.storage_keys):
            raise InvalidTransaction("access list storage keys must be 32 bytes")


@dataclass(frozen=True)
class TempoTransaction:
    """An unsigned Tempo transaction.

    ``sponsored`` marks a transaction whose fee someone else pays: the sender's
    signature then covers the ``0x00`` placeholder and no fee token, and
    ``fee_token`` (if set) is the token the fee payer is asked to use.
    """

    chain_id: int
    calls: tuple[Call, ...]
    gas: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int = 0
    nonce_key: int = 0
    nonce: int = 0
    valid_before: int | None = None
    valid_after: int | None = None
    fee_token: str | None = None
    sponsored: bool = False
    access_list: tuple[AccessListEntry, ...] = ()

    def __post_init__(self) -> None:
        _check_uint(self.chain_id, "chainId", 64)
        if self.chain_id == 0:
            raise InvalidTransaction("chainId must be positive")
        object.__setattr__(self, "calls", tuple(self.calls))
        if not self.calls:
            raise InvalidTransaction("a Tempo transaction needs at least one call")
        if not all(isinstance(c, Call) for c in self.calls):
            raise InvalidTransaction("calls must be Call values")
        object.__setattr__(self, "access_list", tuple(self.access_list))
        _check_uint(self.gas, "gas", 64)
        _check_uint(self.max_fee_per_gas, "maxFeePerGas", 128)
        _check_uint(self.max_priority_fee_per_gas, "maxPriorityFeePerGas", 128)
        if self.max_priority_fee_per_gas > self.max_fee_per_gas:
            raise InvalidTransaction("maxPriorityFeePerGas exceeds maxFeePerGas")
        _check_uint(self.nonce_key, "nonceKey", 256)
        _check_uint(self.nonce, "nonce", 64)
        for name, value in (("validBefore", self.valid_before), ("validAfter", self.valid_after)):
            if value is not None:
                _check_uint(value, name, 64)
                if value == 0:
                    raise InvalidTransaction(f"{name} must be positive when set")
        if (
            self.valid_before is not None
            and self.valid_after is not None
            and self.valid_before <= self.valid_after
        ):
            raise InvalidTransaction("validBefore must be later than validAfter")
        if self.expiring and (self.nonce != 0 or self.valid_before is None):
            raise InvalidTransaction("an expiring nonce needs nonce = 0 and a validBefore")
        if self.fee_token is not None:
            object.__setattr__(self, "fee_token", normalize_address(self.fee_token, "feeToken"))

    @property
    def expiring(self) -> bool:
        """True for an expiring nonce (replay protection by hash until ``valid_before``)."""
        return self.nonce_key == EXPIRING_NONCE_KEY

    def signing_payload(self) -> bytes:
        """The exact bytes the sender's signature hashes (``0x76 || rlp(...)``).

        Under sponsorship this carries the placeholder and no fee token. v2's
        ``expiringNonceHash`` is ``keccak256(signing_payload || sender)``
        (``mppagent.tempo.v2.expiring_nonce_hash``).
        """
        slot, token = (_PLACEHOLDER, b"") if self.sponsored else (b"", _token(self.fee_token))
        return _envelope(TEMPO_TX_TYPE, self._fields(token, slot))

    def signing_hash(self) -> bytes:
        """keccak256 of :meth:`signing_payload`: what the sender signs."""
        return keccak(self.signing_payload())

    def fee_payer_payload(self, sender: str) -> bytes:
        """The fee payer's preimage: domain byte ``0x78``, the fee token and the sender."""
        if self.fee_token is None:
            raise InvalidTransaction("a sponsored transaction needs a fee token to co-sign")
        sender_bytes = bytes.fromhex(normalize_address(sender, "sender")[2:])
        body = self._fields(_token(self.fee_token), sender_bytes)
        return _envelope(FEE_PAYER_TYPE, body)

    def fee_payer_hash(self, sender: str) -> bytes:
        """keccak256 of :meth:`fee_payer_payload`: what the fee payer signs."""
        return keccak(self.fee_payer_payload(sender))

    def sign(self, private_key: str | bytes) -> SignedTempoTransaction:
        """Sign as the sender (secp256k1, RFC 6979, low s, v = 27/28)."""
        signer = _signer(private_key)
        signature = bytes.fromhex(signer.sign_digest(self.signing_hash())[2:])
        return SignedTempoTransaction(
            tx=self, sender=signer.address.lower(), sender_signature=signature
        )

    def _fields(self, fee_token: bytes, fee_payer_slot: bytes | list[int]) -> list[Any]:
        return [
            self.chain_id,
            self.max_priority_fee_per_gas,
            self.max_fee_per_gas,
            self.gas,
            [[_addr(c.to), c.value, c.data] for c in self.calls],
            [[_addr(e.address), list(e.storage_keys)] for e in self.access_list],
            self.nonce_key,
            self.nonce,
            b"" if self.valid_before is None else self.valid_before,
            b"" if self.valid_after is None else self.valid_after,
            fee_token,
            fee_payer_slot,
            [],  # Tempo authorization list: not supported (refused on decode)
        ]


@dataclass(frozen=True)
class SignedTempoTransaction:
    """A sender-signed Tempo transaction, perhaps co-signed by a fee payer.

    ``raw`` is what goes to ``eth_sendRawTransaction`` (a sponsored transaction
    only once the fee payer has signed); ``hash`` is its transaction hash.
    Signatures are kept out of ``repr``.
    """

    tx: TempoTransaction
    sender: str
    sender_signature: bytes = field(repr=False)
    fee_payer_signature: tuple[int, int, int] | None = field(default=None, repr=False)
    fee_payer: str | None = None

    @property
    def awaiting_fee_payer(self) -> bool:
        """Sponsored, but the fee payer has not signed yet (not broadcastable)."""
        return self.tx.sponsored and self.fee_payer_signature is None

    @property
    def raw(self) -> bytes:
        """The ``0x76`` envelope (with the placeholder if the fee payer is still to sign)."""
        if self.fee_payer_signature is not None:
            slot: bytes | list[int] = list(self.fee_payer_signature)
            token = _token(self.tx.fee_token)
        elif self.tx.sponsored:
            slot, token = _PLACEHOLDER, b""
        else:
            slot, token = b"", _token(self.tx.fee_token)
        fields = [*self.tx._fields(token, slot), self.sender_signature]
        return _envelope(TEMPO_TX_TYPE, fields)

    @property
    def raw_hex(self) -> str:
        """:attr:`raw` as 0x-hex."""
        return "0x" + self.raw.hex()

    @property
    def hash(self) -> str:
        """The transaction hash (keccak256 of :attr:`raw`), 0x-hex."""
        return "0x" + keccak(self.raw).hex()

    def fee_payer_envelope(self) -> bytes:
        """The hand-over form of a sponsored transaction (``0x78``, sender in the slot).

        This is what the reference SDK sends a server that sponsors fees.
        """
        if not self.tx.sponsored:
            raise InvalidTransaction("only a sponsored transaction has a fee-payer envelope")
        sender = bytes.fromhex(self.sender[2:])
        fields = [*self.tx._fields(b"", sender), self.sender_signature]
        return _envelope(FEE_PAYER_TYPE, fields)


def sign_as_fee_payer(
    signed: SignedTempoTransaction, private_key: str | bytes, fee_token: str | None = None
) -> SignedTempoTransaction:
    """Co-sign a sponsored transaction as its fee payer (server side).

    ``fee_token`` chooses the token the fee is paid in (the sender did not
    commit to one); without it the token the sender suggested is used.
    Returns the broadcastable transaction.
    """
    if not signed.tx.sponsored:
        raise InvalidTransaction("transaction was not signed for sponsorship (no placeholder)")
    token = fee_token if fee_token is not None else signed.tx.fee_token
    if token is None:
        raise InvalidTransaction("a fee token is needed to co-sign a sponsored transaction")
    tx = replace(signed.tx, fee_token=token)
    signer = _signer(private_key)
    sig = bytes.fromhex(signer.sign_digest(tx.fee_payer_hash(signed.sender))[2:])
    rsv = (sig[64] - 27, int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"))
    return replace(signed, tx=tx, fee_payer_signature=rsv, fee_payer=signer.address.lower())


def is_tempo_transaction(raw: bytes) -> bool:
    """True if ``raw`` starts with a Tempo type byte (``0x76`` or the ``0x78`` hand-over)."""
    return bool(raw) and raw[0] in (TEMPO_TX_TYPE, FEE_PAYER_TYPE)


def expiring_valid_before(now: int, window: int = MAX_EXPIRING_WINDOW) -> int:
    """``validBefore`` for an expiring nonce built at ``now`` (chain time, seconds)."""
    if not 0 < window <= MAX_EXPIRING_WINDOW:
        raise ValueError(f"expiring window must be 1..{MAX_EXPIRING_WINDOW} seconds")
    return now + window


# -- decoding -------------------------------------------------------------------


def decode_tempo_transaction(raw: bytes | str) -> SignedTempoTransaction:
    """Decode a signed ``0x76`` transaction or a ``0x78`` fee-payer hand-over.

    Checks that the bytes are canonical (re-encoding gives them back), that
    the sender signature is 65-byte low-s secp256k1 with v = 27/28 and that it
    recovers; a fee-payer signature, if present, is recovered too. Raises
    :class:`InvalidTransaction` (or :class:`UnsupportedTempoTransaction`).
    """
    data = transaction_bytes(raw)
    if not is_tempo_transaction(data):
        raise InvalidTransaction("not a Tempo transaction (type byte must be 0x76 or 0x78)")
    handover = data[0] == FEE_PAYER_TYPE
    import rlp  # here, not at module load: eth-utils under it is slow to import

    try:
        items = rlp.decode(data[1:], strict=True)
    except Exception:
        raise InvalidTransaction("Tempo transaction is not valid RLP") from None
    if not isinstance(items, list) or len(items) not in (13, 14, 15):
        raise InvalidTransaction("Tempo transaction must have 13 to 15 fields")
    if len(items) != 14:
        raise UnsupportedTempoTransaction(
            "unsigned Tempo transactions and key authorizations are not supported"
        )
    if items[12] != []:
        raise UnsupportedTempoTransaction("Tempo authorization lists are not supported")
    sender_signature = _bytes(items[13], "signature")
    if len(sender_signature) != 65:
        raise UnsupportedTempoTransaction("only 65-byte secp256k1 sender signatures are supported")
    slot, token = items[11], _bytes(items[10], "feeToken")
    sponsored = slot != b""
    fee_payer_sig: tuple[int, int, int] | None = None
    claimed_sender: str | None = None
    if handover:
        if not isinstance(slot, bytes) or len(slot) != 20:
            raise InvalidTransaction("a 0x78 hand-over must carry the sender address")
        claimed_sender = "0x" + slot.hex()
    elif isinstance(slot, list):
        fee_payer_sig = _rsv(slot)
    elif slot not in (b"", _PLACEHOLDER):
        raise InvalidTransaction("fee payer field must be empty, 0x00 or a signature")
    if sponsored and fee_payer_sig is None and token:
        raise InvalidTransaction("a sponsored transaction awaiting its fee payer has no feeToken")
    try:
        tx = TempoTransaction(
            chain_id=_int(items[0], "chainId"),
            max_priority_fee_per_gas=_int(items[1], "maxPriorityFeePerGas"),
            max_fee_per_gas=_int(items[2], "maxFeePerGas"),
            gas=_int(items[3], "gas"),
            calls=tuple(_call(c) for c in _list(items[4], "calls")),
            access_list=tuple(_access(e) for e in _list(items[5], "accessList")),
            nonce_key=_int(items[6], "nonceKey"),
            nonce=_int(items[7], "nonce"),
            valid_before=_opt_int(items[8], "validBefore"),
            valid_after=_opt_int(items[9], "validAfter"),
            fee_token=_opt_addr(token, "feeToken"),
            sponsored=sponsored,
        )
    except ValueError as exc:  # address normalisation (InvalidHex is a ValueError)
        raise InvalidTransaction(str(exc)) from None
    sender = _recover(sender_signature, tx.signing_hash(), "sender")
    if claimed_sender is not None and claimed_sender != sender:
        raise InvalidTransaction("hand-over sender does not match the sender signature")
    signed = SignedTempoTransaction(tx=tx, sender=sender, sender_signature=sender_signature)
    if fee_payer_sig is not None:
        v, r, s = fee_payer_sig
        sig65 = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v + 27])
        payer = _recover(sig65, tx.fee_payer_hash(sender), "fee payer")
        signed = replace(signed, fee_payer_signature=fee_payer_sig, fee_payer=payer)
    again = signed.fee_payer_envelope() if handover else signed.raw
    if again != data:
        raise InvalidTransaction("Tempo transaction is not canonically encoded")
    return signed


def _recover(signature: bytes, digest: bytes, who: str) -> str:
    if signature[64] not in (27, 28):
        raise InvalidTransaction(f"{who} signature v must be 27 or 28")
    try:
        return recover_digest_signer("0x" + signature.hex(), digest).lower()
    except InvalidSignature as exc:
        raise InvalidTransaction(f"{who} signature: {exc}") from None


def _rsv(item: list[Any]) -> tuple[int, int, int]:
    if len(item) != 3:
        raise InvalidTransaction("fee payer signature must be [yParity, r, s]")
    v, r, s = (_int(x, "feePayerSignature") for x in item)
    if v not in (0, 1) or not (0 < r < _N and 0 < s <= _HALF_N):
        raise InvalidTransaction("fee payer signature is not canonical")
    return v, r, s


def _call(item: object) -> Call:
    parts = _list(item, "call")
    if len(parts) != 3:
        raise InvalidTransaction("a call must be [to, value, data]")
    to = _bytes(parts[0], "call.to")
    if not to:
        raise UnsupportedTempoTransaction("contract-creation calls are not supported")
    if len(to) != 20:
        raise InvalidTransaction("call.to must be a 20-byte address")
    return Call(
        to="0x" + to.hex(), value=_int(parts[1], "call.value"), data=_bytes(parts[2], "data")
    )


def _access(item: object) -> AccessListEntry:
    parts = _list(item, "accessList entry")
    if len(parts) != 2:
        raise InvalidTransaction("an access-list entry must be [address, storageKeys]")
    address = _bytes(parts[0], "accessList.address")
    keys = tuple(_bytes(k, "storageKey") for k in _list(parts[1], "storageKeys"))
    return AccessListEntry(address="0x" + address.hex(), storage_keys=keys)


def _bytes(item: object, name: str) -> bytes:
    if not isinstance(item, bytes):
        raise InvalidTransaction(f"{name} must be a byte string")
    return item


def _list(item: object, name: str) -> Sequence[Any]:
    if not isinstance(item, list):
        raise InvalidTransaction(f"{name} must be a list")
    return item


def _int(item: object, name: str) -> int:
    data = _bytes(item, name)
    if len(data) > 32 or data[:1] == b"\x00":
        raise InvalidTransaction(f"{name} is not a canonical integer")
    return int.from_bytes(data, "big")


def _opt_int(item: object, name: str) -> int | None:
    return None if item == b"" else _int(item, name)


def _opt_addr(item: bytes, name: str) -> str | None:
    if not item:
        return None
    if len(item) != 20:
        raise InvalidTransaction(f"{name} must be a 20-byte address")
    return "0x" + item.hex()


def _check_uint(value: object, name: str, bits: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise InvalidTransaction(f"{name} must be a uint{bits}")


def _envelope(type_byte: int, fields: list[Any]) -> bytes:
    import rlp

    return bytes([type_byte]) + bytes(rlp.encode(fields))


def _addr(address: str) -> bytes:
    return bytes.fromhex(address[2:])


def _token(address: str | None) -> bytes:
    return b"" if address is None else _addr(address)


def _signer(private_key: str | bytes) -> VoucherSigner:
    return VoucherSigner(private_key)
