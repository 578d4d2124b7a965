"""HTTP surface of the reference server (Starlette): an OpenAI-compatible paid endpoint.

Routes:

* ``POST /v1/chat/completions`` -- the paid resource, streaming (SSE) or not.
  Without a credential: ``402`` with a ``WWW-Authenticate: Payment`` challenge.
  With ``Authorization: Payment`` and a body: verify the credential, then serve.
  With a credential and *no* body: a voucher/top-up/close update only.
* ``HEAD /v1/chat/completions`` -- voucher/top-up/close updates (headers only),
  or a fresh challenge when sent without a credential.
* ``GET /v1/models``, ``GET /health``.

Responses follow draft-httpauth-payment: a ``Payment-Receipt`` on every
successful paid response (``Cache-Control: private``), problem+json errors,
and a fresh challenge with every ``402`` (``Cache-Control: no-store``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mppagent.devserver.config import DevServerConfig
from mppagent.devserver.fakemodel import FakeModel
from mppagent.devserver.faults import (
    BILLING_HEADER,
    FAULT_AFTER_HEADER,
    FAULT_HEADER,
    HUGE_AMOUNT,
    Billing,
    Fault,
    parse_billing,
    parse_faults,
    regress_receipt,
    voucher_fault,
)
from mppagent.devserver.payee import RateLimited, SessionPayee
from mppagent.devserver.snapshot import SESSION_HEADER, SNAPSHOT_HEADER, encode_snapshot
from mppagent.devserver.state import IdempotentResponse, ServerState
from mppagent.devserver.streaming import MeteredStream, Pacer, StreamPlan
from mppagent.devserver.wire import (
    SSE_DONE,
    ChatRequest,
    ChunkWriter,
    Usage,
    WireError,
    completion_body,
    error_body,
    model_list,
    parse_chat_request_json,
    sse,
)
from mppagent.errors import ConfigError
from mppagent.logging import get_logger
from mppagent.protocol import (
    JSON,
    PROBLEM_CONTENT_TYPE,
    Credential,
    InsufficientBalanceProblem,
    MalformedCredentialProblem,
    PaymentError,
    PaymentRequiredProblem,
    ProblemError,
    encode_receipt,
)
from mppagent.tempo.chain import ChainClient

__all__ = ["Behaviours", "DevServer", "check_contract", "create_app"]

log = get_logger("mppagent.devserver")

_NO_HEADER_RECEIPT = frozenset({Billing.RECEIPT_EVENT_ONLY, Billing.PREPAID_CARRY_OVER})
_ALWAYS_USAGE = frozenset({Billing.PACKED_TOKENS, Billing.PER_EVENT})


@dataclass(frozen=True)
class Behaviours:
    """The faults and billing flavours in force for one request (see :mod:`.faults`)."""

    faults: frozenset[Fault]
    billing: frozenset[Billing]
    fault_after: int = 5


class DevServer:
    """The server's components, created on first use (the chain id needs a round trip)."""

    def __init__(self, config: DevServerConfig) -> None:
        self.config = config
        self.model = FakeModel(seed=config.seed)
        self._payee: SessionPayee | None = None
        self._init_lock = asyncio.Lock()
        self._in_flight: set[tuple[str, str]] = set()
        self.counters: Counter[str] = Counter()
        """How often each fault fired (e.g. ``voucher-402-loop`` answers), for tests."""

    async def payee(self) -> SessionPayee:
        """The payee, connecting to the chain on the first call."""
        if self._payee is None:
            async with self._init_lock:
                if self._payee is None:
                    chain = ChainClient(self.config.rpc_url)
                    try:
                        chain_id = await chain.chain_id()
                        await check_contract(self.config, chain)
                    except BaseException:
                        await chain.close()
                        raise
                    state = ServerState(self.config.state_path, durability=self.config.durability)
                    payee = SessionPayee(self.config, state=state, chain=chain, chain_id=chain_id)
                    await payee.return_owed_refunds()  # left over from a crash or a failure
                    self._payee = payee
        return self._payee

    async def close(self) -> None:
        """Release the chain client and the database."""
        if self._payee is not None:
            await self._payee.chain.close()
            self._payee.state.close()

    # -- request handling ---------------------------------------------------------------------

    def behaviours(self, request: Request) -> Behaviours:
        """Faults and flavours in force for ``request`` (server-wide plus, in test mode, the
        headers')."""
        config = self.config
        if not config.test_mode:
            return Behaviours(config.faults, config.billing)
        value = request.headers.get(FAULT_AFTER_HEADER, "")
        return Behaviours(
            config.faults | parse_faults(request.headers.get(FAULT_HEADER)),
            config.billing | parse_billing(request.headers.get(BILLING_HEADER)),
            int(value) if value.isdigit() else 5,
        )

    async def lose_books(self, payee: SessionPayee, channel_id: str) -> None:
        """``books-lost``: forget what was accepted and spent, as a restart without state would.

        What survives is what the chain knows (``settled``); the server re-adopts the
        channel from there, as if it had restarted just before this request.
        """
        async with payee.lock(channel_id):
            channel = payee.state.get(channel_id)
            if channel is None:
                return  # nothing to forget
            payee.state.put(
                replace(
                    channel,
                    accepted=channel.settled,
                    accepted_signature=None,
                    spent=channel.settled,
                )
            )
        log.info("fault.books_lost", channel=channel_id, settled=channel.settled)

    async def problem(
        self,
        problem: ProblemError,
        *,
        head: bool = False,
        channel_id: str | None = None,
        refused: bool = False,
    ) -> Response:
        """A problem+json response; 402s carry a fresh challenge.

        ``channel_id`` names the channel the request was about (the client's
        ``Payment-Session`` hint or its credential's); for one of our open v2
        channels the 402 carries its session snapshot (:mod:`.snapshot`) in the
        ``Payment-Session``/``Payment-Session-Snapshot`` headers, and -- when it
        ``refused`` a credential for that channel, so the client's view is behind
        -- in the challenge too (``methodDetails.channelId``/``sessionSnapshot``),
        for the client to resume from. Not in every challenge: the reference SDK
        signs its close for the snapshot of the challenge it last kept, which
        would be stale by then.
        """
        headers = {"cache-control": "no-store"}
        if problem.status == 402:
            payee = await self.payee()
            snapshot = payee.snapshot(channel_id)
            suggested = snapshot if refused else None
            headers["www-authenticate"] = payee.issue_challenge(suggested).to_header()
            if snapshot is not None:
                headers[SESSION_HEADER] = str(snapshot["channelId"])
                headers[SNAPSHOT_HEADER] = encode_snapshot(snapshot)
        if isinstance(problem, RateLimited):
            headers["retry-after"] = str(problem.extras.get("retryAfter", "1"))
        if head:
            return Response(status_code=problem.status, headers=headers)
        return Response(
            json.dumps(problem.to_body()),
            status_code=problem.status,
            headers=headers,
            media_type=PROBLEM_CONTENT_TYPE,
        )

    def bearer_ok(self, request: Request) -> bool | None:
        """True/False for a valid/invalid Bearer key; None when none was sent."""
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() != "bearer ":
            return None
        key = auth[7:].strip().encode()
        return any(
            hmac.compare_digest(key, k.get_secret_value().encode()) for k in self.config.api_keys
        )

    async def completions(self, request: Request) -> Response:
        """``POST``/``HEAD /v1/chat/completions``."""
        head = request.method == "HEAD"
        bearer = self.bearer_ok(request)
        mode = self.config.auth_mode
        if bearer is not None and mode in ("bearer", "either"):
            if not bearer:
                return JSONResponse(
                    error_body(
                        "Incorrect API key provided.",
                        type="invalid_request_error",
                        code="invalid_api_key",
                    ),
                    status_code=401,
                )
            return await self.serve_free(request)
        if mode == "bearer":
            return JSONResponse(
                error_body("You didn't provide an API key.", code="missing_api_key"),
                status_code=401,
            )
        body = b"" if head else await request.body()
        chat: ChatRequest | None = None
        if body.strip():
            try:
                chat = parse_chat_request_json(body)
            except WireError as exc:
                return JSONResponse(exc.body(), status_code=exc.status)
        auth = request.headers.get("authorization", "")
        hint = request.headers.get(SESSION_HEADER)
        if auth[:8].lower() != "payment ":
            return await self.problem(
                PaymentRequiredProblem("Payment is required for this resource."),
                head=head,
                channel_id=hint,
            )
        try:
            credential = Credential.decode(auth)
        except PaymentError as exc:
            return await self.problem(
                MalformedCredentialProblem(str(exc)), head=head, channel_id=hint
            )
        behaviours = self.behaviours(request)
        faults, billing = behaviours.faults, behaviours.billing
        payee = await self.payee()
        raw_channel = credential.payload.get("channelId")
        channel_id = raw_channel if isinstance(raw_channel, str) else ""
        if Billing.BOOKS_LOST in billing and channel_id and chat is not None:
            await self.lose_books(payee, channel_id)  # before each paid request
        # A stream's behaviours also govern the voucher requests answered while it runs.
        live_faults = faults | payee.stream_faults.get(channel_id, frozenset())
        live_billing = billing | payee.stream_billing.get(channel_id, frozenset())
        known = payee.state.get(channel_id)
        refused = voucher_fault(
            live_faults,
            credential.payload,
            known.accepted if known else None,
            update=chat is None,
        )
        if refused is not None:
            fault, problem = refused
            self.counters[fault.value] += 1
            return await self.problem(
                problem, head=head, channel_id=channel_id or hint, refused=True
            )
        try:
            accepted = await payee.accept(credential, faults)
        except ProblemError as problem:
            return await self.problem(
                problem, head=head, channel_id=channel_id or hint, refused=True
            )
        if accepted.action == "open":
            # "gone" is about channels the server already knew; a new one is fine.
            faults = faults - {Fault.GONE}
        receipt_faults = faults if accepted.action != "open" else frozenset()
        if chat is None or accepted.action == "close":
            receipt = payee.receipt(
                accepted.channel,
                accepted.challenge.id,
                tx_hash=accepted.tx_hash,
                faults=receipt_faults,
            )
            if Billing.LATE_VOUCHER_RECEIPT in live_billing and accepted.action == "voucher":
                # The stream resumed when the voucher was accepted; its receipt comes late.
                await asyncio.sleep(self.config.late_receipt_delay)
            # 200, not 204: the draft answers an (idempotent) voucher with "200 OK".
            return Response(status_code=200, headers=_paid_headers(receipt))
        return await self.serve_paid(
            request,
            chat,
            accepted.channel.channel_id,
            accepted.challenge.id,
            replace(behaviours, faults=faults),
        )

    async def serve_paid(
        self,
        request: Request,
        chat: ChatRequest,
        channel_id: str,
        challenge_id: str,
        behaviours: Behaviours,
    ) -> Response:
        """Serve a completion paid from ``channel_id``."""
        payee = await self.payee()
        faults, billing = behaviours.faults, behaviours.billing
        if Fault.HUGE_TOP_UP in faults:
            self.counters[Fault.HUGE_TOP_UP.value] += 1
            return await self.problem(
                InsufficientBalanceProblem(
                    "this completion needs a larger deposit (fault injection)",
                    extras={"requiredTopUp": str(HUGE_AMOUNT), "channelId": channel_id},
                ),
                channel_id=channel_id,
                refused=True,
            )
        key = request.headers.get("idempotency-key")
        if key:
            cached = payee.state.cached_response(challenge_id, key)
            if cached is not None:
                headers = {"cache-control": "private"}
                if cached.receipt:
                    headers["payment-receipt"] = cached.receipt
                return Response(
                    cached.body,
                    status_code=cached.status,
                    headers=headers,
                    media_type=cached.content_type,
                )
            if (challenge_id, key) in self._in_flight:
                return JSONResponse(
                    error_body(
                        "A request with this Idempotency-Key is in progress.",
                        code="idempotency_conflict",
                    ),
                    status_code=409,
                )
        plan = chat.plan(self.config.default_max_tokens)
        tokens = list(
            self.model.generate(
                chat.prompt_text(),
                max_tokens=plan.max_tokens,
                reasoning_tokens=plan.reasoning_tokens,
            )
        )
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if chat.stream:
            channel = payee.state.get(channel_id)
            assert channel is not None
            writer = _chunk_writer(
                chat, completion_id, created, always_usage=bool(billing & _ALWAYS_USAGE)
            )
            stream = MeteredStream(
                payee,
                writer,
                StreamPlan(
                    tokens=tokens,
                    finish_reason=plan.finish_reason,
                    prompt_tokens=chat.prompt_tokens(),
                    channel_id=channel_id,
                    challenge_id=challenge_id,
                    faults=faults,
                    fault_after=behaviours.fault_after,
                    billing=billing,
                ),
            )
            stream.claim()  # before any await: an older stream must not spend our voucher
            if Fault.LOOKAHEAD_AS_SPENT in faults and channel.available > 0:
                # Book everything paid ahead as spent before any token; bill tokens on top.
                channel = await payee.charge(channel_id, channel.available) or channel
            headers = {"cache-control": "private", "x-accel-buffering": "no"}
            if not billing & _NO_HEADER_RECEIPT and Fault.NO_RECEIPT not in faults:
                receipt = payee.receipt(channel, challenge_id, units=0, faults=faults)
                if Fault.SPENT_REGRESS in faults:
                    receipt = regress_receipt(receipt, stream.spent_before, stream.price)
                headers |= _paid_headers(receipt)
            body_iter = stream.body()
            if key:
                body_iter = self._remembered(
                    body_iter, payee, stream, channel_id, challenge_id, key
                )
            return StreamingResponse(body_iter, media_type="text/event-stream", headers=headers)
        price = self.config.price_per_token * (2 if Fault.PRICE_CHANGE in faults else 1)
        units = 1 if Billing.PER_EVENT in billing else len(tokens)  # mppx: one tick a response
        if Billing.PROMPT_UP_FRONT in billing:
            units += chat.prompt_tokens()
        cost = units * price
        charged = await payee.charge(channel_id, cost)
        if charged is None:
            channel = payee.state.get(channel_id)
            available = channel.available if channel else 0
            return await self.problem(
                InsufficientBalanceProblem(
                    f"this completion costs {cost}; {available} is available",
                    extras={"requiredTopUp": str(cost - available), "channelId": channel_id},
                ),
                channel_id=channel_id,
                refused=True,
            )
        body = completion_body(
            completion_id,
            chat.model,
            created,
            tokens,
            plan.finish_reason,
            Usage.of(chat.prompt_tokens(), tokens),
            chat.flavour,
            chat.vendor_fields(),
        )
        receipt = payee.receipt(charged, challenge_id, units=units, faults=faults)
        if Fault.SPENT_REGRESS in faults:
            receipt = regress_receipt(receipt, charged.spent - cost, price)
        encoded = json.dumps(body).encode()
        if key:
            payee.state.remember_response(
                challenge_id,
                key,
                IdempotentResponse(200, "application/json", encoded, encode_receipt(receipt)),
            )
        headers = _paid_headers(receipt)
        if Fault.NO_RECEIPT in faults:
            del headers["payment-receipt"]
        return Response(encoded, media_type="application/json", headers=headers)

    async def _remembered(
        self,
        body: AsyncIterator[bytes],
        payee: SessionPayee,
        stream: MeteredStream,
        channel_id: str,
        challenge_id: str,
        key: str,
    ) -> AsyncIterator[bytes]:
        """Pass a paid stream through, keeping it so a retry with the same key replays it.

        The key is in flight while streaming (a duplicate gets 409); a completed
        stream up to ``_REPLAY_LIMIT`` bytes is stored with its final receipt, so
        the retry is answered without generating or charging anything again.
        """
        marker = (challenge_id, key)
        self._in_flight.add(marker)
        parts: list[bytes] = []
        size = 0
        complete = False
        try:
            async for chunk in body:
                if size <= _REPLAY_LIMIT:
                    parts.append(chunk)
                    size += len(chunk)
                yield chunk
            complete = True
        finally:
            self._in_flight.discard(marker)
            channel = payee.state.get(channel_id)
            if complete and size <= _REPLAY_LIMIT and channel is not None:
                receipt = payee.receipt(channel, challenge_id, units=stream.units)
                payee.state.remember_response(
                    challenge_id,
                    key,
                    IdempotentResponse(
                        200, "text/event-stream", b"".join(parts), encode_receipt(receipt)
                    ),
                )

    async def serve_free(self, request: Request) -> Response:
        """A completion for a Bearer-key client: same model, no metering, no receipts."""
        try:
            chat = parse_chat_request_json(await request.body())
        except WireError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        plan = chat.plan(self.config.default_max_tokens)
        tokens = list(
            self.model.generate(
                chat.prompt_text(),
                max_tokens=plan.max_tokens,
                reasoning_tokens=plan.reasoning_tokens,
            )
        )
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        usage = Usage.of(chat.prompt_tokens(), tokens)
        if not chat.stream:
            return JSONResponse(
                completion_body(
                    completion_id,
                    chat.model,
                    created,
                    tokens,
                    plan.finish_reason,
                    usage,
                    chat.flavour,
                    chat.vendor_fields(),
                )
            )
        writer = _chunk_writer(chat, completion_id, created)
        pacer = Pacer(self.config.tokens_per_second)
        batch = 1 if pacer.paced else self.config.charge_batch

        async def body() -> AsyncIterator[bytes]:
            yield sse(writer.role_chunk())
            for start in range(0, len(tokens), batch):
                yield b"".join(sse(writer.token_chunk(t)) for t in tokens[start : start + batch])
                await pacer.tick()
            for final in writer.final_chunks(plan.finish_reason, usage):
                yield sse(final)
            yield SSE_DONE

        return StreamingResponse(body(), media_type="text/event-stream")


