"""A stream's states, why it closed, and the one function that moves it between states.

Pure data and rules, no I/O: `stt.session` asks `StreamState.move` for every change, so an
illegal move (audio after the end, a second Final, anything after closing) raises instead of
passing silently, much as Starlette's WebSocket refuses a send after close. Protocol adapters
(ours, Kyutai's msgpack, OpenAI Realtime) share these rules because they share the session.

    CONFIGURING --audio/Finalize--> STREAMING
    CONFIGURING, STREAMING --end of stream (client)--> ENDING
    CONFIGURING, STREAMING --session limit, drain--> SERVER_ENDING
    any of the above --Final or Error queued--> CLOSING
    any of the above --client stops reading--> ABANDONED
    every state but CLOSED --session over--> CLOSED
"""

from __future__ import annotations

import enum
from typing import Final

from stt.messages import CloseCode, ErrorCode, FinalStatus


class State(enum.Enum):
    CONFIGURING = "configuring"
    """Open, no audio yet: Configure is still allowed."""
    STREAMING = "streaming"
    """Audio (or a Finalize) has started the stream: options are fixed."""
    ENDING = "ending"
    """The client ended the stream; its last words and the Final are on the way."""
    SERVER_ENDING = "server_ending"
    """The server ended the stream (session limit, drain); what the client still sends is
    ignored, since it could not know yet."""
    CLOSING = "closing"
    """A Final or an Error and the close frame are queued; nothing else goes out."""
    ABANDONED = "abandoned"
    """The client stopped reading: nothing more is sent, not even a close frame."""
    CLOSED = "closed"
    """The session is over and its slot released."""


OPEN_STATES: Final = frozenset({State.CONFIGURING, State.STREAMING})
"""States in which the client may send audio and controls (and the idle timer runs)."""


class CloseReason(enum.StrEnum):
    """Why a stream ended. The values are the `reason` of the close frame (for the reasons
    that send one) and the `reason` label of the stt_stream_closes metric."""

    COMPLETE = FinalStatus.COMPLETE.value
    MAX_DURATION = FinalStatus.MAX_DURATION.value
    DRAINING = FinalStatus.DRAINING.value
    BAD_FRAME = ErrorCode.BAD_FRAME.value
    BAD_MESSAGE = ErrorCode.BAD_MESSAGE.value
    IDLE_TIMEOUT = ErrorCode.IDLE_TIMEOUT.value
    TOO_LARGE = ErrorCode.TOO_LARGE.value
    RATE_LIMITED = ErrorCode.RATE_LIMITED.value
    TOO_FAST = ErrorCode.TOO_FAST.value
    INTERNAL_ERROR = ErrorCode.INTERNAL_ERROR.value
    CLIENT_DISCONNECTED = "client_disconnected"
    """The client left (or its connection broke) before the stream closed."""
    SLOW_CONSUMER = "slow_consumer"
    """The client left server messages unread; dropped without a close frame."""

    @classmethod
    def of_error(cls, code: ErrorCode) -> CloseReason:
        """The reason for a session's Error (not for refusals, which come before a session)."""
        return cls(code.value)

    @property
    def final_status(self) -> FinalStatus | None:
        """The Final's status, for reasons that end with a Final."""
        return _FINALS.get(self)

    @property
    def close_code(self) -> CloseCode | None:
        """The close frame's code; None for reasons that send none."""
        status = self.final_status
        if status is not None:
            return status.close_code
        error = _ERRORS.get(self)
        return None if error is None else error.close_code


_FINALS: Final = {CloseReason(s.value): s for s in FinalStatus}
_ERRORS: Final = {
    CloseReason(e.value): e for e in ErrorCode if e.value in set(CloseReason) and e.value not in _FINALS
}
"""Refusals (unauthorized, over_capacity, draining) come before a session and are no session's
close reason; a stream ended by a drain closes with a Final, labelled "draining" too."""

_SERVER_FINALS: Final = frozenset({CloseReason.MAX_DURATION, CloseReason.DRAINING})

