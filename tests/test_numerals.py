"""Numerals as digits or words (Configure.numerals), in English and French, with their times."""

from __future__ import annotations

import itertools

import pytest

from stt.engine.interface import WordEvent
from stt.numerals import Numerals, NumeralsFilter, retime


def spoken(text: str, step: float = 0.5) -> list[WordEvent]:
    return [WordEvent(w, i * step, i * step + 0.4) for i, w in enumerate(text.split())]


def rewrite(text: str, mode: str, language: str | None = None) -> list[WordEvent]:
    """Push the words one at a time, as a stream sends them, then flush."""
    numerals = NumeralsFilter(Numerals(mode), language)
    out = [w for word in spoken(text) for w in numerals.push([word])]
    return out + numerals.flush()


def text(words: list[WordEvent]) -> str:
    return " ".join(w.text for w in words)


@pytest.mark.parametrize(
    ("said", "language", "written"),
    [
        ("I have twenty five apples.", "en", "I have 25 apples."),
        ("One hundred and five people came.", "en", "105 people came."),
        ("Call four one five now.", None, "Call 4 1 5 now."),
        ("It was the twelfth of March.", "en", "It was the 12th of March."),
        ("Il a vingt et un ans.", "fr", "Il a 21 ans."),
        ("Rendez-vous à neuf heures, quatre-vingt-dix-neuf fois.", None, "Rendez-vous à 9 heures, 99 fois."),
        ("trois virgule cinq kilos", "fr", "3,5 kilos"),
        ("cinquante pour cent des gens", "fr", "50 pour cent des gens"),
    ],
)
def test_spelled_numbers_become_digits(said: str, language: str | None, written: str) -> None:
    assert text(rewrite(said, "digits", language)) == written


@pytest.mark.parametrize(
    ("said", "language"),
    [
        ("one of them and the first time", "en"),  # isolated small numbers stay words
        ("un chat et une souris", "fr"),
        ("nothing to see here", None),
    ],
)
def test_words_that_are_not_numbers_are_left_alone(said: str, language: str | None) -> None:
    assert text(rewrite(said, "digits", language)) == said


@pytest.mark.parametrize(
    ("said", "language", "written"),
    [
        ("I have 25 apples.", "en", "I have twenty-five apples."),
        ("It costs 1,250 dollars.", "en", "It costs one thousand two hundred and fifty dollars."),
        ("Done. 12 came, 12th place, 50%.", "en", "Done. Twelve came, twelfth place, fifty percent."),
        ("Il a 21 ans et 3,5 kilos.", "fr", "Il a vingt et un ans et trois virgule cinq kilos."),
        ("le 1er mai à 12 h", None, "le premier mai à douze h"),  # French from its common words
        ("code 007", "en", "code zero zero seven"),
        ("COVID-19 à 9h30", "fr", "COVID-19 à 9h30"),  # not plain numbers: left as written
    ],
)
def test_digits_become_words(said: str, language: str | None, written: str) -> None:
    assert text(rewrite(said, "words", language)) == written


def test_several_words_written_as_one_number_take_their_whole_span() -> None:
    out = rewrite("I have twenty five apples", "digits", "en")
    assert [(w.text, w.start_s, w.end_s) for w in out][2] == ("25", 1.0, 1.9)  # "twenty" .. "five"


def test_one_number_spoken_as_several_words_shares_its_span_in_order() -> None:
    out = rewrite("it was 125 here", "words", "en")
    number = out[2:-1]
    assert text(number) == "one hundred and twenty-five"
    assert number[0].start_s == 1.0 and number[-1].end_s == 1.4
    assert all(a.end_s == pytest.approx(b.start_s) for a, b in itertools.pairwise(number))
    assert all(w.start_s < w.end_s for w in number)
    assert len(number[-1].text) > len(number[0].text) and number[-1].end_s - number[-1].start_s > (
        number[0].end_s - number[0].start_s
    )  # longer words get more of the span


def test_a_number_that_may_go_on_waits_for_the_next_word_or_a_flush() -> None:
    numerals = NumeralsFilter(Numerals.DIGITS, "en")
    words = spoken("I have twenty five")
    assert text(numerals.push(words[:2])) == "I have"
    assert numerals.push(words[2:3]) == []  # "twenty" ... might be "twenty five"
    assert numerals.push(words[3:]) == []
    assert text(numerals.flush()) == "25"  # Finalize, a Pause or the end of the stream
    assert numerals.flush() == []


def test_a_sentence_mark_ends_a_number_without_waiting() -> None:
    numerals = NumeralsFilter(Numerals.DIGITS, "fr")
    assert text(numerals.push(spoken("Il en a douze."))) == "Il en a 12."


def test_a_connector_after_a_number_is_not_part_of_it() -> None:
    numerals = NumeralsFilter(Numerals.DIGITS, "en")
    assert text(numerals.push(spoken("twenty and"))) == ""
    assert text(numerals.push([WordEvent("cats", 2.0, 2.4)])) == "20 and cats"


def test_words_mode_holds_nothing_back_and_keeps_other_capitals() -> None:
    numerals = NumeralsFilter(Numerals.WORDS, "en")
    assert text(numerals.push(spoken("the BBC said 3"))) == "the BBC said three"
    assert numerals.flush() == []


def test_retime_keeps_unchanged_words_and_their_times() -> None:
    words = spoken("a twenty five b")
    out = retime(words, ["a", "25", "b"])
    assert out[0] == words[0] and out[2] == words[3]
    assert (out[1].start_s, out[1].end_s) == (words[1].start_s, words[2].end_s)
