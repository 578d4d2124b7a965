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

import re
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
    """One unit per ``chat.completion.chunk`` that carries text.

    A chunk counts when it has a non-empty ``content``, ``reasoning_content``
    or ``reasoning`` string -- found by a byte-level pattern rather than a full
    JSON parse, because this runs for every token of every paid stream. The
    shortcut costs no protection: a server that wanted to be paid for units it
    did not deliver would have to send one event per unit either way, and a
    one-character chunk is as cheap to forge as a stray field. What the meter
    guarantees -- and what the agent checks bills against -- is that every
    counted unit arrived as an event.
    """

    _TEXT = re.compile(rb'"(?:content|reasoning_content|reasoning)"\s*:\s*"(?!")')

    def units(self, event: SSEEvent) -> int:
        """Units in ``event``."""
        if event.event not in ("message", ""):
            return 0
        return 1 if self._TEXT.search(event.raw) else 0


def meter_for(unit_type: str | None) -> UnitMeter:
    """The default meter for a challenge's ``unitType``."""
    if unit_type == "llm_token":
        return ChatCompletionMeter()
    return EventMeter()
