"""The paying HTTP transport: to httpx (and the ``openai`` SDK) a paid endpoint looks free.

:class:`PaymentTransport` wraps any httpx transport. A request that comes back
``402`` with a ``Payment`` challenge is handed to the handshake
(:mod:`~mppagent.transport.handshake`), which pays and retries it; a paid SSE
response comes back as a :class:`~mppagent.transport.stream.PaidStream` that
answers voucher demands through the one credential sender
(:mod:`~mppagent.transport.delivery`) and checks every receipt. Nothing is
signed without the gate's authorization, and nothing signed leaves the
process before the store has recorded it.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from mppagent.llm.meters import Meter, MeterSpec, default_spec, make_meter
from mppagent.logging import get_logger
from mppagent.protocol import parse_challenges
from mppagent.session.channels import ChannelManager
from mppagent.transport.bootstrap import SESSION_HEADER, SNAPSHOT_HEADER, SessionHints
from mppagent.transport.delivery import VoucherDeliveryFailed, deliver, header_receipt
from mppagent.transport.events import (
    PAYMENT_OUTCOME,
    Observer,
    PaymentEvent,
    PaymentOutcome,
    StreamInterrupted,
)
from mppagent.transport.handshake import PAID_STREAM, PaidRequest
from mppagent.transport.stream import PaidStream

__all__ = [
    "PAID_STREAM",
    "PAYMENT_OUTCOME",
    "Observer",
    "PaidStream",
    "PaymentEvent",
    "PaymentOutcome",
    "PaymentTransport",
    "StreamInterrupted",
    "VoucherDeliveryFailed",
    "deliver",
    "header_receipt",
]

log = get_logger("mppagent.transport")

KEEPALIVE = 20
"""Idle connections the default inner transport keeps (see :class:`PaymentTransport`)."""

MeterFactory = Callable[[str | None, bytes], Meter]


def default_meter(unit_type: str | None, request_body: bytes) -> Meter:
    """The meter :func:`~mppagent.llm.meters.default_spec` picks for ``unitType``."""
    return make_meter(default_spec(unit_type), unit_type, request_body)


def meter_factory(spec: MeterSpec) -> MeterFactory:
    """Meters of one kind (a provider profile's), whatever the challenge's ``unitType``."""

    def make(unit_type: str | None, request_body: bytes) -> Meter:
        return make_meter(spec, unit_type, request_body)

    return make


class PaymentTransport(httpx.AsyncBaseTransport):
    """An httpx transport that pays MPP ``tempo``/``session`` challenges.

    ``inner`` does the actual HTTP (default: a pooled ``AsyncHTTPTransport``).
    ``voucher_deadline`` bounds how long a voucher may take to be delivered --
    well inside the server's ~60 s wait. ``meter_factory`` builds the meter
    for a request from the offer's ``unitType`` and the request body.
    ``bootstrap``: ask a v2 server for a snapshot of our channels (``HEAD``)
    when the store has no open channel for its scope (see
    :mod:`~mppagent.transport.bootstrap`).
    """

    def __init__(
        self,
        manager: ChannelManager,
        *,
        inner: httpx.AsyncBaseTransport | None = None,
        voucher_deadline: float = 45.0,
        max_attempts: int = 4,
        observer: Observer | None = None,
        meter_factory: MeterFactory = default_meter,
        bootstrap: bool = True,
    ) -> None:
        self.manager = manager
        # Few idle connections: httpcore re-checks every connection against the whole
        # pool for each idle one whenever a request starts or ends (O(idle x total)).
        # With hundreds of streams and 200 idle voucher connections kept, that scan was
        # most of the agent's CPU. Beyond 20 connections an idle one is closed instead
        # and a voucher opens a fresh connection (cheap on loopback, a TLS handshake to
        # a remote server: a small pool of its own for payment requests would avoid it).
        self.inner = inner or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=KEEPALIVE)
        )
        self.voucher_deadline = voucher_deadline
        self.max_attempts = max_attempts
        self.observer = observer
        self.meter_factory = meter_factory
        self.hints = SessionHints(self, bootstrap=bootstrap)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()

    def emit(self, event: PaymentEvent) -> None:
        """Report ``event`` to the observer (errors in observers are not ours to raise)."""
        if self.observer is not None:
            try:
                self.observer(event)
            except Exception:  # an observer must never break a payment
                log.exception("observer.failed", kind=event.kind)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; pay and retry if the server asks for payment."""
        auth = request.headers.get("authorization", "")
        if auth[:8].lower() == "payment ":
            return await self.inner.handle_async_request(request)  # the caller pays by hand
        body = await request.aread()
        request.headers.setdefault("accept-payment", "tempo/session")
        if SESSION_HEADER not in request.headers:
            hint = self.hints.hint_for(str(request.url))
            if hint is not None:  # which open channel of ours a v2 server may describe
                request.headers[SESSION_HEADER] = hint
        response = await self.inner.handle_async_request(request)
        if response.status_code != 402:
            return response
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        if not challenges:
            return response  # a 402 that is not ours to answer
        snapshot = response.headers.get(SNAPSHOT_HEADER)
        await response.aread()
        await response.aclose()
        return await PaidRequest(self, request, body, challenges.copy(), snapshot=snapshot).run()
