"""The official ``openai`` SDK, paying per token through an agent.

::

    async with Agent(...) as agent:
        client = openai.AsyncOpenAI(base_url=url, api_key="unused",
                                    http_client=mppagent.openai.http_client(agent))
        # or: client = mppagent.openai.async_client(agent, profile="perceptron")
        stream = await client.chat.completions.create(model=..., messages=..., stream=True)
        async for chunk in stream:      # payment events never get here
            ...

The SDK is only the caller; all paying happens in the agent's transport, which
answers ``402`` challenges, sends vouchers while the stream runs and takes the
payment events out of the byte stream before the SDK's SSE decoder sees them.
Two SDK behaviours shape this module (verified against ``openai`` 3.54, which
runs on ``httpx2`` but accepts legacy ``httpx`` clients as ``http_client``):

* the SDK closes the ``http_client`` it was given when it is closed. So these
  functions hand out a *new* client over a transport that forwards to the
  agent and never closes it: closing the SDK client leaves the agent working.
* the SDK insists on an API key and always sends ``Authorization: Bearer
  <key>``. On the MPP path that header is dropped before the request leaves:
  a placeholder must not reach a server (one that accepts keys *or* payment
  would answer 401 to a bad key instead of offering payment), and a real key
  must not leak to a provider that is paid another way. Pass
  ``send_api_key=True`` when the key is meant for the provider.

Errors from the agent (``PolicyViolation``, ``ServerMisbehaviour``, ...) pass
through the SDK unchanged: it only wraps httpx's own transport errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import httpx

from mppagent.agent import Agent
from mppagent.errors import ConfigError
from mppagent.llm.providers import BUILTIN_PROFILES, ProviderProfile, get_profile
from mppagent.sync import SyncAgent, SyncPaymentTransport

if TYPE_CHECKING:
    import openai as openai_sdk

__all__ = [
    "PLACEHOLDER_API_KEY",
    "async_client",
    "client",
    "http_client",
    "sync_http_client",
]

PLACEHOLDER_API_KEY: Final = "mppagent-pays-with-mpp"
"""The key given to the SDK when payment replaces it; it is never sent."""

_INSTALL_HINT: Final = 'the openai SDK is not installed: pip install "mppagent[openai]"'


def _drop_bearer(headers: httpx.Headers) -> None:
    if headers.get("authorization", "")[:7].lower() == "bearer ":
        del headers["authorization"]


class _AgentTransport(httpx.AsyncBaseTransport):
    """Forwards to the agent's paying transport; closing it leaves the agent alone."""

    def __init__(self, agent: Agent, *, send_api_key: bool) -> None:
        self._agent = agent
        self._send_api_key = send_api_key

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._send_api_key:
            _drop_bearer(request.headers)
        await self._agent.start()  # crash recovery before the first payment (idempotent)
        return await self._agent.transport.handle_async_request(request)

    async def aclose(self) -> None:
        """The agent owns its transport; whoever created the agent closes it."""


class _SyncAgentTransport(httpx.BaseTransport):
    """:class:`SyncPaymentTransport` with the SDK's Bearer header handling."""

    def __init__(self, agent: SyncAgent, *, send_api_key: bool) -> None:
        self._inner = SyncPaymentTransport(agent)
        self._send_api_key = send_api_key

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self._send_api_key:
            _drop_bearer(request.headers)
        return self._inner.handle_request(request)

    def close(self) -> None:
        """Nothing to release: the agent belongs to whoever created it."""


def http_client(agent: Agent, *, send_api_key: bool = False, **kwargs: Any) -> httpx.AsyncClient:
    """A new paying ``httpx.AsyncClient`` for ``openai.AsyncOpenAI(http_client=...)``.

    Requests go through ``agent``'s paying transport. ``send_api_key=False``
    (the default, for MPP) drops the SDK's ``Authorization: Bearer`` header.
    ``kwargs`` go to ``httpx.AsyncClient``; the agent's timeout is the default.
    """
    kwargs.setdefault("timeout", agent.http.timeout)
    return httpx.AsyncClient(transport=_AgentTransport(agent, send_api_key=send_api_key), **kwargs)


def sync_http_client(
    agent: SyncAgent, *, send_api_key: bool = False, **kwargs: Any
) -> httpx.Client:
    """A new paying ``httpx.Client`` for ``openai.OpenAI(http_client=...)``.

    See :func:`http_client`; ``agent`` is a :class:`SyncAgent`.
    """
    kwargs.setdefault("timeout", agent.agent.http.timeout)
    return httpx.Client(transport=_SyncAgentTransport(agent, send_api_key=send_api_key), **kwargs)


def async_client(
    agent: Agent,
    *,
    base_url: str | None = None,
    profile: ProviderProfile | str | None = None,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> openai_sdk.AsyncOpenAI:
    """An ``openai.AsyncOpenAI`` that pays through ``agent``.

    ``profile`` (a :class:`ProviderProfile` or a built-in name) supplies the
    base URL, its headers and, for ``bearer``/``either`` profiles, the API key
    from its environment variable; ``base_url`` and ``api_key`` override them.
    An explicit ``api_key`` is always sent. Other ``kwargs`` go to the SDK.

    The SDK has no per-client request-body defaults, so a profile's
    ``defaults`` are not applied: pass ``extra_body=dict(profile.defaults)``
    to ``create()`` (or build the body with :func:`mppagent.llm.build_chat_request`).
    """
    try:
        from openai import AsyncOpenAI
    except ImportError:
        raise ConfigError(_INSTALL_HINT) from None
    options = _options(profile, base_url, api_key, env, kwargs)
    send = options.pop("send_api_key")
    return AsyncOpenAI(
        http_client=cast(Any, http_client(agent, send_api_key=bool(send))), **options
    )


def client(
    agent: SyncAgent,
    *,
    base_url: str | None = None,
    profile: ProviderProfile | str | None = None,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> openai_sdk.OpenAI:
    """An ``openai.OpenAI`` that pays through a :class:`SyncAgent`; see :func:`async_client`."""
    try:
        from openai import OpenAI
    except ImportError:
        raise ConfigError(_INSTALL_HINT) from None
    options = _options(profile, base_url, api_key, env, kwargs)
    send = options.pop("send_api_key")
    return OpenAI(
        http_client=cast(Any, sync_http_client(agent, send_api_key=bool(send))), **options
    )


def _options(
    profile: ProviderProfile | str | None,
    base_url: str | None,
    api_key: str | None,
    env: Mapping[str, str] | None,
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    """SDK constructor arguments (plus ``send_api_key``) from a profile and overrides."""
    resolved = get_profile(profile, BUILTIN_PROFILES) if isinstance(profile, str) else profile
    url = base_url or (resolved.base_url if resolved is not None else None)
    if url is None:
        raise ConfigError("an OpenAI client needs a base_url or a provider profile")
    headers: dict[str, str] = {}
    send_api_key = api_key is not None
    if resolved is not None:
        if api_key is None:
            # request_headers raises the clear "set X_API_KEY" error for bearer profiles.
            headers = resolved.request_headers(env)
            bearer = headers.pop("Authorization", None)
            if bearer is not None:
                api_key = bearer.removeprefix("Bearer ")
                send_api_key = True
        else:
            headers = dict(resolved.headers)
    headers.update(kwargs.pop("default_headers", None) or {})
    return {
        **kwargs,
        "base_url": url,
        "api_key": api_key if api_key is not None else PLACEHOLDER_API_KEY,
        "default_headers": headers or None,
        "send_api_key": send_api_key,
    }
