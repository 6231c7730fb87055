"""Numerals as digits or as words: the `numerals` option of `Configure` (like Deepgram's).

Recognisers write numbers either way ("12" in one clip, "douze" in the next). A stream that
asks for one form gets it in every `Word` and in the `Final`, whatever the engine, because
the rewrite runs on the words the stream is about to send, after decoding:

- `digits`: spelled numbers become digits with text2num's `alpha2digit` ("twenty five" ->
  "25", "vingt et un" -> "21", "the twelfth" -> "the 12th"). Its rules are kept: an isolated
  number below three stays a word ("one of them", "un chat"), grouped ones do not ("one
  two" -> "1 2").
- `words`: digits become words with num2words ("12" -> "twelve", "3,5" -> "trois virgule
  cinq", "12th" -> "twelfth", "50%" -> "fifty percent"); a number after a full stop, or first
  in the stream, starts with a capital. Tokens that are not plain numbers ("9h30", "COVID-19")
  are left as they are.

Timing. A number spoken in several words and written as one ("twenty" "five" -> "25") takes
the span from the first word's start to the last word's end; one written number spoken as
several words ("125" -> "one" "hundred" "and" "twenty-five") has its span shared among them
in proportion to their lengths, so times stay monotonic and cover what was said.

Holding back. In `digits` mode a number may go on in the next word ("twenty" ... "five"), so
words that can belong to a number wait until a word that cannot arrives, a sentence mark
ends them ("twelve."), or the stream flushes (`flush()`: Finalize, a Pause, the end of the
stream). Every other word goes out at once; `words` mode never holds anything back.

Language: the stream's language hint when it is English or French; otherwise, a number made
of words only one of the two languages has ("neuf", "seventy") is read in that language,
and anything else in the language most of the stream's words so far look like (a few
common words of each; English until there is evidence).

Pure code on `WordEvent` lists, used by the session; no engine or web imports.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Sequence

from stt.engine.interface import WordEvent

LANGUAGES = ("en", "fr")


class Numerals(enum.StrEnum):
    """How numbers are written in the words a stream sends (absent: as the engine wrote them)."""

    DIGITS = "digits"
    WORDS = "words"


_SENTENCE_END = re.compile(r"[.!?…]['\")\]»]*$")
"""A full stop, question or exclamation mark, maybe inside closing quotes or brackets."""
_EDGE = re.compile(r"^(?P<lead>[^\w]*)(?P<core>.*?)(?P<trail>[^\w%]*)$", re.DOTALL)
_CONNECTORS = {"en": {"and", "point"}, "fr": {"et", "virgule"}}
"""Words that join two parts of one number ("one hundred and five", "trois virgule cinq")."""
_COMMON = {
    "en": {"the", "and", "of", "to", "is", "it", "a", "in", "that", "you", "this", "was", "for", "with"},
    "fr": {"le", "la", "les", "de", "des", "et", "est", "un", "une", "du", "que", "pour", "dans", "il"},
}
"""A few frequent words of each language, to guess a stream's language from its words."""

_NUMBER_EN = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_NUMBER_FR = re.compile(r"\d{1,3}(?:[.\u202f\u00a0]\d{3})+(?:,\d+)?|\d+(?:,\d+)?")
_ORDINAL_SUFFIX = {"en": re.compile(r"st|nd|rd|th", re.I), "fr": re.compile(r"er|re|e|ème|eme|è", re.I)}
_PERCENT = {"en": "percent", "fr": "pour cent"}


def _key(text: str) -> str:
    return re.sub(r"[^\w'\-]+", "", text.lower()).strip("-'")


def _alpha2digit(text: str, lang: str, threshold: float = 3.0) -> str:
    from text_to_num import alpha2digit

    return str(alpha2digit(text, lang, threshold=threshold))


def _spell(value: int | float, lang: str, *, ordinal: bool = False) -> str:
    from num2words import num2words

    return str(num2words(value, lang=lang, to="ordinal" if ordinal else "cardinal"))


