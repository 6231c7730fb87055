"""OpenAI Realtime transcription (/v1/realtime?intent=transcription) over the session core.

The GA event shapes of the `openai` SDK's `types/realtime` (docs/protocol.md, "OpenAI
Realtime transcription"). What maps to what:

    session.update               -> Configure (language, before the first audio) and
                                    the adapter's own turn detection; session.updated
    input_audio_buffer.append    -> Audio (base64 PCM16 LE at 24 kHz)
    input_audio_buffer.commit    -> Finalize; committed now, completed once it is Flushed
    input_audio_buffer.clear     -> words of the uncommitted audio are dropped; cleared
    session.created              <- Ready
    ...transcription.delta       <- Word (one delta per word, as it comes)
    speech_started / _stopped,   <- with server_vad or semantic_vad: the first Word of an
    committed, completed            item, then the engine's PauseEvent (end of turn)
    error                        <- Error (then the close), or the adapter's own errors,
                                    which keep the session open as OpenAI's do

Any transcription model name is accepted (and echoed); the server's engine answers.
Appends are served with backpressure, as OpenAI's server buffers audio sent faster than
real time instead of refusing it.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stt.constants import SAMPLE_RATE
from stt.engine.interface import EngineInfo
from stt.messages import (
    Configure,
    Error,
    ErrorCode,
    Final,
    Finalize,
    Flushed,
    KeepAlive,
    Pause,
    Ready,
    ServerMessage,
    Word,
)
from stt.metrics import Metrics
from stt.protocols import adapter_session
from stt.session import Audio, Binary, ClientInput, Frame, Session, SessionLimits, State, Text

PATH = "/v1/realtime"
INTENT = "transcription"
TURN_DETECTION_TYPES = ("server_vad", "semantic_vad")
MIN_COMMIT_MS = 100
"""OpenAI refuses to commit less audio than this (input_audio_buffer_commit_empty)."""
CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
)
_SESSION_FIELDS = frozenset({"type", "audio", "include"})
_INPUT_FIELDS = frozenset({"format", "transcription", "turn_detection", "noise_reduction"})
_TRANSCRIPTION_FIELDS = frozenset({"model", "language", "prompt", "delay", "keywords", "languages"})


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _dump(event: dict[str, Any]) -> str:
    return json.dumps({"event_id": _id("event"), **event}, ensure_ascii=False, separators=(",", ":"))


class _RejectedError(Exception):
    """A client event OpenAI answers with an `error` event while the session stays open."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


@dataclass
class _Item:
    """One user audio item: its words, and whether its audio was committed."""

    id: str = field(default_factory=lambda: _id("item"))
    words: list[str] = field(default_factory=list)
    start_s: float = 0.0
    committed: bool = False
    speaking: bool = False