_MOVES: Final[dict[State, frozenset[State]]] = {
    State.CONFIGURING: frozenset(
        {State.STREAMING, State.ENDING, State.SERVER_ENDING, State.CLOSING, State.ABANDONED, State.CLOSED}
    ),
    State.STREAMING: frozenset(
        {State.STREAMING, State.ENDING, State.SERVER_ENDING, State.CLOSING, State.ABANDONED, State.CLOSED}
    ),
    State.ENDING: frozenset({State.CLOSING, State.ABANDONED, State.CLOSED}),
    State.SERVER_ENDING: frozenset({State.CLOSING, State.ABANDONED, State.CLOSED}),
    State.CLOSING: frozenset({State.ABANDONED, State.CLOSED}),
    State.ABANDONED: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}
"""Legal moves. STREAMING -> STREAMING is a Finalize: the stream goes on, its tail rule resets."""


class IllegalTransitionError(RuntimeError):
    """A move the table does not allow: a bug in the caller, never a client's fault."""


class StreamState:
    """The state of one stream and the data that belongs to it.

    `final_reason` belongs to ENDING and SERVER_ENDING: the reason of the Final they wait
    for (COMPLETE when the client ended the stream). `reason` is set on entering CLOSING
    (the Final's or the Error's), ABANDONED (SLOW_CONSUMER) and CLOSED, which keeps the
    reason of a stream that was closing and records CLIENT_DISCONNECTED for any other (the
    client left first, even while its Final was on the way). `short_chunk_ms` belongs to
    STREAMING: the last chunk was below the minimum, so only Finalize or the end may follow.
    """

    __slots__ = ("final_reason", "reason", "short_chunk_ms", "state")

    def __init__(self) -> None:
        self.state = State.CONFIGURING
        self.final_reason: CloseReason | None = None
        self.reason: CloseReason | None = None
        self.short_chunk_ms: float | None = None

    def __repr__(self) -> str:
        return f"StreamState({self.state.name}, final_reason={self.final_reason}, reason={self.reason})"

    @property
    def is_open(self) -> bool:
        """The client may send audio and controls."""
        return self.state in OPEN_STATES

    def note_short_chunk(self, ms: float) -> None:
        """A chunk below the minimum arrived: from now on only Finalize or the end may follow."""
        if self.state is not State.STREAMING:
            raise IllegalTransitionError(f"a short chunk in {self.state.name}")
        self.short_chunk_ms = ms

    def move(self, target: State, reason: CloseReason | None = None) -> None:
        """Move to `target`, with `reason` where the target takes one; raise
        IllegalTransitionError for a move or a reason the table does not allow."""
        if target not in _MOVES[self.state]:
            raise IllegalTransitionError(f"{self.state.name} -> {target.name} is not allowed")
        final_reason, self.reason = self._reasons_for(target, reason)
        self.final_reason = final_reason
        self.state = target
        self.short_chunk_ms = None

    def _reasons_for(
        self, target: State, given: CloseReason | None
    ) -> tuple[CloseReason | None, CloseReason | None]:
        """(final_reason, reason) in `target`, checking the reason the caller gave."""
        allowed: frozenset[CloseReason | None] = frozenset({None})
        final_reason = reason = None
        match target:
            case State.ENDING:
                allowed, final_reason = frozenset({None, CloseReason.COMPLETE}), CloseReason.COMPLETE
            case State.SERVER_ENDING:
                allowed, final_reason = _SERVER_FINALS, given
            case State.CLOSING:
                # An Error from any state, or the Final the ending state waits for.
                allowed, reason = frozenset({*_ERRORS, self.final_reason} - {None}), given
            case State.ABANDONED:
                allowed, reason = frozenset({None, CloseReason.SLOW_CONSUMER}), CloseReason.SLOW_CONSUMER
            case State.CLOSED:
                closing = self.state in (State.CLOSING, State.ABANDONED)
                reason = self.reason if closing else CloseReason.CLIENT_DISCONNECTED
        if given not in allowed:
            raise IllegalTransitionError(f"{self.state.name} -> {target.name} with reason {given}")
        return final_reason, reason


__all__ = ["OPEN_STATES", "CloseReason", "IllegalTransitionError", "State", "StreamState"]
