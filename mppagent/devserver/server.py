"""Running the reference server with uvicorn: in-process (tests, demo) or in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

import uvicorn

from mppagent.devserver.app import create_app
from mppagent.devserver.config import DevServerConfig

__all__ = ["RunningServer"]


class RunningServer:
    """A devserver on 127.0.0.1 in the current event loop, on a port the OS picks.

    ``async with RunningServer(config) as server: server.url`` -- the port is
    read back from the bound socket, so parallel runs never race for one.
    """

    def __init__(self, config: DevServerConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.app = create_app(config)
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
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
        """Start serving and wait until the socket is bound."""
        self._server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]
        self._task = asyncio.create_task(self._server.serve(), name="mppagent-devserver")
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("devserver exited during startup")
            await asyncio.sleep(0.01)
        sockets = [s for server in self._server.servers for s in server.sockets]
        self.port = int(sockets[0].getsockname()[1])

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
