"""The WebSocket protocol (docs/protocol.md) as typed messages: parsing and encoding only.

No web framework is imported here, so the message rules are tested on their own and shared
by the server, the CLI client and the stress client.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from stt.constants import FRAME_SAMPLES, PROTOCOL_VERSION, SAMPLE_RATE
from stt.engine.interface import Capacity, WordEvent
from stt.limits import SessionLimits
from stt.numerals import Numerals


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses; the 4xxx ones are ours (docs/protocol.md)."""

    NORMAL = 1000
    """Final sent; the stream is complete."""
    GOING_AWAY = 1001
    """Server shutting down after letting the stream finish."""
    BAD_FRAME = 4400
    """Malformed input: not PCM16, invalid JSON or control message, or out of order."""
    UNAUTHORIZED = 4401
    IDLE_TIMEOUT = 4408
    TOO_LARGE = 4413
    RATE_LIMITED = 4429
    """Too many connections or messages, or audio far ahead of the model."""
    INTERNAL_ERROR = 4500
    OVER_CAPACITY = 4503
    """Every slot is busy; retry later or elsewhere."""
    DRAINING = 4504
    """The server is shutting down and accepts no new streams."""


class ErrorCode(enum.StrEnum):
    """Machine-readable `code` of an Error message; each maps to one close code."""

    BAD_FRAME = "bad_frame"
    BAD_MESSAGE = "bad_message"
    UNAUTHORIZED = "unauthorized"
    IDLE_TIMEOUT = "idle_timeout"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    TOO_FAST = "too_fast"
    INTERNAL_ERROR = "internal_error"
    OVER_CAPACITY = "over_capacity"
    DRAINING = "draining"

    @property
    def close_code(self) -> CloseCode:
        return _CLOSE_CODES[self]


_CLOSE_CODES: dict[ErrorCode, CloseCode] = {
    ErrorCode.BAD_FRAME: CloseCode.BAD_FRAME,
    ErrorCode.BAD_MESSAGE: CloseCode.BAD_FRAME,
    ErrorCode.UNAUTHORIZED: CloseCode.UNAUTHORIZED,
    ErrorCode.IDLE_TIMEOUT: CloseCode.IDLE_TIMEOUT,
    ErrorCode.TOO_LARGE: CloseCode.TOO_LARGE,
    ErrorCode.RATE_LIMITED: CloseCode.RATE_LIMITED,
    ErrorCode.TOO_FAST: CloseCode.RATE_LIMITED,
    ErrorCode.INTERNAL_ERROR: CloseCode.INTERNAL_ERROR,
    ErrorCode.OVER_CAPACITY: CloseCode.OVER_CAPACITY,
    ErrorCode.DRAINING: CloseCode.DRAINING,
}


class ProtocolError(Exception):
    """A client broke the protocol; the session answers with Error and closes."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- client -> server ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Configure:
    """Optional first message: stream options."""

    language: str | None = None
    pauses: bool = False
    """Send Pause (end-of-turn) messages, where the engine predicts them."""
    backpressure: bool = False
    """Slow a client that sends faster than the engine steps (stop reading) instead of
    closing it with too_fast: for clients that stream files over the socket."""
    numerals: Numerals | None = None
    """Write numbers as digits or words in every Word and the Final (None: as decoded)."""


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Resets the idle timer without sending audio."""


@dataclass(frozen=True, slots=True)
class Finalize:
    """Flush every word of the audio sent so far; the stream stays open."""


@dataclass(frozen=True, slots=True)
class CloseStream:
    """End of stream: flush, send Final, close."""


ClientMessage: TypeAlias = Configure | KeepAlive | Finalize | CloseStream

_CONFIGURE_FIELDS = frozenset({"type", "language", "pauses", "backpressure", "numerals"})
_SIMPLE: dict[str, ClientMessage] = {
    "KeepAlive": KeepAlive(),
    "Finalize": Finalize(),
    "CloseStream": CloseStream(),
}
CLIENT_TYPES = ("Configure", *_SIMPLE)


def parse_client_text(text: str) -> ClientMessage:
    """Parse a client's text message; raise ProtocolError(BAD_MESSAGE) saying what is wrong."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"text message is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "text message must be a JSON object with a 'type'")
    kind = data.get("type")
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind == "Configure":
        unknown = sorted(set(data) - _CONFIGURE_FIELDS)
        if unknown:
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE,
                f"unknown Configure field(s) {unknown}; allowed: {sorted(_CONFIGURE_FIELDS - {'type'})}",
            )
        language = data.get("language")
        if language is not None and (not isinstance(language, str) or not 0 < len(language) <= 16):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "Configure.language must be a short string or null")
        pauses = data.get("pauses", False)
        if not isinstance(pauses, bool):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "Configure.pauses must be true or false")
        backpressure = data.get("backpressure", False)
        if not isinstance(backpressure, bool):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "Configure.backpressure must be true or false")
        numerals = data.get("numerals")
        if numerals is not None and numerals not in tuple(Numerals):
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE,
                f"Configure.numerals must be {' or '.join(repr(n.value) for n in Numerals)} or null, "
                f"got {repr(numerals)[:40]}",
            )
        return Configure(
            language=language.lower() if isinstance(language, str) else None,
            pauses=pauses,
            backpressure=backpressure,
            numerals=Numerals(numerals) if numerals is not None else None,
        )
    shown = repr(kind)[:40]
    raise ProtocolError(
        ErrorCode.BAD_MESSAGE, f"unknown message type {shown}; expected one of {', '.join(CLIENT_TYPES)}"
    )


# -- server -> client ----------------------------------------------------------------------


def _t(seconds: float) -> float:
    """Times go out in seconds with millisecond precision."""
    return round(seconds, 3)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""One encoder for every message: `json.dumps` with any non-default option builds a new
one per call (a Word is sent per word of every stream)."""


