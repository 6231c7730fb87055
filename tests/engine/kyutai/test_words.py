"""Kyutai token rules on plain token sequences: words, the time convention, special ids,
the LM's text lag, flush and pauses (docs/protocol.md, "Word times")."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stt.engine.interface import EngineEvent, PauseEvent, WordEvent
from stt.engine.kyutai.words import KYUTAI_IDS, SlotDecoder, TextIds

IDS = KYUTAI_IDS
B, P, EOS = IDS.boundary, IDS.padding, 2
VOCAB = {10: "▁hel", 11: "lo", 12: "▁world", 13: "▁two▁words"}
PIECES = {"hello": 2, "world": 1, "two": 1, "words": 1}


class Tok:
    def decode(self, ids: Sequence[int]) -> str:
        return "".join(VOCAB[i] for i in ids).replace("▁", " ").strip()

    def count(self, word: str) -> int:
        return PIECES[word]


def decoder(delay_s: float, **kwargs: object) -> SlotDecoder:
    return SlotDecoder(Tok(), kwargs.pop("ids", IDS), delay_s, **kwargs)  # type: ignore[arg-type]


def feed(d: SlotDecoder, tokens: Sequence[int], pauses: Sequence[float] | None = None) -> list[EngineEvent]:
    events: list[EngineEvent] = []
    for i, token in enumerate(tokens):
        events += d.push(token, None if pauses is None else pauses[i])
    return events


def test_a_token_is_stamped_at_its_position_minus_the_unrounded_delay() -> None:
    """Step s (from 1) carries position s: stamp s * 0.08 - delay_s. A word starts at its
    first piece and ends at the first token after its last piece."""
    d = decoder(0.1)
    events = feed(d, [P, B, 10, 11, P, P, B, 12, B])
    assert events == [
        WordEvent("hello", pytest.approx(3 * 0.08 - 0.1), pytest.approx(5 * 0.08 - 0.1)),
        WordEvent("world", pytest.approx(8 * 0.08 - 0.1), pytest.approx(9 * 0.08 - 0.1)),
    ]


def test_nothing_counts_before_the_delay_minus_one_frame() -> None:
    """As Kyutai's server: with a 0.32 s delay (4 frames) text counts from position 3."""
    d = decoder(0.32)
    assert feed(d, [10, 11, P]) == []  # positions 1-3: position 3 counts, but it is padding
    assert [e.text for e in feed(d, [B, 12, P]) if isinstance(e, WordEvent)] == ["world"]


def test_special_ids_come_from_the_model_not_from_constants() -> None:
    """A checkpoint whose boundary and padding ids are not 0 and 3."""
    ids = TextIds(boundary=20, padding=21, vocab_size=30, control=frozenset({1, 2}))
    d = decoder(0.0, ids=ids)
    events = feed(d, [20, 12, 21, 21, 20, 12, 20])
    assert [w.text for w in events if isinstance(w, WordEvent)] == ["world", "world"]
    assert ids.is_piece(0) and ids.is_piece(3) and not ids.is_piece(21) and not ids.is_piece(30)


def test_bos_and_eos_are_not_word_pieces() -> None:
    d = decoder(0.0)
    events = feed(d, [B, 12, EOS, 1, 1, B, 10, 11, P])
    assert events == [
        WordEvent("world", pytest.approx(0.16), pytest.approx(0.24)),
        WordEvent("hello", pytest.approx(0.56), pytest.approx(0.72)),
    ]


def test_the_lms_text_lag_is_taken_off() -> None:
    """With non-zero `delays`, LMGen returns ungenerated ids first and every token late."""
    plain = feed(decoder(0.0), [P, B, 12, P, B, 10, 11])
    lagged = decoder(0.0, lag_frames=2)
    late = feed(lagged, [-2, -2, P, B, 12, P, B, 10, 11])
    assert late == plain and late
    assert lagged.flush() == [WordEvent("hello", pytest.approx(0.48), pytest.approx(0.64))]


def test_flush_emits_the_word_in_progress_once() -> None:
    d = decoder(0.08)
    assert feed(d, [P, B, 10, 11]) == []
    assert d.pending
    assert d.flush() == [WordEvent("hello", pytest.approx(0.16), pytest.approx(0.32))]
    assert d.flush() == [] and not d.pending


def test_run_together_words_split_by_token_count() -> None:
    """No boundary between "hello" (2 pieces) and "world" (1): hello takes two positions."""
    d = decoder(0.0)
    words = feed(d, [B, 10, 11, 12, P])
    assert words == [
        WordEvent("hello", pytest.approx(0.16), pytest.approx(0.32)),
        WordEvent("world", pytest.approx(0.32), pytest.approx(0.40)),
    ]
    one_token = feed(d, [B, 13, P])
    assert [(w.text, w.start_s, w.end_s) for w in one_token if isinstance(w, WordEvent)] == [
        ("two", pytest.approx(0.56), pytest.approx(0.56)),
        ("words", pytest.approx(0.56), pytest.approx(0.64)),
    ]


def test_nothing_counts_inside_the_lead_in_and_times_include_it() -> None:
    """The lead-in is the slot's own frames (the planner takes it off the client's clock)."""
    d = decoder(0.08, prefix_frames=2)
    assert d.first_position == 2
    events = feed(d, [10, P, P, B, 12, P])
    assert events == [WordEvent("world", pytest.approx(0.32), pytest.approx(0.40))]


def test_a_pause_is_reported_once_after_a_word_at_delay_corrected_time() -> None:
    d = decoder(0.16, pause_threshold=0.5)
    before_any_word = feed(d, [P, P], [0.9, 0.9])
    assert before_any_word == []
    events = feed(d, [B, 12, P, P, P, P], [0.1, 0.9, 0.2, 0.7, 0.9, 0.9])
    pauses = [e for e in events if isinstance(e, PauseEvent)]
    assert pauses == [PauseEvent(pytest.approx(6 * 0.08 - 0.16), 0.7)]
    again = feed(d, [B, 12, P, P], [0.1, 0.1, 0.1, 0.6])
    assert [type(e) for e in again] == [WordEvent, PauseEvent]


def test_pauses_are_off_at_threshold_zero() -> None:
    d = decoder(0.0, pause_threshold=0.0)
    assert [type(e) for e in feed(d, [B, 12, P, P], [1.0] * 4)] == [WordEvent]
