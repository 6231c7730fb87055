"""Local agreement: which words of a re-decoded utterance are stable enough to send.

A streaming Whisper decodes the growing utterance again every second or so; the last words
of each hypothesis are often cut mid-word or change once more audio arrives. A word is sent
only when two successive hypotheses agree on it and on every word before it (the
"LocalAgreement-2" policy of Macháček et al., whisper_streaming), and, where Whisper is
unsure of a word before it hears what follows, once both heard some audio after it; at the
end of the utterance the final hypothesis is trusted as a whole. Sent words are never taken
back.

Pure code on `WordEvent` lists, without the model, so it is unit-tested on its own.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence

from stt.engine.interface import WordEvent
from stt.numerals import ends_sentence, number_readings

_NOT_WORD = re.compile(r"[^\w']+")
_RIGHT_CONTEXT_S = 0.5
"""Audio after a word that both agreeing hypotheses must have heard before it is sent, where
what follows may change it (`_needs_context`). Kyutai's stt-1b-en_fr writes every word 0.5 s
after it is said, for the same reason."""
_EARLY_S = 2.0
"""Until both agreeing hypotheses heard this much of the utterance, Whisper hears its first
words without the words around them: decodes of its first 1.1 and 1.7 s agreed on "It wears
a bright" and sent it, where every decode of 2.2 s or more heard "It was"."""
_OVERLAP_WORDS = 8
"""Sent words looked for at the start of a hypothesis: more than a window cut repeats."""
_SAME_PLACE_S = 1.0
"""Two decodes' copies of a word start this close at most (word alignment drifts by a few
hundred ms; the end of a window's last word can stretch by seconds, so starts are compared)."""
_RESPELLED_S = 0.35
"""A hypothesis word that starts this close to a sent word it does not match is that word
respelled ("times" for "time"); one further away is a new word."""
_NUMBER_WORDS = 4
"""Hypothesis words looked at for one sent number written anew ("415" "555" "2671")."""
_LONG_NUMBER = 5
"""Digits from which two readings of one number may differ by a digit or two: Whisper drops
or doubles a digit of a long run from decode to decode; shorter numbers must be equal."""
_SAME_NUMBER_RATIO = 0.8
"""How alike two long digit runs are at least (difflib ratio) to be one number written anew."""


def word_key(text: str) -> str:
    """What two hypotheses must share to agree on a word: case and punctuation ignored
    ("vocale," and "vocale" are the same word once the sentence goes on)."""
    return _NOT_WORD.sub("", text.lower())


def common_prefix(a: Sequence[WordEvent], b: Sequence[WordEvent]) -> list[WordEvent]:
    """The words of `b` (the newer hypothesis) in the longest prefix both agree on."""
    n = 0
    while n < min(len(a), len(b)) and word_key(a[n].text) == word_key(b[n].text):
        n += 1
    return list(b[:n])


def after_sent(sent: Sequence[WordEvent], words: Sequence[WordEvent]) -> list[WordEvent]:
    """The words of `words` that come after those already sent.

    Normally `words` starts with the sent words (same keys) and the rest follows. Otherwise
    (the model changed its mind about a sent word, or, after a window cut, the new window
    starts a few sent words back and Whisper hears them a little differently) the overlap is
    found by text: the last of the sent words that `words` repeats, at about the same time,
    ends it (`overlap_end`). Times decide only when no sent word is found again: the word
    that starts where the last sent word did is its respelling ("shipped" for "ship"), and
    what follows it is new (starts, because the end of a window's last word can stretch
    over the silence or speech after it). Nothing is sent twice,
    and a word that follows a full stop starts with a capital.
    """
    if not sent:
        return list(words)
    head = words[: len(sent)]
    if len(head) == len(sent) and all(
        word_key(x.text) == word_key(y.text) for x, y in zip(head, sent, strict=True)
    ):
        rest = list(words[len(sent) :])
    else:
        end = overlap_end(sent, words)
        if end is None:
            end = _after_respelling(sent[-1], words)
        rest = list(words[end:])
        if end and (more := _digits_beyond(sent[-1], words[end - 1])) is not None:
            rest.insert(0, more)
    return _capitalised(_monotonic(rest, sent[-1].end_s), sent[-1])


def _digits_beyond(sent: WordEvent, respelled: WordEvent) -> WordEvent | None:
    """The digits a respelling adds to the last sent word, as a word of their own.

    Whisper writes a spoken digit sequence as one token run whose grouping changes from
    decode to decode: "415" "555" "2671" in one, "4155552671" in the next. When the last sent
    word was "415" and the newer hypothesis says "4155552671" where it stood, that word is
    not a respelling of "415" but "415" and six more digits, which are new: it goes on over
    audio after the sent word's. One that ends where the sent word did ("5555" for a sent
    "555") is a respelling: what the sent word said is not said twice.
    """
    old, new = word_key(sent.text), word_key(respelled.text)
    if not (old.isdigit() and new.isdigit() and len(new) > len(old) and new.startswith(old)):
        return None
    if respelled.end_s - sent.end_s <= _RESPELLED_S:
        return None
    seen, cut = 0, 0
    while seen < len(old):  # skip the sent digits in the text, with any separator among them
        seen += respelled.text[cut].isdigit()
        cut += 1
    text = respelled.text[cut:].lstrip("-., ")
    return WordEvent(text, max(sent.end_s, respelled.start_s), max(respelled.end_s, sent.end_s))