def _dump(obj: dict[str, Any]) -> str:
    return _ENCODER.encode(obj)


ADVERTISED_LIMITS = (
    "max_message_bytes",
    "min_chunk_ms",
    "max_chunk_ms",
    "max_backlog_s",
    "idle_timeout_s",
    "max_session_s",
)
"""The limits Ready advertises (docs/protocol.md), so clients adapt instead of guessing."""


@dataclass(frozen=True, slots=True)
class Ready:
    session_id: str
    engine: str
    delay_s: float
    languages: tuple[str, ...] = ()
    pauses: bool = False
    limits: SessionLimits | None = None
    capacity: Capacity | None = None
    """The server's capacity when the stream was admitted (absent from the wire when None)."""

    def to_json(self) -> str:
        extra = {} if self.capacity is None else {"capacity": self.capacity.as_dict()}
        return _dump(
            {
                "type": "Ready",
                "session_id": self.session_id,
                "protocol_version": PROTOCOL_VERSION,
                "sample_rate": SAMPLE_RATE,
                "frame_samples": FRAME_SAMPLES,
                "engine": self.engine,
                "delay_s": _t(self.delay_s),
                "languages": list(self.languages),
                "pauses": self.pauses,
                "limits": {name: getattr(self.limits, name) for name in ADVERTISED_LIMITS}
                if self.limits
                else {},
                **extra,
            }
        )


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start_s: float
    end_s: float

    def to_json(self) -> str:
        return _dump(
            {"type": "Word", "text": self.text, "start_s": _t(self.start_s), "end_s": _t(self.end_s)}
        )


@dataclass(frozen=True, slots=True)
class Pause:
    """End-of-turn prediction: the speaker has probably finished (opt-in via Configure)."""

    time_s: float
    probability: float

    def to_json(self) -> str:
        return _dump({"type": "Pause", "time_s": _t(self.time_s), "probability": round(self.probability, 3)})


@dataclass(frozen=True, slots=True)
class Flushed:
    audio_s: float

    def to_json(self) -> str:
        return _dump({"type": "Flushed", "audio_s": _t(self.audio_s)})


class FinalStatus(enum.StrEnum):
    """Why the stream ended; every status comes with the complete transcript of what was sent."""

    COMPLETE = "complete"
    """The client ended the stream."""
    MAX_DURATION = "max_duration"
    """The server ended it at the session length limit (a Warning came first)."""
    DRAINING = "draining"
    """The server is shutting down and ended it after the drain grace period."""

    @property
    def close_code(self) -> CloseCode:
        """1000 after a Final, 1001 when the server ended the stream because it shuts down."""
        return CloseCode.GOING_AWAY if self is FinalStatus.DRAINING else CloseCode.NORMAL


@dataclass(frozen=True, slots=True)
class Final:
    words: Sequence[WordEvent]
    audio_s: float
    status: FinalStatus = FinalStatus.COMPLETE

    @property
    def transcript(self) -> str:
        return " ".join(w.text for w in self.words)

    def to_json(self) -> str:
        # Words carry "word", not "text": only Word messages have a "text" field, so a client
        # that concatenates every "text" it receives gets the transcript exactly once.
        words = [{"word": w.text, "start_s": _t(w.start_s), "end_s": _t(w.end_s)} for w in self.words]
        return _dump(
            {
                "type": "Final",
                "final": True,
                "status": self.status.value,
                "transcript": self.transcript,
                "words": words,
                "audio_s": _t(self.audio_s),
            }
        )


@dataclass(frozen=True, slots=True)
class StreamWarning:
    """Advance notice that the server will end the stream (session limit, shutdown)."""

    code: str
    message: str
    remaining_s: float

    def to_json(self) -> str:
        return _dump(
            {
                "type": "Warning",
                "code": self.code,
                "message": self.message,
                "remaining_s": _t(self.remaining_s),
            }
        )


@dataclass(frozen=True, slots=True)
class Error:
    code: ErrorCode
    message: str

    def to_json(self) -> str:
        return _dump(
            {
                "type": "Error",
                "code": self.code.value,
                "message": self.message,
                "close_code": int(self.code.close_code),
            }
        )


ServerMessage: TypeAlias = Ready | Word | Pause | Flushed | Final | StreamWarning | Error
