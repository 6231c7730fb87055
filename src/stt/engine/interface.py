"""The sealed engine boundary: what every engine is given and must return.

Everything outside `stt.engine` (the planner, sessions, the server, tools) depends on this
module and nothing else of an engine. An engine owns a fixed table of `max_batch` slots,
each holding one stream's state; `Engine.step` advances a set of slots by exactly one
80 ms frame each. This mirrors Kyutai's batched server: streams join and leave a running
batch between steps, a slot's state is reset when a new stream takes it, and idle slots do
not advance.

No step ever waits for one stream's work. Everything a stream needs beyond its audio is
an ordinary frame of that stream alone, planned like its audio: the engine's lead-in
(`EngineInfo.prefix_frames` of silence before the first audio) and flush padding (silence
after the last audio). A flush is acknowledged, like the Marker that Kyutai's server echoes
after the model's delay, by `FLUSHED` in the slot's events once every word of the audio
before it is out: in the flush row's own step (Kyutai, fake) or in a later one (Whisper,
when the final decode lands). Results that land between a slot's frames come back in the
next step's `StepOutput.late`; an engine with such work outstanding returns a `wake` future
so the scheduler runs the next step (an empty one if no frame waits) as soon as it has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
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
    prefix_frames: int = 0
    """Frames of silence the engine wants before a stream's first audio (its lead-in). The
    planner queues them as the stream's first frames and removes them from its clock, so
    they cost a step row of this stream alone and every time reported is client time."""
    languages: tuple[str, ...] = ()
    """Language hints the engine understands; empty means it ignores hints."""
    pause_events: bool = False
    """Whether the engine emits PauseEvent (end-of-turn prediction)."""

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.delay_frames < 0 or self.flush_frames < 0 or self.prefix_frames < 0:
            raise ValueError("delay_frames, flush_frames and prefix_frames must be >= 0")

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
"""Everything a stream's listener can be told about its audio."""


@dataclass(frozen=True, slots=True)
class FlushAck:
    """In a slot's events: every word of the audio up to the slot's oldest unacknowledged
    flush row came before this. Events after it belong to later audio."""


FLUSHED = FlushAck()
"""The one acknowledgement value engines put in a slot's events."""

SlotEvent = EngineEvent | FlushAck
"""What an engine returns for a slot, in stream order."""


@dataclass(frozen=True)
class StepInput:
    """One batched step: row i advances slot `slots[i]` by frame `frames[i]`.

    Rows are compact (only the slots that have a frame this step), so an engine scatters
    them into its own slot table and treats every other slot as paused. A step may have no
    rows at all: it only collects results that landed since the last one (see `StepOutput`).
    """

    slots: npt.NDArray[np.int64]
    """(n,) distinct slot indices in [0, max_batch)."""
    frames: npt.NDArray[np.float32]
    """(n, FRAME_SAMPLES) float32 audio in [-1, 1]. Valid until `step` returns: the planner
    refills the same array for a later step, so an engine copies what it keeps."""
    reset: npt.NDArray[np.bool_]
    """(n,) True where a new stream starts in this slot: clear its state before the frame."""
    flush: npt.NDArray[np.bool_]
    """(n,) True on a stream's last flush-padding frame: after it, the engine finishes every
    word of the slot's audio so far and then puts `FLUSHED` in the slot's events (this step's
    or a later one's). The engine must not wait for that inside the step."""
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

    @classmethod
    def empty(cls) -> StepInput:
        """A step with no rows: it advances nothing and only collects landed results."""
        none = np.zeros(0, dtype=np.bool_)
        return cls(np.zeros(0, dtype=np.int64), np.zeros((0, FRAME_SAMPLES), dtype=np.float32), none, none)


@dataclass(frozen=True)
class StepOutput:
    """What a step returns: each row's events, results for other slots, and a wake-up."""

    events: Sequence[Sequence[SlotEvent]]
    """Per input row, in the same order as `StepInput.slots`."""
    late: Mapping[int, Sequence[SlotEvent]] = field(default_factory=dict)
    """Per slot that had no row in this step: results that landed since its last step (a
    final decode after a stream's last frame). The planner routes them to the stream the
    slot was last reset for, and drops them when that stream has left."""
    wake: Future[None] | None = None
    """Set when the engine has work outstanding whose results a later step returns: it
    resolves (on any thread) once such a result is ready, and the scheduler then runs the
    next step even if no frame waits. None when nothing is outstanding."""


