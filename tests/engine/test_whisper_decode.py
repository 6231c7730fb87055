"""Whisper's aligned words made stream words; the hallucination rules."""

from __future__ import annotations

from stt.engine.protocol import WordEvent
from stt.engine.whisper_decode import Decoded, RawWord, stream_words


def test_punctuation_and_elisions_are_glued_to_the_word_before() -> None:
    raw = [
        RawWord(" Le", 0.0, 0.2),
        RawWord(" d", 0.2, 0.3),
        RawWord("'or", 0.3, 0.6),
        RawWord(" ?", 0.6, 0.7),
        RawWord(" beyond", 2.5, 2.9),
    ]
    assert stream_words(raw, offset_s=10.0, duration_s=2.0) == [
        WordEvent("Le", 10.0, 10.2),
        WordEvent("d'or?", 10.2, 10.7),
    ]


def test_whispers_hallucination_rules() -> None:
    def decoded(no_speech: float, logprob: float, ratio: float) -> Decoded:
        return Decoded([RawWord(" Merci.", 0.0, 0.5)], "fr", True, no_speech, logprob, ratio)

    assert not decoded(0.1, -0.3, 1.2).hallucinated
    assert decoded(0.9, -1.5, 1.2).hallucinated  # probably silence, decoded without confidence
    assert not decoded(0.9, -0.3, 1.2).hallucinated  # confident speech despite the no-speech token
    assert decoded(0.1, -0.3, 3.0).hallucinated  # a repetition loop
