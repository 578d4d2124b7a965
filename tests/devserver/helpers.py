"""Raw-HTTP helpers for testing the reference server as a *client would see it*.

Credentials are built straight from :mod:`mppagent.protocol` and
:mod:`mppagent.tempo` -- never through the client's Agent, transport or session
engine -- so a bug shared by the client and the server cannot cancel out.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretBytes, SecretStr

from mppagent.devchain import DevAccount, DevChain
from mppagent.devserver import DevServerConfig, RunningServer, create_app
from mppagent.devserver.app import DevServer
from mppagent.protocol import (
    CORE_PROBLEM_BASE,
    PROBLEM_CONTENT_TYPE,
    Challenge,
    Credential,
    decode_receipt,
    parse_challenges,
    parse_problem,
)
from mppagent.tempo import (
    ZERO_ADDRESS,
    ChainClient,
    Escrow,
    SignedTransaction,
    Token,
    compute_channel_id,
    random_salt,
    sign_voucher,
)
from mppagent.tempo.schemas import (
    ClosePayload,
    NeedVoucher,
    OpenPayload,
    SessionReceipt,
    TopUpPayload,
    VoucherPayload,
    parse_model,
)

PATH = "/v1/chat/completions"
PRICE = 25
SECRET = b"devserver-test-challenge-secret!"
FUNDED = 1_000_000_000  # tests/conftest.py: 1000 tokens (6 decimals) per account
MODEL = "mpp-fake-1"

Payload = OpenPayload | TopUpPayload | VoucherPayload | ClosePayload


def make_config(chain: DevChain, tmp_path: Path, **overrides: Any) -> DevServerConfig:
    """A v1 server paying accounts[0], with a known challenge secret and a fresh state file.

    v1 because the payloads built here are v1's (``helpers_v2`` builds v2's).
    """
    values: dict[str, Any] = {
        "session_protocol": "v1",
        "rpc_url": chain.rpc_url,
        "escrow": chain.escrow,
        "token": chain.token,
        "payee_private_key": SecretStr(chain.accounts[0].private_key),
        "challenge_secret": SecretBytes(SECRET),
        "state_path": str(tmp_path / "server.db"),
        "chain_check_interval": 0.0,
    }
    values.update(overrides)
    return DevServerConfig(**values)


def devserver(app: Any) -> DevServer:
    """The :class:`DevServer` behind an app built by :func:`create_app`."""
    server = app.state.devserver
    assert isinstance(server, DevServer)
    return server


@asynccontextmanager
async def asgi_client(config: DevServerConfig) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client for non-streaming tests (ASGITransport buffers bodies)."""
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://devserver") as http:
            yield http
    finally:
        await devserver(app).close()


