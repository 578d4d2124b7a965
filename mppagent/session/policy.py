"""What this agent may pay: the owner's spending policy, as pure checks.

Every signature the agent makes is a decision the owner delegated, so each
one passes through here first. The checks are pure functions of the policy,
the challenge and the numbers at hand; a refusal is a
:class:`~mppagent.errors.PolicyViolation` naming the rule, raised *before*
anything is signed.

Amounts are integer base units of the token (6 decimals for TIP-20: one
token is ``1_000_000``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mppagent.errors import PolicyViolation, ProtocolError
from mppagent.protocol import Challenge
from mppagent.tempo.hexutil import normalize_address
from mppagent.tempo.schemas import WIRE, SessionRequest

__all__ = ["Offer", "SpendPolicy", "select_offer"]

_UINT128_MAX = (1 << 128) - 1

SESSION_PROTOCOLS = ("v1", "v2")
"""Session protocols a challenge may name (``methodDetails.sessionProtocol``; absent = v1)."""


class SpendPolicy(BaseModel):
    """Limits on what the agent pays. Unset optional limits mean "no limit".

    ``max_price`` maps a unit type (``llm_token``, ``request``, ...) to the most
    the agent pays per unit; a unit type not listed is never paid for.
    ``lookahead_units`` is how far ahead of the units actually delivered a
    server may ask to be paid while streaming; ``unit_tolerance`` is how many
    units a receipt may bill beyond what the agent counted itself (0 when the
    meter is exact, as with one token per SSE chunk). An escrow the server names
    is only funded if it is in ``allowed_escrows`` or runs the escrow code this
    agent ships (checked on chain), unless ``trust_unknown_escrows`` is set.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_price: dict[str, int] = Field(default_factory=lambda: {"llm_token": 100})
    max_deposit: int = Field(10_000_000, gt=0)
    default_deposit: int | None = Field(None, gt=0)
    budget_per_request: int | None = Field(None, ge=0)
    budget_per_day: int | None = Field(None, ge=0)
    allowed_payees: tuple[str, ...] | None = None
    allowed_realms: tuple[str, ...] | None = None
    allowed_escrows: tuple[str, ...] | None = None
    allowed_tokens: tuple[str, ...] | None = None
    allowed_chains: tuple[int, ...] | None = None
    lookahead_units: int = Field(200, ge=0)
    unit_tolerance: int = Field(0, ge=0)
    max_channels_per_scope: int = Field(4, ge=1)
    trust_unknown_escrows: bool = False
    allow_top_up: bool = True
    challenge_skew: timedelta = timedelta(seconds=5)

    @field_validator("max_price")
    @classmethod
    def _prices(cls, value: dict[str, int]) -> dict[str, int]:
        for unit, price in value.items():
            if isinstance(price, bool) or not isinstance(price, int) or price < 0:
                raise ValueError(f"max_price[{unit!r}] must be a non-negative integer")
        return value

    @field_validator("allowed_payees", "allowed_escrows", "allowed_tokens")
    @classmethod
    def _addresses(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(normalize_address(v) for v in value)

    @model_validator(mode="after")
    def _deposit_bounds(self) -> SpendPolicy:
        if self.max_deposit > _UINT128_MAX:
            raise ValueError("max_deposit exceeds uint128")
        if self.default_deposit is not None and self.default_deposit > self.max_deposit:
            raise ValueError("default_deposit exceeds max_deposit")
        return self

    # -- challenge selection --------------------------------------------------------

    def check_offer(self, challenge: Challenge, now: datetime) -> Offer:
        """Accept ``challenge`` as a payable tempo session offer, or raise PolicyViolation."""
        if challenge.method != "tempo" or challenge.intent != "session":
            offered = f"{challenge.method}/{challenge.intent}"
            raise PolicyViolation("method", f"only tempo/session is supported, got {offered}")
        if challenge.is_expired(now, self.challenge_skew):
            raise PolicyViolation("expires", f"challenge expired at {challenge.expires}")
        try:
            request = SessionRequest.model_validate(challenge.request_data, context=WIRE)
        except ValueError as exc:
            detail = _first_line(exc)
            raise PolicyViolation("request", f"unusable session request: {detail}") from None
        except ProtocolError as exc:
            raise PolicyViolation("request", f"unusable session request: {exc}") from None
        protocol = request.method_details.session_protocol
        if protocol not in (None, *SESSION_PROTOCOLS):
            raise PolicyViolation(
                "session_protocol", f"session protocol {protocol!r} is not one MPP defines"
            )
        if self.allowed_realms is not None and challenge.realm not in self.allowed_realms:
            raise PolicyViolation("allowed_realms", f"realm {challenge.realm!r} is not allowed")
        if self.allowed_payees is not None and request.recipient not in self.allowed_payees:
            raise PolicyViolation("allowed_payees", f"payee {request.recipient} is not allowed")
        if self.allowed_escrows is not None and request.escrow not in self.allowed_escrows:
            raise PolicyViolation("allowed_escrows", f"escrow {request.escrow} is not allowed")
        if self.allowed_tokens is not None and request.currency not in self.allowed_tokens:
            raise PolicyViolation("allowed_tokens", f"token {request.currency} is not allowed")
        if self.allowed_chains is not None and request.chain_id not in self.allowed_chains:
            raise PolicyViolation("allowed_chains", f"chain {request.chain_id} is not allowed")
        unit = request.unit_type or "request"
        if unit not in self.max_price:
            raise PolicyViolation("max_price", f"no price limit configured for unit {unit!r}")
        if request.amount > self.max_price[unit]:
            raise PolicyViolation(
                "max_price",
                f"price {request.amount} per {unit} exceeds the limit {self.max_price[unit]}",
            )
        return Offer(challenge=challenge, request=request, unit_type=unit)

    # -- deposits ---------------------------------------------------------------------

    def initial_deposit(self, offer: Offer) -> int:
        """Deposit for a new channel: the server's suggestion, capped by ours.

        The cap is ``default_deposit`` when set (what the owner prefers to lock
        up), else ``max_deposit``; without a suggestion the cap itself is used.
        """
        cap = self.default_deposit or self.max_deposit
        deposit = min(offer.request.suggested_deposit or cap, cap)
        if deposit < offer.request.amount:
            raise PolicyViolation(
                "max_deposit",
                f"a deposit of {deposit} cannot cover even one unit at {offer.request.amount}",
            )
        return deposit

    def top_up_amount(self, deposit: int, required: int, offer_deposit: int) -> int:
        """How much to add so the deposit covers ``required``, within ``max_deposit``.

        Tops up by at least the original deposit size (fewer transactions), but
        never past ``max_deposit``.
        """
        if not self.allow_top_up:
            raise PolicyViolation("allow_top_up", "top-ups are disabled by policy")
        if required > self.max_deposit:
            raise PolicyViolation(
                "max_deposit",
                f"cumulative {required} would need a deposit above the cap {self.max_deposit}",
            )
        step = max(required - deposit, offer_deposit)
        return max(min(step, self.max_deposit - deposit), required - deposit)

    # -- per-voucher budgets -----------------------------------------------------------

    def check_request_budget(self, signed_in_request: int) -> None:
        """Refuse when one request would sign more than ``budget_per_request``."""
        if self.budget_per_request is not None and signed_in_request > self.budget_per_request:
            raise PolicyViolation(
                "budget_per_request",
                f"this request would authorize {signed_in_request}, above the per-request "
                f"budget {self.budget_per_request}",
            )

    def check_daily_budget(self, increment: int, spent_last_day: int) -> None:
        """Refuse when the rolling 24-hour total would exceed ``budget_per_day``."""
        if self.budget_per_day is not None and spent_last_day + increment > self.budget_per_day:
            raise PolicyViolation(
                "budget_per_day",
                f"authorizing {increment} more would bring the last 24 hours to "
                f"{spent_last_day + increment}, above the daily budget {self.budget_per_day}",
            )


@dataclass(frozen=True)
class Offer:
    """A challenge the policy accepted, with its decoded session request."""

    challenge: Challenge
    request: SessionRequest
    unit_type: str

    @property
    def price(self) -> int:
        """Price per unit in base units."""
        return self.request.amount

    @property
    def protocol(self) -> str:
        """The session protocol the challenge names (absent means v1)."""
        return self.request.method_details.session_protocol or "v1"


def select_offer(policy: SpendPolicy, challenges: Sequence[Challenge], now: datetime) -> Offer:
    """The first challenge (in the server's order) the policy accepts.

    If none is acceptable, raises the :class:`PolicyViolation` of the first
    tempo/session challenge (or of the first challenge when there is none),
    so the message names the rule that refused it.
    """
    refusals: list[PolicyViolation] = []
    for challenge in challenges:
        try:
            return policy.check_offer(challenge, now)
        except PolicyViolation as exc:
            refusals.append(exc)
    if not refusals:
        raise PolicyViolation("method", "the server offered no Payment challenge")
    for refusal in refusals:
        if refusal.rule != "method":
            raise refusal
    raise refusals[0]


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