def overlap_end(sent: Sequence[WordEvent], words: Sequence[WordEvent]) -> int | None:
    """Where the words of `words` that repeat the last sent words end, matched by text;
    None when `words` repeats none of them.

    The last matching run of words (case and punctuation ignored) whose start times agree
    within `_SAME_PLACE_S` marks the overlap; a sent word after that run that the hypothesis
    spelled differently ("times" for "time") is its next word if that starts at the same
    place (`_RESPELLED_S`), else the hypothesis dropped it and its next word is new.

    The hypothesis decodes the utterance from its start, so it repeats every sent word, not
    only the last ones: the tail is looked for where it stands among them, within
    `_OVERLAP_WORDS` words either way (a window after a cut repeats a few sent words; a long
    utterance all of them, and a search of its first 16 words only missed its 17th sent word
    and sent it again).
    """
    tail = sent[-_OVERLAP_WORDS:]
    lo = max(0, len(sent) - len(tail) - _OVERLAP_WORDS)
    head = words[lo : len(sent) + _OVERLAP_WORDS]
    matcher = difflib.SequenceMatcher(
        None, [word_key(w.text) for w in tail], [word_key(w.text) for w in head], autojunk=False
    )
    last = None
    for block in matcher.get_matching_blocks():
        if block.size and all(
            abs(tail[block.a + k].start_s - head[block.b + k].start_s) <= _SAME_PLACE_S
            for k in range(block.size)
        ):
            last = block
    if last is None:
        return None
    sent_at, end = last.a + last.size, lo + last.b + last.size
    while sent_at < len(tail) and end < len(words):
        if not (taken := _respelling_length(tail[sent_at], words, end)):
            break  # not a respelling of the sent word: a new word
        sent_at, end = sent_at + 1, end + taken
    return end


def _respelling_length(sent: WordEvent, words: Sequence[WordEvent], at: int) -> int:
    """How many words of `words` from `at` write `sent` anew: several when it is a number
    written in other words (`_number_respelling`), one for a respelled word, 0 for none."""
    return _number_respelling(sent, words, at) or int(_respells(sent, words[at]))


def _number_respelling(sent: WordEvent, words: Sequence[WordEvent], at: int) -> int:
    """How many words of `words` from `at` are the sent number written anew, or 0.

    Whisper writes one spoken number differently from decode to decode: "12th" then "the
    twelfth", "415552671" then "415" "555" "2671". Those words are the sent word again, not
    new ones, when they start where it did (`_SAME_PLACE_S`), end within its audio, and read
    as the same digits (`_same_number`). One word that is not a number may come first ("the"
    of "the twelfth": the sent "12th" covered its audio)."""
    readings = number_readings(sent.text)
    if not readings:
        return 0
    leads = (at, at + 1) if not number_readings(words[at].text) else (at,)
    for first in leads:
        if first >= len(words) or abs(words[first].start_s - sent.start_s) > _SAME_PLACE_S:
            continue
        best, best_end, end = 0.0, first, first
        while (
            end < len(words)
            and end - first < _NUMBER_WORDS
            and words[end].end_s <= sent.end_s + _SAME_PLACE_S
            and number_readings(words[end].text)
        ):
            end += 1
            alike = _same_number(readings, number_readings(" ".join(w.text for w in words[first:end])))
            if alike > best:
                best, best_end = alike, end
        if best >= _SAME_NUMBER_RATIO:
            return best_end - at
    return 0


def _same_number(a: set[str], b: set[str]) -> float:
    """How alike the closest readings of two numbers are: 1 when equal, the difflib ratio of
    two long digit runs (`_LONG_NUMBER`), else 0."""
    alike = 0.0
    for x in a:
        for y in b:
            if x == y:
                return 1.0
            if min(len(x), len(y)) >= _LONG_NUMBER:
                alike = max(alike, difflib.SequenceMatcher(None, x, y, autojunk=False).ratio())
    return alike


