"""Helpers shared by the test packages (fixtures live in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mppagent import Agent
from mppagent.devserver import RunningServer

ServerFactory = Callable[..., Awaitable[RunningServer]]
AgentFactory = Callable[..., Awaitable[Agent]]

CHAT = "/v1/chat/completions"
PRICE = 25


def chat_body(tokens: int, *, stream: bool = True, model: str = "mpp-fake-1") -> dict[str, Any]:
    """An OpenAI chat request for exactly ``tokens`` completion tokens."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me about payment channels."}],
        "stream": stream,
        "max_tokens": tokens,
    }
