"""A blocking API over :class:`mppagent.Agent`, for code that is not async.

::

    with SyncAgent(private_key=key, rpc_url=rpc, policy=policy) as agent:
        for event in agent.stream("POST", url, json=body):      # app events only
            print(event.data)
        client = openai.OpenAI(base_url=..., api_key="unused",
                               http_client=mppagent.openai.sync_http_client(agent))

Why a private event loop in a daemon thread rather than ``asyncio.run`` per
call: the agent is a long-lived thing -- pooled connections, a chain client,
leases renewed while a stream runs, voucher workers answering mid-stream -- and
all of that lives in tasks on one loop. Per-call loops would tear it down
between calls and could not keep a stream going while the caller consumes it.
So :class:`SyncAgent` owns one loop thread; every call hands a coroutine to it
and waits. Errors raised there re-raise in the caller's thread as the same
exception object, so ``except PolicyViolation`` works unchanged.

Streams are bridged by a *pump*: one task on the loop drives the async iterator
from start to finish (so the response is opened and closed in the same task)
and hands items over through a small bounded queue; the caller's generator
takes them one by one. Closing the generator early cancels the pump, which
closes the stream and releases the channel.

Observers (``observer=``) are called on the loop thread. Calling back into the
SyncAgent from there would deadlock, so it raises :class:`RuntimeError`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import httpx

from mppagent.agent import Agent, CloseResult
from mppagent.session.closing import ForcedCloseResult
from mppagent.session.store import ChannelRecord
from mppagent.transport.sse import SSEEvent

__all__ = ["SyncAgent", "SyncChannels", "SyncPaymentTransport"]

T = TypeVar("T")

_STREAM_BUFFER = 64
"""Events a pump may read ahead of the consumer: enough to keep the network busy,
small enough that a slow consumer cannot make memory grow without bound."""


@dataclass(frozen=True, slots=True)
class _Item(Generic[T]):
    value: T


@dataclass(frozen=True, slots=True)
class _End:
    pass


@dataclass(frozen=True, slots=True)
class _Raised:
    error: BaseException


class _Pump(Generic[T]):
    """Runs an async iterator to its end in one task, handing items over a bounded queue."""

    def __init__(self, source: Callable[[], AsyncIterator[T]], buffer: int) -> None:
        self._source = source
        self._buffer = buffer
        self._queue: asyncio.Queue[_Item[T] | _End | _Raised] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue(self._buffer)
        self._task = asyncio.create_task(self._run(self._queue), name="mppagent-sync-pump")

    async def _run(self, queue: asyncio.Queue[_Item[T] | _End | _Raised]) -> None:
        iterator = self._source()
        try:
            async for value in iterator:
                await queue.put(_Item(value))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, who re-raises it
            await queue.put(_Raised(exc))
            return
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()  # same task that iterated: safe for every context inside
        await queue.put(_End())

    async def get(self) -> _Item[T] | _End | _Raised:
        assert self._queue is not None
        return await self._queue.get()

    async def stop(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _LoopThread:
    """An event loop running forever in a daemon thread; coroutines are submitted to it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.closed = False
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            # Nothing may be left pending when the loop closes (asyncio would log
            # "Task was destroyed but it is pending" and skip its cleanup).
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(_cancel_others())
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def on_loop(self) -> bool:
        return threading.current_thread() is self.thread

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait; its exception is raised here, unchanged."""
        if self.closed:
            coro.close()
            raise RuntimeError("this SyncAgent is closed")
        if self.on_loop():
            coro.close()
            raise RuntimeError(
                "a SyncAgent method was called from the agent's own loop thread (an observer?); "
                "that would deadlock"
            )
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt while waiting: stop the work too
            raise

    def iterate(self, source: Callable[[], AsyncIterator[T]], buffer: int) -> Generator[T]:
        """A blocking generator over the async iterator ``source()`` (see :class:`_Pump`)."""
        pump: _Pump[T] = _Pump(source, buffer)
        self.run(pump.start())
        try:
            while True:
                got = self.run(pump.get())
                if isinstance(got, _End):
                    return
                if isinstance(got, _Raised):
                    raise got.error
                yield got.value
        finally:
            if self.closed:
                pass  # the loop cancelled every task when it closed
            elif self.on_loop():
                # Finalised by the garbage collector on the loop thread: cannot wait here.
                self.loop.create_task(pump.stop())
            else:
                self.run(pump.stop())

    def stop(self) -> None:
        """Cancel what is still running, stop the loop and wait for the thread."""
        if self.closed:
            return
        if not self.on_loop():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_others(), self.loop).result(timeout=10)
        self.closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.on_loop():
            self.thread.join(timeout=10)


async def _cancel_others() -> None:
    """Cancel every other task, in rounds: a task's cleanup may start new tasks."""
    current = asyncio.current_task()
    for _round in range(5):
        tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class SyncAgent:
    """:class:`mppagent.Agent` with blocking methods, for scripts and sync frameworks.

    Takes the same arguments as :class:`~mppagent.Agent`; the agent itself is
    built and run on a private event loop in a daemon thread. Use it as a
    context manager, or call :meth:`close` -- the thread is a daemon, so a
    forgotten close never keeps the interpreter alive, but open channels'
    leases are only released on close.
    """

    def __init__(self, **options: Any) -> None:
        self._loop = _LoopThread("mppagent-sync-agent")

        async def create() -> Agent:
            # Built on the loop thread: everything the agent creates belongs to that loop.
            # The options are Agent's own, passed through, so the two never drift apart.
            return Agent(**options)

        try:
            self._agent = self._loop.run(create())
        except BaseException:
            self._loop.stop()
            raise
        self.channels = SyncChannels(self)
        self._finalizer = weakref.finalize(self, _LoopThread.stop, self._loop)

    def __repr__(self) -> str:
        return f"SyncAgent({self._agent!r})"

    @property
    def agent(self) -> Agent:
        """The wrapped async agent. Use it only from coroutines run on :attr:`loop`."""
        return self._agent

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The agent's event loop (for ``asyncio.run_coroutine_threadsafe``)."""
        return self._loop.loop

    @property
    def address(self) -> str:
        """The paying wallet's address."""
        return self._agent.address

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._loop.closed

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the agent's loop and return its result (escape hatch)."""
        return self._loop.run(coro)

    def start(self) -> None:
        """Resolve operations a crash left pending (idempotent; called by ``with``)."""
        self._loop.run(self._agent.start())

    def close(self) -> None:
        """Close the agent's connections and stop its thread (idempotent).

        Streams still open are cancelled; their channel state is saved.
        """
        if self._loop.closed:
            return
        try:
            self._loop.run(self._agent.aclose())
        finally:
            self._finalizer()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A (paid if needed) request; the body is read before returning."""
        return self._loop.run(self._agent.request(method, url, **kwargs))

    def stream(self, method: str, url: str, **kwargs: Any) -> Generator[SSEEvent]:
        """Stream a (paid if needed) SSE response, yielding application events only.

        A generator: nothing is sent until the first ``next()``. Closing it
        early (``break`` out of a ``for`` loop, or ``.close()``) ends the
        stream and releases the channel, as in the async API.
        """
        return self._loop.iterate(lambda: self._agent.stream(method, url, **kwargs), _STREAM_BUFFER)

    def http_client(self, **kwargs: Any) -> httpx.Client:
        """A new paying ``httpx.Client`` (e.g. for ``openai.OpenAI(http_client=...)``).

        Its transport is a :class:`SyncPaymentTransport`; closing the client
        leaves the agent running. ``kwargs`` go to ``httpx.Client`` (the
        agent's timeout is the default).
        """
        kwargs.setdefault("timeout", self._agent.http.timeout)
        return httpx.Client(transport=SyncPaymentTransport(self), **kwargs)


class SyncChannels:
    """Blocking channel operations; see :class:`mppagent.AgentChannels`."""

    def __init__(self, agent: SyncAgent) -> None:
        self._sync = agent

    def list(self, *, include_closed: bool = True) -> builtins.list[ChannelRecord]:
        """Channels of this agent's wallet, newest first (read from the store directly)."""
        return self._sync.agent.channels.list(include_closed=include_closed)

    def get(self, channel_id: str) -> ChannelRecord:
        """One channel record."""
        return self._sync.agent.channels.get(channel_id)

    def sync(self) -> builtins.list[ChannelRecord]:
        """Reconcile pending operations and every live channel with the chain."""
        return self._sync.run(self._sync.agent.channels.sync())

    def close(self, channel_id: str) -> CloseResult:
        """Close cooperatively: the server settles what was spent and refunds the rest."""
        return self._sync.run(self._sync.agent.channels.close(channel_id))

    def request_close(self, channel_id: str) -> ForcedCloseResult:
        """Start a forced close on chain."""
        return self._sync.run(self._sync.agent.channels.request_close(channel_id))

    def withdraw(self, channel_id: str) -> ForcedCloseResult:
        """Finish a forced close after the grace period."""
        return self._sync.run(self._sync.agent.channels.withdraw(channel_id))


class SyncPaymentTransport(httpx.BaseTransport):
    """A sync httpx transport that sends each request through a :class:`SyncAgent`.

    The request body is read in the caller's thread first: the paying
    transport needs the whole body anyway, to resend it after a ``402``. The
    request then goes to the agent's :class:`~mppagent.PaymentTransport` on
    the loop thread (transport to transport: the sync ``httpx.Client`` has
    already applied client-level headers, auth and redirects), and the
    response body streams back chunk by chunk -- payment events already
    removed -- through a bounded pump.

    It does not own the agent: :meth:`close` leaves it running.
    """

    def __init__(self, agent: SyncAgent, *, buffer: int = _STREAM_BUFFER) -> None:
        self._sync = agent
        self._buffer = buffer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Forward ``request`` to the agent and bridge its response body."""
        body = request.read()
        forwarded = httpx.Request(
            request.method,
            request.url,
            headers=request.headers,
            stream=httpx.ByteStream(body),
            extensions=request.extensions,
        )
        agent = self._sync.agent

        async def send() -> httpx.Response:
            await agent.start()
            return await agent.transport.handle_async_request(forwarded)

        response = self._sync.run(send())
        extensions: dict[str, Any] = {
            key: response.extensions[key]
            for key in ("http_version", "reason_phrase")
            if key in response.extensions
        }
        if response.is_stream_consumed:
            # A non-streamed paid body: the paying transport has read it already, and
            # reading decodes it, so it must not be labelled with its transfer coding.
            content = response.content
            headers = httpx.Headers(response.headers)
            headers.pop("content-encoding", None)
            headers["content-length"] = str(len(content))
            return httpx.Response(
                response.status_code, headers=headers, content=content, extensions=extensions
            )
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_BridgedBody(self._sync._loop, response, self._buffer),
            extensions=extensions,
        )

    def close(self) -> None:
        """Nothing to release: the agent belongs to whoever created it."""


class _BridgedBody(httpx.SyncByteStream):
    """A sync response body fed from an async response on the agent's loop."""

    def __init__(self, loop: _LoopThread, response: httpx.Response, buffer: int) -> None:
        self._loop = loop
        self._response = response
        self._buffer = buffer
        self._chunks: Generator[bytes] | None = None
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        if self._chunks is None:
            self._chunks = self._loop.iterate(self._read, self._buffer)
        return self._chunks

    async def _read(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        finally:
            await self._response.aclose()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._chunks is not None:
            self._chunks.close()  # stops the pump, which closes the async response
        elif not self._loop.closed:
            self._loop.run(self._response.aclose())
