"""The v1 escrow (``TempoStreamChannel``) and its ERC-20 token, as typed async calls.

Payer-side methods (``approve``, ``open``, ``topUp``, ``requestClose``,
``withdraw``) and payee-side ones (``settle``, ``close``) each *sign* a
transaction and return it unsent: the session protocol hands ``open`` and
``topUp`` transactions to the server to broadcast, and the client records
every signed transaction before it leaves the process. Reads return
:class:`ChannelState` with integer base-unit amounts.

Every selector, struct layout and event here is the ABI of the v1 escrow
deployed on Tempo (the one ``mppx`` ships as ``escrow.abi.js``);
``tests/tempo/test_escrow_abi.py`` holds them against it item by item.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mppagent.tempo.artifacts import load_artifact
from mppagent.tempo.chain import ChainClient, SignedTransaction, Wallet
from mppagent.tempo.codec import abi_decode, abi_encode
from mppagent.tempo.hexutil import (
    ZERO_ADDRESS,
    checksum_address,
    keccak,
    normalize_address,
    normalize_bytes32,
)
from mppagent.tempo.tempo_chain import OutgoingTempoTransaction, sign_calls
from mppagent.tempo.tempotx import Call

__all__ = [
    "ChannelState",
    "Escrow",
    "EscrowCall",
    "EscrowEvent",
    "Token",
    "decode_payer_call",
    "encode_approve",
    "encode_open",
    "encode_top_up",
    "encode_transfer",
]

_UINT128_MAX = (1 << 128) - 1


def _selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


_SEL = {
    "open": _selector("open(address,address,uint128,bytes32,address)"),
    "settle": _selector("settle(bytes32,uint128,bytes)"),
    "topUp": _selector("topUp(bytes32,uint256)"),
    "close": _selector("close(bytes32,uint128,bytes)"),
    "requestClose": _selector("requestClose(bytes32)"),
    "withdraw": _selector("withdraw(bytes32)"),
    "getChannel": _selector("getChannel(bytes32)"),
    "computeChannelId": _selector("computeChannelId(address,address,address,bytes32,address)"),
    "getVoucherDigest": _selector("getVoucherDigest(bytes32,uint128)"),
    "CLOSE_GRACE_PERIOD": _selector("CLOSE_GRACE_PERIOD()"),
    "approve": _selector("approve(address,uint256)"),
    "allowance": _selector("allowance(address,address)"),
    "balanceOf": _selector("balanceOf(address)"),
    "mint": _selector("mint(address,uint256)"),
    "transfer": _selector("transfer(address,uint256)"),
}

# Event signatures of the escrow, for decoding receipts.
_EVENTS: dict[bytes, tuple[str, list[str], list[str]]] = {}


def _event(name: str, indexed: list[str], data: list[str], names: list[str]) -> None:
    signature = f"{name}({','.join(indexed + data)})"
    _EVENTS[keccak(signature.encode())] = (name, data, names)


_event(
    "ChannelOpened",
    ["bytes32", "address", "address"],
    ["address", "address", "bytes32", "uint256"],
    ["token", "authorizedSigner", "salt", "deposit"],
)
_event(
    "Settled",
    ["bytes32", "address", "address"],
    ["uint256", "uint256", "uint256"],
    ["cumulativeAmount", "deltaPaid", "newSettled"],
)
_event(
    "TopUp",
    ["bytes32", "address", "address"],
    ["uint256", "uint256"],
    ["additionalDeposit", "newDeposit"],
)
_event("CloseRequested", ["bytes32", "address", "address"], ["uint256"], ["closeGraceEnd"])
_event("CloseRequestCancelled", ["bytes32", "address", "address"], [], [])
_event(
    "ChannelClosed",
    ["bytes32", "address", "address"],
    ["uint256", "uint256"],
    ["settledToPayee", "refundedToPayer"],
)
# A forced close finished (``withdraw``); the same transaction also emits ChannelClosed.
_event("ChannelExpired", ["bytes32", "address", "address"], [], [])

_CHANNEL_CLOSED_TOPIC = keccak(b"ChannelClosed(bytes32,address,address,uint256,uint256)")

# getChannel's struct, in the deployed contract's field order.
_CHANNEL_TUPLE = "(bool,uint64,address,address,address,address,uint128,uint128)"


@dataclass(frozen=True)
class ChannelState:
    """On-chain state of one channel; amounts are integers in base units.

    The escrow clears a channel's record when it finalizes it and keeps only
    ``finalized``: after ``close`` or ``withdraw`` every other field reads as
    zero (:attr:`cleared`). The amounts of a finalized channel come from its
    ``ChannelClosed`` event, never from here.
    """

    channel_id: str
    payer: str
    payee: str
    token: str
    authorized_signer: str
    deposit: int
    settled: int
    close_requested_at: int
    finalized: bool

    @property
    def exists(self) -> bool:
        """Whether the escrow holds a record for this id: never opened, or wiped, reads False."""
        return self.payer != ZERO_ADDRESS

    @property
    def cleared(self) -> bool:
        """Finalized and wiped: payer, payee, token and amounts are gone (all zero).

        Tells a closed channel (``exists`` False, ``finalized`` True) from an id the
        escrow has never seen (both False).
        """
        return self.finalized and self.payer == ZERO_ADDRESS

    @property
    def expected_signer(self) -> str:
        """Who must sign vouchers: the delegated signer if set, else the payer."""
        return self.payer if self.authorized_signer == ZERO_ADDRESS else self.authorized_signer

    @property
    def unsettled(self) -> int:
        """Deposit not yet paid out to the payee."""
        return self.deposit - self.settled


@dataclass(frozen=True)
class EscrowEvent:
    """One decoded escrow log: ``name`` plus ``channel_id``, ``payer``, ``payee`` and values."""

    name: str
    channel_id: str
    payer: str
    payee: str
    values: Mapping[str, int | str]


class Token:
    """The ERC-20 the channels are denominated in (TIP-20 stand-in on dev chains)."""

    def __init__(self, chain: ChainClient, address: str) -> None:
        self.chain = chain
        self.address = normalize_address(address, "token")
        # Standard OpenZeppelin ERC-20 errors (ERC20InsufficientAllowance, ...), by name.
        chain.add_error_decoders(load_artifact("TestToken").error_signatures())

    async def balance_of(self, owner: str) -> int:
        """Token balance of ``owner`` in base units."""
        data = _SEL["balanceOf"] + abi_encode(["address"], [checksum_address(owner)])
        out = await self.chain.call(self.address, data, context="balanceOf")
        return int(abi_decode(["uint256"], out)[0])

    async def allowance(self, owner: str, spender: str) -> int:
        """How much ``spender`` may pull from ``owner``."""
        data = _SEL["allowance"] + abi_encode(
            ["address", "address"], [checksum_address(owner), checksum_address(spender)]
        )
        out = await self.chain.call(self.address, data, context="allowance")
        return int(abi_decode(["uint256"], out)[0])

    async def sign_approve(self, wallet: Wallet, spender: str, amount: int) -> SignedTransaction:
        """Sign ``approve(spender, amount)``."""
        data = encode_approve(spender, amount)
        return await self.chain.sign_call(wallet, self.address, data, context="approve")

    async def sign_transfer(self, wallet: Wallet, to: str, amount: int) -> SignedTransaction:
        """Sign ``transfer(to, amount)`` (the server returns an over-captured close with it)."""
        data = _SEL["transfer"] + abi_encode(["address", "uint256"], [checksum_address(to), amount])
        return await self.chain.sign_call(wallet, self.address, data, context="transfer")

    async def sign_mint(self, wallet: Wallet, to: str, amount: int) -> SignedTransaction:
        """Sign ``mint(to, amount)`` (test token only: minting is open on dev chains)."""
        data = _SEL["mint"] + abi_encode(["address", "uint256"], [checksum_address(to), amount])
        return await self.chain.sign_call(wallet, self.address, data, context="mint")


class Escrow:
    """Typed access to one ``TempoStreamChannel`` deployment."""

    def __init__(self, chain: ChainClient, address: str) -> None:
        self.chain = chain
        self.address = normalize_address(address, "escrow")
        chain.add_error_decoders(load_artifact("TempoStreamChannel").error_signatures())
        # open/topUp pull the deposit with transferFrom: the token's errors surface here too.
        chain.add_error_decoders(load_artifact("TestToken").error_signatures())

    # -- reads ---------------------------------------------------------------

    async def get_channel(self, channel_id: str) -> ChannelState:
        """Read a channel; a never-opened id comes back with ``exists == False``."""
        cid = normalize_bytes32(channel_id, "channelId")
        out = await self.chain.call(
            self.address, _SEL["getChannel"] + bytes.fromhex(cid[2:]), context="getChannel"
        )
        (finalized, requested_at, payer, payee, token, signer, deposit, settled) = abi_decode(
            [_CHANNEL_TUPLE], out
        )[0]
        return ChannelState(
            channel_id=cid,
            payer=str(payer).lower(),
            payee=str(payee).lower(),
            token=str(token).lower(),
            authorized_signer=str(signer).lower(),
            deposit=int(deposit),
            settled=int(settled),
            close_requested_at=int(requested_at),
            finalized=bool(finalized),
        )

    async def close_grace_period(self) -> int:
        """Seconds a payer must wait between ``requestClose`` and ``withdraw``."""
        out = await self.chain.call(
            self.address, _SEL["CLOSE_GRACE_PERIOD"], context="CLOSE_GRACE_PERIOD"
        )
        return int(abi_decode(["uint64"], out)[0])

    async def compute_channel_id_onchain(
        self, payer: str, payee: str, token: str, salt: str, authorized_signer: str
    ) -> str:
        """The contract's own ``computeChannelId`` (tests compare it with ours)."""
        data = _SEL["computeChannelId"] + abi_encode(
            ["address", "address", "address", "bytes32", "address"],
            [
                checksum_address(payer),
                checksum_address(payee),
                checksum_address(token),
                bytes.fromhex(normalize_bytes32(salt)[2:]),
                checksum_address(authorized_signer),
            ],
        )
        out = await self.chain.call(self.address, data, context="computeChannelId")
        return "0x" + bytes(abi_decode(["bytes32"], out)[0]).hex()

    async def voucher_digest_onchain(self, channel_id: str, cumulative_amount: int) -> bytes:
        """The contract's ``getVoucherDigest`` (tests compare it with ours)."""
        data = _SEL["getVoucherDigest"] + abi_encode(
            ["bytes32", "uint128"],
            [bytes.fromhex(normalize_bytes32(channel_id)[2:]), cumulative_amount],
        )
        out = await self.chain.call(self.address, data, context="getVoucherDigest")
        return bytes(abi_decode(["bytes32"], out)[0])

    # -- payer transactions ----------------------------------------------------

    async def sign_open(
        self,
        wallet: Wallet,
        *,
        payee: str,
        token: str,
        deposit: int,
        salt: str,
        authorized_signer: str = ZERO_ADDRESS,
        gas: int | None = None,
    ) -> SignedTransaction:
        """Sign ``open``; the token allowance must already cover ``deposit``."""
        _check_uint128(deposit, "deposit")
        data = encode_open(payee, token, deposit, salt, authorized_signer)
        return await self.chain.sign_call(wallet, self.address, data, context="open", gas=gas)

    async def sign_top_up(
        self, wallet: Wallet, channel_id: str, amount: int, *, gas: int | None = None
    ) -> SignedTransaction:
        """Sign ``topUp``; the token allowance must already cover ``amount``."""
        _check_uint128(amount, "additionalDeposit")
        data = encode_top_up(channel_id, amount)
        return await self.chain.sign_call(wallet, self.address, data, context="topUp", gas=gas)

    async def sign_open_tempo(
        self,
        wallet: Wallet,
        *,
        payee: str,
        token: str,
        deposit: int,
        salt: str,
        authorized_signer: str = ZERO_ADDRESS,
        fee_token: str | None = None,
        sponsored: bool = False,
        gas: int | None = None,
    ) -> OutgoingTempoTransaction:
        """Sign ONE Tempo transaction: ``approve(escrow, deposit)`` then ``open`` (atomic).

        Fees are paid in ``fee_token`` (default: the channel's ``token``); with
        ``sponsored`` the sender signs for a fee payer (see ``tempo_chain.sponsor``).
        """
        _check_uint128(deposit, "deposit")
        data = encode_open(payee, token, deposit, salt, authorized_signer)
        return await self._sign_approved(wallet, token, deposit, data, fee_token, sponsored, gas)

    async def sign_top_up_tempo(
        self,
        wallet: Wallet,
        channel_id: str,
        amount: int,
        *,
        token: str,
        fee_token: str | None = None,
        sponsored: bool = False,
        gas: int | None = None,
    ) -> OutgoingTempoTransaction:
        """Sign ONE Tempo transaction: ``approve(escrow, amount)`` then ``topUp`` (atomic)."""
        _check_uint128(amount, "additionalDeposit")
        data = encode_top_up(channel_id, amount)
        return await self._sign_approved(wallet, token, amount, data, fee_token, sponsored, gas)

    async def _sign_approved(
        self,
        wallet: Wallet,
        token: str,
        amount: int,
        data: bytes,
        fee_token: str | None,
        sponsored: bool,
        gas: int | None,
    ) -> OutgoingTempoTransaction:
        """One 0x76: ``approve(escrow, amount)`` on ``token``, then the escrow call ``data``."""
        calls = (Call(token, encode_approve(self.address, amount)), Call(self.address, data))
        return await sign_calls(
            self.chain, wallet, calls, fee_token=fee_token or token, sponsored=sponsored, gas=gas
        )

    async def sign_request_close(self, wallet: Wallet, channel_id: str) -> SignedTransaction:
        """Sign ``requestClose`` (starts the forced-close grace period)."""
        data = _SEL["requestClose"] + bytes.fromhex(normalize_bytes32(channel_id)[2:])
        return await self.chain.sign_call(wallet, self.address, data, context="requestClose")

    async def sign_withdraw(self, wallet: Wallet, channel_id: str) -> SignedTransaction:
        """Sign ``withdraw`` (after the grace period: refunds everything unsettled)."""
        data = _SEL["withdraw"] + bytes.fromhex(normalize_bytes32(channel_id)[2:])
        return await self.chain.sign_call(wallet, self.address, data, context="withdraw")

    # -- payee transactions ----------------------------------------------------

    async def sign_settle(
        self, wallet: Wallet, channel_id: str, cumulative_amount: int, signature: str
    ) -> SignedTransaction:
        """Sign ``settle`` with the payer's voucher."""
        data = _voucher_call("settle", channel_id, cumulative_amount, signature)
        return await self.chain.sign_call(wallet, self.address, data, context="settle")

    async def sign_close(
        self, wallet: Wallet, channel_id: str, cumulative_amount: int, signature: str
    ) -> SignedTransaction:
        """Sign ``close`` with the payer's final voucher."""
        data = encode_close(channel_id, cumulative_amount, signature)
        return await self.chain.sign_call(wallet, self.address, data, context="close")

    # -- receipts ----------------------------------------------------------------

    def events(self, receipt: Mapping[str, Any]) -> list[EscrowEvent]:
        """Decode this escrow's events from a transaction receipt."""
        decoded = (self._decode_log(log) for log in receipt.get("logs", []))
        return [event for event in decoded if event is not None]

    async def closed_event(self, channel_id: str, *, from_block: int = 0) -> EscrowEvent | None:
        """The ``ChannelClosed`` event of a finalized channel, or ``None`` if it has none.

        The escrow wipes a channel's record when it finalizes it, so this event is
        the only place its final amounts survive (``settledToPayee``,
        ``refundedToPayer``), e.g. for a client that crashed while the payee closed.
        """
        cid = bytes.fromhex(normalize_bytes32(channel_id, "channelId")[2:])
        logs = await self.chain.get_logs(
            self.address, [_CHANNEL_CLOSED_TOPIC, cid], from_block=from_block
        )
        closed = [e for e in map(self._decode_log, logs) if e is not None]
        return closed[-1] if closed else None

    def _decode_log(self, log: Mapping[str, Any]) -> EscrowEvent | None:
        if str(log.get("address", "")).lower() != self.address:
            return None
        topics = [_as_bytes(t) for t in log.get("topics", [])]
        if len(topics) != 4 or topics[0] not in _EVENTS:
            return None
        name, types, names = _EVENTS[topics[0]]
        values = abi_decode(types, _as_bytes(log.get("data", b""))) if types else ()
        return EscrowEvent(
            name=name,
            channel_id="0x" + topics[1].hex(),
            payer="0x" + topics[2][-20:].hex(),
            payee="0x" + topics[3][-20:].hex(),
            values={k: _event_value(v) for k, v in zip(names, values, strict=True)},
        )


