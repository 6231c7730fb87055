"""Streaming voice activity detection: Silero VAD (bundled by faster-whisper), one state per stream.

faster-whisper runs Silero over whole files; a live stream needs the same network fed a few
32 ms windows at a time with its recurrent state carried between calls. Each slot owns a
`StreamingVad`; they share one ONNX session (one thread, as faster-whisper configures it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

WINDOW = 512
"""Samples per Silero window at 16 kHz (32 ms)."""
_CONTEXT = 64
"""Samples of the previous window the model sees in front of each window."""


def load_vad_session() -> Any:
    """The ONNX session of faster-whisper's bundled Silero model (imported lazily)."""
    from faster_whisper.vad import get_vad_model

    return get_vad_model().session


class StreamingVad:
    """Speech probabilities of a 16 kHz stream, one per 512-sample window, as audio arrives."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def feed(self, audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Probabilities of the windows completed by `audio` (possibly none)."""
        data = np.concatenate([self._pending, audio])
        n = data.size // WINDOW
        self._pending = data[n * WINDOW :]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        windows = data[: n * WINDOW].reshape(n, WINDOW)
        context = np.concatenate([self._context[None, :], windows[:-1, -_CONTEXT:]])
        self._context = windows[-1, -_CONTEXT:].copy()
        batch = np.concatenate([context, windows], axis=1).astype(np.float32, copy=False)
        probs, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        return np.asarray(probs, dtype=np.float32).reshape(n)
