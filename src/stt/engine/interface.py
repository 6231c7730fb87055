"""The sealed engine boundary: what every engine is given and must return.

Everything outside `stt.engine` (the planner, sessions, the server, tools) depends on this
module and nothing else of an engine. An engine owns a fixed table of `max_batch` slots,
each holding one stream's state; `Engine.step` advances a set of slots by exactly one
80 ms frame each. This mirrors Kyutai's batched server: streams join and leave a running
batch between steps, a slot's state is reset when a new stream takes it, and idle slots do
not advance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from stt.constants import FRAME_SAMPLES, FRAME_SECONDS


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Per-stream options, fixed before the stream's first frame (Configure message)."""

    language: str | None = None
    """ISO 639-1 hint ("en", "fr"); None lets the engine decide."""


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What the scheduler and clients need to know about an engine."""

    name: str
    max_batch: int
    """Number of slots: the most streams one step can advance."""
    delay_frames: int
    """Frames between audio entering the engine and the text it produces."""
    flush_frames: int
    """Frames of silence to feed after a stream's last audio so every word comes out."""
    languages: tuple[str, ...] = ()
    """Language hints the engine understands; empty means it ignores hints."""
    pause_events: bool = False
    """Whether the engine emits PauseEvent (end-of-turn prediction)."""

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.delay_frames < 0 or self.flush_frames < 0:
            raise ValueError("delay_frames and flush_frames must be >= 0")

    @property
    def delay_s(self) -> float:
        return self.delay_frames * FRAME_SECONDS


@dataclass(frozen=True, slots=True)
class WordEvent:
    """One recognised word with its time span, in seconds of the stream's audio."""

    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class PauseEvent:
    """The speaker has probably finished a turn (end-of-turn prediction, a "semantic VAD").

    Voice agents use it to answer without waiting for a fixed silence timeout.
    """

    time_s: float
    """Stream time at which the pause was predicted."""
    probability: float
    """The engine's confidence in [0, 1]."""


EngineEvent = WordEvent | PauseEvent
"""Everything an engine can report for a stream."""


@dataclass(frozen=True)
class StepInput:
    """One batched step: row i advances slot `slots[i]` by frame `frames[i]`.

    Rows are compact (only the slots that have a frame this step), so an engine scatters
    them into its own slot table and treats every other slot as paused.
    """

    slots: npt.NDArray[np.int64]
    """(n,) distinct slot indices in [0, max_batch)."""
    frames: npt.NDArray[np.float32]
    """(n, FRAME_SAMPLES) float32 audio in [-1, 1]."""
    reset: npt.NDArray[np.bool_]
    """(n,) True where a new stream starts in this slot: clear its state before the frame."""
    flush: npt.NDArray[np.bool_]
    """(n,) True where, after this frame, every pending word of the slot must be emitted."""
    options: Sequence[StreamOptions | None] = field(default=())
    """Per row: the stream's options where `reset` is True, else None."""

    def __post_init__(self) -> None:
        n = self.slots.shape[0]
        if self.frames.shape != (n, FRAME_SAMPLES):
            raise ValueError(f"frames must be ({n}, {FRAME_SAMPLES}), got {self.frames.shape}")
        if self.reset.shape != (n,) or self.flush.shape != (n,):
            raise ValueError("reset and flush must have one entry per row")
        if len(self.options) not in (0, n):
            raise ValueError("options must have one entry per row")

    def __len__(self) -> int:
        return int(self.slots.shape[0])

    def row_options(self, row: int) -> StreamOptions:
        """The options of a row's stream (defaults when none were given)."""
        opts = self.options[row] if self.options else None
        return opts if opts is not None else StreamOptions()


@dataclass(frozen=True)
class StepOutput:
    """Events per input row, in the same order as `StepInput.slots`."""

    events: Sequence[Sequence[EngineEvent]]


@runtime_checkable
class Engine(Protocol):
    """A batched streaming recogniser. All methods run on the scheduler's engine thread.

    Engines subclass `stt.engine.base.BaseEngine`, which implements `warmup` and the offline
    `transcribe_batch` once, on top of `step`.
    """

    @property
    def info(self) -> EngineInfo:
        """Static facts; read once when the scheduler starts."""
        ...

    def step(self, batch: StepInput) -> StepOutput:
        """Advance each row's slot by one frame and return each row's new events.

        Called only from the engine thread, never concurrently. Slots not in `batch` must
        not change. Must not block on the event loop.
        """
        ...

    def warmup(self) -> None:
        """Run a full-batch step so the first real stream pays no compile or allocation cost."""
        ...

    def transcribe_batch(self, audio: Sequence[npt.NDArray[np.float32]]) -> list[str]:
        """Offline: transcribe whole 24 kHz mono clips through the streaming path."""
        ...

    def close(self) -> None:
        """Release resources (GPU memory, threads). Called once at shutdown."""
        ...