def encode_open(payee: str, token: str, deposit: int, salt: str, authorized_signer: str) -> bytes:
    """Calldata of ``open(payee, token, deposit, salt, authorizedSigner)``."""
    return _SEL["open"] + abi_encode(
        ["address", "address", "uint128", "bytes32", "address"],
        [
            checksum_address(payee),
            checksum_address(token),
            deposit,
            bytes.fromhex(normalize_bytes32(salt)[2:]),
            checksum_address(authorized_signer),
        ],
    )


def encode_close(channel_id: str, cumulative_amount: int, signature: str) -> bytes:
    """Calldata of ``close(channelId, cumulativeAmount, signature)`` (the payee's close)."""
    return _voucher_call("close", channel_id, cumulative_amount, signature)


def _voucher_call(name: str, channel_id: str, cumulative_amount: int, signature: str) -> bytes:
    return _SEL[name] + abi_encode(
        ["bytes32", "uint128", "bytes"],
        [bytes.fromhex(normalize_bytes32(channel_id)[2:]), cumulative_amount, _sig(signature)],
    )


def encode_approve(spender: str, amount: int) -> bytes:
    """Calldata of the token's ``approve(spender, amount)``."""
    return _SEL["approve"] + abi_encode(["address", "uint256"], [checksum_address(spender), amount])