_REPLAY_LIMIT = 4 * 1024 * 1024


def _chunk_writer(
    chat: ChatRequest, completion_id: str, created: int, *, always_usage: bool = False
) -> ChunkWriter:
    """The chunk writer for one streamed completion of ``chat`` (``always_usage``: report
    usage even if the request did not ask)."""
    return ChunkWriter(
        completion_id,
        chat.model,
        created,
        chat.flavour,
        include_usage=chat.include_usage or always_usage,
        vendor_fields=chat.vendor_fields(),
    )


def _paid_headers(receipt: Mapping[str, JSON]) -> dict[str, str]:
    return {"payment-receipt": encode_receipt(receipt), "cache-control": "private"}


async def check_contract(config: DevServerConfig, chain: ChainClient) -> None:
    """Refuse to serve v2 where there is no reserve (say, a plain EVM devchain)."""
    if config.session_protocol != "v2":
        return
    from mppagent.tempo.v2.backend import V2Backend

    if not await V2Backend(chain).check_contract(config.reserve):
        raise ConfigError(
            f"session protocol v2 needs the TIP-1034 channel reserve at {config.reserve}, "
            "and this chain has none there (a plain EVM devchain? serve v1 there)"
        )


def create_app(config: DevServerConfig) -> Starlette:
    """Build the Starlette app for ``config`` (serve it with uvicorn)."""
    server = DevServer(config)

    async def completions(request: Request) -> Response:
        return await server.completions(request)

    async def models(_request: Request) -> Response:
        return JSONResponse(model_list())

    async def health(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await server.close()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST", "HEAD"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.devserver = server
    return app
