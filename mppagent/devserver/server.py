"""Running the reference server with uvicorn: in-process (tests, demo) or in the foreground."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from types import TracebackType
from typing import Any, Self

import uvicorn

from mppagent.devserver.app import create_app
from mppagent.devserver.config import DevServerConfig
from mppagent.errors import ConfigError
from mppagent.logging import get_logger

__all__ = ["RequestLog", "RunningServer"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TAIL = 16 * 1024  # the final payment-receipt event is in the last bytes of a stream
access_log = get_logger("mppagent.devserver.access")


class RequestLog:
    """ASGI middleware: one log line per request -- method, path, status, units, spent.

    Units and spent come from the response's receipt: the ``Payment-Receipt``
    header, or a stream's final ``payment-receipt`` event. Logged at ``info``
    (``mppagent serve --log-level warning`` silences it).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        header_receipt: bytes | None = None
        tail = b""

        async def watch(message: Message) -> None:
            nonlocal status, header_receipt, tail
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", []):
                    if name.lower() == b"payment-receipt":
                        header_receipt = value
            elif message["type"] == "http.response.body":
                tail = (tail + bytes(message.get("body", b"")))[-_TAIL:]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            receipt = _stream_receipt(tail) or _header_receipt(header_receipt) or {}
            fields = {
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status or None,
                "units": receipt.get("units"),
                "spent": receipt.get("spent"),
                "channel": _short(receipt.get("channelId")),
                "ms": round((time.perf_counter() - started) * 1000, 1),
            }
            access_log.info("request", **{k: v for k, v in fields.items() if v is not None})


def _short(value: object) -> str | None:
    return f"{value[:10]}…" if isinstance(value, str) and len(value) > 10 else None


def _header_receipt(value: bytes | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        text = value.decode("ascii")
        decoded = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _stream_receipt(tail: bytes) -> dict[str, Any] | None:
    marker = tail.rfind(b"event: payment-receipt")
    if marker < 0:
        return None
    for line in tail[marker:].splitlines():
        if line.startswith(b"data:"):
            try:
                decoded = json.loads(line[5:].strip())
            except ValueError:
                return None
            return decoded if isinstance(decoded, dict) else None
    return None


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the program embedding it decides.

    (uvicorn's handlers would swallow Ctrl-C and re-raise it after shutdown,
    racing the embedding program's own clean-up.)
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a busy or forbidden address is a ConfigError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"cannot listen on {host}:{port}: the address is already in use "
                "(another server running? pass --port)"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


class RunningServer:
    """A devserver on 127.0.0.1 in the current event loop, on a port the OS picks.

    ``async with RunningServer(config) as server: server.url`` -- the port is
    read back from the bound socket, so parallel runs never race for one.
    """

    def __init__(
        self,
        config: DevServerConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sock: socket.socket | None = None,
    ) -> None:
        self.config = config
        self._sock = sock  # already bound (see :func:`bind`), e.g. before a slow set-up
        self.app = create_app(config)
        self._server = _Server(
            uvicorn.Config(
                RequestLog(self.app),
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=2,
            )
        )
        self._task: asyncio.Task[None] | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind (a busy port is a :class:`ConfigError`), start serving, wait until ready."""
        sock = self._sock or bind(self.host, self.port)
        self._sock = None
        self.port = int(sock.getsockname()[1])
        self._server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]
        self._task = asyncio.create_task(
            self._server.serve(sockets=[sock]), name="mppagent-devserver"
        )
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("devserver exited during startup")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving (open streams are cut after a short grace period)."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