def _respells(sent: WordEvent, word: WordEvent) -> bool:
    """Whether `word` may be `sent` spelled anew: it starts at about the same place and does
    not go on past it ("March" starting near a short sent "of" but ending far later is new),
    unless it is the sent digits and more (`_digits_beyond` sends the more), or both are
    numbers: Whisper heard the spoken number out ("300" sent, then "320" over its audio and
    "and twenty"'s), and sending the new reading beside the sent one wrote "300 320" (two
    numbers cannot start within `_RESPELLED_S` of each other)."""
    if abs(word.start_s - sent.start_s) > _RESPELLED_S:
        return False
    if word.end_s <= sent.end_s + _RESPELLED_S or _digits_beyond(sent, word) is not None:
        return True
    return bool(number_readings(sent.text)) and bool(number_readings(word.text))


def _after_respelling(last: WordEvent, words: Sequence[WordEvent]) -> int:
    """Index of the first word of `words` after those that respell `last` (the respelling
    starting closest to it: a word within `_RESPELLED_S` not going on past it, or the same
    number in other words), or after every word that starts before it when none does."""
    near = {i: taken for i in range(len(words)) if (taken := _respelling_length(last, words, i))}
    if near:
        i = min(near, key=lambda i: abs(words[i].start_s - last.start_s))
        return i + near[i]
    return sum(w.start_s <= last.start_s for w in words)


def _needs_context(text: str) -> bool:
    """Whether Whisper writes this word from the audio after it too, past an utterance's
    start: a full stop where the audio it heard ended ("moved to Tuesday." went out before
    "the twelfth of March"), or digits, since it writes a spoken number whole and a decode
    that ends inside one writes its start ("300" for "three hundred and twenty")."""
    return ends_sentence(text) or _has_digits(text)


def _has_digits(text: str) -> bool:
    """Whether Whisper wrote this word (in part) in figures.

    A run of such words is not sent while it ends both agreeing hypotheses: Whisper regroups
    a spoken digit sequence until it has heard the speaker move past it. Traced (en-07): the
    decodes of 5.0 and 5.6 s both wrote "415 5555 2671" and agreed, two seconds after "5555"
    was said, and the utterance's final decode wrote "415 555 2671"; a word after the run in
    both ("12th of") closes it."""
    return any(c.isdigit() for c in text)


def _capitalised(words: list[WordEvent], previous: WordEvent) -> list[WordEvent]:
    """A sentence starts with a capital, also when a window cut hid its start from Whisper."""
    if words:
        words[0] = capitalised_after(previous.text, words[0])
    return words


def capitalised_after(previous: str, word: WordEvent) -> WordEvent:
    """`word` with a capital if the word before it (`previous`) ended a sentence: a window
    that starts just after a full stop, or an utterance after a pause, hides the sentence
    start from Whisper, which then writes it in lower case ("March. please call")."""
    if ends_sentence(previous) and word.text[:1].islower():
        return WordEvent(word.text[:1].upper() + word.text[1:], word.start_s, word.end_s)
    return word


def _monotonic(words: list[WordEvent], floor_s: float) -> list[WordEvent]:
    """Clamp start times so a stream's words never go back in time."""
    out = []
    for w in words:
        start = max(w.start_s, floor_s)
        out.append(w if start == w.start_s else WordEvent(w.text, start, max(w.end_s, start)))
        floor_s = max(w.end_s, start)
    return out


class LocalAgreement:
    """The agreement state of one utterance: the previous hypothesis and the words sent."""

    def __init__(self, sent: Sequence[WordEvent] = ()) -> None:
        """`sent`: words already sent whose audio this utterance repeats (a window cut)."""
        self._previous: list[WordEvent] = []
        self._previous_heard_s = -math.inf
        self.sent: list[WordEvent] = list(sent)

    def update(self, hypothesis: Sequence[WordEvent], start_s: float, heard_s: float) -> list[WordEvent]:
        """A new partial hypothesis of the whole utterance, decoded from its audio between
        stream times `start_s` and `heard_s`; returns the words to send now (agreed, and
        heard on by both hypotheses where `_RIGHT_CONTEXT_S` asks it)."""
        agreed = common_prefix(self._previous, hypothesis)
        heard = min(self._previous_heard_s, heard_s)  # the audio both hypotheses heard
        self._previous, self._previous_heard_s = list(hypothesis), heard_s
        early = heard - start_s < _EARLY_S
        ready = 0
        for word in agreed:
            if word.end_s > heard - _RIGHT_CONTEXT_S and (early or _needs_context(word.text)):
                break
            if _has_digits(word.text) and all(_has_digits(w.text) for w in agreed[ready + 1 :]):
                break  # a digit run both hypotheses end on: Whisper may still regroup it
            ready += 1
        new = after_sent(self.sent, agreed[:ready])
        self.sent.extend(new)
        return new

    def finish(self, hypothesis: Sequence[WordEvent]) -> list[WordEvent]:
        """The final hypothesis of the utterance (a pause or a flush): send all the rest."""
        new = after_sent(self.sent, hypothesis)
        self.sent.extend(new)
        self._previous, self._previous_heard_s = [], -math.inf
        return new
