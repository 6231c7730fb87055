"""Cue cutting and the five response formats, from word times alone."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stt.engine.interface import WordEvent
from stt.transcript_format import (
    Cue,
    CueRules,
    compression_ratio,
    cut_cues,
    delta_event,
    done_event,
    render,
    sse,
    timestamp,
    to_srt,
    to_vtt,
)


def spoken(text: str, *, start: float = 0.0, word_s: float = 0.3, gap_s: float = 0.1) -> list[WordEvent]:
    """Words of `text` said one after another, evenly."""
    words, t = [], start
    for token in text.split():
        words.append(WordEvent(token, t, t + word_s))
        t += word_s + gap_s
    return words


def test_a_pause_ends_a_cue() -> None:
    words = spoken("one two") + spoken("three four", start=2.0)
    cues = cut_cues(words)
    assert [c.text for c in cues] == ["one two", "three four"]
    assert cues[1].start_s == 2.0 and cues[1].end_s == pytest.approx(2.7)


def test_no_cue_is_longer_than_two_lines_or_six_seconds() -> None:
    words = spoken(" ".join(f"word{i:02d}" for i in range(60)))
    rules = CueRules()
    cues = cut_cues(words, rules)
    assert len(cues) > 1
    assert [w for c in cues for w in c.words] == words  # nothing lost, nothing reordered
    for cue in cues:
        assert len(cue.text) <= rules.max_chars
        assert cue.end_s - cue.start_s <= rules.max_duration_s
        assert all(len(line) <= rules.line_chars for line in cue.lines(rules.line_chars))


def test_slow_words_end_a_cue_on_duration() -> None:
    words = spoken("a b c d e f g h", word_s=1.0, gap_s=0.2)
    cues = cut_cues(words, CueRules(max_duration_s=3.5))
    assert [c.text for c in cues] == ["a b c", "d e f", "g h"]


def test_a_sentence_end_cuts_once_the_cue_is_long_enough() -> None:
    words = spoken("Yes. I see. Then we go now.", word_s=0.5)
    # "Yes." alone is too short to stand (0.5 s < 1.5 s); "Yes. I see." lasts 1.7 s: cut after it.
    assert [c.text for c in cut_cues(words)] == ["Yes. I see.", "Then we go now."]


def test_long_cues_split_into_two_balanced_lines() -> None:
    cue = Cue(tuple(spoken("the quick brown fox jumps over the lazy dog again and again")))
    first, second = cue.lines(42)
    assert f"{first} {second}" == cue.text
    assert abs(len(first) - len(second)) <= 6
    assert Cue(tuple(spoken("short one"))).lines(42) == ["short one"]


@given(
    st.lists(
        st.tuples(st.text("abcxyz.?", min_size=1, max_size=15), st.floats(0, 3), st.floats(0, 2)),
        max_size=80,
    )
)
def test_cutting_keeps_every_word_in_order_within_the_limits(specs: list[tuple[str, float, float]]) -> None:
    words, t = [], 0.0
    for text, gap, length in specs:
        words.append(WordEvent(text, t + gap, t + gap + length))
        t += gap + length
    rules = CueRules()
    cues = cut_cues(words, rules)
    assert [w for c in cues for w in c.words] == words
    for cue in cues:
        if len(cue.words) > 1:  # a single word is never split, whatever its length
            assert len(cue.text) <= rules.max_chars
            assert cue.end_s - cue.start_s <= rules.max_duration_s
            gaps = [b.start_s - a.end_s for a, b in zip(cue.words, cue.words[1:], strict=False)]
            assert max(gaps) < rules.pause_s


def test_timestamps() -> None:
    assert timestamp(0, ",") == "00:00:00,000"
    assert timestamp(3723.4567, ",") == "01:02:03,457"
    assert timestamp(59.9996, ".") == "00:01:00.000"


def test_srt_and_vtt_files() -> None:
    cues = cut_cues(spoken("hello world") + spoken("a <b> & c", start=3.0))
    assert to_srt(cues) == (
        "1\n00:00:00,000 --> 00:00:00,700\nhello world\n\n2\n00:00:03,000 --> 00:00:04,500\na <b> & c\n\n"
    )
    assert to_vtt(cues) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:00.700\nhello world\n\n"
        "00:00:03.000 --> 00:00:04.500\na &lt;b&gt; &amp; c\n\n"
    )
    assert to_srt([]) == "" and to_vtt([]) == "WEBVTT\n\n"


def test_every_format() -> None:
    words = spoken("hello there") + spoken("general", start=2.0)
    kwargs: dict[str, Any] = {"duration_s": 3.0, "language": "en"}
    plain = render("json", words, **kwargs)
    assert plain.media_type == "application/json"
    assert json.loads(plain.body) == {
        "text": "hello there general",
        "usage": {"type": "duration", "seconds": 3.0},
    }
    assert render("text", words, **kwargs).body == b"hello there general\n"
    assert (
        render("srt", words, **kwargs)
        .body.decode()
        .startswith("1\n00:00:00,000 --> 00:00:00,700\nhello there\n")
    )
    assert render("vtt", words, **kwargs).media_type.startswith("text/vtt")
    verbose = json.loads(render("verbose_json", words, **kwargs).body)
    assert (
        verbose["text"] == "hello there general"
        and verbose["duration"] == 3.0
        and verbose["language"] == "en"
    )
    assert [(s["id"], s["text"], s["start"], s["end"]) for s in verbose["segments"]] == [
        (0, "hello there", 0.0, 0.7),
        (1, "general", 2.0, 2.3),
    ]
    assert "words" not in verbose
    with_words = json.loads(render("verbose_json", words, granularities=["word", "segment"], **kwargs).body)
    assert with_words["words"][2] == {"word": "general", "start": 2.0, "end": 2.3}
    with pytest.raises(ValueError, match="response_format"):
        render("xml", words, **kwargs)


def test_compression_ratio_flags_repetition() -> None:
    assert compression_ratio("") == 0.0
    assert compression_ratio("the " * 50) > 2.4 > compression_ratio("a short honest sentence")


def test_stream_events_concatenate_to_the_text() -> None:
    words = spoken("one two three")
    deltas = [delta_event(w, first=i == 0)["delta"] for i, w in enumerate(words)]
    assert "".join(deltas) == done_event(words)["text"] == "one two three"
    assert sse(done_event(words)) == b'data: {"type":"transcript.text.done","text":"one two three"}\n\n'
