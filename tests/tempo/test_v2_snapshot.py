"""Payment-Session-Snapshot: believed only once signature and chain agree with it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from mppagent.devchain import DevChain
from mppagent.tempo.v2 import RESERVE_ADDRESS
from mppagent.tempo.v2.backend import V2Backend
from mppagent.tempo.v2.snapshot import (
    InvalidSnapshot,
    check_snapshot,
    parse_snapshot,
    verify_snapshot_on_chain,
)
from mppagent.tempo.voucher import VoucherSigner
from tests.support import fresh_block, open_v2_channel

DEPOSIT = 50_000


def _header(data: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


async def test_a_true_snapshot_passes_and_each_lie_is_caught(tempo_chain: DevChain) -> None:
    payer, payee, stranger = tempo_chain.accounts[:3]
    await fresh_block(tempo_chain)
    channel_id, descriptor = await open_v2_channel(tempo_chain, payer, payee, DEPOSIT)
    client = tempo_chain.client()
    try:
        backend = V2Backend(client)
        chain_id = tempo_chain.chain_id

        def voucher(amount: int, key: str = payer.private_key) -> dict[str, str]:
            sig = backend.sign_voucher(
                VoucherSigner(key), channel_id, amount, RESERVE_ADDRESS, chain_id
            )
            return {"channelId": channel_id, "cumulativeAmount": str(amount), "signature": sig}

        true = {
            "channelId": channel_id,
            "chainId": chain_id,
            "escrow": RESERVE_ADDRESS,
            "descriptor": descriptor.to_wire(),
            "deposit": str(DEPOSIT),
            "settled": "0",
            "spent": "700",
            "acceptedCumulative": "1000",
            "requiredCumulative": "1000",
            "highestVoucher": voucher(1_000),
        }
        snapshot = parse_snapshot(_header(true))
        check_snapshot(snapshot, payer=payer.address, reserve=RESERVE_ADDRESS, chain_id=chain_id)
        state = await verify_snapshot_on_chain(backend, snapshot)
        assert state.deposit == DEPOSIT

        lies: list[tuple[dict[str, Any], str]] = [
            ({"highestVoucher": voucher(1_000, stranger.private_key)}, "voucher"),
            ({"highestVoucher": {**voucher(1_000), "cumulativeAmount": "2000"}}, "voucher"),
            ({"acceptedCumulative": "5000"}, "out of order"),
            ({"spent": "1500"}, "out of order"),
            ({"channelId": "0x" + "ab" * 32}, "channel id"),
            ({"chainId": chain_id + 1}, "another chain"),
            ({"descriptor": {**descriptor.to_wire(), "salt": "0x" + "11" * 32}}, "channel id"),
        ]
        for change, reason in lies:
            with pytest.raises(InvalidSnapshot, match=reason):
                check_snapshot(
                    parse_snapshot(_header({**true, **change})),
                    payer=payer.address,
                    reserve=RESERVE_ADDRESS,
                    chain_id=chain_id,
                )
        with pytest.raises(InvalidSnapshot, match="another payer"):
            check_snapshot(
                snapshot, payer=payee.address, reserve=RESERVE_ADDRESS, chain_id=chain_id
            )
        # Signed and ordered, but the chain holds another deposit.
        inflated = parse_snapshot(_header({**true, "deposit": str(DEPOSIT + 1)}))
        check_snapshot(inflated, payer=payer.address, reserve=RESERVE_ADDRESS, chain_id=chain_id)
        with pytest.raises(InvalidSnapshot, match="on chain"):
            await verify_snapshot_on_chain(backend, inflated)
    finally:
        await client.close()


@pytest.mark.parametrize("header", ["", "not base64!", _header({"channelId": "0x1"}), "x" * 20_000])
def test_malformed_snapshots_are_refused(header: str) -> None:
    with pytest.raises(InvalidSnapshot):
        parse_snapshot(header)
