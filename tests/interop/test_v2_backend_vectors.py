"""What our v2 backend signs is what the reference SDK derives from the same bytes.

``V2Backend.new_channel`` signs a real open (fees and gas from the Tempo devchain) and
derives ``expiringNonceHash`` and the channel id from it; ``node/v2_backend_check.mjs``
deserializes that raw transaction with ``ox`` and recomputes both with mppx's own
functions, and signs a voucher for the id. Sponsored and unsponsored opens alike.
"""

from __future__ import annotations

import json

import pytest

from mppagent.devchain import DevChain
from mppagent.tempo.hexutil import ZERO_ADDRESS
from mppagent.tempo.v2 import RESERVE_ADDRESS, ChannelDescriptor
from mppagent.tempo.v2.backend import V2Backend
from mppagent.tempo.v2.calls import encode_open
from mppagent.tempo.voucher import VoucherSigner
from tests.interop.driver import run_node
from tests.support import fresh_block, v2_terms


@pytest.mark.parametrize("sponsored", [False, True])
async def test_open_hash_channel_id_and_voucher_match_the_sdk(
    tempo_chain: DevChain, sponsored: bool
) -> None:
    payer, payee, delegate = tempo_chain.accounts[:3]
    await fresh_block(tempo_chain)
    client = tempo_chain.client()
    try:
        backend = V2Backend(client)
        signer = delegate.address.lower() if sponsored else ZERO_ADDRESS
        terms = v2_terms(tempo_chain, payer, payee, authorized_signer=signer, fee_payer=sponsored)
        new = await backend.new_channel(payer.wallet(), terms, 123_456)
    finally:
        await client.close()
    assert new.plan is not None
    assert new.descriptor is not None
    descriptor = ChannelDescriptor.from_wire(json.loads(new.descriptor))
    signer_key = delegate.private_key if sponsored else payer.private_key
    amount = 98_765
    answer = run_node(
        "v2_backend_check.mjs",
        {
            "opens": [
                {
                    "raw": new.plan.main.raw,
                    "sender": payer.address,
                    "descriptor": {
                        k: v for k, v in descriptor.to_wire().items() if k != "expiringNonceHash"
                    },
                    "chainId": tempo_chain.chain_id,
                    "escrow": RESERVE_ADDRESS,
                    "amount": str(amount),
                    "key": signer_key,
                }
            ]
        },
    )
    (sdk,) = answer["opens"]
    assert sdk["expiringNonceHash"].lower() == descriptor.expiring_nonce_hash
    assert sdk["channelId"].lower() == new.channel_id
    # The transaction's only call is the approve-less open, to the reserve.
    expected_open = encode_open(
        terms.payee, terms.operator, terms.token, 123_456, terms.salt, terms.authorized_signer
    )
    assert [(c["to"].lower(), c["data"]) for c in sdk["calls"]] == [
        (RESERVE_ADDRESS, "0x" + expected_open.hex())
    ]
    ours = backend.sign_voucher(
        VoucherSigner(signer_key), new.channel_id, amount, RESERVE_ADDRESS, tempo_chain.chain_id
    )
    assert ours == sdk["signature"].lower()
