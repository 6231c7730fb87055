"""What every engine gets for free, written once on top of the interface: warm-up and
offline transcription.

Both are plain functions of an `Engine`, so they work for any engine; `BaseEngine` is the
convenient base class whose methods call them (an engine with more to warm, such as a
decoder that only runs on speech, extends `warmup`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from stt.constants import FRAME_SAMPLES
from stt.engine.interface import Engine, EngineInfo, StepInput, StepOutput, StreamOptions, WordEvent
from stt.planner import run_offline

Clips = Sequence[npt.NDArray[np.float32]]


def silent_steps(engine: Engine) -> None:
    """Two full-batch steps of silence: the first resets every slot, the second is the
    steady-state shape. Slots are reset again when real streams take them."""
    n = engine.info.max_batch
    slots = np.arange(n, dtype=np.int64)
    frames = np.zeros((n, FRAME_SAMPLES), dtype=np.float32)
    no = np.zeros(n, dtype=np.bool_)
    engine.step(StepInput(slots, frames, np.ones(n, dtype=np.bool_), no, [StreamOptions()] * n))
    engine.step(StepInput(slots, frames, no, no))


def warm_up(engine: Engine) -> None:
    """Before the first stream (on the engine thread): pay compile and allocation costs now."""
    if isinstance(engine, BaseEngine):
        engine.warmup()
    else:
        silent_steps(engine)


def transcribe_words(
    engine: Engine, audio: Clips, options: StreamOptions | None = None
) -> list[list[WordEvent]]:
    """Offline: words with times for each 24 kHz mono clip, via the streaming path."""
    return run_offline(engine, audio, options)


def transcribe_texts(engine: Engine, audio: Clips, options: StreamOptions | None = None) -> list[str]:
    """Offline: one transcript (the words joined by spaces) per 24 kHz mono clip."""
    return [" ".join(w.text for w in words) for words in run_offline(engine, audio, options)]


class BaseEngine(ABC):
    """Subclasses implement `info` and `step` (and `close` when they hold resources)."""

    @property
    @abstractmethod
    def info(self) -> EngineInfo: ...

    @abstractmethod
    def step(self, batch: StepInput) -> StepOutput: ...

    def warmup(self) -> None:
        """Silent full-batch steps; extend to warm what silence does not reach."""
        silent_steps(self)

    def transcribe_words(self, audio: Clips, options: StreamOptions | None = None) -> list[list[WordEvent]]:
        return transcribe_words(self, audio, options)

    def transcribe_batch(self, audio: Clips, options: StreamOptions | None = None) -> list[str]:
        return transcribe_texts(self, audio, options)

    def close(self) -> None:
        """Nothing to release by default."""
