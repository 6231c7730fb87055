"""A deterministic engine for tests and load benchmarks: it decodes the tone code.

Its text depends only on its own slot's audio (see `stt.engine.fake.tones`), with a configurable delay
and step cost, so a test that hears another stream's words, a missing letter or letters out
of order has found a real bug in framing, batching or routing.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from stt.constants import FRAME_SECONDS
from stt.engine.base import BaseEngine
from stt.engine.fake.options import DEFAULT_SLOTS, FakeOptions
from stt.engine.fake.tones import ALPHABET, SILENCE, decode_frames
from stt.engine.interface import (
    FLUSHED,
    EngineEvent,
    EngineInfo,
    PauseEvent,
    SlotEvent,
    StepInput,
    StepOutput,
    StreamOptions,
    WordEvent,
)


@dataclass
class _Slot:
    options: StreamOptions = field(default_factory=StreamOptions)
    frame: int = 0
    """Frames this stream has consumed."""
    word: str = ""
    word_start: int = 0
    silent_since_word: int | None = None
    """Silent frames since the last word ended; None once a pause was reported or speech resumed."""
    pending: deque[tuple[int, EngineEvent]] = field(default_factory=deque)
    """Finished words and pauses, and the frame count at which the delay lets them out."""


class FakeEngine(BaseEngine):
    """Tone-code recogniser with Kyutai-like batching semantics.

    `step_cost_s` is slept once per step and `row_cost_s` once per row, outside the GIL,
    which is how a GPU step looks to the server. With `pause_frames` > 0 it also predicts
    the end of a turn after that many silent frames following a word. `prefix_frames` is the
    lead-in it asks for (silence the planner puts before each stream's audio). A flush row's
    words and its acknowledgement come out in the flush row's own step.
    """

    def __init__(
        self,
        *,
        slots: int = DEFAULT_SLOTS,
        delay_frames: int = FakeOptions.delay_frames,
        step_cost_s: float = FakeOptions.step_ms / 1000,
        row_cost_s: float = 0.0,
        pause_frames: int = FakeOptions.pause_frames,
        prefix_frames: int = 0,
    ) -> None:
        self._info = EngineInfo(
            name="fake",
            max_batch=slots,
            delay_frames=delay_frames,
            flush_frames=delay_frames,
            prefix_frames=prefix_frames,
            languages=("en", "fr"),
            pause_events=pause_frames > 0,
        )
        self._pause_frames = pause_frames
        self._step_cost_s = step_cost_s
        self._row_cost_s = row_cost_s
        self._slots = [_Slot() for _ in range(slots)]
        self.steps = 0
        self.rows = 0

    @property
    def info(self) -> EngineInfo:
        return self._info

    def slot_options(self, slot: int) -> StreamOptions:
        """The options the slot's current stream was started with (for tests)."""
        return self._slots[slot].options

    def step(self, batch: StepInput) -> StepOutput:
        cost = self._step_cost_s + self._row_cost_s * len(batch)
        if cost > 0:
            time.sleep(cost)
        # Python lists, not numpy scalars, in the per-row loop: it holds the GIL, and each
        # numpy scalar access costs more than the row's own bookkeeping.
        symbols = decode_frames(batch.frames).tolist()
        resets = batch.reset.tolist()
        flushes = batch.flush.tolist()
        delay = self._info.delay_frames
        events: list[list[SlotEvent]] = []
        for row, slot in enumerate(batch.slots.tolist()):
            if resets[row]:
                self._slots[slot] = _Slot(options=batch.row_options(row))
            state = self._slots[slot]
            symbol = symbols[row]
            if symbol == SILENCE:
                self._end_word(state, delay)
                self._count_silence(state, delay)
            else:
                if not state.word:
                    state.word_start = state.frame
                state.word += ALPHABET[symbol]
                state.silent_since_word = None
            state.frame += 1
            flush = flushes[row]
            if flush:
                self._end_word(state, delay)
            out: list[SlotEvent] = []
            while state.pending and (flush or state.pending[0][0] <= state.frame):
                out.append(state.pending.popleft()[1])
            if flush:
                out.append(FLUSHED)
            events.append(out)
        self.steps += 1
        self.rows += len(batch)
        return StepOutput(events)

    @staticmethod
    def _end_word(state: _Slot, delay: int) -> None:
        """Close the word in progress; it becomes visible `delay` frames later."""
        if not state.word:
            return
        word = WordEvent(state.word, state.word_start * FRAME_SECONDS, state.frame * FRAME_SECONDS)
        state.pending.append((state.frame + 1 + delay, word))
        state.word = ""
        state.silent_since_word = 0

    def _count_silence(self, state: _Slot, delay: int) -> None:
        """One more silent frame; report a pause once enough follow a word."""
        if self._pause_frames <= 0 or state.silent_since_word is None:
            return
        state.silent_since_word += 1
        if state.silent_since_word >= self._pause_frames:
            pause = PauseEvent((state.frame + 1) * FRAME_SECONDS, 1.0)
            state.pending.append((state.frame + 1 + delay, pause))
            state.silent_since_word = None


def build(options: FakeOptions, *, slots: int | None) -> FakeEngine:
    """The registry's builder. Tests make `FakeEngine` directly, with costs per row too."""
    return FakeEngine(
        slots=slots or DEFAULT_SLOTS,
        delay_frames=options.delay_frames,
        step_cost_s=options.step_ms / 1000,
        pause_frames=options.pause_frames,
    )