class RealtimeProtocol:
    """One /v1/realtime?intent=transcription connection over a Session."""

    def __init__(
        self,
        info: EngineInfo,
        limits: SessionLimits,
        metrics: Metrics | None = None,
        *,
        client: str = "-",
    ) -> None:
        self._info = info
        self._session_id = _id("sess")
        self._model = "whisper-1"
        self._language: str | None = None
        self._prompt: str | None = None
        self._noise_reduction: Any = None
        # Like OpenAI's transcription sessions, turns are detected unless the client says
        # otherwise, where the engine predicts them.
        self._turn_detection: dict[str, Any] | None = {"type": "server_vad"} if info.pause_events else None
        self._items: deque[_Item] = deque([_Item()])
        """Oldest first: committed items waiting for their Flushed, then the current one."""
        self._previous_item: str | None = None
        self._uncommitted_samples = 0
        self._cleared_to_s = 0.0
        self._session = adapter_session(info, limits, metrics, client, decode=self.decode, encode=self.encode)

    @property
    def session(self) -> Session:
        return self._session

    def refusal(self, code: ErrorCode, message: str) -> Frame:
        return _dump(
            _error_event(
                "server_error" if code is ErrorCode.DRAINING else "invalid_request_error", code.value, message
            )
        )

    # -- client -> session -------------------------------------------------------------------

    def decode(self, message: Binary | Text) -> ClientInput:
        event_id: str | None = None
        try:
            if isinstance(message, Binary):
                raise _RejectedError("invalid_event", "events are JSON text messages, not binary")
            try:
                event = json.loads(message.text)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise _RejectedError("invalid_json", f"the event is not valid JSON: {exc}") from None
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise _RejectedError("invalid_event", "an event must be a JSON object with a string 'type'")
            raw_id = event.get("event_id")
            event_id = raw_id if isinstance(raw_id, str) else None
            return self._event(event)
        except _RejectedError as rejected:
            self._reject(rejected, event_id)
            return KeepAlive()

    def _event(self, event: dict[str, Any]) -> ClientInput:
        match event["type"]:
            case "input_audio_buffer.append":
                return self._append(event.get("audio"))
            case "input_audio_buffer.commit":
                return self._commit()
            case "input_audio_buffer.clear":
                self._clear()
                return KeepAlive()
            case "session.update":
                return self._update(event.get("session"))
            case other:
                shown = other[:60]
                raise _RejectedError(
                    "unknown_event",
                    f"{shown!r} is not supported in a transcription session; "
                    f"supported: {', '.join(CLIENT_EVENTS)}",
                )

    def _append(self, audio: object) -> ClientInput:
        if not isinstance(audio, str):
            message = "input_audio_buffer.append needs 'audio': base64 text"
            raise _RejectedError("invalid_value", message, "audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise _RejectedError("invalid_value", "'audio' is not valid base64", "audio") from None
        if len(pcm) % 2:
            raise _RejectedError(
                "invalid_value", f"'audio' decodes to {len(pcm)} bytes: not PCM16 (odd byte count)", "audio"
            )
        self._uncommitted_samples += len(pcm) // 2
        return Audio(pcm)

    def _commit(self) -> ClientInput:
        ms = self._uncommitted_samples * 1000 / SAMPLE_RATE
        if ms < MIN_COMMIT_MS:
            raise _RejectedError(
                "input_audio_buffer_commit_empty",
                f"buffer too small: expected at least {MIN_COMMIT_MS} ms of audio, but it holds {ms:.2f} ms",
            )
        if self._session.state not in (State.CONFIGURING, State.STREAMING):
            raise _RejectedError("invalid_event", "the stream has ended")
        self._uncommitted_samples = 0
        current = self._items[-1]
        current.committed = True
        self._send_committed(current)
        self._items.append(_Item(start_s=self._session.audio_s))
        return Finalize()

    def _clear(self) -> None:
        current = self._items[-1]
        current.words.clear()
        current.speaking = False
        current.start_s = self._cleared_to_s = self._session.audio_s
        self._uncommitted_samples = 0
        self._session.send_frames((_dump({"type": "input_audio_buffer.cleared"}),))

    def _update(self, session: object) -> ClientInput:
        if not isinstance(session, dict):
            raise _RejectedError("invalid_value", "session.update needs a 'session' object", "session")
        if session.get("type") != "transcription":
            raise _RejectedError(
                "invalid_value",
                "only transcription sessions are served here: session.type must be 'transcription'",
                "session.type",
            )
        _only(session, _SESSION_FIELDS, "session")
        audio = _object(session.get("audio"), "session.audio")
        given = _object(audio.get("input"), "session.audio.input")
        _only(given, _INPUT_FIELDS, "session.audio.input")
        if "format" in given:
            _check_format(given["format"])
        language, model, prompt = self._language, self._model, self._prompt
        if "transcription" in given:
            transcription = _object(given["transcription"], "session.audio.input.transcription")
            _only(transcription, _TRANSCRIPTION_FIELDS, "session.audio.input.transcription")
            model = _text(transcription.get("model", model), "model") or self._model
            prompt = _text(transcription.get("prompt", prompt), "prompt")
            language = _text(transcription.get("language", language), "language")
            language = language.lower() if language else None
        turn_detection = self._turn_detection
        if "turn_detection" in given:
            turn_detection = self._check_turn_detection(given["turn_detection"])
        configure: ClientInput = KeepAlive()
        if language != self._language:
            configure = self._configure(language)
        self._model, self._prompt, self._language = model, prompt, language
        self._turn_detection = turn_detection
        if "noise_reduction" in given:
            self._noise_reduction = given["noise_reduction"]
        self._session.send_frames((_dump({"type": "session.updated", "session": self._config()}),))
        return configure

    def _configure(self, language: str | None) -> ClientInput:
        if self._session.state is not State.CONFIGURING:
            raise _RejectedError(
                "invalid_value",
                "the language can only be set before the first audio of the session",
                "session.audio.input.transcription.language",
            )
        languages = self._info.languages
        if language is not None and languages and language not in languages:
            raise _RejectedError(
                "invalid_value",
                f"unsupported language {language!r}; this engine supports: {', '.join(languages)}",
                "session.audio.input.transcription.language",
            )
        return Configure(language=language, pauses=self._info.pause_events)

    def _check_turn_detection(self, value: object) -> dict[str, Any] | None:
        if value is None:
            return None
        detection = _object(value, "session.audio.input.turn_detection")
        if detection.get("type") not in TURN_DETECTION_TYPES:
            raise _RejectedError(
                "invalid_value",
                f"turn_detection.type must be one of {', '.join(TURN_DETECTION_TYPES)} (or null)",
                "session.audio.input.turn_detection.type",
            )
        if not self._info.pause_events:
            raise _RejectedError(
                "invalid_value",
                f"the {self._info.name} engine does not detect turns: set turn_detection to null and commit",
                "session.audio.input.turn_detection",
            )
        return dict(detection)

    def _reject(self, rejected: _RejectedError, event_id: str | None) -> None:
        error = _error_event("invalid_request_error", rejected.code, rejected.message)
        error["error"]["param"] = rejected.param
        error["error"]["event_id"] = event_id
        self._session.send_frames((_dump(error),))

    # -- session -> client -------------------------------------------------------------------

    def encode(self, message: ServerMessage) -> Sequence[Frame]:
        match message:
            case Ready():
                return (_dump({"type": "session.created", "session": self._config()}),)
            case Word(text, start_s, end_s):
                return self._word(text, start_s, end_s)
            case Pause():
                return self._turn_end()
            case Flushed():
                item = self._items.popleft()
                if not self._items:
                    self._items.append(_Item(start_s=self._session.audio_s))
                return (self._completed(item),)
            case Final():
                return self._final()
            case Error(code, text):
                return (_dump(_error_event("invalid_request_error", code.value, text)),)
            case _:
                return ()  # Warning: the Realtime API has no such event

    def _word(self, text: str, start_s: float, end_s: float) -> Sequence[Frame]:
        item = self._items[0]
        if item is self._items[-1] and end_s <= self._cleared_to_s:
            return ()  # audio the client cleared
        frames: list[Frame] = []
        if self._turn_detection is not None and not item.speaking and not item.committed:
            item.speaking = True
            frames.append(
                _dump(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": round(start_s * 1000),
                        "item_id": item.id,
                    }
                )
            )
        delta = text if not item.words else f" {text}"
        item.words.append(text)
        frames.append(
            _dump(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item.id,
                    "content_index": 0,
                    "delta": delta,
                }
            )
        )
        return frames

    def _turn_end(self) -> Sequence[Frame]:
        """The engine predicts the end of the turn: with turn detection on, the current
        item is committed and completed (it needs no flush: its words are out)."""
        item = self._items[0]
        if self._turn_detection is None or item.committed or not item.words:
            return ()
        self._items.popleft()
        self._items.append(_Item(start_s=self._session.audio_s))
        self._uncommitted_samples = 0
        return (
            _dump(
                {
                    "type": "input_audio_buffer.speech_stopped",
                    "audio_end_ms": round(self._session.audio_s * 1000),
                    "item_id": item.id,
                }
            ),
            self._committed(item),
            self._completed(item),
        )

    def _final(self) -> Sequence[Frame]:
        """The server ended the stream (drain, session limit): every word is out, so the
        items still open are committed and completed before the close."""
        frames: list[Frame] = []
        while self._items:
            item = self._items.popleft()
            if item.words:
                if not item.committed:
                    frames.append(self._committed(item))
                frames.append(self._completed(item))
        return frames

    def _send_committed(self, item: _Item) -> None:
        self._session.send_frames((self._committed(item),))

    def _committed(self, item: _Item) -> str:
        previous, self._previous_item = self._previous_item, item.id
        event = {"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item.id}
        return _dump(event)

    def _completed(self, item: _Item) -> str:
        return _dump(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item.id,
                "content_index": 0,
                "transcript": " ".join(item.words),
                "usage": {"type": "duration", "seconds": round(self._session.audio_s - item.start_s, 3)},
            }
        )

    def _config(self) -> dict[str, Any]:
        """The effective session, in the shape of the SDK's transcription session."""
        return {
            "type": "transcription",
            "id": self._session_id,
            "object": "realtime.transcription_session",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": SAMPLE_RATE},
                    "transcription": {
                        "model": self._model,
                        "language": self._language,
                        "prompt": self._prompt,
                    },
                    "turn_detection": self._turn_detection,
                    "noise_reduction": self._noise_reduction,
                }
            },
            "include": None,
        }


