"""Configuration of the reference server: one typed object, validated up front."""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    SecretStr,
    field_validator,
    model_validator,
)

from mppagent.devserver.faults import Billing, Fault
from mppagent.tempo.hexutil import ZERO_ADDRESS, normalize_address
from mppagent.tempo.v2.constants import RESERVE_ADDRESS

__all__ = ["DevServerConfig", "SessionProtocol"]

SessionProtocol = Literal["v1", "v2"]


class DevServerConfig(BaseModel):
    """Everything the reference server needs. Amounts are token base units (6 decimals).

    ``price_per_token`` is the challenge's ``amount``; ``lookahead_tokens`` how
    many tokens beyond those delivered a voucher demand asks to be paid for;
    ``state_path`` the SQLite file that makes channel accounting survive a
    restart (``":memory:"`` keeps nothing). ``faults`` and ``billing`` switch on
    named behaviours (:mod:`mppagent.devserver.faults`) for every request;
    ``tokens_per_chunk``, ``late_receipt_delay`` and ``contradictory_interval`` tune
    the ``packed-tokens``, ``late-voucher-receipt`` and ``contradictory-need-voucher``
    behaviours. ``sponsor_fees`` offers fee sponsorship (``feePayer: true``): the
    server co-signs a payer's Tempo ``open``/``topUp`` as fee payer, paying in
    ``fee_token`` (advertised as the challenge's ``feeToken``; default: the
    session currency on a Tempo chain).

    ``session_protocol`` picks the session protocol the challenges name
    (``methodDetails.sessionProtocol``): ``"v2"`` (default, as today's providers
    speak) settles through the TIP-1034 reserve at ``reserve`` (the canonical
    address unless a compatible deployment is named) and announces ``operator``
    (zero: none) for new channels' descriptors; ``"v1"`` through the
    ``TempoStreamChannel`` escrow at ``escrow``, which v1 requires.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rpc_url: str
    escrow: str | None = None
    token: str
    payee_private_key: SecretStr
    realm: str = "mppagent-devserver"
    challenge_secret: SecretBytes = Field(
        default_factory=lambda: SecretBytes(secrets.token_bytes(32))
    )
    price_per_token: int = Field(25, ge=0)
    suggested_deposit: int = Field(1_000_000, gt=0)
    min_voucher_delta: int | None = Field(None, gt=0)
    lookahead_tokens: int = Field(100, ge=1)
    voucher_timeout: float = Field(60.0, gt=0)
    challenge_ttl: int = Field(300, gt=0)
    auth_mode: Literal["mpp", "bearer", "either"] = "mpp"
    api_keys: tuple[SecretStr, ...] = ()
    tokens_per_second: float | None = Field(None, gt=0)
    default_max_tokens: int = Field(256, ge=1)
    seed: int = 0
    state_path: str = ":memory:"
    durability: Literal["full", "normal"] = "full"
    charge_batch: int = Field(16, ge=1)
    voucher_rate_per_second: float = Field(10.0, gt=0)
    voucher_burst: int = Field(20, ge=1)
    chain_check_interval: float = Field(2.0, ge=0)
    faults: frozenset[Fault] = frozenset()
    billing: frozenset[Billing] = frozenset()
    test_mode: bool = False
    slow_voucher_delay: float = Field(2.0, ge=0)
    huge_event_bytes: int = Field(8 * 1024 * 1024, ge=1)
    tokens_per_chunk: int = Field(4, ge=1)
    late_receipt_delay: float = Field(1.0, ge=0)
    contradictory_interval: float = Field(0.2, gt=0)
    sponsor_fees: bool = False
    fee_token: str | None = None
    session_protocol: SessionProtocol = "v2"
    reserve: str = RESERVE_ADDRESS
    operator: str = ZERO_ADDRESS

    @field_validator("token", "reserve", "operator")
    @classmethod
    def _address(cls, value: str) -> str:
        return normalize_address(value)

    @field_validator("escrow")
    @classmethod
    def _escrow(cls, value: str | None) -> str | None:
        return None if value is None else normalize_address(value)

    @model_validator(mode="after")
    def _contract_named(self) -> DevServerConfig:
        if self.session_protocol == "v1" and self.escrow is None:
            raise ValueError("session protocol v1 needs the escrow contract's address (escrow)")
        return self

    @property
    def contract(self) -> str:
        """The contract this server's channels live in: the v1 escrow or the v2 reserve."""
        if self.session_protocol == "v2":
            return self.reserve
        assert self.escrow is not None  # _contract_named
        return self.escrow

    @field_validator("fee_token")
    @classmethod
    def _fee_token(cls, value: str | None) -> str | None:
        return None if value is None else normalize_address(value)