def ends_sentence(text: str) -> bool:
    """Whether a word ends a sentence: the next word starts one, with a capital (here for a
    number spelled out, and in the Whisper engine's agreement and window cuts)."""
    return bool(_SENTENCE_END.search(text))


def number_readings(text: str) -> set[str]:
    """The digits `text` writes as a number, in figures or in English or French words ("12th",
    "twelfth" and "douze" all give {"12"}); empty when it writes none."""
    readings = set()
    for lang in LANGUAGES:
        if digits := re.sub(r"\D", "", _alpha2digit(text, lang, threshold=0)):
            readings.add(digits)
    return readings


def retime(words: Sequence[WordEvent], texts: Sequence[str]) -> list[WordEvent]:
    """`texts` (the rewritten tokens of `words`) with times: tokens left as they were keep
    their word's times; a rewritten group shares the span of the words it replaces in
    proportion to token lengths (see the module docstring)."""
    before = [_key(w.text) for w in words]
    after = [_key(t) for t in texts]
    out: list[WordEvent] = []
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            kept = zip(texts[j1:j2], words[i1:i2], strict=True)
            out.extend(WordEvent(new, old.start_s, old.end_s) for new, old in kept)
            continue
        if j1 == j2:
            continue  # words that were absorbed into a neighbour's number (alpha2digit never drops any)
        if i1 < i2:
            start, end = words[i1].start_s, max(w.end_s for w in words[i1:i2])
        else:  # a token with no word of its own: a point in time next to its neighbours
            start = end = out[-1].end_s if out else (words[i1].start_s if i1 < len(words) else 0.0)
        out.extend(_share(texts[j1:j2], start, end))
    return out


def _share(texts: Sequence[str], start: float, end: float) -> list[WordEvent]:
    total = sum(max(1, len(t)) for t in texts)
    out, at = [], start
    for text in texts:
        length = (end - start) * max(1, len(text)) / total
        out.append(WordEvent(text, at, at + length))
        at += length
    if out:  # no rounding drift past the span
        out[-1] = WordEvent(out[-1].text, out[-1].start_s, end)
    return out


class _LanguageGuess:
    """English or French, from the common words a stream has sent so far."""

    def __init__(self, hint: str | None) -> None:
        self.hint = hint if hint in LANGUAGES else None
        self._counts = dict.fromkeys(LANGUAGES, 0)

    def see(self, word: str) -> None:
        key = _key(word)
        for lang in LANGUAGES:
            self._counts[lang] += key in _COMMON[lang]

    @property
    def language(self) -> str:
        if self.hint is not None:
            return self.hint
        return "fr" if self._counts["fr"] > self._counts["en"] else "en"


