"""Kyutai token rules on plain token sequences: words, times, delay, flush, pauses."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stt.engine.interface import EngineEvent, PauseEvent, WordEvent
from stt.engine.kyutai.words import PADDING, WORD_BOUNDARY, SlotDecoder

B, P = WORD_BOUNDARY, PADDING
VOCAB = {10: "▁hel", 11: "lo", 12: "▁world", 13: "▁two▁words"}


def detok(ids: Sequence[int]) -> str:
    return "".join(VOCAB[i] for i in ids).replace("▁", " ").strip()


def feed(
    decoder: SlotDecoder, tokens: Sequence[int], pauses: Sequence[float] | None = None
) -> list[EngineEvent]:
    events: list[EngineEvent] = []
    for i, token in enumerate(tokens):
        events += decoder.push(token, None if pauses is None else pauses[i])
    return events


def test_pieces_between_boundaries_make_words_with_times() -> None:
    decoder = SlotDecoder(detok, delay_frames=2)
    events = feed(decoder, [P, P, B, 10, 11, P, P, B, 12, B])
    # step 3 is the first boundary: (3 - 2) * 80 ms; "hello" ends at the padding of step 6.
    assert events == [
        WordEvent("hello", 0.08, pytest.approx(0.32)),
        WordEvent("world", pytest.approx(0.48), pytest.approx(0.64)),
    ]


def test_nothing_counts_inside_the_delay() -> None:
    decoder = SlotDecoder(detok, delay_frames=3)
    assert feed(decoder, [10, 11, P]) == []
    assert feed(decoder, [B, 12, P])[0].text == "world"


def test_ungenerated_tokens_are_ignored() -> None:
    decoder = SlotDecoder(detok, delay_frames=0)
    assert feed(decoder, [B, 12, -2, -2, P]) == [WordEvent("world", 0.08, pytest.approx(0.4))]


def test_flush_emits_the_word_in_progress() -> None:
    decoder = SlotDecoder(detok, delay_frames=1)
    assert feed(decoder, [P, B, 10, 11]) == []
    assert decoder.flush() == [WordEvent("hello", 0.08, pytest.approx(0.24))]
    assert decoder.flush() == []


def test_words_without_a_boundary_share_the_span() -> None:
    decoder = SlotDecoder(detok, delay_frames=0)
    words = feed(decoder, [B, 13, 13, P])
    assert [w.text for w in words if isinstance(w, WordEvent)] == ["two", "words", "two", "words"]
    assert words[0].start_s == 0.08 and words[-1].end_s == pytest.approx(0.32)


def test_lead_in_tokens_do_not_count_and_times_stay_on_the_slot_timeline() -> None:
    """The lead-in's tokens are skipped; its frames stay in the times (the planner, which
    inserted them, takes them off the stream's clock)."""
    decoder = SlotDecoder(detok, delay_frames=1, prefix_frames=2)
    events = feed(decoder, [B, 12, P, B, 12, P])
    assert events == [WordEvent("world", pytest.approx(0.24), pytest.approx(0.40))]


def test_a_pause_is_reported_once_after_a_word() -> None:
    decoder = SlotDecoder(detok, delay_frames=0, pause_threshold=0.5)
    before_any_word = feed(decoder, [P, P], [0.9, 0.9])
    assert before_any_word == []
    events = feed(decoder, [B, 12, P, P, P, P], [0.1, 0.9, 0.2, 0.7, 0.9, 0.9])
    pauses = [e for e in events if isinstance(e, PauseEvent)]
    assert pauses == [PauseEvent(pytest.approx(0.48), 0.7)]
    again = feed(decoder, [B, 12, P, P], [0.1, 0.1, 0.1, 0.6])
    assert [type(e) for e in again] == [WordEvent, PauseEvent]


def test_pauses_are_off_at_threshold_zero() -> None:
    decoder = SlotDecoder(detok, delay_frames=0, pause_threshold=0.0)
    assert [type(e) for e in feed(decoder, [B, 12, P, P], [1.0] * 4)] == [WordEvent]
