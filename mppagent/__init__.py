"""mppagent: pay for metered HTTP services, token by token, with the Machine Payments Protocol.

The public API::

    from mppagent import Agent, SpendPolicy

    async with Agent(private_key=key, rpc_url=rpc, policy=SpendPolicy(...)) as agent:
        async for event in agent.stream("POST", url, json=body):
            ...

Layers, inner to outer: :mod:`mppagent.protocol` (the Payment scheme, pure),
:mod:`mppagent.tempo` (vouchers, channel ids, the escrow), :mod:`mppagent.session`
(policy, engine, store), :mod:`mppagent.transport` (HTTP), :class:`Agent`.
The reference server lives in :mod:`mppagent.devserver`, the local chain in
:mod:`mppagent.devchain`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mppagent._lazy import lazy_exports

__version__ = "0.1.0"

# Public names and the module that defines each. Imported lazily (PEP 562), so
# ``import mppagent.protocol`` stays free of httpx, web3 and Starlette.
_EXPORTS: dict[str, str] = {
    "Agent": "mppagent.agent",
    "AgentChannels": "mppagent.agent",
    "CloseResult": "mppagent.agent",
    "ChainError": "mppagent.errors",
    "ConfigError": "mppagent.errors",
    "MppagentError": "mppagent.errors",
    "NetworkError": "mppagent.errors",
    "PaymentError": "mppagent.errors",
    "PolicyViolation": "mppagent.errors",
    "ProtocolError": "mppagent.errors",
    "ServerMisbehaviour": "mppagent.errors",
    "StoreError": "mppagent.errors",
    "CloseNotReady": "mppagent.session.closing",
    "ForcedCloseResult": "mppagent.session.closing",
    "SpendPolicy": "mppagent.session.policy",
    "ChannelRecord": "mppagent.session.store",
    "ChannelStatus": "mppagent.session.store",
    "ChannelStore": "mppagent.session.store",
    "MemoryChannelStore": "mppagent.session.store",
    "SqliteChannelStore": "mppagent.session.store",
    "PaymentEvent": "mppagent.transport.paying",
    "PaymentTransport": "mppagent.transport.paying",
    "StreamInterrupted": "mppagent.transport.paying",
    "VoucherDeliveryFailed": "mppagent.transport.paying",
    "SSEEvent": "mppagent.transport.sse",
    "SyncAgent": "mppagent.sync",
}

__all__ = [
    "Agent",
    "AgentChannels",
    "ChainError",
    "ChannelRecord",
    "ChannelStatus",
    "ChannelStore",
    "CloseNotReady",
    "CloseResult",
    "ConfigError",
    "ForcedCloseResult",
    "MemoryChannelStore",
    "MppagentError",
    "NetworkError",
    "PaymentError",
    "PaymentEvent",
    "PaymentTransport",
    "PolicyViolation",
    "ProtocolError",
    "SSEEvent",
    "ServerMisbehaviour",
    "SpendPolicy",
    "SqliteChannelStore",
    "StoreError",
    "StreamInterrupted",
    "SyncAgent",
    "VoucherDeliveryFailed",
    "__version__",
]

if TYPE_CHECKING:
    from mppagent.agent import Agent, AgentChannels, CloseResult
    from mppagent.errors import (
        ChainError,
        ConfigError,
        MppagentError,
        NetworkError,
        PaymentError,
        PolicyViolation,
        ProtocolError,
        ServerMisbehaviour,
        StoreError,
    )
    from mppagent.session.closing import CloseNotReady, ForcedCloseResult
    from mppagent.session.policy import SpendPolicy
    from mppagent.session.store import (
        ChannelRecord,
        ChannelStatus,
        ChannelStore,
        MemoryChannelStore,
        SqliteChannelStore,
    )
    from mppagent.sync import SyncAgent
    from mppagent.transport.paying import (
        PaymentEvent,
        PaymentTransport,
        StreamInterrupted,
        VoucherDeliveryFailed,
    )
    from mppagent.transport.sse import SSEEvent


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