class NumeralsFilter:
    """One stream's rewrite of its words to `mode`: push the words the engine gave, send
    what comes back; `flush()` when the stream must have every word out."""

    def __init__(self, mode: Numerals, language: str | None = None) -> None:
        self.mode = mode
        self._guess = _LanguageGuess(language)
        self._held: list[WordEvent] = []
        self._sentence_start = True
        """The next word starts a sentence (first of the stream, or after a full stop)."""
        self._last_key = ""
        """The previous word pushed, lower case without punctuation."""

    def push(self, words: Sequence[WordEvent]) -> list[WordEvent]:
        out: list[WordEvent] = []
        for word in words:
            self._guess.see(word.text)
            if self.mode is Numerals.WORDS:
                out.extend(self._to_words(word))
            elif self._may_continue_number(word):
                self._held.append(word)
                if ends_sentence(word.text) or word.text.rstrip()[-1:] in ",;:":
                    out.extend(self.flush())
            else:
                out.extend(self.flush())
                out.append(word)
            self._sentence_start = ends_sentence(word.text)
            self._last_key = _key(word.text)
        return out

    def flush(self) -> list[WordEvent]:
        """Every word held back (a number that may have gone on), rewritten."""
        held, self._held = self._held, []
        if not held:
            return []
        # connectors after the last number word belong to what follows, not to the number
        tail: list[WordEvent] = []
        while held and self._connector(held[-1]):
            tail.insert(0, held.pop())
        return (self._to_digits(held) if held else []) + tail

    # -- digits ------------------------------------------------------------------------------

    def _numeric(self, word: WordEvent) -> set[str]:
        """The languages in which `word` alone is (part of) a number."""
        key = _key(word.text)
        if not key or key[0].isdigit():
            return set()  # already digits
        langs = {self._guess.hint} if self._guess.hint else set(LANGUAGES)
        found = set()
        for lang in langs:
            if lang == "fr" and key == "cent" and self._last_key == "pour":
                continue  # "pour cent" is per cent, not a hundred
            if _alpha2digit(key, lang, threshold=0) != key:
                found.add(lang)
        return found

    def _connector(self, word: WordEvent) -> bool:
        key = _key(word.text)
        return any(key in _CONNECTORS[lang] for lang in LANGUAGES)

    def _may_continue_number(self, word: WordEvent) -> bool:
        if self._numeric(word):
            return True
        # "and" / "et" may join two parts of a number: wait for the next word to know
        return bool(self._held) and not self._connector(self._held[-1]) and self._connector(word)

    def _to_digits(self, run: Sequence[WordEvent]) -> list[WordEvent]:
        only = [found.pop() for word in run if len(found := self._numeric(word)) == 1]
        lang = only[0] if only else self._guess.language
        text = _alpha2digit(" ".join(w.text for w in run), lang)
        return retime(run, text.split())

    # -- words -------------------------------------------------------------------------------

    def _to_words(self, word: WordEvent) -> list[WordEvent]:
        spelled = self._spell_token(word.text, self._guess.language)
        if spelled is None:
            return [word]
        if self._sentence_start:
            spelled[0] = _capitalize(spelled[0])
        return _share(spelled, word.start_s, word.end_s)

    def _spell_token(self, text: str, lang: str) -> list[str] | None:
        """The words of a token that is a number (with its punctuation), or None."""
        edge = _EDGE.match(text)
        if edge is None:
            return None
        lead, core, trail = edge["lead"], edge["core"], edge["trail"]
        percent = core.endswith("%")
        core = core.rstrip("%")
        number_re = _NUMBER_EN if lang == "en" else _NUMBER_FR
        match = number_re.match(core)
        if not core or match is None:
            return None
        digits, suffix = match.group(0), core[match.end() :]
        ordinal = bool(suffix) and bool(_ORDINAL_SUFFIX[lang].fullmatch(suffix))
        if suffix and not ordinal:
            return None
        if ordinal and not digits.isdigit():
            return None
        if len(digits) > 1 and digits.startswith("0") and digits.isdigit():
            words = " ".join(_spell(int(d), lang) for d in digits)  # "007", a code: digit by digit
        else:
            words = _spell(_value(digits, lang), lang, ordinal=ordinal)
        if percent:
            words += f" {_PERCENT[lang]}"
        tokens = words.replace(",", "").split()  # num2words writes "one thousand, two hundred"
        tokens[0] = lead + tokens[0]
        tokens[-1] += trail
        return tokens


def _capitalize(text: str) -> str:
    """The first letter in upper case (after any leading punctuation)."""
    for i, c in enumerate(text):
        if c.isalpha():
            return text[:i] + c.upper() + text[i + 1 :]
    return text


def _value(digits: str, lang: str) -> int | float:
    """The number a digit string means in `lang` ("1,000" in English, "3,5" in French)."""
    if lang == "en":
        plain = digits.replace(",", "")
        return float(plain) if "." in plain else int(plain)
    plain = re.sub(r"[.\u202f\u00a0]", "", digits)
    return float(plain.replace(",", ".")) if "," in plain else int(plain)