def wrong_intent(intent: str | None) -> str:
    """The error sent before closing a /v1/realtime connection that is not for transcription."""
    shown = "no intent" if intent is None else f"intent {intent[:40]!r}"
    message = f"{shown}: this server only transcribes; connect with ?intent={INTENT}"
    return _dump(_error_event("invalid_request_error", "unsupported_intent", message))


def _error_event(kind: str, code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "code": code, "message": message}}


def _object(value: object, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _RejectedError("invalid_value", f"{name} must be an object", name)
    return value


def _only(value: dict[str, Any], allowed: frozenset[str], name: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        message = f"unknown {name} field(s) {unknown}"
        raise _RejectedError("unknown_parameter", message, f"{name}.{unknown[0]}")


def _text(value: object, name: str) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > 4096):
        raise _RejectedError("invalid_value", f"transcription.{name} must be a string", name)
    return value


def _check_format(value: object) -> None:
    audio_format = _object(value, "session.audio.input.format")
    kind, rate = audio_format.get("type", "audio/pcm"), audio_format.get("rate", SAMPLE_RATE)
    if kind != "audio/pcm" or rate != SAMPLE_RATE:
        raise _RejectedError(
            "invalid_value",
            f"only PCM16 at 24 kHz is served: format must be {{'type': 'audio/pcm', 'rate': {SAMPLE_RATE}}}",
            "session.audio.input.format",
        )


__all__ = ["CLIENT_EVENTS", "INTENT", "PATH", "RealtimeProtocol", "wrong_intent"]
