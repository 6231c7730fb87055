"""Shared engine behaviour written once on top of `step`: warmup and offline transcription."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from stt.constants import FRAME_SAMPLES
from stt.engine.interface import EngineInfo, StepInput, StepOutput, StreamOptions, WordEvent
from stt.planner import run_offline


class BaseEngine(ABC):
    """Subclasses implement `info` and `step`; everything else comes from here."""

    @property
    @abstractmethod
    def info(self) -> EngineInfo: ...

    @abstractmethod
    def step(self, batch: StepInput) -> StepOutput: ...

    def warmup(self) -> None:
        """Two full-batch steps of silence: the first resets every slot, the second is the
        steady-state shape. Slots are reset again when real streams take them."""
        n = self.info.max_batch
        slots = np.arange(n, dtype=np.int64)
        frames = np.zeros((n, FRAME_SAMPLES), dtype=np.float32)
        no = np.zeros(n, dtype=np.bool_)
        self.step(StepInput(slots, frames, np.ones(n, dtype=np.bool_), no, [StreamOptions()] * n))
        self.step(StepInput(slots, frames, no, no))

    def transcribe_words(
        self, audio: Sequence[npt.NDArray[np.float32]], options: StreamOptions | None = None
    ) -> list[list[WordEvent]]:
        """Offline: words with times for each 24 kHz mono clip, via the streaming path."""
        return run_offline(self, audio, options)

    def transcribe_batch(
        self, audio: Sequence[npt.NDArray[np.float32]], options: StreamOptions | None = None
    ) -> list[str]:
        """Offline: one transcript per 24 kHz mono clip."""
        return [" ".join(w.text for w in words) for words in self.transcribe_words(audio, options)]

    def close(self) -> None:
        """Nothing to release by default."""
