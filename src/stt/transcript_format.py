"""OpenAI's transcription answers, made from word times: the five response formats, the
subtitle cues they are cut into, and the server-sent events of `stream=true`.

Pure functions of the words an engine emitted (no web framework, no engine): the HTTP route
in `stt.server` only parses the request and sends what these return.

Cues (subtitle entries, and the `segments` of `verbose_json`) are cut where the speaker
pauses, after a sentence once it is long enough to stand alone, and before a cue would
grow past two subtitle lines or stay on screen too long, so that subtitles read well.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from stt.engine.interface import WordEvent

RESPONSE_FORMATS: Final = ("json", "text", "srt", "verbose_json", "vtt")
"""Every `response_format` OpenAI's transcription endpoint serves (all are served here)."""
STREAM_FORMATS: Final = ("json", "text")
"""Formats `stream=true` may be combined with: the events carry text only (as OpenAI's)."""
GRANULARITIES: Final = ("word", "segment")
"""`timestamp_granularities[]` values."""

SENTENCE_END: Final = (".", "?", "!", "\u2026", "\u3002", "\uff1f", "\uff01")
"""Marks that end a sentence: ASCII, the ellipsis, and the CJK full stop, question and exclamation marks."""

JSON_TYPE: Final = "application/json"
TEXT_TYPE: Final = "text/plain; charset=utf-8"
VTT_TYPE: Final = "text/vtt; charset=utf-8"
SSE_TYPE: Final = "text/event-stream; charset=utf-8"


@dataclass(frozen=True)
class CueRules:
    """Where cues are cut. The defaults follow common subtitle guidance (two lines of at most
    42 characters, at most ~6 s on screen) and cut at a pause a viewer can hear."""

    pause_s: float = 0.6
    """A silence at least this long between two words ends a cue."""
    line_chars: int = 42
    max_lines: int = 2
    max_duration_s: float = 6.0
    """A cue ends before a word that would keep it on screen longer than this."""
    sentence_min_s: float = 1.5
    """A cue ends after a sentence-ending word once it has lasted this long."""

    def __post_init__(self) -> None:
        if self.pause_s <= 0 or self.max_duration_s <= 0 or self.sentence_min_s < 0:
            raise ValueError("pause_s and max_duration_s must be > 0, sentence_min_s >= 0")
        if self.line_chars < 1 or self.max_lines < 1:
            raise ValueError("line_chars and max_lines must be >= 1")

    @property
    def max_chars(self) -> int:
        return self.line_chars * self.max_lines


@dataclass(frozen=True)
class Cue:
    """Consecutive words shown together (one subtitle entry, one `verbose_json` segment)."""

    words: tuple[WordEvent, ...]

    def __post_init__(self) -> None:
        if not self.words:
            raise ValueError("a cue holds at least one word")

    @property
    def start_s(self) -> float:
        return self.words[0].start_s

    @property
    def end_s(self) -> float:
        return max(self.words[-1].end_s, self.start_s)

    @property
    def text(self) -> str:
        return transcript_text(self.words)

    def lines(self, line_chars: int) -> list[str]:
        """The cue's text on two lines, split at the word boundary that balances them best,
        when it does not fit on one."""
        text = self.text
        if len(text) <= line_chars or len(self.words) < 2:
            return [text]
        best, best_width = 1, len(text)
        for cut in range(1, len(self.words)):
            first = transcript_text(self.words[:cut])
            width = max(len(first), len(text) - len(first) - 1)
            if width < best_width:
                best, best_width = cut, width
        return [transcript_text(self.words[:best]), transcript_text(self.words[best:])]


def transcript_text(words: Iterable[WordEvent]) -> str:
    """The transcript: the words in order, separated by single spaces."""
    return " ".join(w.text for w in words)


def cut_cues(words: Sequence[WordEvent], rules: CueRules | None = None) -> list[Cue]:
    """Group `words` (in stream order) into cues under `rules`."""
    rules = rules or CueRules()
    cues: list[Cue] = []
    current: list[WordEvent] = []
    chars = 0
    for word in words:
        if current and _ends_before(current, chars, word, rules):
            cues.append(Cue(tuple(current)))
            current, chars = [], 0
        chars += len(word.text) + (1 if current else 0)
        current.append(word)
    if current:
        cues.append(Cue(tuple(current)))
    return cues


def _ends_before(current: list[WordEvent], chars: int, word: WordEvent, rules: CueRules) -> bool:
    """Whether the cue holding `current` (`chars` long) ends before `word`."""
    first, last = current[0], current[-1]
    if word.start_s - last.end_s >= rules.pause_s:
        return True
    if chars + 1 + len(word.text) > rules.max_chars:
        return True
    if word.end_s - first.start_s > rules.max_duration_s:
        return True
    return last.text.endswith(SENTENCE_END) and last.end_s - first.start_s >= rules.sentence_min_s


