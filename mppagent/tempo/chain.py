"""JSON-RPC plumbing for the Tempo layer: wallets, nonces, fees, sending, reverts.

This is the only module that talks to a chain (through web3's async
provider). Everything above it sees typed results and typed errors:

* :class:`ChainUnavailable` -- the RPC endpoint did not answer in time;
* :class:`ContractReverted` -- a call or transaction reverted; ``error_name``
  names the contract's custom error (``AmountExceedsDeposit``, ...);
* :class:`TransactionFailed` -- a transaction was dropped or could not be sent.

Transactions are signed locally (EIP-1559) and returned as
:class:`SignedTransaction` so callers can write them ahead to durable storage
before they leave the process, and send the *same bytes* again after a crash.

web3 and eth-account (seconds to import) load only when the chain is touched:
a :class:`Wallet` derives its address with coincurve and imports eth-account
to sign its first transaction; a :class:`ChainClient` builds its web3 provider
on first use, and answers :meth:`ChainClient.chain_id` (asked before every
paid request) with one plain JSON-RPC call. A paid request on an open channel
loads neither.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import coincurve

from mppagent.errors import ChainError
from mppagent.tempo.hexutil import checksum_address, keccak, normalize_address

if TYPE_CHECKING:
    from web3 import AsyncWeb3
    from web3.providers import AsyncHTTPProvider

__all__ = [
    "ChainClient",
    "ChainUnavailable",
    "ContractReverted",
    "SignedTransaction",
    "TransactionFailed",
    "Wallet",
]

T = TypeVar("T")

_GWEI = 10**9


class ChainUnavailable(ChainError):
    """The RPC endpoint could not be reached or did not answer in time."""


class TransactionFailed(ChainError):
    """A transaction could not be sent, was dropped, or was not mined in time."""


class ContractReverted(ChainError):
    """A contract call or transaction reverted.

    ``error_name`` is the Solidity custom error (or ``"Error"``/``"Panic"``/
    ``"unknown"``), ``args`` its decoded arguments.
    """

    def __init__(self, error_name: str, args: Sequence[object] = (), context: str = "") -> None:
        where = f" in {context}" if context else ""
        shown = f"({', '.join(str(a) for a in args)})" if args else ""
        super().__init__(f"contract reverted{where}: {error_name}{shown}")
        self.error_name = error_name
        self.args_decoded = tuple(args)
        self.context = context


_HEX_RE = re.compile(r"(?:0[xX])?([0-9a-fA-F]*)")


class Wallet:
    """A private key that signs transactions. Never shows the key.

    Accepts what eth-account's ``Account.from_key`` accepts (32 raw bytes, or
    hex with or without ``0x``); the address comes from coincurve, so holding
    a wallet costs no eth-account import until it signs a transaction.
    """

    __slots__ = ("_address", "_key")

    def __init__(self, private_key: str | bytes) -> None:
        try:
            self._key = _key_bytes(private_key)
            public = coincurve.PrivateKey(self._key).public_key.format(compressed=False)
        except Exception:
            raise ValueError("private key is not a valid secp256k1 key") from None
        self._address = checksum_address("0x" + keccak(public[1:])[-20:].hex())

    @property
    def address(self) -> str:
        """Checksummed address of this key."""
        return self._address

    @property
    def private_key_hex(self) -> str:
        """The key as 0x-hex (for voucher signing with the same key)."""
        return "0x" + self._key.hex()

    def sign(self, tx: Mapping[str, Any]) -> SignedTransaction:
        """Sign an EIP-1559 transaction dictionary."""
        from eth_account import Account

        signed = Account.sign_transaction(dict(tx), self._key)
        return SignedTransaction(
            raw="0x" + bytes(signed.raw_transaction).hex(),
            hash="0x" + bytes(signed.hash).hex(),
            nonce=int(tx["nonce"]),
            sender=normalize_address(self.address),
        )

    def __repr__(self) -> str:
        return f"Wallet(address={self.address!r})"


def _key_bytes(private_key: str | bytes) -> bytes:
    """32 key bytes from raw bytes or hex (odd-length hex gets its leading zero)."""
    if isinstance(private_key, str):
        match = _HEX_RE.fullmatch(private_key)
        if match is None:
            raise ValueError("not hex")
        digits = match.group(1)
        key = bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits)
    elif isinstance(private_key, bytes | bytearray):
        key = bytes(private_key)
    else:
        raise TypeError("a private key is bytes or hex")
    if len(key) != 32:
        raise ValueError("a private key is 32 bytes")
    return key


@dataclass(frozen=True)
class SignedTransaction:
    """A signed transaction ready to broadcast. ``raw`` is kept out of ``repr``."""

    raw: str
    hash: str
    nonce: int
    sender: str

    def __repr__(self) -> str:
        return f"SignedTransaction(hash={self.hash!r}, nonce={self.nonce}, sender={self.sender!r})"


class NonceBook(Protocol):
    """Where the next nonce handed out per sender is kept.

    In memory by default; the channel store implements it too, so processes
    that share one key and one store never hand out the same nonce (callers
    serialise signing per sender with the store's cross-process lock).
    """

    def handed_out_nonce(self, address: str, chain_id: int) -> int: ...
    def set_handed_out_nonce(self, address: str, chain_id: int, next_nonce: int | None) -> None: ...


class MemoryNonceBook:
    """A :class:`NonceBook` for one process."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}

    def handed_out_nonce(self, address: str, chain_id: int) -> int:
        """The next nonce handed out (0: none)."""
        return self._next.get((address.lower(), chain_id), 0)

    def set_handed_out_nonce(self, address: str, chain_id: int, next_nonce: int | None) -> None:
        """Record (or with ``None`` forget) the next nonce handed out."""
        if next_nonce is None:
            self._next.pop((address.lower(), chain_id), None)
        else:
            self._next[(address.lower(), chain_id)] = next_nonce


class ChainClient:
    """Async JSON-RPC access with typed errors and a nonce counter (see :class:`NonceBook`).

    ``error_decoders`` maps 4-byte custom-error selectors to ``(name, types)``
    so reverts come back named (see :meth:`Artifact.error_signatures`).
    """

    def __init__(
        self,
        rpc_url: str,
        *,
        timeout: float = 10.0,
        error_decoders: Mapping[bytes, tuple[str, list[str]]] | None = None,
        confirm_timeout: float = 60.0,
        nonce_gap_grace: float = 2.0,
        nonces: NonceBook | None = None,
    ) -> None:
        self.rpc_url = rpc_url
        self.timeout = timeout
        self._w3: AsyncWeb3[AsyncHTTPProvider] | None = None
        self.confirm_timeout = confirm_timeout
        self.nonce_gap_grace = nonce_gap_grace
        self._errors: dict[bytes, tuple[str, list[str]]] = dict(error_decoders or {})
        self._chain_id: int | None = None
        self._nonce_locks: dict[str, asyncio.Lock] = {}
        self.nonces: NonceBook = nonces if nonces is not None else MemoryNonceBook()

    @property
    def w3(self) -> AsyncWeb3[AsyncHTTPProvider]:
        """The web3 client, built (and web3 imported) on first use."""
        if self._w3 is None:
            from web3 import AsyncWeb3
            from web3.providers import AsyncHTTPProvider

            # No hidden web3 retries (5 attempts with backoff by default): they turned
            # ``timeout`` into about 5 x timeout + 1.9 s before ChainUnavailable surfaced.
            provider = AsyncHTTPProvider(
                self.rpc_url,
                request_kwargs={"timeout": self.timeout},
                exception_retry_configuration=None,
            )
            self._w3 = AsyncWeb3(provider)
        return self._w3

    def add_error_decoders(self, decoders: Mapping[bytes, tuple[str, list[str]]]) -> None:
        """Teach the client more custom errors (one per contract it talks to)."""
        self._errors.update(decoders)

    async def close(self) -> None:
        """Release the HTTP session of the provider (if one was ever built)."""
        if self._w3 is None:
            return
        provider = self._w3.provider
        disconnect = getattr(provider, "disconnect", None)
        if disconnect is not None:
            await disconnect()

    # -- reads ---------------------------------------------------------------

    async def chain_id(self) -> int:
        """The chain id (cached after the first call).

        Asked before every paid request, so it is one plain JSON-RPC call over
        httpx (already loaded for the request itself) rather than a reason to
        import web3.
        """
        if self._chain_id is None:
            self._chain_id = _quantity(await self._plain_rpc("eth_chainId"), "eth_chainId")
        return self._chain_id

    async def _plain_rpc(self, method: str) -> Any:
        """One parameterless JSON-RPC call without web3, errors typed as :meth:`_rpc` does."""
        import httpx

        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": []}
        # A plain-http node (a local one) has no TLS to verify: not loading the CA
        # bundle for it saves tens of milliseconds of start-up. https is verified.
        tls = self.rpc_url.lower().startswith("https:")
        try:
            async with httpx.AsyncClient(timeout=self.timeout, verify=tls) as client:
                response = await client.post(self.rpc_url, json=body)
                response.raise_for_status()
        except (httpx.TimeoutException, TimeoutError):
            raise self._unavailable(method, "TimeoutError") from None
        except (httpx.HTTPError, OSError) as exc:
            raise self._unavailable(method, type(exc).__name__) from None
        try:
            reply = response.json()
        except ValueError:
            raise TransactionFailed(f"{method}: the node's answer is not JSON") from None
        error = reply.get("error") if isinstance(reply, Mapping) else "no JSON-RPC response"
        if error:
            message = error.get("message", error) if isinstance(error, Mapping) else error
            raise TransactionFailed(f"{method}: {_short(str(message))}")
        return reply.get("result")

    def _unavailable(self, context: str, cause: str) -> ChainUnavailable:
        return ChainUnavailable(f"chain RPC {self.rpc_url} unavailable during {context}: {cause}")

    async def call(self, to: str, data: bytes, *, context: str = "") -> bytes:
        """``eth_call`` with reverts decoded into :class:`ContractReverted`."""
        tx = {"to": checksum_address(to), "data": "0x" + data.hex()}

        async def go() -> bytes:
            return bytes(await self.w3.eth.call(tx))  # type: ignore[arg-type]

        return await self._rpc(go, context or "eth_call")

    async def request(self, method: str, params: Sequence[Any]) -> Any:
        """Raw JSON-RPC for methods web3 does not wrap (``eth_simulateV1``), errors typed."""
        from web3.types import RPCEndpoint

        async def go() -> Any:
            response = await self.w3.provider.make_request(RPCEndpoint(method), list(params))
            error = response.get("error")
            if error:
                message = error.get("message", error) if isinstance(error, Mapping) else error
                raise TransactionFailed(f"{method}: {_short(str(message))}")
            return response.get("result")

        return await self._rpc(go, method)

    async def get_code(self, address: str) -> bytes:
        """Runtime bytecode at ``address`` (empty for an account without code)."""
        from eth_typing import ChecksumAddress, HexAddress, HexStr

        target = ChecksumAddress(HexAddress(HexStr(checksum_address(address))))
        return bytes(await self._rpc(lambda: self.w3.eth.get_code(target), "eth_getCode"))

    async def block_timestamp(self) -> int:
        """Timestamp of the latest block (the contract's notion of now)."""
        block = await self._rpc(lambda: self.w3.eth.get_block("latest"), "eth_getBlockByNumber")
        return int(block["timestamp"])

    async def get_logs(
        self, address: str, topics: Sequence[bytes], *, from_block: int = 0
    ) -> list[dict[str, Any]]:
        """Logs of ``address`` whose leading topics equal ``topics``, from ``from_block`` on."""
        params: Any = {
            "address": checksum_address(address),
            "topics": ["0x" + t.hex() for t in topics],
            "fromBlock": from_block,
            "toBlock": "latest",
        }
        logs = await self._rpc(lambda: self.w3.eth.get_logs(params), "eth_getLogs")
        return [dict(log) for log in logs]

    async def get_receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """The receipt of a mined transaction, or ``None`` if not (yet) mined."""
        from web3.exceptions import Web3Exception

        async def go() -> dict[str, Any] | None:
            try:
                receipt = await self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except Web3Exception as exc:
                if "not found" in str(exc).lower():
                    return None
                raise
            return dict(receipt)

        return await self._rpc(go, "eth_getTransactionReceipt")

    async def mined_in(self, tx_hash: str | None) -> int:
        """The block ``tx_hash`` was mined in; 0 (the genesis) when unknown or not mined.

        A lower bound for log searches about what the transaction started: a node
        may refuse ``eth_getLogs`` over its whole history.
        """
        if tx_hash is None:
            return 0
        receipt = await self.get_receipt(tx_hash)
        return 0 if receipt is None else int(receipt.get("blockNumber") or 0)

    async def transaction_count(self, address: str, block: str = "pending") -> int:
        """Nonce of ``address`` as the chain sees it."""
        addr = checksum_address(address)
        return int(
            await self._rpc(
                lambda: self.w3.eth.get_transaction_count(addr, block),  # type: ignore[arg-type]
                "eth_getTransactionCount",
            )
        )

    # -- writes --------------------------------------------------------------

    async def sign_call(
        self,
        wallet: Wallet,
        to: str,
        data: bytes,
        *,
        context: str,
        gas: int | None = None,
        nonce: int | None = None,
    ) -> SignedTransaction:
        """Build and sign a contract call; gas is estimated (surfacing reverts early)."""
        chain_id = await self.chain_id()
        tx: dict[str, Any] = {
            "from": checksum_address(wallet.address),
            "to": checksum_address(to),
            "data": "0x" + data.hex(),
            "value": 0,
            "chainId": chain_id,
        }
        if gas is None:
            estimate = await self._rpc(lambda: self.w3.eth.estimate_gas(tx), context)  # type: ignore[arg-type]
            gas = int(estimate) * 6 // 5 + 10_000
        tx["gas"] = gas
        tx.update(await self._fees())
        if nonce is None:
            nonce = await self._allocate_nonce(wallet.address)
        tx["nonce"] = nonce
        del tx["from"]
        return wallet.sign(tx)

    async def sign_deploy(
        self, wallet: Wallet, bytecode: str, *, context: str
    ) -> SignedTransaction:
        """Sign a contract-creation transaction (dev chains: token and escrow deployment)."""
        tx: dict[str, Any] = {
            "from": checksum_address(wallet.address),
            "data": bytecode if bytecode.startswith("0x") else "0x" + bytecode,
            "value": 0,
            "chainId": await self.chain_id(),
        }
        estimate = await self._rpc(lambda: self.w3.eth.estimate_gas(tx), context)  # type: ignore[arg-type]
        tx["gas"] = int(estimate) * 6 // 5 + 10_000
        tx.update(await self._fees())
        tx["nonce"] = await self._allocate_nonce(wallet.address)
        del tx["from"]
        return wallet.sign(tx)

    async def send(self, tx: SignedTransaction, *, context: str = "") -> str:
        """Broadcast ``tx``; sending the same bytes again is harmless (idempotent)."""
        from eth_typing import HexStr
        from web3.exceptions import Web3RPCError

        async def go() -> str:
            try:
                sent = await self.w3.eth.send_raw_transaction(HexStr(tx.raw))
                return "0x" + bytes(sent).hex()
            except Web3RPCError as exc:
                text = str(exc).lower()
                if "already known" in text or "already imported" in text:
                    return tx.hash
                if "nonce too low" in text and await self.get_receipt(tx.hash) is not None:
                    return tx.hash  # it was mined earlier: same bytes, same effect
                if "nonce" in text:
                    self.forget_nonce(tx.sender)  # our counter is off: re-read the chain
                raise TransactionFailed(
                    f"{context or 'transaction'} {tx.hash} was refused by the node: "
                    f"{_short(str(exc))}"
                ) from None

        return await self._rpc(go, context or "eth_sendRawTransaction")

    async def wait(self, tx_hash: str, *, context: str = "") -> dict[str, Any]:
        """Wait for a receipt; a reverted transaction raises :class:`ContractReverted`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.confirm_timeout
        delay = 0.02
        while True:
            receipt = await self.get_receipt(tx_hash)
            if receipt is not None:
                if int(receipt.get("status", 0)) != 1:
                    raise await self._explain_revert(tx_hash, receipt, context)
                return receipt
            if loop.time() > deadline:
                raise TransactionFailed(
                    f"{context or 'transaction'} {tx_hash} was not mined "
                    f"within {self.confirm_timeout:.0f}s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def send_and_wait(self, tx: SignedTransaction, *, context: str = "") -> dict[str, Any]:
        """Broadcast and wait for a successful receipt."""
        await self.send(tx, context=context)
        try:
            return await self.wait(tx.hash, context=context)
        except ContractReverted:
            raise
        except TransactionFailed:
            self.forget_nonce(tx.sender)  # never mined: the next nonce comes from the chain
            raise

    def forget_nonce(self, address: str) -> None:
        """Drop the nonce counter (after a failure); the next tx re-reads the chain."""
        if self._chain_id is not None:
            self.nonces.set_handed_out_nonce(normalize_address(address), self._chain_id, None)

    # -- internals -----------------------------------------------------------

    async def _allocate_nonce(self, address: str) -> int:
        """The next nonce: the chain's pending count, once our own signed ones arrived.

        Nonces handed out here that the node has not seen yet are either on
        their way (an ``open`` the server is about to broadcast) or were never
        sent at all (signed, then the send failed or was abandoned). A
        transaction signed behind such a gap would wait in the node's pool
        forever, so the gap gets ``nonce_gap_grace`` seconds to close; after
        that its nonces are reused. (Should a late transaction still arrive,
        one of the two is refused as "nonce too low" -- never both mined.)
        """
        key = normalize_address(address)
        lock = self._nonce_locks.setdefault(key, asyncio.Lock())
        async with lock:
            chain_id = await self.chain_id()
            on_chain = await self.transaction_count(key)
            handed_out = self.nonces.handed_out_nonce(key, chain_id)
            if handed_out > on_chain:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + self.nonce_gap_grace
                delay = 0.01
                while on_chain < handed_out and loop.time() < deadline:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.25)
                    on_chain = await self.transaction_count(key)
            self.nonces.set_handed_out_nonce(key, chain_id, on_chain + 1)
            return on_chain

    async def fee_caps(self) -> tuple[int, int]:
        """``(maxFeePerGas, maxPriorityFeePerGas)`` for a transaction signed now."""
        fees = await self._fees()
        return fees["maxFeePerGas"], fees["maxPriorityFeePerGas"]

    def revert_error(self, data: str, context: str) -> ContractReverted:
        """Name the custom error in revert ``data`` (0x-hex) with the known decoders."""
        raw = _hex_bytes(data)
        if len(raw) >= 4 and raw[:4] in self._errors:
            from eth_abi.abi import decode as abi_decode

            name, types = self._errors[raw[:4]]
            try:
                args = list(abi_decode(types, raw[4:])) if types else []
            except Exception:
                args = []
            return ContractReverted(name, [_plain(a) for a in args], context)
        return ContractReverted("unknown", context=context)

    async def _fees(self) -> dict[str, int]:
        block = await self._rpc(lambda: self.w3.eth.get_block("latest"), "eth_getBlockByNumber")
        base = int(block.get("baseFeePerGas", 0) or 0)
        tip = _GWEI
        return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}

    async def _explain_revert(
        self, tx_hash: str, receipt: Mapping[str, Any], context: str
    ) -> ChainError:
        """Replay a reverted transaction as a call to learn which error it raised."""
        import aiohttp
        from web3.exceptions import ContractCustomError, ContractLogicError, Web3Exception

        try:
            tx = await self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
            call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"]}
            await self.w3.eth.call(call, int(receipt["blockNumber"]) - 1)  # type: ignore[arg-type]
        except (ContractCustomError, ContractLogicError) as exc:
            return self._decode_revert(exc, context)
        except (TimeoutError, Web3Exception, aiohttp.ClientError, OSError, KeyError):
            # KeyError: a Tempo (0x76) transaction has calls, not one to/input.
            pass
        return ContractReverted("unknown", context=context or tx_hash)

    def _decode_revert(self, exc: Exception, context: str) -> ContractReverted:
        data = getattr(exc, "data", None)
        named = self.revert_error(data if isinstance(data, str) else "0x", context)
        if named.error_name != "unknown":
            return named
        message = getattr(exc, "message", None) or str(exc)
        return ContractReverted(_short(str(message)) or "unknown", context=context)

    async def _rpc(self, fn: Callable[[], Awaitable[T]], context: str) -> T:
        import aiohttp
        from web3.exceptions import (
            ContractCustomError,
            ContractLogicError,
            Web3Exception,
            Web3RPCError,
        )

        try:
            return await fn()
        except (ContractCustomError, ContractLogicError) as exc:
            raise self._decode_revert(exc, context) from None
        except ChainError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._unavailable(context, type(exc).__name__) from None
        except Web3RPCError as exc:
            raise TransactionFailed(f"{context}: {_short(str(exc))}") from None
        except Web3Exception as exc:
            if "connect" in str(exc).lower():
                raise ChainUnavailable(
                    f"chain RPC {self.rpc_url} unavailable during {context}"
                ) from None
            raise TransactionFailed(f"{context}: {_short(str(exc))}") from None


def _quantity(value: object, context: str) -> int:
    """A JSON-RPC quantity (``0x``-hex) as an int, or :class:`TransactionFailed`."""
    try:
        return int(str(value), 16)
    except ValueError:
        raise TransactionFailed(f"{context}: not a quantity: {_short(str(value))}") from None


def _hex_bytes(text: str) -> bytes:
    body = text[2:] if text.startswith("0x") else text
    try:
        return bytes.fromhex(body)
    except ValueError:
        return b""


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
