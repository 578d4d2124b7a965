"""Zero-amount charge proofs: our EIP-712 hashes equal the SDK's and the draft's.

The HEAD bootstrap proves the payer with a ``tempo``/``charge`` proof; the draft
and the reference SDK hash different typed data (see ``mppagent.tempo.proof``).
Both forms are checked on random inputs generated per run, against the SDK's own
``Proof.hash`` and viem's ``hashTypedData`` over the draft's typed data.
"""

from __future__ import annotations

import random
import secrets
import string

from mppagent.tempo.hexutil import checksum_address
from mppagent.tempo.proof import DRAFT_PROOF, SDK_PROOF, proof_digest, sign_proof
from mppagent.tempo.voucher import VoucherSigner, recover_digest_signer
from tests.interop.driver import run_node


def _text(rng: random.Random, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 48)))


def test_proof_hashes_match_the_sdk_and_the_draft() -> None:
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    cases = [
        {
            "chainId": rng.choice([4217, 42431, 31337, rng.randint(1, 2**53)]),
            "challengeId": _text(rng, string.ascii_letters + string.digits + "-_"),
            "realm": _text(rng, string.printable + "é€"),
            "account": checksum_address("0x" + rng.randbytes(20).hex()),
        }
        for _ in range(24)
    ]
    expected = run_node("proof_hashes.mjs", {"cases": cases})
    for case, sdk, draft in zip(cases, expected["sdk"], expected["draft"], strict=True):
        fields = {
            "chain_id": case["chainId"],
            "challenge_id": case["challengeId"],
            "realm": case["realm"],
            "account": case["account"],
        }
        assert "0x" + proof_digest(SDK_PROOF, **fields).hex() == sdk, (seed, case)
        assert "0x" + proof_digest(DRAFT_PROOF, **fields).hex() == draft, (seed, case)


def test_a_proof_recovers_to_the_signer() -> None:
    signer = VoucherSigner.generate()
    for form in (DRAFT_PROOF, SDK_PROOF):
        signature = sign_proof(signer, form, chain_id=4217, challenge_id="abc", realm="r")
        digest = proof_digest(
            form, chain_id=4217, challenge_id="abc", realm="r", account=signer.address
        )
        assert recover_digest_signer(signature, digest).lower() == signer.address.lower()
