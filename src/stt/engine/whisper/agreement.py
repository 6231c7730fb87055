"""Local agreement: which words of a re-decoded utterance are stable enough to send.

A streaming Whisper decodes the growing utterance again every second or so; the last words
of each hypothesis are often cut mid-word or change once more audio arrives. A word is sent
only when two successive hypotheses agree on it and on every word before it (the
"LocalAgreement-2" policy of Macháček et al., whisper_streaming); at the end of the
utterance the final hypothesis is trusted as a whole. Sent words are never taken back.

Pure code on `WordEvent` lists, without the model, so it is unit-tested on its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from stt.engine.interface import WordEvent

_NOT_WORD = re.compile(r"[^\w']+")


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

    Normally `words` starts with the sent words (same keys) and the rest follows. When the
    model changed its mind about a sent word, times decide instead: only words whose middle
    lies after the end of the last sent word are new, so nothing is sent twice.
    """
    if not sent:
        return list(words)
    head = words[: len(sent)]
    if len(head) == len(sent) and all(
        word_key(x.text) == word_key(y.text) for x, y in zip(head, sent, strict=True)
    ):
        rest = list(words[len(sent) :])
    else:
        last_end = sent[-1].end_s
        rest = [w for w in words if (w.start_s + w.end_s) / 2 > last_end]
    return _monotonic(rest, sent[-1].end_s)


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

    def __init__(self) -> None:
        self._previous: list[WordEvent] = []
        self.sent: list[WordEvent] = []

    def update(self, hypothesis: Sequence[WordEvent]) -> list[WordEvent]:
        """A new partial hypothesis of the whole utterance; returns the words to send now."""
        agreed = common_prefix(self._previous, hypothesis)
        self._previous = list(hypothesis)
        new = after_sent(self.sent, agreed)
        self.sent.extend(new)
        return new

    def finish(self, hypothesis: Sequence[WordEvent]) -> list[WordEvent]:
        """The final hypothesis of the utterance (a pause or a flush): send all the rest."""
        new = after_sent(self.sent, hypothesis)
        self.sent.extend(new)
        self._previous = []
        return new
