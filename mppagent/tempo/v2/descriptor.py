"""The v2 channel descriptor: a reserve channel's immutable identity.

The TIP-1034 reserve stores only a channel's mutable state; the descriptor
``{payer, payee, operator, token, salt, authorizedSigner, expiringNonceHash}``
travels in every v2 credential payload and every post-open reserve call, and
the channel id is recomputed from it. It is therefore as precious as a key to
the channel: without it a restarted agent can neither close nor withdraw.

On the wire it is a JSON object with those seven camelCase keys, addresses and
32-byte values as 0x-hex. The reference SDK writes whatever case it was given
(checksummed account addresses) and compares case-insensitively; we write
lowercase (the drafts' encoding rule) and accept any case.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mppagent.tempo.hexutil import ZERO_ADDRESS, checksum_address
from mppagent.tempo.schemas import Address, Bytes32, parse_model

__all__ = ["ChannelDescriptor"]


class ChannelDescriptor(BaseModel):
    """One reserve channel's identity; all fields required, hex normalised to lowercase.

    ``operator`` is the zero address when the payee has no operator, and
    ``authorized_signer`` the zero address when the payer signs its own vouchers.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    payer: Address
    payee: Address
    operator: Address
    token: Address
    salt: Bytes32
    authorized_signer: Address = Field(alias="authorizedSigner")
    expiring_nonce_hash: Bytes32 = Field(alias="expiringNonceHash")

    @classmethod
    def from_wire(cls, data: object) -> ChannelDescriptor:
        """Validate a descriptor received from a peer (``InvalidSessionMessage`` if malformed)."""
        return parse_model(cls, data, "channel descriptor")

    def to_wire(self) -> dict[str, str]:
        """The JSON object for a credential payload: camelCase keys, lowercase hex."""
        return self.model_dump(by_alias=True, mode="json")

    @property
    def signer(self) -> str:
        """Who must sign vouchers: the authorized signer, or the payer when that is zero."""
        return self.payer if self.authorized_signer == ZERO_ADDRESS else self.authorized_signer

    def abi_tuple(self) -> tuple[Any, ...]:
        """The descriptor as the reserve's ``ChannelDescriptor`` struct, for eth-abi / web3."""
        return (
            checksum_address(self.payer),
            checksum_address(self.payee),
            checksum_address(self.operator),
            checksum_address(self.token),
            bytes.fromhex(self.salt[2:]),
            checksum_address(self.authorized_signer),
            bytes.fromhex(self.expiring_nonce_hash[2:]),
        )