@runtime_checkable
class Engine(Protocol):
    """A batched streaming recogniser: only what every engine must provide.

    All methods run on the scheduler's engine thread, never concurrently. Warm-up and offline
    transcription are written once on top of these (`stt.engine.base`).
    """

    @property
    def info(self) -> EngineInfo:
        """Static facts; read once, when a planner or scheduler is built for the engine."""
        ...

    def step(self, batch: StepInput) -> StepOutput:
        """Advance each row's slot by one frame; return the new events of every slot.

        Called whenever a frame of any stream waits, or (with no rows) when the last step's
        `wake` resolved. Slots not in `batch` must not advance. Must return promptly: model
        work of one stream that takes longer than a frame (a Whisper decode) runs elsewhere
        and its results come back in a later step, never by waiting here.
        """
        ...

    def close(self) -> None:
        """Release resources (GPU memory, threads). Called once, at shutdown."""
        ...


CAPACITY_SOURCES = ("slots", "measured", "configured")
"""How an engine's capacity was decided: it is its slots (an engine whose cost does not
grow with streams that way, or that cannot measure it), it is what the measured decoder cost
allows, or an explicit `--slots` set it (the measurement is still reported beside it)."""


@dataclass(frozen=True, slots=True)
class Capacity:
    """How many streams the engine takes now, and how that was decided.

    At most `EngineInfo.max_batch`; a stream past it is refused (`over_capacity`) like one past
    the slots, so the streams already running keep their latency.
    """

    streams: int
    source: str
    """One of CAPACITY_SOURCES."""
    measured_streams: int | None = None
    """What the measurement allows (also when `--slots` overrides it); None: not measured."""
    decode_s: float | None = None
    """Measured decoder seconds per stream's decode (a moving average; None: not measured)."""
    budget_s: float | None = None
    """Longest a speaking stream may wait between two decodes: the budget held against."""
    samples: int = 0
    """Measurements behind `decode_s`: the warm-up probe, then every real decode."""

    def __post_init__(self) -> None:
        if self.streams < 1:
            raise ValueError(f"capacity must be >= 1 stream, got {self.streams}")
        if self.source not in CAPACITY_SOURCES:
            raise ValueError(f"capacity source must be one of {CAPACITY_SOURCES}, got {self.source!r}")

    @property
    def decode_s_per_audio_s(self) -> float | None:
        """Decoder time one speaking stream costs per second of its audio, decoded once per
        budget: the decoder sustains 1 / this many streams."""
        if self.decode_s is None or not self.budget_s:
            return None
        return self.decode_s / self.budget_s

    def as_dict(self) -> dict[str, object]:
        """The wire form (`/v1/status`, `Ready.capacity`; docs/protocol.md)."""
        per_audio_s = self.decode_s_per_audio_s
        return {
            "streams": self.streams,
            "source": self.source,
            "measured_streams": self.measured_streams,
            "decode_s": None if self.decode_s is None else round(self.decode_s, 4),
            "decode_s_per_audio_s": None if per_audio_s is None else round(per_audio_s, 4),
            "budget_s": self.budget_s,
            "samples": self.samples,
        }


@runtime_checkable
class CapacityEngine(Protocol):
    """An engine that measures how many streams it sustains (optional; others: their slots)."""

    def capacity(self) -> Capacity:
        """Streams admitted now. Read on the event loop while steps and decodes run, at every
        admission: cheap, from plain values the engine's threads update."""
        ...


def capacity_of(engine: Engine) -> Capacity:
    """The engine's own capacity, or its slots when it does not measure one."""
    if isinstance(engine, CapacityEngine):
        found = engine.capacity()
        return found if found.streams <= engine.info.max_batch else _clamped(found, engine.info.max_batch)
    return Capacity(engine.info.max_batch, "slots")


def _clamped(capacity: Capacity, slots: int) -> Capacity:
    return dataclasses.replace(capacity, streams=slots)


@runtime_checkable
class CountingEngine(Protocol):
    """An engine that also keeps monotonic counts for the server's metrics (optional)."""

    def counters(self) -> Mapping[str, int]:
        """Counts so far by name (`context_refreshes`: the Kyutai engine's LM restarts).
        Read from the server's thread while steps run: plain ints, never reset."""
        ...
