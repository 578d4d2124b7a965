"""Helpers shared by the test packages (fixtures live in ``tests/conftest.py``)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from mppagent import Agent
from mppagent.devchain import DevAccount, DevChain
from mppagent.devserver import RunningServer
from mppagent.session.gate import Authorization, PaymentGate, Purpose
from mppagent.session.policy import SpendPolicy
from mppagent.session.store import ChannelRecord
from mppagent.tempo.backend import ChannelTerms
from mppagent.tempo.channel_id import random_salt
from mppagent.tempo.escrow import Token
from mppagent.tempo.hexutil import ZERO_ADDRESS, keccak
from mppagent.tempo.schemas import SessionReceipt
from mppagent.tempo.tempo_chain import PATH_USD, send_tempo
from mppagent.tempo.v2.backend import V2Backend
from mppagent.tempo.v2.constants import RESERVE_ADDRESS
from mppagent.tempo.v2.descriptor import ChannelDescriptor

ServerFactory = Callable[..., Awaitable[RunningServer]]
AgentFactory = Callable[..., Awaitable[Agent]]

FEE_MANAGER = "0xfeec000000000000000000000000000000000000"
TRANSFER_TOPIC = keccak(b"Transfer(address,address,uint256)")

CHAT = "/v1/chat/completions"
PRICE = 25


def chat_body(tokens: int, *, stream: bool = True, model: str = "mpp-fake-1") -> dict[str, Any]:
    """An OpenAI chat request for exactly ``tokens`` completion tokens."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me about payment channels."}],
        "stream": stream,
        "max_tokens": tokens,
    }


async def drain(agent: Agent, url: str, tokens: int, **kwargs: Any) -> int:
    """Read a paid stream to its end; returns the number of application events."""
    count = 0
    async for _ in agent.stream("POST", url, json=chat_body(tokens), **kwargs):
        count += 1
    return count


async def token_balances(chain: DevChain, *addresses: str) -> list[int]:
    """Test-token balances of ``addresses``, read from the chain."""
    client = chain.client()
    try:
        token = Token(client, chain.token)
        return [await token.balance_of(a) for a in addresses]
    finally:
        await client.close()


def open_auth(record: ChannelRecord) -> Authorization:
    """The gate's authorization for a new channel's initial (zero) voucher."""
    gate = PaymentGate(
        SpendPolicy(), channel_id=record.channel_id, price=1, baseline=0, signed_at_start=0
    )
    return gate.authorize(0, purpose=Purpose.OPEN, bound_units=0, signed=0, deposit=record.deposit)


RECEIPT_CHANNEL = "0x" + "ab" * 32


def receipt(spent: int, accepted: int, *, units: int | None = None, **over: str) -> SessionReceipt:
    """A session receipt for channel ``RECEIPT_CHANNEL`` and challenge ``ch-1``."""
    data: dict[str, object] = {
        "method": "tempo",
        "intent": "session",
        "status": "success",
        "timestamp": "2026-01-01T00:00:00Z",
        "reference": RECEIPT_CHANNEL,
        "challengeId": "ch-1",
        "channelId": RECEIPT_CHANNEL,
        "acceptedCumulative": str(accepted),
        "spent": str(spent),
    }
    if units is not None:
        data["units"] = units
    data.update(over)
    return SessionReceipt.model_validate(data)


# -- voucher signature encodings ---------------------------------------------------------------

#: secp256k1 group order: ``(r, N - s)`` is the high-s twin of a signature ``(r, s)``.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def split(signature: str) -> tuple[int, int, int]:
    """``(r, s, v)`` of a 65-byte 0x-hex signature."""
    raw = bytes.fromhex(signature[2:])
    assert len(raw) == 65
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]


def join(r: int, s: int, v: int) -> str:
    """65-byte 0x-hex r ‖ s ‖ v."""
    return "0x" + r.to_bytes(32, "big").hex() + s.to_bytes(32, "big").hex() + format(v, "02x")


def compact(signature: str) -> str:
    """EIP-2098 form: r ‖ (yParity << 255 | s)."""
    r, s, v = split(signature)
    return "0x" + r.to_bytes(32, "big").hex() + ((v - 27) << 255 | s).to_bytes(32, "big").hex()


def signature_forms(signature: str) -> dict[str, str]:
    """One canonical (v = 27/28, low s) signature in each encoding a client might send."""
    r, s, v = split(signature)
    return {
        "v27": signature,
        "v01": join(r, s, v - 27),
        "compact": compact(signature),
        "high_s": join(r, SECP256K1_N - s, 55 - v),
    }


def v2_terms(chain: DevChain, payer: DevAccount, payee: DevAccount, **changes: Any) -> ChannelTerms:
    """Terms of a fresh v2 channel on the devchain's local reserve (random salt)."""
    fields: dict[str, Any] = {
        "payer": payer.address.lower(),
        "payee": payee.address.lower(),
        "token": chain.token,
        "escrow": RESERVE_ADDRESS,
        "chain_id": chain.chain_id,
        "salt": random_salt(),
        "authorized_signer": ZERO_ADDRESS,
    }
    return ChannelTerms(**{**fields, **changes})


async def open_v2_channel(
    chain: DevChain, payer: DevAccount, payee: DevAccount, deposit: int, **changes: Any
) -> tuple[str, ChannelDescriptor]:
    """Open a v2 channel on the devchain's local reserve (payer pays); its id and descriptor."""
    client = chain.client()
    try:
        new = await V2Backend(client).new_channel(
            payer.wallet(), v2_terms(chain, payer, payee, **changes), deposit
        )
        assert new.plan is not None
        assert new.descriptor is not None
        await send_tempo(client, new.plan.main)
    finally:
        await client.close()
    return new.channel_id, ChannelDescriptor.from_wire(json.loads(new.descriptor))


async def fresh_block(chain: DevChain) -> None:
    """Mine a block, so chain time (``tempo_chain.chain_now``) is the node's clock again.

    A reverted snapshot leaves the latest block in the past while the node keeps any
    ``evm_increaseTime`` offset: an expiring nonce computed from that block and the
    wall clock would expire in the pool before it is mined.
    """
    await chain.rpc("evm_mine")


def fee_transfers(receipt: dict[str, Any]) -> dict[str, int]:
    """Who paid how much pathUSD to the fee manager in this transaction (from its logs).

    The logs, not the receipt's ``feePayer`` field: anvil 1.7.1 reports the sender
    there even when a fee payer co-signed and paid.
    """
    paid: dict[str, int] = {}
    for log in receipt["logs"]:
        topics = [bytes(t) for t in log["topics"]]
        if (
            str(log["address"]).lower() == PATH_USD
            and topics[0] == TRANSFER_TOPIC
            and topics[2][-20:] == bytes.fromhex(FEE_MANAGER[2:])
        ):
            payer = "0x" + topics[1][-20:].hex()
            paid[payer] = paid.get(payer, 0) + int.from_bytes(bytes(log["data"]), "big")
    return paid
