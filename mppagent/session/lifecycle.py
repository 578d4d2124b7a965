"""Channel status: one transition table, and the only code that decides a status.

A channel's status used to be written from three files with ``update(status=...)``;
a crash between an operation's outcome and the status it implies left records
``opening`` while funded on chain. Now every change of status is an
:class:`Event` applied by the store (in the same transaction as whatever caused
it), and this table says which events are legal from which status -- in the
style of h11's ``_state.py``: explicit, small, and testable by hand.

An event that is not legal from the current status raises
:class:`IllegalTransition` (a :class:`~mppagent.errors.StoreError`): it means
a bug or a race, never something to paper over. Applying an event whose
target is the current status is always allowed (idempotent retries).
"""

from __future__ import annotations

from enum import StrEnum

from mppagent.errors import StoreError

__all__ = ["ChannelStatus", "Event", "IllegalTransition", "next_status"]


class ChannelStatus(StrEnum):
    """Lifecycle of a channel as this agent sees it."""

    OPENING = "opening"  # open transaction signed (maybe sent); not yet confirmed
    OPEN = "open"  # confirmed on chain and usable
    CLOSING = "closing"  # close credential sent; outcome not yet verified
    CLOSE_REQUESTED = "close_requested"  # forced close started on chain
    CLOSED = "closed"  # finalized on chain (cooperative close or withdraw)
    FAILED = "failed"  # never opened (open refused or superseded)
    SUSPECT = "suspect"  # the server misbehaved on it: no more payments
    GONE = "gone"  # open on chain but unknown to the server: recover with a forced close


class Event(StrEnum):
    """Something that happened to a channel, from the chain, the server or the owner."""

    OPENED = "opened"  # the chain shows the channel (open confirmed or found on reconcile)
    OPEN_FAILED = "open_failed"  # the open can never land (refused, superseded, never sent)
    MISSING_ON_CHAIN = "missing_on_chain"  # a channel we held open is unknown to the chain
    MISBEHAVED = "misbehaved"  # the server broke an invariant: stop paying
    FORGOTTEN = "forgotten"  # the server says channel-not-found/finalized while it is open
    CLOSE_STARTED = "close_started"  # a cooperative close credential is about to be sent
    CLOSE_ABANDONED = "close_abandoned"  # the close was refused or never reached the chain
    CLOSE_REQUESTED = "close_requested"  # the chain shows a forced-close request
    CLOSE_CANCELLED = "close_cancelled"  # a top-up cancelled the pending close request
    FINALIZED = "finalized"  # the chain shows the channel finalized (closed or withdrawn)


S = ChannelStatus

_ALL_LIVE = frozenset({S.OPENING, S.OPEN, S.CLOSING, S.CLOSE_REQUESTED, S.SUSPECT, S.GONE})

# event -> (statuses it may be applied in, status it leads to)
_TABLE: dict[Event, tuple[frozenset[ChannelStatus], ChannelStatus]] = {
    Event.OPENED: (frozenset({S.OPENING, S.FAILED}), S.OPEN),
    Event.OPEN_FAILED: (frozenset({S.OPENING}), S.FAILED),
    Event.MISSING_ON_CHAIN: (frozenset({S.OPEN, S.OPENING, S.SUSPECT, S.GONE}), S.FAILED),
    Event.MISBEHAVED: (frozenset({S.OPENING, S.OPEN, S.CLOSING}), S.SUSPECT),
    Event.FORGOTTEN: (frozenset({S.OPENING, S.OPEN}), S.GONE),
    Event.CLOSE_STARTED: (frozenset({S.OPEN}), S.CLOSING),
    Event.CLOSE_ABANDONED: (frozenset({S.CLOSING}), S.OPEN),
    Event.CLOSE_REQUESTED: (_ALL_LIVE, S.CLOSE_REQUESTED),
    Event.CLOSE_CANCELLED: (frozenset({S.CLOSE_REQUESTED}), S.OPEN),
    Event.FINALIZED: (_ALL_LIVE | {S.FAILED}, S.CLOSED),
}


class IllegalTransition(StoreError):
    """An event that the transition table does not allow from the channel's status."""

    def __init__(self, channel_id: str, current: ChannelStatus, event: Event) -> None:
        super().__init__(f"channel {channel_id}: event {event} is not allowed while {current}")
        self.current = current
        self.event = event


def next_status(channel_id: str, current: ChannelStatus, event: Event) -> ChannelStatus:
    """The status ``event`` leads to from ``current``, or raise :class:`IllegalTransition`."""
    allowed, target = _TABLE[event]
    if current == target:
        return current
    if current not in allowed:
        raise IllegalTransition(channel_id, current, event)
    return target


def allowed_from(event: Event) -> frozenset[ChannelStatus]:
    """The statuses ``event`` may be applied in (for tests and documentation)."""
    return _TABLE[event][0]
