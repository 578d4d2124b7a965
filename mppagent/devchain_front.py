"""A JSON-RPC front for the Tempo devchain: what anvil lacks for session v2, on the wire.

Anvil (1.7.1, hardfork T4) predates the TIP-1034 reserve precompile. The devchain
installs our local reserve at the canonical address; this front, a small HTTP
server on 127.0.0.1 that forwards every JSON-RPC call to anvil, stands in for the
two things that need the transaction envelope or node internals:

* **``expiringNonceHash``** (divergence (b) of ``contracts/src/TIP20ChannelReserve.sol``):
  before forwarding ``eth_sendRawTransaction`` of a ``0x76`` transaction that calls
  the reserve's ``open``, the front computes ``keccak256(signingPayload || sender)``
  from the raw bytes and writes it into the sender's pending slot
  (``anvil_setStorageAt``); the reserve's ``open`` consumes it. Clients and servers
  -- ours and the reference SDK's -- send to the front and need to know nothing.
* **The simulation gap**: anvil answers ``eth_estimateGas`` and ``eth_call`` for a
  ``0x76`` request (one with ``calls``) without running the calls. The front runs
  them with ``eth_simulateV1`` instead: ``eth_call`` returns the last call's result
  (or its revert), ``eth_estimateGas`` the larger of anvil's flat figure and the
  simulated gas plus overhead. ``eth_fillTransaction`` (what viem's
  ``prepareTransactionRequest`` calls on a Tempo chain, so the reference SDK's own
  opens) gets the same estimate as its ``gas``. Simulations of an ``open`` get the
  pending slot filled by a state override, as the real reserve needs no such slot.

Only what these need is parsed; everything else is passed through byte for byte.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
from collections.abc import Mapping
from typing import Any

import httpx

from mppagent.logging import get_logger
from mppagent.tempo.hexutil import normalize_address
from mppagent.tempo.tempotx import (
    TEMPO_TX_TYPE,
    SignedTempoTransaction,
    decode_tempo_transaction,
)
from mppagent.tempo.transactions import InvalidTransaction
from mppagent.tempo.v2.calls import SELECTORS
from mppagent.tempo.v2.channel_id import expiring_nonce_hash
from mppagent.tempo.v2.constants import RESERVE_ADDRESS
from mppagent.tempo.v2.local_reserve import pending_expiring_nonce_hash_slot

__all__ = ["RpcFront"]

log = get_logger("mppagent.devchain")

_SEND_METHODS = frozenset({"eth_sendRawTransaction", "eth_sendRawTransactionSync"})
_OVERHEAD_GAS = 60_000
_INTRINSIC_GAS = 21_000
_SIMULATION_PLACEHOLDER = "0x" + "ee" * 32
_MAX_BODY = 8 << 20


class RpcFront:
    """The front's HTTP server; :attr:`url` is what clients use instead of anvil's.

    It runs on its own event loop in a daemon thread: callers that block their own
    loop (a test running a Node driver with ``subprocess.run``, a synchronous client)
    must not stall the chain they are waiting for.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._http: httpx.AsyncClient | None = None
        self._lock: asyncio.Lock | None = None

    async def start(self) -> str:
        """Listen on an ephemeral port of 127.0.0.1 (in the front's thread); returns the URL."""
        ready: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._run(ready)), name="devchain-front", daemon=True
        )
        self._thread.start()
        self.url = await asyncio.wrap_future(ready)
        return self.url

    async def stop(self) -> None:
        """Stop listening, drop the upstream connections and end the thread."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    async def _run(self, ready: concurrent.futures.Future[str]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        try:
            self._http = httpx.AsyncClient(timeout=60.0)
            server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        except BaseException as exc:
            ready.set_exception(exc)
            raise
        port = server.sockets[0].getsockname()[1]
        ready.set_result(f"http://127.0.0.1:{port}")
        try:
            await self._stopping.wait()
        finally:
            server.close()
            await self._http.aclose()

    # -- HTTP ------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                method, body = request
                if method == "OPTIONS":
                    await _write(writer, 204, b"")
                    continue
                try:
                    answer = await self.handle(json.loads(body))
                    await _write(writer, 200, json.dumps(answer).encode())
                except (ValueError, httpx.HTTPError) as exc:
                    error = {"jsonrpc": "2.0", "id": None, "error": _error(-32603, str(exc))}
                    await _write(writer, 200, json.dumps(error).encode())
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -- JSON-RPC ----------------------------------------------------------------------------

    async def handle(self, message: Any) -> Any:
        """Answer one JSON-RPC message (or a batch)."""
        if isinstance(message, list):
            return [await self._one(m) for m in message]
        return await self._one(message)

    async def _one(self, message: Mapping[str, Any]) -> Any:
        method = message.get("method")
        params = message.get("params") or []
        if method in _SEND_METHODS and params:
            # One at a time: a slot written for one open must not be taken by another's.
            assert self._lock is not None
            async with self._lock:
                await self._prepare_open(str(params[0]))
                return await self._forward(message)
        if method in ("eth_call", "eth_estimateGas") and params and _calls_of(params[0]):
            return await self._simulate(message, str(method), params)
        if method == "eth_fillTransaction" and params and _calls_of(params[0]):
            return await self._fill(message, params)
        if method == "eth_simulateV1" and params:
            message = {**message, "params": [_with_open_override(params[0]), *params[1:]]}
        return await self._forward(message)

    async def _forward(self, message: Mapping[str, Any]) -> Any:
        assert self._http is not None
        response = await self._http.post(self.upstream, json=message)
        return response.json()

    async def _upstream(self, method: str, params: list[Any]) -> Any:
        body = await self._forward({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        if "error" in body:
            raise ValueError(f"{method}: {body['error']}")
        return body.get("result")

    async def _prepare_open(self, raw: str) -> None:
        """Write the ``expiringNonceHash`` of a raw ``0x76`` that calls the reserve's ``open``."""
        signed = _decode(raw)
        if signed is None or not any(_is_open(c.to, c.data) for c in signed.tx.calls):
            return
        value = expiring_nonce_hash(signed.tx.signing_payload(), signed.sender)
        slot = pending_expiring_nonce_hash_slot(signed.sender)
        await self._upstream("anvil_setStorageAt", [RESERVE_ADDRESS, slot, value])
        log.debug("front.open", sender=signed.sender)

    async def _simulate(self, message: Mapping[str, Any], method: str, params: list[Any]) -> Any:
        request = params[0]
        calls = _calls_of(request)
        sender = str(request.get("from") or "0x" + "00" * 20)
        block = params[1] if len(params) > 1 else "latest"
        sim_calls = [
            {
                "from": sender,
                "to": c.get("to"),
                "data": c.get("data") or c.get("input") or "0x",
                "value": c.get("value") or "0x0",
            }
            for c in calls
        ]
        spec = _with_open_override({"blockStateCalls": [{"calls": sim_calls}], "validation": False})
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message.get("id")}
        try:
            result = await self._upstream("eth_simulateV1", [spec, block])
            outcomes = list(result[0]["calls"])
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            reply["error"] = _error(-32603, f"simulating the calls failed: {exc}")
            return reply
        for outcome in outcomes:
            if int(str(outcome.get("status", "0x0")), 16) != 1:
                error = outcome.get("error") or {}
                data = str(outcome.get("returnData") or error.get("data") or "0x")
                reply["error"] = {"code": 3, "message": "execution reverted", "data": data}
                return reply
        if method == "eth_call":
            reply["result"] = outcomes[-1].get("returnData") or "0x"
            return reply
        used = sum(int(str(o["gasUsed"]), 16) for o in outcomes)
        needed = max(used - _INTRINSIC_GAS * (len(outcomes) - 1), _INTRINSIC_GAS)
        flat = await self._forward(message)
        anvil = int(str(flat.get("result", "0x0")), 16) if "result" in flat else 0
        reply["result"] = hex(max(anvil, (needed + _OVERHEAD_GAS) * 5 // 4))
        return reply

    async def _fill(self, message: Mapping[str, Any], params: list[Any]) -> Any:
        """anvil's fill, with the gas of the calls themselves (its own is the flat figure)."""
        filled = await self._forward(message)
        tx = (filled.get("result") or {}).get("tx")
        if not isinstance(tx, dict):
            return filled
        estimate_message = {**message, "method": "eth_estimateGas", "params": [params[0]]}
        estimate = await self._simulate(estimate_message, "eth_estimateGas", [params[0]])
        if "error" in estimate:
            return {"jsonrpc": "2.0", "id": message.get("id"), "error": estimate["error"]}
        tx["gas"] = hex(max(int(str(tx.get("gas") or "0x0"), 16), int(estimate["result"], 16)))
        return filled


def _decode(raw: str) -> SignedTempoTransaction | None:
    if not raw.lower().startswith(f"0x{TEMPO_TX_TYPE:02x}"):
        return None  # legacy and EIP-1559 opens are not v2 opens: the reserve needs a 0x76
    try:
        return decode_tempo_transaction(raw)
    except InvalidTransaction:
        return None


def _is_open(to: str | None, data: bytes | str | None) -> bool:
    if to is None or data is None:
        return False
    payload = data if isinstance(data, bytes) else bytes.fromhex(str(data).removeprefix("0x"))
    try:
        target = normalize_address(to)
    except ValueError:
        return False
    return target == RESERVE_ADDRESS and payload[:4] == SELECTORS["open"]


def _calls_of(request: object) -> list[Mapping[str, Any]]:
    if not isinstance(request, Mapping):
        return []
    calls = request.get("calls")
    return [c for c in calls if isinstance(c, Mapping)] if isinstance(calls, list) else []


def _with_open_override(spec: object) -> object:
    """Fill the pending slot for simulated opens (the real reserve needs none)."""
    if not isinstance(spec, Mapping):
        return spec
    blocks = []
    for original in spec.get("blockStateCalls") or []:
        block = dict(original)
        senders = {
            normalize_address(str(c.get("from")))
            for c in block.get("calls") or []
            if c.get("from") and _is_open(c.get("to"), c.get("data") or c.get("input"))
        }
        if senders:
            overrides = dict(block.get("stateOverrides") or {})
            entry = dict(overrides.get(RESERVE_ADDRESS) or {})
            diff = dict(entry.get("stateDiff") or {})
            for sender in senders:
                diff.setdefault(pending_expiring_nonce_hash_slot(sender), _SIMULATION_PLACEHOLDER)
            entry["stateDiff"] = diff
            overrides[RESERVE_ADDRESS] = entry
            block["stateOverrides"] = overrides
        blocks.append(block)
    return {**spec, "blockStateCalls": blocks}


def _error(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    method = line.split(b" ", 1)[0].decode("latin-1").upper()
    length = 0
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length > _MAX_BODY:
        raise ConnectionError("request body too large")
    return method, await reader.readexactly(length) if length else b""


async def _write(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    reason = {200: "OK", 204: "No Content"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/json\r\n"
        "Access-Control-Allow-Origin: *\r\n"
        "Access-Control-Allow-Headers: *\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
