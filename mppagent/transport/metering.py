"""Per-event unit counting for the current paying transport (superseded by llm.meters).

:mod:`mppagent.llm.meters` holds the meters that bound what an honest server may
bill; this module keeps the old ``units(event)`` interface the paying transport
still calls, on top of the same per-event tests, until the transport moves over.

* :class:`ChatCompletionMeter` (``llm_token``): one unit per chunk carrying text
  (:func:`~mppagent.llm.meters.text_chunk`).
* :class:`EventMeter` (anything else): one unit per data event
  (:func:`~mppagent.llm.meters.is_data_event`).
"""

from __future__ import annotations

from typing import Protocol

from mppagent.llm.meters import is_data_event, text_chunk
from mppagent.transport.sse import SSEEvent

__all__ = ["ChatCompletionMeter", "EventMeter", "UnitMeter", "meter_for"]


class UnitMeter(Protocol):
    """Turns an application SSE event into billed units."""

    def units(self, event: SSEEvent) -> int: ...


class EventMeter:
    """One unit per application data event (``[DONE]`` excluded)."""

    def units(self, event: SSEEvent) -> int:
        """Units in ``event``."""
        return 1 if is_data_event(event) else 0


class ChatCompletionMeter:
    """One unit per ``chat.completion.chunk`` that carries text."""

    def units(self, event: SSEEvent) -> int:
        """Units in ``event``."""
        return 1 if text_chunk(event) else 0


def meter_for(unit_type: str | None) -> UnitMeter:
    """The default meter for a challenge's ``unitType``."""
    if unit_type == "llm_token":
        return ChatCompletionMeter()
    return EventMeter()
