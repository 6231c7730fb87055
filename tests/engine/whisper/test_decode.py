"""Whisper's aligned words made stream words; the hallucination rules; the encoder's padding."""

from __future__ import annotations

from stt.engine.interface import WordEvent
from stt.engine.whisper.decode import Decoded, RawWord, encoded_frames, stream_words


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


def test_digit_groups_stay_words_so_a_partial_phone_number_is_not_lost() -> None:
    """Regression: "415" "555" sent from partials, then the final decode glued
    "415-5555-2671" into one word that no longer matched them and "2671" was never sent."""
    from stt.engine.whisper.agreement import LocalAgreement

    raw = [RawWord(" is", 1.0, 1.2), RawWord(" 415", 1.2, 1.9), RawWord("-5555", 1.9, 3.5)]
    raw += [RawWord("-2671", 3.5, 5.0), RawWord(" Rendez", 5.0, 5.3), RawWord("-vous", 5.3, 5.6)]
    words = stream_words(raw, offset_s=0.0, duration_s=6.0)
    assert [w.text for w in words] == ["is", "415", "5555", "2671", "Rendez-vous"]
    sent = [WordEvent("is", 1.0, 1.2), WordEvent("415", 1.2, 1.9), WordEvent("555", 1.9, 3.6)]
    assert [w.text for w in LocalAgreement(sent).finish(words)] == ["2671", "Rendez-vous"]


def test_whispers_hallucination_rules() -> None:
    def decoded(no_speech: float, logprob: float, ratio: float) -> Decoded:
        return Decoded([RawWord(" Merci.", 0.0, 0.5)], "fr", True, no_speech, logprob, ratio)

    assert not decoded(0.1, -0.3, 1.2).hallucinated
    assert decoded(0.9, -1.5, 1.2).hallucinated  # probably silence, decoded without confidence
    assert not decoded(0.9, -0.3, 1.2).hallucinated  # confident speech despite the no-speech token
    assert decoded(0.1, -0.3, 3.0).hallucinated  # a repetition loop


def test_a_window_is_padded_with_pad_frames_of_silence_up_to_the_context() -> None:
    assert encoded_frames(400, context=2000, pad=500) == 900  # a 4 s window: 9 s encoded
    assert encoded_frames(401, context=2000, pad=500) == 900  # even: the encoder halves it
    assert encoded_frames(1600, context=2000, pad=500) == 2000  # never past the context
    assert encoded_frames(400, context=2000, pad=0) == 2000  # no pad: always the context
    assert encoded_frames(0, context=2000, pad=500) == 500
