"""Fixtures for the LLM layer: the reference server on uvicorn, agents, expected answers.

The server and agent factories mirror ``tests/agent/conftest.py`` (copied, not
imported, so the two test packages stay independent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from mppagent import Agent
from mppagent.devserver import RunningServer
from mppagent.devserver.fakemodel import FakeModel
from mppagent.devserver.wire import Usage, parse_chat_request

ServerFactory = Callable[..., Awaitable[RunningServer]]
AgentFactory = Callable[..., Awaitable[Agent]]

CHAT = "/v1/chat/completions"
PRICE = 25
API_KEY = "sk-test-llm-layer"


@dataclass(frozen=True)
class Expected:
    """What the devserver's deterministic model answers to one request body."""

    content: str
    reasoning: str
    usage: dict[str, Any]
    tokens: int


def expected_answer(body: Mapping[str, Any], *, seed: int = 0) -> Expected:
    """Compute the answer the devserver will give, from its own model and wire code."""
    chat = parse_chat_request(dict(body))
    plan = chat.plan()
    tokens = list(
        FakeModel(seed).generate(
            chat.prompt_text(), max_tokens=plan.max_tokens, reasoning_tokens=plan.reasoning_tokens
        )
    )
    return Expected(
        content="".join(t.text for t in tokens if t.kind == "content"),
        reasoning="".join(t.text for t in tokens if t.kind == "reasoning"),
        usage=Usage.of(chat.prompt_tokens(), tokens).as_dict(),
        tokens=len(tokens),
    )


@pytest.fixture
async def bearer_server(start_server: ServerFactory) -> RunningServer:
    """A server that serves for free to holders of :data:`API_KEY` (and never asks payment)."""
    return await start_server(auth_mode="bearer", api_keys=(API_KEY,))