def encode_transfer(to: str, amount: int) -> bytes:
    """Calldata of the token's ``transfer(to, amount)`` (dev-chain funding)."""
    return _SEL["transfer"] + abi_encode(["address", "uint256"], [checksum_address(to), amount])


def encode_top_up(channel_id: str, amount: int) -> bytes:
    """Calldata of ``topUp(channelId, additionalDeposit)`` (a uint256 in the deployed ABI)."""
    return _SEL["topUp"] + abi_encode(
        ["bytes32", "uint256"], [bytes.fromhex(normalize_bytes32(channel_id)[2:]), amount]
    )


@dataclass(frozen=True)
class EscrowCall:
    """A decoded payer call (``open`` or ``topUp``) found in a transaction's calldata."""

    function: str
    args: Mapping[str, int | str]


def decode_payer_call(data: bytes) -> EscrowCall | None:
    """Decode ``open``/``topUp`` calldata; ``None`` for anything else.

    The server uses this to check that an ``open`` credential's transaction
    really opens a channel to *its* payee with *its* token before broadcasting.
    """
    selector, body = data[:4], data[4:]
    try:
        if selector == _SEL["open"]:
            payee, token, deposit, salt, signer = abi_decode(
                ["address", "address", "uint128", "bytes32", "address"], body
            )
            return EscrowCall(
                "open",
                {
                    "payee": str(payee).lower(),
                    "token": str(token).lower(),
                    "deposit": int(deposit),
                    "salt": "0x" + bytes(salt).hex(),
                    "authorizedSigner": str(signer).lower(),
                },
            )
        if selector == _SEL["topUp"]:
            channel_id, amount = abi_decode(["bytes32", "uint256"], body)
            return EscrowCall(
                "topUp",
                {"channelId": "0x" + bytes(channel_id).hex(), "additionalDeposit": int(amount)},
            )
    except Exception:
        return None
    return None


def _check_uint128(value: int, field: str) -> None:
    if not 0 < value <= _UINT128_MAX:
        raise ValueError(f"{field} must be a positive uint128")


def _sig(signature: str) -> bytes:
    body = signature[2:] if signature.startswith("0x") else signature
    return bytes.fromhex(body)


def _event_value(value: object) -> int | str:
    if isinstance(value, int):
        return value
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value).lower()


def _as_bytes(value: object) -> bytes:
    """Log topics and data as bytes (web3 gives HexBytes; raw JSON gives 0x-hex strings)."""
    if isinstance(value, bytes):
        return value
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)
