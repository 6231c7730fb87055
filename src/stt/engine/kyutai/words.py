"""One stream's text tokens -> words with times, and pause-head probabilities -> end of turn.

Pure Python (no torch), one instance per slot, so the word rules are tested on token
sequences alone. The rules are Kyutai's: the model's "end of padding" id marks a word
boundary, its padding id means nothing new, any other id of the tokenizer's vocabulary that
is not a control id (bos, eos) is a piece of the current word. The ids are read from the
model and its tokenizer (`TextIds`), never assumed.

Time convention (docs/protocol.md, "Word times"): in training, the text token of position p
is predicted from the audio frames before frame p and is aligned with frame p shifted by
the model's delay, so it is stamped `p * 0.08 - delay_s` seconds (p counts the stream's own
frames from 0; `delay_s` is the checkpoint's `audio_delay_seconds`, not rounded to frames;
the engine counts its lead-in frames too and the planner takes them off). A word starts at
the stamp of its first piece and ends at the stamp of the first token after its last piece:
it is sent as soon as it is complete. Kyutai's PyTorch script stamps one frame earlier (it
feeds the audio one frame ahead of training and loses the first frame) and ends a word at
the next boundary; its Rust server feeds the audio as in training (a pad token first) but
stamps `(step - asr_delay_in_tokens) / 12.5` with the step counted after its token and the
delay in whole frames (6 for stt-1b-en_fr's 6.25, 32 for stt-2.6b-en's 31.25): 100 ms later
for stt-1b-en_fr, 20 ms for stt-2.6b-en; it starts a word at the boundary token before it
and ends it at the next boundary. Words that arrive without a boundary between them split the
span by their token counts, as Kyutai's script does. A pause is stamped like a token of its
step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from stt.constants import FRAME_SECONDS
from stt.engine.interface import EngineEvent, PauseEvent, WordEvent


class Tokenizer(Protocol):
    """The checkpoint's text tokenizer, as far as words need it."""

    def decode(self, ids: Sequence[int]) -> str:
        """Word-piece ids -> text."""
        ...

    def count(self, word: str) -> int:
        """How many pieces the tokenizer makes of one word."""
        ...


@dataclass(frozen=True)
class TextIds:
    """The text ids that are not word pieces, read from the model and its tokenizer."""

    boundary: int
    """The LM's "end of padding" id (`end_of_text_padding_id`; 0 in Kyutai's checkpoints):
    a new word starts."""
    padding: int
    """The LM's text padding id (`text_padding_token_id`; 3): nothing new in this frame."""
    vocab_size: int
    """Ids at or above this are not the tokenizer's (the LM may have more outputs)."""
    control: frozenset[int] = frozenset()
    """The tokenizer's control ids (bos, eos): they end a word but are no piece of one."""

    def is_piece(self, token: int) -> bool:
        return (
            0 <= token < self.vocab_size
            and token not in (self.boundary, self.padding)
            and token not in self.control
        )


KYUTAI_IDS = TextIds(boundary=0, padding=3, vocab_size=8000, control=frozenset({1, 2}))
"""What stt-1b-en_fr's model and tokenizer report (for tests and documentation only)."""


@dataclass
class SlotDecoder:
    """Turns the tokens of one stream, one per model step, into events.

    `lag_frames` is how many steps late the LM returns each text token (the checkpoint's
    `max(delays)` minus the text stream's own delay; 0 for the published checkpoints):
    position p's token comes out at step p + lag_frames (steps counted from 1).
    `prefix_frames` is the lead-in fed before the stream's first audio frame (nothing counts
    before it and the delay have passed). Times are seconds of the frames this slot was
    given, lead-in included: the planner takes the lead-in off, so clients see their own time.
    """

    tokenizer: Tokenizer
    ids: TextIds
    delay_s: float
    lag_frames: int = 0
    prefix_frames: int = 0
    pause_threshold: float = 0.0
    """Report a pause when the probability reaches this (0: never)."""
    steps: int = 0
    """Model steps this stream has taken (lead-in included)."""
    _pieces: list[int] = field(default_factory=list)
    _positions: list[int] = field(default_factory=list)
    """Input position of each piece in `_pieces`."""
    _pause_armed: bool = False
    """A pause is reported at most once after each word."""
    first_position: int = -1
    """Tokens before this input position are ignored: they stand for audio the LM has not
    heard (Kyutai's server counts text from its rounded delay minus one frame on)."""

    def __post_init__(self) -> None:
        if self.first_position < 0:
            self.first_position = self.prefix_frames + self._blind_frames()

    def _blind_frames(self) -> int:
        return max(0, round(self.delay_s / FRAME_SECONDS) - 1)

    def restart(self) -> None:
        """The LM restarted after this step (a context refresh): the clock goes on, and the
        new LM's first frame is its lead-in, so text counts again a delay later."""
        self.first_position = self.steps - self.lag_frames + 1 + self._blind_frames()

    def stamp(self, position: int) -> float:
        """Slot time of the token for input position `position` (lead-in included)."""
        return max(0.0, position * FRAME_SECONDS - self.delay_s)

    def push(self, token: int, pause_probability: float | None = None) -> list[EngineEvent]:
        """The model's token (and pause probability) of this stream's next step."""
        self.steps += 1
        events: list[EngineEvent] = []
        position = self.steps - self.lag_frames
        if token >= 0 and position >= self.first_position:
            if self.ids.is_piece(token):
                self._pieces.append(token)
                self._positions.append(position)
            else:
                events.extend(self._end_word(position))
        if (
            pause_probability is not None
            and self.pause_threshold > 0
            and self._pause_armed
            and not self._pieces
            and pause_probability >= self.pause_threshold
        ):
            self._pause_armed = False
            events.append(PauseEvent(self.stamp(self.steps), pause_probability))
        return events

    def flush(self) -> list[EngineEvent]:
        """Emit the word in progress (end of stream or Finalize)."""
        return list(self._end_word(self.steps - self.lag_frames + 1))

    @property
    def pending(self) -> bool:
        """Whether a word is in progress (pieces not yet emitted)."""
        return bool(self._pieces)

    def _end_word(self, end_position: int) -> list[WordEvent]:
        if not self._pieces:
            return []
        pieces, positions = self._pieces, self._positions
        self._pieces, self._positions = [], []
        words = self.tokenizer.decode(pieces).split()
        if not words:
            return []
        self._pause_armed = True
        # Rarely, several words arrive without a boundary between them: each takes as many
        # positions as it has pieces, the last one the rest (Kyutai's script does the same).
        starts = [positions[0]]
        used = 0
        for word in words[:-1]:
            used = min(used + max(1, self.tokenizer.count(word)), len(positions) - 1)
            starts.append(max(positions[used], starts[-1]))
        ends = [*starts[1:], max(end_position, starts[-1])]
        return [
            WordEvent(word, self.stamp(start), self.stamp(end))
            for word, start, end in zip(words, starts, ends, strict=True)
        ]
