"""Credential delivery: one sender for vouchers, top-ups and closes, one retry policy.

A voucher answering ``payment-need-voucher`` travels on its own request to
the same URL while the stream waits. ``HEAD`` first (no body to transfer); a
bodiless error or a server without ``HEAD`` gets the same credential by
``POST`` without a body, which also carries problem details. Every retry is
bounded three ways: by count, by exponential backoff, and by the voucher
deadline (well inside the server's ~60 s wait) -- no loop can run hot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx

from mppagent import failpoints
from mppagent.errors import NetworkError, ServerMisbehaviour
from mppagent.protocol import (
    Challenge,
    ChallengeNotFoundProblem,
    Credential,
    InvalidChallengeProblem,
    PaymentExpiredProblem,
    ProblemError,
    did_pkh,
    parse_challenges,
    parse_problem,
)
from mppagent.protocol import b64url_json_decode as _b64_json
from mppagent.session.policy import Offer, select_offer
from mppagent.session.pool import scope_of
from mppagent.session.store import ChannelRecord
from mppagent.tempo.schemas import (
    ClosePayload,
    SessionReceipt,
    TopUpPayload,
    VoucherPayload,
    parse_model,
)
from mppagent.transport.events import PaymentEvent

if TYPE_CHECKING:
    from mppagent.transport.paying import PaymentTransport

__all__ = [
    "CHALLENGE_PROBLEMS",
    "STATUS_RETRYABLE",
    "VoucherDeliveryFailed",
    "deliver",
    "deliver_top_up",
    "fresh_challenges",
    "header_receipt",
    "int_extra",
    "offer_from",
    "retry_after",
]

CHALLENGE_PROBLEMS = (InvalidChallengeProblem, ChallengeNotFoundProblem, PaymentExpiredProblem)
STATUS_RETRYABLE = {429, 500, 502, 503, 504}
MAX_ATTEMPTS = 8
"""Sends of one credential at most (network errors, 5xx, 429, renewed challenges)."""
MAX_RENEWALS = 3
"""Fresh challenges accepted while delivering one credential."""

ReceiptCheck = Callable[[SessionReceipt, str], None]


class VoucherDeliveryFailed(NetworkError):
    """A credential could not be delivered before the deadline or within the attempts."""


async def deliver(
    t: PaymentTransport,
    url: str,
    offer: Offer,
    payload: VoucherPayload | TopUpPayload | ClosePayload,
    check: ReceiptCheck | None,
    *,
    offer_holder: list[Offer] | None = None,
) -> SessionReceipt | None:
    """Deliver a voucher, top-up or close credential to ``url`` before the deadline.

    ``offer_holder`` (if given) shares the current challenge with the stream:
    an expired one is replaced by the fresh challenge the server sends with
    its 402 -- at most :data:`MAX_RENEWALS` times.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + t.voucher_deadline
    method = "HEAD"
    delay = 0.05
    renewals = 0
    current = offer_holder[0] if offer_holder else offer

    async def backoff(reason: str, wait: float | None = None) -> None:
        nonlocal delay
        pause = delay if wait is None else wait
        if loop.time() + pause > deadline:
            raise VoucherDeliveryFailed(
                f"could not deliver {payload.action} to {url} in time: {reason}"
            )
        await asyncio.sleep(pause)
        delay = min(delay * 2, 2.0)

    for _attempt in range(MAX_ATTEMPTS):
        if current.challenge.is_expired(_now(), t.manager.policy.challenge_skew):
            current = await _refresh_offer(t, url, current)
        header = Credential.for_challenge(
            current.challenge,
            payload.to_wire(),
            source=did_pkh(current.request.chain_id, t.manager.wallet.address),
        ).encode()
        request = httpx.Request(
            method,
            url,
            headers={"authorization": header},
            extensions={"timeout": _timeouts(max(0.5, deadline - loop.time()))},
        )
        try:
            response = await t.inner.handle_async_request(request)
            await response.aread()
            await response.aclose()
        except httpx.TransportError as exc:
            await backoff(type(exc).__name__)
            continue
        if response.is_success:
            receipt = header_receipt(response)
            if receipt is not None and check is not None:
                check(receipt, current.challenge.id)
            if offer_holder is not None:
                offer_holder[0] = current
            return receipt
        if response.status_code in STATUS_RETRYABLE:
            await backoff(f"HTTP {response.status_code}", retry_after(response))
            continue
        if method == "HEAD" and (response.status_code in (404, 405, 501) or not response.content):
            # HEAD not allowed, or an error without a body to explain it: the same
            # credential again by POST without a body, which carries problem details.
            method = "POST"
            continue
        problem = parse_problem(response)
        if response.status_code == 402 and isinstance(problem, CHALLENGE_PROBLEMS):
            renewals += 1
            if renewals > MAX_RENEWALS:
                raise VoucherDeliveryFailed(
                    f"{url} refused {renewals} fresh challenges for one {payload.action}"
                )
            current = offer_from(t, response, current)
            await backoff("challenge renewed")
            continue
        raise problem
    raise VoucherDeliveryFailed(
        f"could not deliver {payload.action} to {url} in {MAX_ATTEMPTS} attempts"
    )