def timestamp(seconds: float, separator: str) -> str:
    """HH:MM:SS,mmm (SubRip: separator ",") or HH:MM:SS.mmm (WebVTT: ".")."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def to_srt(cues: Sequence[Cue], rules: CueRules | None = None) -> str:
    """SubRip: numbered cues, `start --> end`, the text, a blank line after each."""
    rules = rules or CueRules()
    blocks = []
    for number, cue in enumerate(cues, start=1):
        span = f"{timestamp(cue.start_s, ',')} --> {timestamp(cue.end_s, ',')}"
        blocks.append("\n".join([str(number), span, *cue.lines(rules.line_chars)]) + "\n\n")
    return "".join(blocks)


def _vtt_escape(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: Sequence[Cue], rules: CueRules | None = None) -> str:
    """WebVTT: the `WEBVTT` header, then cues as in SubRip without numbers ("." before ms)."""
    rules = rules or CueRules()
    blocks = ["WEBVTT\n\n"]
    for cue in cues:
        span = f"{timestamp(cue.start_s, '.')} --> {timestamp(cue.end_s, '.')}"
        lines = [_vtt_escape(line) for line in cue.lines(rules.line_chars)]
        blocks.append("\n".join([span, *lines]) + "\n\n")
    return "".join(blocks)


def compression_ratio(text: str) -> float:
    """Whisper's repetition check: UTF-8 length over its zlib-compressed length."""
    data = text.encode()
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0


def segments(cues: Sequence[Cue]) -> list[dict[str, Any]]:
    """`verbose_json` segments, one per cue, in OpenAI's shape. The engines expose no token
    ids or probabilities: `tokens` is empty and `avg_logprob`/`no_speech_prob` are 0.0;
    `temperature` is 0.0 (greedy or beam search, never sampling); `seek` is the start in
    centiseconds (Whisper's 10 ms frames); `compression_ratio` is measured on the text."""
    return [
        {
            "id": index,
            "seek": round(cue.start_s * 100),
            "start": round(cue.start_s, 3),
            "end": round(cue.end_s, 3),
            "text": cue.text,
            "tokens": [],
            "temperature": 0.0,
            "avg_logprob": 0.0,
            "compression_ratio": compression_ratio(cue.text),
            "no_speech_prob": 0.0,
        }
        for index, cue in enumerate(cues)
    ]


def word_list(words: Iterable[WordEvent]) -> list[dict[str, Any]]:
    return [{"word": w.text, "start": round(w.start_s, 3), "end": round(w.end_s, 3)} for w in words]


@dataclass(frozen=True)
class Rendered:
    """An answer's body and media type."""

    body: bytes
    media_type: str


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def render(
    response_format: str,
    words: Sequence[WordEvent],
    *,
    duration_s: float,
    language: str | None,
    granularities: Sequence[str] = (),
    rules: CueRules | None = None,
) -> Rendered:
    """The body OpenAI's endpoint answers in `response_format` for these words.

    `json`: `{"text", "usage"}`; `text`: the transcript and a newline; `srt`, `vtt`: subtitle
    files; `verbose_json`: `task`, `language`, `duration`, `text`, `segments`, `usage`, and
    `words` when `granularities` holds "word". `usage` is `{"type": "duration", "seconds"}`.
    """
    text = transcript_text(words)
    usage = {"type": "duration", "seconds": round(duration_s, 3)}
    if response_format == "json":
        return Rendered(_json({"text": text, "usage": usage}), JSON_TYPE)
    if response_format == "text":
        return Rendered((text + "\n").encode(), TEXT_TYPE)
    if response_format == "srt":
        return Rendered(to_srt(cut_cues(words, rules), rules).encode(), TEXT_TYPE)
    if response_format == "vtt":
        return Rendered(to_vtt(cut_cues(words, rules), rules).encode(), VTT_TYPE)
    if response_format == "verbose_json":
        body: dict[str, Any] = {
            "task": "transcribe",
            "language": language,
            "duration": round(duration_s, 3),
            "text": text,
            "segments": segments(cut_cues(words, rules)),
            "usage": usage,
        }
        if "word" in granularities:
            body["words"] = word_list(words)
        return Rendered(_json(body), JSON_TYPE)
    raise ValueError(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, got {response_format!r}")


# -- stream=true: server-sent events ---------------------------------------------------------


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event carrying `event` as its JSON data (OpenAI sends no `event:` field)."""
    return b"data: " + _json(event) + b"\n\n"


def delta_event(word: WordEvent, *, first: bool) -> dict[str, Any]:
    """`transcript.text.delta` for one word; the deltas concatenate to the final text."""
    return {"type": "transcript.text.delta", "delta": word.text if first else " " + word.text}


def done_event(words: Sequence[WordEvent]) -> dict[str, Any]:
    """`transcript.text.done` with the full text (no `logprobs`, no token `usage`: the engines
    count neither)."""
    return {"type": "transcript.text.done", "text": transcript_text(words)}


def error_event(code: str, message: str) -> dict[str, Any]:
    """A failure after the events began: the SDK raises `APIError` on an event with `error`."""
    return {"type": "error", "error": {"code": code, "message": message}}
