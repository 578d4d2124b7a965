"""Zero-amount ``tempo``/``charge`` proofs: who is paying, proven without moving money.

A server that must know the payer before it can look up a channel (the v2
session's ``HEAD`` bootstrap) challenges with a ``charge`` of amount ``"0"``; the
client answers with ``payload: {type: "proof", signature}`` and a ``source`` DID,
the signature an EIP-712 ``Proof`` over the challenge id. Nothing else can be
done with it: no token, no amount, no contract.

Two forms exist, and they differ:

* :data:`DRAFT_PROOF` -- ``draft-tempo-charge-00`` ("Proof Payload"): domain
  ``{name: "MPP", version: "1", chainId}``, ``Proof(string challengeId)``.
* :data:`SDK_PROOF` -- what the reference SDK (mppx 0.11) signs and verifies:
  domain version ``"3"``, ``Proof(address account, string challengeId, string
  realm)`` (the account and realm bound as well).

The draft is normative; :mod:`mppagent.transport.bootstrap` answers in its form
first and in the SDK's only if that is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from mppagent.tempo.hexutil import address_word, keccak, uint_word
from mppagent.tempo.voucher import VoucherSigner

__all__ = ["DRAFT_PROOF", "SDK_PROOF", "ProofForm", "proof_digest", "sign_proof"]

_DOMAIN_TYPEHASH = keccak(b"EIP712Domain(string name,string version,uint256 chainId)")


@dataclass(frozen=True)
class ProofForm:
    """One EIP-712 shape of a zero-amount proof."""

    name: str
    version: str
    binds_account: bool

    @property
    def struct_type(self) -> bytes:
        """The ``Proof`` type string this form hashes."""
        if self.binds_account:
            return b"Proof(address account,string challengeId,string realm)"
        return b"Proof(string challengeId)"


DRAFT_PROOF = ProofForm("draft-tempo-charge-00", "1", binds_account=False)
SDK_PROOF = ProofForm("mppx-0.11", "3", binds_account=True)


def proof_digest(
    form: ProofForm, *, chain_id: int, challenge_id: str, realm: str, account: str
) -> bytes:
    """The 32-byte EIP-712 hash a proof of ``form`` signs."""
    domain = keccak(
        _DOMAIN_TYPEHASH + keccak(b"MPP") + keccak(form.version.encode()) + uint_word(chain_id)
    )
    fields = keccak(challenge_id.encode())
    if form.binds_account:
        fields = address_word(account) + fields + keccak(realm.encode())
    struct = keccak(keccak(form.struct_type) + fields)
    return keccak(b"\x19\x01" + domain + struct)


def sign_proof(
    signer: VoucherSigner, form: ProofForm, *, chain_id: int, challenge_id: str, realm: str
) -> str:
    """Sign a proof for the challenge ``challenge_id`` of ``realm`` (0x-hex r‖s‖v)."""
    digest = proof_digest(
        form, chain_id=chain_id, challenge_id=challenge_id, realm=realm, account=signer.address
    )
    return signer.sign_digest(digest)