def chat(max_tokens: int | None = 8, *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    """A chat-completion request body."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say something."}],
        "stream": stream,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(extra)
    return body


# -- wire checks -----------------------------------------------------------------------------


def only_challenge(response: httpx.Response) -> Challenge:
    """The single Payment challenge of a response, checked to be ours and unexpired."""
    challenges = parse_challenges(response.headers.get_list("www-authenticate"))
    assert challenges.errors == []
    assert len(challenges) == 1, challenges
    challenge = challenges[0]
    assert challenge.verify_id(SECRET)
    assert not challenge.is_expired(datetime.now(UTC))
    assert (challenge.method, challenge.intent) == ("tempo", "session")
    return challenge


async def fresh_challenge(http: httpx.AsyncClient) -> Challenge:
    """A challenge from ``HEAD`` without a credential (402, no body)."""
    response = await http.head(PATH)
    assert response.status_code == 402
    assert response.content == b""
    return only_challenge(response)


def assert_problem(
    response: httpx.Response,
    slug: str,
    status: int = 402,
    *,
    body: bool = True,
) -> dict[str, Any]:
    """Check a problem response exactly; returns its JSON body (``{}`` for HEAD)."""
    assert response.status_code == status, (response.status_code, response.text)
    assert "payment-receipt" not in response.headers  # never a receipt on an error
    assert response.headers["cache-control"] == "no-store"
    if status == 402:
        only_challenge(response)  # every 402 carries a fresh challenge
    else:
        assert "www-authenticate" not in response.headers
    if not body:
        assert response.content == b""
        return {}
    assert response.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
    data = response.json()
    assert isinstance(data, dict)
    assert data["type"] == CORE_PROBLEM_BASE + slug
    assert data["status"] == status
    problem = parse_problem(response)
    assert problem.type == CORE_PROBLEM_BASE + slug
    return data


def session_receipt(value: str | Mapping[str, Any]) -> SessionReceipt:
    """Decode and validate a session receipt (header value or SSE event data)."""
    data = decode_receipt(value).to_json_object() if isinstance(value, str) else dict(value)
    receipt = parse_model(SessionReceipt, data, "receipt")
    assert (receipt.method, receipt.intent, receipt.status) == ("tempo", "session", "success")
    assert receipt.reference == receipt.channel_id
    return receipt


def header_receipt(response: httpx.Response) -> SessionReceipt:
    """The ``Payment-Receipt`` of a successful paid response."""
    assert response.headers["cache-control"] == "private"
    return session_receipt(response.headers["payment-receipt"])


# -- the payer -------------------------------------------------------------------------------


@dataclass
class Payer:
    """One dev account acting as a client, with its own chain connection."""

    chain: DevChain
    client: ChainClient
    account: DevAccount
    payee: str

    @property
    def address(self) -> str:
        return self.account.address.lower()

    @property
    def escrow(self) -> Escrow:
        return Escrow(self.client, self.chain.escrow)

    @property
    def token(self) -> Token:
        return Token(self.client, self.chain.token)

    def sign(self, channel_id: str, amount: int, key: str | None = None) -> str:
        return sign_voucher(
            key or self.account.private_key,
            channel_id,
            amount,
            self.chain.escrow,
            self.chain.chain_id,
        )

    def voucher(self, channel_id: str, amount: int) -> VoucherPayload:
        return VoucherPayload(
            channel_id=channel_id, cumulative_amount=amount, signature=self.sign(channel_id, amount)
        )

    def close(self, channel_id: str, amount: int) -> ClosePayload:
        return ClosePayload(
            channel_id=channel_id, cumulative_amount=amount, signature=self.sign(channel_id, amount)
        )

    async def approve(self, amount: int) -> None:
        tx = await self.token.sign_approve(self.account.wallet(), self.chain.escrow, amount)
        await self.client.send_and_wait(tx)

    async def balance(self) -> int:
        return await self.token.balance_of(self.address)

    async def signed_open(
        self,
        deposit: int,
        *,
        payee: str | None = None,
        token: str | None = None,
        gas: int | None = None,
    ) -> tuple[str, SignedTransaction]:
        """Sign (not send) an ``open``; returns the channel id it will create and the tx."""
        payee = payee or self.payee
        token = token or self.chain.token
        salt = random_salt()
        channel_id = compute_channel_id(
            self.address, payee, token, salt, ZERO_ADDRESS, self.chain.escrow, self.chain.chain_id
        )
        tx = await self.escrow.sign_open(
            self.account.wallet(), payee=payee, token=token, deposit=deposit, salt=salt, gas=gas
        )
        return channel_id, tx

    async def open_payload(self, deposit: int, initial: int = 0) -> OpenPayload:
        """Approve ``deposit`` and build an ``open`` payload with an initial voucher."""
        await self.approve(deposit)
        channel_id, tx = await self.signed_open(deposit)
        return OpenPayload(
            channel_id=channel_id,
            transaction=tx.raw,
            cumulative_amount=initial,
            signature=self.sign(channel_id, initial),
        )

    def unsent(self) -> None:
        """Forget the local nonce after signing a transaction that will never be mined."""
        self.client.forget_nonce(self.address)


def payer_at(chain: DevChain, client: ChainClient, index: int) -> Payer:
    """Dev account ``index`` paying the server's payee (account 0)."""
    return Payer(chain, client, chain.accounts[index], chain.accounts[0].address.lower())


def authorization(challenge: Challenge, payload: Payload | Mapping[str, Any]) -> dict[str, str]:
    """``Authorization: Payment ...`` answering ``challenge`` with ``payload``."""
    data = payload.to_wire() if not isinstance(payload, Mapping) else dict(payload)
    return {"authorization": Credential.for_challenge(challenge, data).encode()}


async def pay_head(
    http: httpx.AsyncClient, payload: Payload, challenge: Challenge | None = None
) -> httpx.Response:
    """Send a payment-only update with ``HEAD`` (fetching a challenge first if needed)."""
    challenge = challenge or await fresh_challenge(http)
    return await http.head(PATH, headers=authorization(challenge, payload))


async def open_channel(
    http: httpx.AsyncClient, payer: Payer, deposit: int, initial: int = 0
) -> tuple[str, SessionReceipt]:
    """Open a channel with a ``HEAD`` open credential; returns (channel id, receipt)."""
    payload = await payer.open_payload(deposit, initial)
    response = await pay_head(http, payload)
    assert response.status_code == 200, response.status_code
    receipt = header_receipt(response)
    assert receipt.channel_id == payload.channel_id
    return payload.channel_id, receipt


# -- SSE ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One server-sent event."""

    name: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


async def sse_events(response: httpx.Response) -> AsyncIterator[Event]:
    """Parse an SSE body as it arrives (``event:``/``data:`` lines, blank-line separated)."""
    name, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield Event(name, "\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield Event(name, "\n".join(data))


def token_text(event: Event) -> str | None:
    """The content of a token chunk, or ``None`` for any other event."""
    if event.name != "message" or event.data == "[DONE]":
        return None
    chunk = event.json()
    choices = chunk.get("choices") or []
    if not choices:
        return None
    delta = choices[0]["delta"]
    if "role" in delta:
        return None
    content = delta.get("content")
    return content if isinstance(content, str) and content else None


def expired_challenge(request: Mapping[str, Any], realm: str = "mppagent-devserver") -> Challenge:
    """A challenge bound with the server's secret whose ``expires`` is in the past."""
    return Challenge.issue(
        secret=SECRET,
        realm=realm,
        method="tempo",
        intent="session",
        request=dict(request),
        expires=datetime.now(UTC) - timedelta(seconds=5),
    )


def stored(config: DevServerConfig, channel_id: str) -> dict[str, Any] | None:
    """The server's persisted row for ``channel_id`` (read from its SQLite file)."""
    db = sqlite3.connect(config.state_path)
    try:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM channels WHERE channel_id = ?", (channel_id,)).fetchone()
    finally:
        db.close()
    return None if row is None else dict(row)


# -- streams over real sockets ------------------------------------------------------------------


@dataclass
class Served:
    """A running server and two independent HTTP clients (two connections)."""

    config: DevServerConfig
    stream: httpx.AsyncClient
    side: httpx.AsyncClient
    server: DevServer


@asynccontextmanager
async def serve(config: DevServerConfig) -> AsyncIterator[Served]:
    """The server on uvicorn (``ASGITransport`` would buffer a stream whole)."""
    async with (
        RunningServer(config) as server,
        httpx.AsyncClient(base_url=server.url, timeout=20) as stream,
        httpx.AsyncClient(base_url=server.url, timeout=20) as side,
    ):
        yield Served(config, stream, side, devserver(server.app))


@dataclass
class Transcript:
    """Everything one stream delivered (``header``: its ``Payment-Receipt``, if any)."""

    header: SessionReceipt | None
    events: list[Event] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    needs: list[tuple[NeedVoucher, int]] = field(default_factory=list)  # (event, tokens before)

    @property
    def final(self) -> SessionReceipt:
        assert self.events, "empty stream"
        last = self.events[-1]
        assert last.name == "payment-receipt", last
        return session_receipt(last.json())

    def check_ending(self) -> None:
        """``data: [DONE]`` then the receipt, as the last two events; nothing after."""
        assert [e.name for e in self.events[-2:]] == ["message", "payment-receipt"]
        assert self.events[-2].data == "[DONE]"
        assert sum(e.data == "[DONE]" for e in self.events) == 1
        assert sum(e.name == "payment-receipt" for e in self.events) == 1


NeedHandler = Callable[[NeedVoucher, int], Awaitable[None]]


async def read_stream(
    response: httpx.Response, on_need: NeedHandler | None = None, *, header: bool = True
) -> Transcript:
    """Read a paid stream to its end, calling ``on_need`` for each need-voucher event.

    ``header``: whether the response must carry a ``Payment-Receipt`` (else it must not).
    """
    assert response.status_code == 200, response.status_code
    assert response.headers["content-type"].startswith("text/event-stream")
    if header:
        transcript = Transcript(header=header_receipt(response))
    else:
        assert "payment-receipt" not in response.headers
        transcript = Transcript(header=None)
    async for event in sse_events(response):
        transcript.events.append(event)
        text = token_text(event)
        if text is not None:
            transcript.tokens.append(text)
        elif event.name == "payment-need-voucher":
            need = parse_model(NeedVoucher, event.json(), "need-voucher")
            transcript.needs.append((need, len(transcript.tokens)))
            if on_need is not None:
                await on_need(need, len(transcript.tokens))
    return transcript


def voucher_answer(
    served: Served,
    payer: Payer,
    challenge: Challenge,
    *,
    method: str = "HEAD",
    log: list[httpx.Response] | None = None,
) -> NeedHandler:
    """A need-voucher handler paying exactly ``requiredCumulative`` on the side connection."""

    async def answer(need: NeedVoucher, _delivered: int) -> None:
        headers = authorization(challenge, payer.voucher(need.channel_id, need.required_cumulative))
        if method == "HEAD":
            response = await served.side.head(PATH, headers=headers)
        else:  # POST without a body: a payment-only update
            response = await served.side.post(PATH, headers=headers)
        assert response.status_code == 200, (response.status_code, response.text)
        assert response.content == b""
        receipt = header_receipt(response)
        assert receipt.accepted_cumulative == need.required_cumulative
        if log is not None:
            log.append(response)

    return answer
