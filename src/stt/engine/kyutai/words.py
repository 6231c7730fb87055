"""One stream's text tokens -> words with times, and pause-head probabilities -> end of turn.

Pure Python (no torch), one instance per slot, so the word rules are tested on token
sequences alone. The rules follow Kyutai's own batched ASR server (moshi-server's asr.rs):
token 0 marks a word boundary, token 3 is padding, anything else is a piece of the current
word; nothing counts before the model's delay has passed; a word ends at the first boundary
or padding token after its pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stt.constants import FRAME_SECONDS
from stt.engine.interface import EngineEvent, PauseEvent, WordEvent

WORD_BOUNDARY = 0
"""Kyutai text token: a new word starts ("end of padding")."""
PADDING = 3
"""Kyutai text token: nothing new in this frame."""

Detokenize = Callable[[Sequence[int]], str]
"""SentencePiece ids -> text (the checkpoint's tokenizer)."""


@dataclass
class SlotDecoder:
    """Turns the tokens of one stream, one per model step, into events.

    `delay_frames` is the model's text delay and `prefix_frames` the lead-in of silence fed
    before the stream's audio (no token counts before both have passed). Times are seconds
    of the frames this slot was given, lead-in included: the planner takes the lead-in off.
    """

    detokenize: Detokenize
    delay_frames: int
    prefix_frames: int = 0
    pause_threshold: float = 0.0
    """Report a pause when the probability reaches this (0: never)."""
    steps: int = 0
    """Model steps this stream has taken (lead-in included)."""
    _pieces: list[int] = field(default_factory=list)
    _word_start: float = 0.0
    _last_boundary: float = 0.0
    _pause_armed: bool = False
    """A pause is reported at most once after each word."""

    def _time(self, step: int) -> float:
        return max(0.0, (step - self.delay_frames) * FRAME_SECONDS)

    def push(self, token: int, pause_probability: float | None = None) -> list[EngineEvent]:
        """The model's token (and pause probability) of this stream's next step."""
        self.steps += 1
        events: list[EngineEvent] = []
        if token < 0 or self.steps < self.delay_frames + self.prefix_frames:
            return events  # not generated (masked row) or still inside the model's delay
        now = self._time(self.steps)
        if token in (WORD_BOUNDARY, PADDING):
            events.extend(self._end_word(now))
            if token == WORD_BOUNDARY:
                self._last_boundary = now
        else:
            if not self._pieces:
                self._word_start = self._last_boundary
            self._pieces.append(token)
        if (
            pause_probability is not None
            and self.pause_threshold > 0
            and self._pause_armed
            and not self._pieces
            and pause_probability >= self.pause_threshold
        ):
            self._pause_armed = False
            events.append(PauseEvent(self.steps * FRAME_SECONDS, pause_probability))
        return events

    def flush(self) -> list[EngineEvent]:
        """Emit the word in progress (end of stream or Finalize)."""
        return list(self._end_word(self._time(self.steps)))

    def _end_word(self, end: float) -> list[WordEvent]:
        if not self._pieces:
            return []
        text = self.detokenize(self._pieces)
        self._pieces = []
        words = text.split()
        if not words:
            return []
        self._pause_armed = True
        start = min(self._word_start, end)
        # Rarely, several words arrive without a boundary between them: share the span.
        span = (end - start) / len(words)
        return [WordEvent(w, start + i * span, start + (i + 1) * span) for i, w in enumerate(words)]
