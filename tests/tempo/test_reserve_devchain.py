"""The local reserve on a real anvil chain agrees with ``mppagent.tempo.v2``.

``install_reserve`` puts the stand-in's runtime code at the canonical address; its
``computeChannelId``, ``getVoucherDigest`` and ``domainSeparator`` must equal the Python
primitives (which ``tests/interop`` pins to the reference SDK), and a channel opened with a
hash written the way the JSON-RPC front writes it must carry that hash and the Python id.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode

from mppagent.devchain import DevAccount, DevChain
from mppagent.devchain_reserve import install_reserve, set_pending_expiring_nonce_hash
from mppagent.tempo.artifacts import load_artifact
from mppagent.tempo.chain import ChainClient, ContractReverted
from mppagent.tempo.escrow import Token
from mppagent.tempo.hexutil import ZERO_ADDRESS
from mppagent.tempo.v2 import (
    CLOSE_GRACE_PERIOD,
    RESERVE_ADDRESS,
    UINT96_MAX,
    ChannelDescriptor,
    calls,
    compute_channel_id,
    sign_voucher,
    voucher_digest,
)
from mppagent.tempo.v2.local_reserve import pending_expiring_nonce_hash_slot
from mppagent.tempo.voucher import V2_VOUCHERS, VoucherSigner

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _call(name: str, types: list[str], args: list[Any]) -> bytes:
    return calls.SELECTORS[name] + abi_encode(types, args)


@pytest.fixture
async def reserve_client(chain: DevChain) -> Any:
    client = chain.client()
    client.add_error_decoders(load_artifact("TIP20ChannelReserve").error_signatures())
    yield client
    await client.close()


async def test_install_puts_the_shipped_code_at_the_canonical_address(
    chain: DevChain, reserve_client: ChainClient, payer: DevAccount
) -> None:
    address = await install_reserve(chain, accounts=[payer])
    assert address == RESERVE_ADDRESS
    code = await reserve_client.get_code(RESERVE_ADDRESS)
    assert load_artifact("TIP20ChannelReserve").matches_runtime(code)
    allowance = await Token(reserve_client, chain.token).allowance(payer.address, RESERVE_ADDRESS)
    assert allowance == 2**256 - 1
    out = await reserve_client.call(RESERVE_ADDRESS, _call("CLOSE_GRACE_PERIOD", [], []))
    assert abi_decode(["uint64"], out)[0] == CLOSE_GRACE_PERIOD


async def test_views_agree_with_the_python_primitives(
    chain: DevChain, reserve_client: ChainClient
) -> None:
    await install_reserve(chain, accounts=[])
    out = await reserve_client.call(RESERVE_ADDRESS, _call("domainSeparator", [], []))
    assert out == V2_VOUCHERS.domain_separator(RESERVE_ADDRESS, chain.chain_id)

    rng = random.Random()
    for i in range(8):
        descriptor = ChannelDescriptor(
            payer="0x" + rng.randbytes(20).hex(),
            payee="0x" + rng.randbytes(20).hex(),
            operator=ZERO_ADDRESS if i % 2 else "0x" + rng.randbytes(20).hex(),
            token="0x" + rng.randbytes(20).hex(),
            salt="0x" + rng.randbytes(32).hex(),
            authorized_signer=ZERO_ADDRESS if i % 3 else "0x" + rng.randbytes(20).hex(),
            expiring_nonce_hash="0x" + rng.randbytes(32).hex(),
        )
        data = _call(
            "computeChannelId",
            ["address", "address", "address", "address", "bytes32", "address", "bytes32"],
            list(descriptor.abi_tuple()),
        )
        channel_id = compute_channel_id(descriptor, RESERVE_ADDRESS, chain.chain_id)
        assert "0x" + (await reserve_client.call(RESERVE_ADDRESS, data)).hex() == channel_id

        amount = [0, 1, UINT96_MAX][i] if i < 3 else rng.randrange(UINT96_MAX + 1)
        data = _call(
            "getVoucherDigest",
            ["bytes32", "uint96"],
            [bytes.fromhex(channel_id[2:]), amount],
        )
        digest = voucher_digest(channel_id, amount, RESERVE_ADDRESS, chain.chain_id)
        assert await reserve_client.call(RESERVE_ADDRESS, data) == digest


async def test_open_settle_close_with_python_ids_and_signatures(
    chain: DevChain, reserve_client: ChainClient, payer: DevAccount, payee: DevAccount
) -> None:
    await install_reserve(chain, accounts=[payer])
    token = Token(reserve_client, chain.token)
    payer_before = await token.balance_of(payer.address)
    payee_before = await token.balance_of(payee.address)

    # What the JSON-RPC front does for an opening transaction, then the transaction itself.
    nonce_hash = "0x" + random.randbytes(32).hex()
    await set_pending_expiring_nonce_hash(chain, payer.address, nonce_hash)
    descriptor = ChannelDescriptor(
        payer=payer.address.lower(),
        payee=payee.address.lower(),
        operator=ZERO_ADDRESS,
        token=chain.token,
        salt="0x" + random.randbytes(32).hex(),
        authorized_signer=ZERO_ADDRESS,
        expiring_nonce_hash=nonce_hash,
    )
    deposit = 5_000_000
    open_data = calls.encode_open(
        descriptor.payee, ZERO_ADDRESS, descriptor.token, deposit, descriptor.salt, ZERO_ADDRESS
    )
    tx = await reserve_client.sign_call(payer.wallet(), RESERVE_ADDRESS, open_data, context="open")
    receipt = await reserve_client.send_and_wait(tx, context="open")

    # The ChannelOpened event (what the SDK's server checks) carries the hash and our id.
    channel_id = compute_channel_id(descriptor, RESERVE_ADDRESS, chain.chain_id)
    events = [
        calls.decode_channel_opened(log["topics"], bytes(log["data"])) for log in receipt["logs"]
    ]
    assert [event for event in events if event] == [
        calls.ChannelOpened(channel_id, descriptor, deposit)
    ]
    slot = await chain.rpc(
        "eth_getStorageAt",
        [RESERVE_ADDRESS, pending_expiring_nonce_hash_slot(payer.address), "latest"],
    )
    assert int(slot, 16) == 0, "open consumed the pending hash"
    assert await _state(reserve_client, channel_id) == (0, deposit, 0)

    # The payee settles and closes with vouchers signed by the Python fast path.
    signer = VoucherSigner(payer.private_key)
    settle_sig = sign_voucher(signer, channel_id, 1_250, RESERVE_ADDRESS, chain.chain_id)
    settle = calls.encode_settle(descriptor, 1_250, settle_sig)
    tx = await reserve_client.sign_call(payee.wallet(), RESERVE_ADDRESS, settle, context="settle")
    await reserve_client.send_and_wait(tx, context="settle")
    assert await _state(reserve_client, channel_id) == (1_250, deposit, 0)

    close_sig = sign_voucher(signer, channel_id, 2_000, RESERVE_ADDRESS, chain.chain_id)
    raw = bytes.fromhex(close_sig[2:])
    twin_s = (N - int.from_bytes(raw[32:64], "big")).to_bytes(32, "big")
    high_s = "0x" + (raw[:32] + twin_s + bytes([55 - raw[64]])).hex()
    high_close = calls.encode_close(descriptor, 2_000, 2_000, high_s)
    with pytest.raises(ContractReverted) as info:  # estimating runs it as the payee
        await reserve_client.sign_call(payee.wallet(), RESERVE_ADDRESS, high_close, context="c")
    assert info.value.error_name == "InvalidSignature"

    close = calls.encode_close(descriptor, 2_000, 2_000, close_sig)
    tx = await reserve_client.sign_call(payee.wallet(), RESERVE_ADDRESS, close, context="close")
    await reserve_client.send_and_wait(tx, context="close")
    assert await _state(reserve_client, channel_id) == (0, 0, 0), "state deleted on close"
    assert await token.balance_of(payee.address) == payee_before + 2_000
    assert await token.balance_of(payer.address) == payer_before - 2_000


async def test_open_without_a_pending_hash_is_refused(
    chain: DevChain, reserve_client: ChainClient, payer: DevAccount, payee: DevAccount
) -> None:
    await install_reserve(chain, accounts=[payer])
    data = calls.encode_open(
        payee.address, ZERO_ADDRESS, chain.token, 1, "0x" + "01" * 32, ZERO_ADDRESS
    )
    with pytest.raises(ContractReverted) as info:
        await reserve_client.sign_call(payer.wallet(), RESERVE_ADDRESS, data, context="open")
    assert info.value.error_name == "ExpiringNonceHashNotSet"


async def _state(client: ChainClient, channel_id: str) -> tuple[int, int, int]:
    data = _call("getChannelState", ["bytes32"], [bytes.fromhex(channel_id[2:])])
    state = calls.decode_channel_state(await client.call(RESERVE_ADDRESS, data))
    return state.settled, state.deposit, state.close_requested_at
