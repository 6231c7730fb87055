"""Local agreement: only words two successive hypotheses share are sent, never twice."""

from __future__ import annotations

from stt.engine.interface import WordEvent
from stt.engine.whisper.agreement import LocalAgreement, after_sent, common_prefix, word_key


def hyp(text: str, start: float = 0.0, step: float = 0.5) -> list[WordEvent]:
    return [WordEvent(w, start + i * step, start + (i + 1) * step) for i, w in enumerate(text.split())]


def texts(words: list[WordEvent]) -> list[str]:
    return [w.text for w in words]


def test_word_key_ignores_case_and_punctuation() -> None:
    assert word_key("Vocale,") == word_key("vocale") == "vocale"
    assert word_key("aujourd'hui.") == "aujourd'hui"


def test_common_prefix_takes_the_newer_spelling() -> None:
    assert texts(common_prefix(hyp("la reconnaissance."), hyp("La reconnaissance vocale"))) == [
        "La",
        "reconnaissance",
    ]
    assert common_prefix(hyp("a b"), hyp("c b")) == []


def test_a_word_is_sent_once_two_hypotheses_agree() -> None:
    agreement = LocalAgreement()
    assert agreement.update(hyp("the quick")) == []
    assert texts(agreement.update(hyp("the quick brow"))) == ["the", "quick"]
    assert texts(agreement.update(hyp("the quick brown fox"))) == []  # "brow" != "brown"
    assert texts(agreement.update(hyp("the quick brown fox jumps"))) == ["brown", "fox"]
    assert texts(agreement.finish(hyp("the quick brown fox jumps over"))) == ["jumps", "over"]
    assert texts(agreement.sent) == ["the", "quick", "brown", "fox", "jumps", "over"]


def test_finish_after_nothing_agreed_sends_the_whole_hypothesis() -> None:
    agreement = LocalAgreement()
    agreement.update(hyp("hello"))
    assert texts(agreement.finish(hyp("hello world"))) == ["hello", "world"]


def test_a_changed_mind_about_sent_words_sends_nothing_twice() -> None:
    sent = hyp("the quick brown")  # ends at 1.5 s
    revised = hyp("a quick brown fox jumps")  # first word changed; times still line up
    assert texts(after_sent(sent, revised)) == ["fox", "jumps"]


def test_sent_times_never_go_backwards() -> None:
    sent = [WordEvent("one", 0.0, 1.0)]
    late = [WordEvent("uno", 0.0, 0.9), WordEvent("two", 0.9, 1.4)]
    out = after_sent(sent, late)
    assert texts(out) == ["two"] and out[0].start_s >= 1.0 and out[0].end_s >= out[0].start_s