async def _refresh_offer(t: PaymentTransport, url: str, current: Offer) -> Offer:
    """A fresh challenge for the same scope and price from the resource itself."""
    challenges = await fresh_challenges(t, url)
    return _same_terms(t, challenges, current)


async def fresh_challenges(t: PaymentTransport, url: str) -> list[Challenge]:
    """The resource's session challenges, asked for without credentials.

    ``HEAD`` first (the draft's way); a server whose ``HEAD`` is its v2 bootstrap
    answers it with a zero-amount ``charge`` instead, so without a session
    challenge in the answer the same question goes by ``POST`` without a body.
    """
    challenges: list[Challenge] = []
    for method in ("HEAD", "POST"):
        request = httpx.Request(method, url, headers={"accept-payment": "tempo/session"})
        try:
            response = await t.inner.handle_async_request(request)
            await response.aread()
            await response.aclose()
        except httpx.TransportError as exc:
            raise NetworkError(
                f"could not reach {url} for a fresh challenge: {type(exc).__name__}"
            ) from None
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        if any(c.method == "tempo" and c.intent == "session" for c in challenges):
            break
    return challenges


def offer_from(t: PaymentTransport, response: httpx.Response, current: Offer) -> Offer:
    """A fresh challenge for the same scope and price (no silent payee or price switch)."""
    return _same_terms(t, parse_challenges(response.headers.get_list("www-authenticate")), current)


def _same_terms(t: PaymentTransport, challenges: list[Challenge], current: Offer) -> Offer:
    offer = select_offer(t.manager.policy, challenges, _now())
    if scope_of(offer) != scope_of(current):
        raise ServerMisbehaviour(
            "scope_changed", "the server's fresh challenge names a different payee or escrow"
        )
    if offer.price != current.price:
        raise ServerMisbehaviour(
            "price_changed",
            f"the price changed mid-session from {current.price} to {offer.price}",
        )
    return offer


def header_receipt(response: httpx.Response) -> SessionReceipt | None:
    """The ``Payment-Receipt`` header's receipt, if any."""
    value = response.headers.get("payment-receipt")
    if value is None:
        return None
    data = _b64_json(value)
    return parse_model(SessionReceipt, data, "Payment-Receipt header")


def int_extra(problem: ProblemError, name: str) -> int | None:
    """A decimal-string extension member of a problem, as an int."""
    value = problem.extras.get(name)
    if isinstance(value, str) and value.isdigit() and len(value) <= 40:
        return int(value)
    return None


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` seconds (capped at 30), if given as a number."""
    value = response.headers.get("retry-after", "")
    return float(min(int(value), 30)) if value.isdigit() and len(value) < 6 else None


def _timeouts(seconds: float) -> dict[str, float]:
    return {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}


def _now() -> datetime:
    return datetime.now(UTC)


async def deliver_top_up(
    t: PaymentTransport,
    record: ChannelRecord,
    amount: int,
    offer: Offer,
    url: str,
    check: ReceiptCheck | None,
) -> ChannelRecord:
    """Sign ``topUp``, hand it to the server, and confirm the new deposit on chain."""
    payload, op = await t.manager.top_up_payload(record, amount, offer.request.method_details)
    await deliver(t, url, offer, payload, check)
    failpoints.hit("topup.sent")
    record = await t.manager.confirm_top_up(record, op)
    t.emit(PaymentEvent("top_up", record.channel_id, amount, detail={"deposit": record.deposit}))
    return record
