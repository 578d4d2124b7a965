"""A tiny TCP proxy on 127.0.0.1 in front of the devchain, for chain-trouble tests.

``delay`` holds the node's answer on each connection for that many seconds (a
slow RPC; web3 opens one connection per call). ``pause()`` makes it stop
answering: from then on every connection, open or new, swallows what it
receives and never replies -- until ``resume()``; a connection that swallowed
anything stays dead (its HTTP framing is gone), new connections work again.
``stall_on`` pauses the proxy when a request containing those bytes goes
through (it is swallowed too): ``b"eth_sendRawTransaction"`` stops answering
exactly when a transaction is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

__all__ = ["RpcProxy"]


class _Connection:
    __slots__ = ("dead",)

    def __init__(self) -> None:
        self.dead = False


class RpcProxy:
    """Forward TCP from 127.0.0.1:<port> to the node at ``upstream_url``."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        assert parts.hostname == "127.0.0.1"
        assert parts.port is not None
        self._upstream = (parts.hostname, parts.port)
        self.delay = 0.0
        self.paused = False
        self.stall_on: bytes | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RpcProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        connection = _Connection()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, connection, to_node=True),
                self._pump(up_reader, writer, connection, to_node=False),
            )
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)
            self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: _Connection,
        *,
        to_node: bool,
    ) -> None:
        answered = False
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if to_node and self.stall_on is not None and self.stall_on in data:
                    self.stall_on = None
                    self.paused = True
                if self.paused or connection.dead:
                    connection.dead = True  # swallowed: this connection never answers again
                    continue
                if not to_node and self.delay and not answered:
                    await asyncio.sleep(self.delay)
                answered = answered or not to_node
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                if writer.can_write_eof():
                    writer.write_eof()
