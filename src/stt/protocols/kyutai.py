"""Kyutai's moshi-server STT protocol (/api/asr-streaming) over the session core.

Binary msgpack frames, each a map tagged by `type` (docs/protocol.md, "Kyutai protocol").
What maps to what:

    Audio{pcm}       -> Samples (any length; the session reframes to 1920 samples)
    OggOpus{data}    -> Samples decoded by one sphn.OpusStreamReader per stream
    Marker{id}       -> Finalize; its Flushed comes back as Marker{id}, so the marker is
                        echoed once every word of the audio before it is out (delay included)
    Init             -> KeepAlive (moshi-server's batched mode sends it; nothing to do here)
    Ready            <- Ready
    Word, EndWord    <- Word (our engines time both ends at once, so EndWord follows at once)
    Step             <- every engine step of the stream: step_idx, prs, buffered_pcm
    Error{message}   <- Error, before the close (moshi-server drops bad input silently)

`prs` is the end-of-turn estimate, one value per pause head (Kyutai models have four;
Unmute reads prs[2]): 1.0 before the first word (nobody is speaking), 0.0 from each word
on, and the probability of the engine's PauseEvent once it predicts the end of a turn
(Kyutai's pause heads above their threshold, Whisper's VAD silence, the fake engine's
pause frames). The stream is served with backpressure: a client sending faster than real
time is read more slowly, never closed for too_fast.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from stt.engine.interface import EngineInfo
from stt.messages import (
    Error,
    ErrorCode,
    Finalize,
    Flushed,
    KeepAlive,
    Pause,
    ProtocolError,
    Ready,
    ServerMessage,
    Word,
)
from stt.metrics import Metrics
from stt.protocols import adapter_session
from stt.session import Binary, ClientInput, Frame, Samples, Session, SessionLimits, Text

PATH = "/api/asr-streaming"
PAUSE_HEADS = 4
"""Entries of Step.prs: Kyutai's STT models have four pause heads (0.5, 1, 2 and 3 s)."""
CLIENT_TYPES = ("Audio", "OggOpus", "Marker", "Init")
_I64 = 1 << 63


def pack(message: dict[str, Any]) -> bytes:
    """One msgpack frame (maps with string keys, as moshi-server's rmp_serde writes them)."""
    data: bytes = msgpack.packb(message, use_bin_type=True)
    return data


def unpack(data: bytes) -> dict[str, Any]:
    """A client frame as a tagged map; raises ProtocolError(BAD_MESSAGE) saying what is wrong."""
    try:
        message = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"binary message is not msgpack: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "a message must be a msgpack map with a string 'type'")
    return message


class KyutaiProtocol:
    """One /api/asr-streaming connection: decodes its frames, encodes the session's answers."""

    def __init__(
        self,
        info: EngineInfo,
        limits: SessionLimits,
        metrics: Metrics | None = None,
        *,
        client: str = "-",
    ) -> None:
        self._markers: deque[int] = deque()
        self._pause = 1.0
        self._opus: Any = None
        self._session = adapter_session(
            info, limits, metrics, client, decode=self.decode, encode=self.encode, on_step=self.on_step
        )

    @property
    def session(self) -> Session:
        return self._session

    def refusal(self, code: ErrorCode, message: str) -> Frame:
        return pack({"type": "Error", "message": f"{code.value}: {message}"})

    # -- client -> session -------------------------------------------------------------------

    def decode(self, message: Binary | Text) -> ClientInput:
        if isinstance(message, Text):
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE, "this endpoint speaks msgpack in binary messages, not text"
            )
        data = unpack(message.data)
        match data["type"]:
            case "Audio":
                return Samples(_pcm(data.get("pcm")))
            case "OggOpus":
                return Samples(self._decode_opus(data.get("data")))
            case "Marker":
                marker = data.get("id")
                if not isinstance(marker, int) or isinstance(marker, bool) or not -_I64 <= marker < _I64:
                    raise ProtocolError(ErrorCode.BAD_MESSAGE, "Marker.id must be a 64-bit integer")
                self._markers.append(marker)
                return Finalize()
            case "Init":
                return KeepAlive()
            case other:
                raise ProtocolError(
                    ErrorCode.BAD_MESSAGE,
                    f"unknown message type {other[:40]!r}; expected one of {', '.join(CLIENT_TYPES)}",
                )

    def _decode_opus(self, data: object) -> np.ndarray[Any, np.dtype[np.float32]]:
        if not isinstance(data, bytes):
            raise ProtocolError(ErrorCode.BAD_FRAME, "OggOpus.data must be binary (msgpack bin)")
        if self._opus is None:
            import sphn  # only streams that send Ogg/Opus pay for the decoder

            self._opus = sphn.OpusStreamReader(24_000)
        try:
            pcm = self._opus.append_bytes(data)
        except ValueError as exc:
            message = f"OggOpus.data is not an Ogg/Opus stream: {exc}"
            raise ProtocolError(ErrorCode.BAD_FRAME, message) from None
        return np.asarray(pcm, dtype=np.float32).reshape(-1)

    # -- session -> client -------------------------------------------------------------------

    def encode(self, message: ServerMessage) -> Sequence[Frame]:
        match message:
            case Ready():
                return (pack({"type": "Ready"}),)
            case Word(text, start_s, end_s):
                self._pause = 0.0
                return (
                    pack({"type": "Word", "text": text, "start_time": start_s}),
                    pack({"type": "EndWord", "stop_time": end_s}),
                )
            case Pause(_, probability):
                self._pause = probability
                return ()
            case Flushed():
                return (pack({"type": "Marker", "id": self._markers.popleft()}),)
            case Error(code, text):
                return (self.refusal(code, text),)
            case _:
                # Final (the words went out as they came; the close follows) and Warning
                # have no moshi-server counterpart.
                return ()

    def on_step(self) -> None:
        session = self._session
        step = {
            "type": "Step",
            "step_idx": session.steps - 1,
            "prs": [self._pause] * PAUSE_HEADS,
            "buffered_pcm": session.backlog_samples,
        }
        session.send_frames((pack(step),))


def _pcm(value: object) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Audio.pcm as float32 samples: finite numbers, clipped to [-1, 1]."""
    if not isinstance(value, list):
        raise ProtocolError(ErrorCode.BAD_FRAME, "Audio.pcm must be an array of floats")
    try:
        samples = np.array(value, dtype=np.float32)
    except (ValueError, TypeError):
        raise ProtocolError(ErrorCode.BAD_FRAME, "Audio.pcm must be an array of numbers") from None
    if samples.ndim != 1:
        raise ProtocolError(ErrorCode.BAD_FRAME, "Audio.pcm must be a flat array of numbers")
    if not np.isfinite(samples).all():
        raise ProtocolError(ErrorCode.BAD_FRAME, "Audio.pcm holds NaN or infinite values")
    return np.clip(samples, -1.0, 1.0, out=samples)


__all__ = ["CLIENT_TYPES", "PATH", "PAUSE_HEADS", "KyutaiProtocol", "pack", "unpack"]
