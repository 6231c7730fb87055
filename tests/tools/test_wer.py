import pytest

from stt.tools.wer import WerStats, corpus_wer, normalize, word_errors


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("The quick, brown fox!", "en", "the quick brown fox"),
        ("We shipped 320 packages", "en", "we shipped three hundred and twenty packages"),
        ("Tuesday, the 12th of March.", "en", "tuesday the twelfth of march"),
        ("My number is 415-555-2671.", "en", "my number is four one five five five five two six seven one"),
        ("My number is 4155552671.", "en", "my number is four one five five five five two six seven one"),
        ("call 415 5552671", "en", "call four one five five five five two six seven one"),
        (
            "4,155,552,671 stars",
            "en",
            "four billion one hundred and fifty five million five hundred and fifty two thousand six hundred"
            " and seventy one stars",
        ),
        ("in 2026 and 320 12", "en", "in two thousand and twenty six and three hundred and twenty twelve"),
        ("pi is 3.14159265", "en", "pi is three point one four one five nine two six five"),
        ("1,000 streams", "en", "one thousand streams"),
        ("50% off", "en", "fifty percent off"),
        ("It's O\u2019Brien's", "en", "it's o'brien's"),
        ("Rendez-vous demain à 9h devant la gare.", "fr", "rendez vous demain à neuf heures devant la gare"),
        ("Nous avons reçu 320 lettres", "fr", "nous avons reçu trois cent vingt lettres"),
        ("le 06 12 34 56", "fr", "le zéro six douze trente quatre cinquante six"),
        ("le 06123456.", "fr", "le zéro six douze trente quatre cinquante six"),
        ("après le 2e feu", "fr", "après le deuxième feu"),
        ("3,5 millions", "fr", "trois virgule cinq millions"),
        ("Est-ce que vous m'entendez ?", "fr", "est ce que vous m'entendez"),
        ("", "en", ""),
    ],
)
def test_normalize(text: str, lang: str, expected: str) -> None:
    assert normalize(text, lang) == expected


def test_written_and_spoken_forms_match() -> None:
    assert word_errors("three hundred and twenty packages", "320 packages.", "en").wer == 0
    assert word_errors("neuf heures", "9 h", "fr").wer == 0


def test_counts_edits() -> None:
    stats = word_errors("a b c d", "a x c d e", "en")
    assert (stats.substitutions, stats.deletions, stats.insertions, stats.reference_words) == (1, 0, 1, 4)
    assert stats.wer == 0.5


def test_empty_reference_or_hypothesis() -> None:
    assert word_errors("", "", "en").wer == 0
    assert word_errors("", "hallucinated words", "en").errors == 2
    assert word_errors("two words", "", "en") == WerStats(deletions=2, reference_words=2)


def test_corpus_wer_weights_by_reference_length() -> None:
    stats = [word_errors("a b c d", "a b c d", "en"), word_errors("x", "y", "en")]
    assert corpus_wer(stats) == pytest.approx(1 / 5)
