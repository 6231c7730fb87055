"""benchmarks/long_form.py's checker on made-up transcripts: it finds what it names (a word or
phrase sent twice, a run of words lost, times going back, a lost capital) and nothing else."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from stt.tools.client import Received, StreamResult

REFERENCE = [
    "The quick brown fox jumps over the lazy dog.",
    "We shipped three hundred and twenty packages last week.",
]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return pytest.importorskip("benchmarks.long_form", reason="benchmarks/ is not shipped here")


def report(bench: ModuleType, text: str, *, times: list[float] | None = None) -> Any:
    """The checker's report on `text` sent as words 0.3 s apart (or starting at `times`)."""
    words = text.split()
    starts = times or [0.3 * i for i in range(len(words))]
    result = StreamResult(
        [
            Received({"type": "Word", "text": w, "start_s": s, "end_s": s + 0.25}, s + 1.0)
            for w, s in zip(words, starts, strict=True)
        ]
    )
    segments = [bench.Segment(f"c{i}", 5.0 * i, 5.0 * i + 4.0, t) for i, t in enumerate(REFERENCE)]
    return bench.check(result, segments, 20.0, 0, 1.0)


def test_the_exact_transcript_passes_also_with_digits_for_spoken_numbers(bench: ModuleType) -> None:
    for text in (
        " ".join(REFERENCE),
        "The quick brown fox jumps over the lazy dog. We shipped 320 packages last week.",
    ):
        found = report(bench, text)
        assert found.passed and found.wer == 0.0, (text, found)


def test_a_word_sent_twice_is_doubled(bench: ModuleType) -> None:
    found = report(
        bench, "The quick brown fox jumps over the lazy lazy dog. We shipped 320 packages last week."
    )
    assert len(found.doubled) == 1 and "lazy lazy" in found.doubled[0] and not found.passed


def test_a_phrase_sent_twice_is_doubled(bench: ModuleType) -> None:
    found = report(
        bench, "The quick brown fox jumps over the lazy dog. the lazy dog. We shipped 320 packages last week."
    )
    assert len(found.doubled) == 1 and not found.passed


def test_an_extra_word_that_repeats_nothing_is_an_error_not_a_doubling(bench: ModuleType) -> None:
    found = report(
        bench, "The quick brown fox jumps over the very lazy dog. We shipped 320 packages last week."
    )
    assert found.passed and found.insertions == 1 and found.doubled == []


def test_two_words_missing_in_a_row_are_lost_one_is_an_error(bench: ModuleType) -> None:
    lost = report(bench, "The quick brown fox jumps over the lazy dog. We shipped 320 last week.")
    assert lost.passed and lost.deletions == 1
    lost = report(bench, "The quick brown fox the lazy dog. We shipped 320 packages last week.")
    assert len(lost.lost_runs) == 1 and lost.lost_runs[0].startswith("jumps over") and not lost.passed


def test_times_that_go_back_and_a_lost_capital_fail(bench: ModuleType) -> None:
    text = " ".join(REFERENCE)
    times = [0.3 * i for i in range(len(text.split()))]
    times[5] = 0.5
    assert not report(bench, text, times=times).times_in_order
    lower = report(bench, "The quick brown fox jumps over the lazy dog. we shipped 320 packages last week.")
    assert lower.uncapitalised == ["dog. we"] and not lower.passed
