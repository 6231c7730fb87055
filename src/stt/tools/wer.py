"""Word error rate with one text normalisation, shared by benchmarks and the stress client.

References are written the way people speak ("three hundred and twenty"); recognisers often
write digits ("320", "12th", "9h", "415-555-2671", "4155552671"). Both sides are normalised the same way:
numbers spelled out in the clip's language with num2words, lower case, punctuation and
hyphens removed, apostrophes unified. Without it, WER measures formatting, not recognition.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import jiwer
from num2words import num2words

_SUPPORTED = ("en", "fr")
_ZERO = {"en": "zero", "fr": "zéro"}
_PERCENT = {"en": "percent", "fr": "pour cent"}

_DIGIT_GROUPS = re.compile(r"\d+(?:[-. ]\d+){2,}|\d+(?:-\d+)+|(?<![\d.,])\d+(?: \d+)*(?![.,]\d)")
"""Candidate phone-number-like runs (`_phone_like` decides); a decimal's digits are not one."""
_LONG_RUN = 7
"""Digits from which a run without thousands separators is a digit sequence (a phone number,
a code), not a cardinal: both languages write large cardinals with separators or words
("4,155,552,671", "2 millions"), and Whisper writes "four one five, five five five, two six
seven one" as "4155552671" or "415 5552671" as often as "415-555-2671"."""
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th|er|re|e|ème|eme)\b", re.IGNORECASE)
_HOURS_FR = re.compile(r"\b(\d{1,2}) ?h(?: ?(\d{2}))?\b")
_THOUSANDS_EN = re.compile(r"(?<=\d),(?=\d{3}\b)")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_NOT_WORD = re.compile(r"[^\w' ]+")


def _lang(lang: str | None) -> str:
    return lang if lang in _SUPPORTED else "en"


def _spell(number: str, lang: str) -> str:
    if len(number) > 1 and number.startswith("0") and number.isdigit():
        return f"{_ZERO[lang]} {_spell(number[1:], lang)}"
    value: int | float = float(number.replace(",", ".")) if re.search(r"[.,]", number) else int(number)
    return str(num2words(value, lang=lang))


def _phone_like(run: str) -> bool:
    """Three or more digit groups, groups joined by hyphens, or `_LONG_RUN` digits or more
    (alone or in space-separated groups)."""
    groups = re.split(r"[-. ]", run)
    return len(groups) >= 3 or "-" in run or sum(len(g) for g in groups) >= _LONG_RUN


def _digit_groups(match: re.Match[str], lang: str) -> str:
    run = match.group(0)
    if not _phone_like(run):
        return run
    groups = re.split(r"[-. ]", run)
    if lang == "en":  # English reads phone numbers digit by digit
        return " ".join(_spell(d, lang) for group in groups for d in group)
    spoken: list[str] = []  # French reads them in pairs, also a long run written unseparated
    for group in groups:
        spoken += [group[i : i + 2] for i in range(0, len(group), 2)] if len(group) >= _LONG_RUN else [group]
    return " ".join(_spell(group, lang) for group in spoken)


def normalize(text: str, lang: str | None = "en") -> str:
    """Lower case, numbers spelled out in `lang`, no punctuation, single spaces."""
    lang = _lang(lang)
    text = unicodedata.normalize("NFC", text).replace("\u2019", "'").replace("\u2018", "'")
    text = _DIGIT_GROUPS.sub(lambda m: _digit_groups(m, lang), text)  # before "4,155,552,671" is joined
    if lang == "en":
        text = _THOUSANDS_EN.sub("", text)
    else:
        text = _HOURS_FR.sub(
            lambda m: f"{m.group(1)} heures" + (f" {m.group(2)}" if m.group(2) else ""), text
        )
    text = text.replace("%", f" {_PERCENT[lang]}")
    text = _ORDINAL.sub(lambda m: str(num2words(int(m.group(1)), to="ordinal", lang=lang)), text)
    text = _NUMBER.sub(lambda m: f" {_spell(m.group(0), lang)} ", text)
    text = text.lower().replace("-", " ")
    text = _NOT_WORD.sub(" ", text)
    words = [w.strip("'") for w in text.split()]
    return " ".join(w for w in words if w)


@dataclass(frozen=True)
class WerStats:
    """Edit counts of one or more utterances; add them up for a corpus WER."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_words: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Errors per reference word; with an empty reference, the number of inserted words."""
        return self.errors / max(1, self.reference_words)

    def __add__(self, other: WerStats) -> WerStats:
        return WerStats(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_words + other.reference_words,
        )


def word_errors(reference: str, hypothesis: str, lang: str | None = "en") -> WerStats:
    """Normalise both texts in `lang` and count word edits."""
    ref = normalize(reference, lang)
    hyp = normalize(hypothesis, lang)
    if not ref:
        return WerStats(insertions=len(hyp.split()))
    if not hyp:
        return WerStats(deletions=len(ref.split()), reference_words=len(ref.split()))
    out = jiwer.process_words(ref, hyp)
    return WerStats(out.substitutions, out.deletions, out.insertions, len(ref.split()))


def corpus_wer(stats: Iterable[WerStats]) -> float:
    """Total errors over total reference words."""
    return sum(stats, WerStats()).wer
