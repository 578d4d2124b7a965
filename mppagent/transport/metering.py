"""Counting the units the application actually received.

The server bills per unit (``unitType``); the agent counts units on its own,
from the application events it delivers, so that it can refuse to pay ahead
of delivery and can check the final bill. A meter turns one SSE event into a
number of units:

* :class:`ChatCompletionMeter` (``llm_token``): one unit per OpenAI chunk that
  carries text (``content``, ``reasoning_content`` or ``reasoning``). Exact
  for servers that stream one token per chunk, like the reference server;
  providers that pack several tokens into a chunk need the policy's
  ``unit_tolerance``.
* :class:`EventMeter` (anything else): one unit per data event.
"""

from __future__ import annotations

import json
from typing import Protocol

from mppagent.transport.sse import SSEEvent

__all__ = ["ChatCompletionMeter", "EventMeter", "UnitMeter", "meter_for"]


class UnitMeter(Protocol):
    """Turns an application SSE event into billed units."""

    def units(self, event: SSEEvent) -> int: ...


class EventMeter:
    """One unit per application data event (``[DONE]`` excluded)."""

    def units(self, event: SSEEvent) -> int:
        """Units in ``event``."""
        if not event.data or event.data == "[DONE]":
            return 0
        return 1


class ChatCompletionMeter:
    """One unit per ``chat.completion.chunk`` with text in its first choice's delta."""

    _TEXT_FIELDS = ("content", "reasoning_content", "reasoning")

    def units(self, event: SSEEvent) -> int:
        """Units in ``event``."""
        data = event.data
        if not data or data == "[DONE]" or event.event not in ("message", ""):
            return 0
        try:
            chunk = json.loads(data)
        except ValueError:
            return 0
        if not isinstance(chunk, dict):
            return 0
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return 0
        delta = choices[0].get("delta")
        if not isinstance(delta, dict):
            return 0
        return (
            1 if any(isinstance(delta.get(f), str) and delta[f] for f in self._TEXT_FIELDS) else 0
        )


def meter_for(unit_type: str | None) -> UnitMeter:
    """The default meter for a challenge's ``unitType``."""
    if unit_type == "llm_token":
        return ChatCompletionMeter()
    return EventMeter()
