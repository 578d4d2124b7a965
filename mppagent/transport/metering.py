"""Counting the units the application actually received.

The server bills per unit (``unitType``); the agent counts units on its own,
from the application events it delivers, so that the gate can refuse to pay
ahead of delivery and the engine can check the final bill. A :class:`Meter`
observes each delivered event and keeps two numbers: ``delivered`` (its count)
and ``bound`` (the most units an honest server may bill for it).

* :class:`ChunkMeter` (``llm_token``): one unit per OpenAI chunk that carries
  text (``content``, ``reasoning_content`` or ``reasoning``). Exact for servers
  that stream one token per chunk, like the reference server.
* :class:`EventMeter` (anything else): one unit per data event.
"""

from __future__ import annotations

import re
from typing import Protocol

from mppagent.transport.sse import SSEEvent

__all__ = ["ChunkMeter", "EventMeter", "Meter", "meter_for"]


class Meter(Protocol):
    """Observes delivered application events; bounds what may honestly be billed."""

    def observe(self, event: SSEEvent) -> None:
        """One application event reached the application."""
        ...

    @property
    def delivered(self) -> int:
        """Units delivered, as this meter counts them."""
        ...

    @property
    def bound(self) -> int:
        """The most units an honest server may bill for everything observed."""
        ...


class EventMeter:
    """One unit per application data event (``[DONE]`` excluded)."""

    def __init__(self) -> None:
        self.delivered = 0

    @property
    def bound(self) -> int:
        """Exact: every event is a unit."""
        return self.delivered

    def observe(self, event: SSEEvent) -> None:
        """Count ``event``."""
        if event.data and event.data != "[DONE]":
            self.delivered += 1


class ChunkMeter:
    """One unit per ``chat.completion.chunk`` that carries text.

    Found by a byte-level pattern rather than a full JSON parse, because this
    runs for every token of every paid stream.
    """

    _TEXT = re.compile(rb'"(?:content|reasoning_content|reasoning)"\s*:\s*"(?!")')

    def __init__(self) -> None:
        self.delivered = 0

    @property
    def bound(self) -> int:
        """Exact for one token per chunk."""
        return self.delivered

    def observe(self, event: SSEEvent) -> None:
        """Count ``event`` if it carries text."""
        if event.event in ("message", "") and self._TEXT.search(event.raw):
            self.delivered += 1


def meter_for(unit_type: str | None, request_body: bytes = b"") -> Meter:
    """The default meter for a challenge's ``unitType``."""
    del request_body
    if unit_type == "llm_token":
        return ChunkMeter()
    return EventMeter()
