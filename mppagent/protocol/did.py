"""Payer identifiers: ``did:pkh`` (CAIP-10 accounts as DIDs).

The credential's optional ``source`` names the payer. The draft recommends a DID
without fixing the method; EVM payers use ``did:pkh:eip155:<chainId>:<address>``.
A malformed one is refused because servers key channels and signer checks on
it, while any other DID method is passed through untouched.
"""

from __future__ import annotations

import re

from mppagent.protocol.errors import InvalidDID

__all__ = ["did_pkh", "parse_did_pkh", "validate_source"]

_EIP155 = re.compile(r"did:pkh:eip155:(?P<chain>[1-9][0-9]{0,31}):(?P<address>0x[0-9a-fA-F]{40})")
# CAIP-2 namespace and reference, CAIP-10 account address.
_CAIP10 = re.compile(r"did:pkh:[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}:[-.%a-zA-Z0-9]{1,128}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def did_pkh(chain_id: int, address: str) -> str:
    """Build ``did:pkh:eip155:<chain_id>:<address>`` for an EVM payer.

    The address keeps the caller's spelling (EIP-55 checksummed or lowercase);
    checksums are not verified here because that needs keccak, which this pure
    package does not depend on.
    """
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id <= 0:
        raise InvalidDID("chain id must be a positive int", what="source")
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise InvalidDID("address must be 0x followed by 40 hex digits", what="source")
    return f"did:pkh:eip155:{chain_id}:{address}"


def parse_did_pkh(source: str) -> tuple[int, str]:
    """Split ``did:pkh:eip155:<chainId>:<address>`` into ``(chain_id, address)``."""
    match = _EIP155.fullmatch(source) if isinstance(source, str) else None
    if match is None:
        raise InvalidDID("expected did:pkh:eip155:<chainId>:<0x address>", what="source")
    return int(match["chain"]), match["address"]


def validate_source(source: str) -> None:
    """Check a credential ``source``: strict for ``did:pkh``, permissive for other DIDs.

    ``did:pkh:eip155:`` must carry a decimal chain id and a 20-byte hex address;
    other ``did:pkh`` namespaces (Solana, Bitcoin...) must at least follow
    CAIP-10's character sets. Anything else (``did:key:...``) is accepted as is:
    the draft leaves the payer identifier format open.
    """
    if source.startswith("did:pkh:eip155:"):
        parse_did_pkh(source)
    elif source.startswith("did:pkh:") and not _CAIP10.fullmatch(source):
        raise InvalidDID("not a CAIP-10 did:pkh identifier", what="source")
