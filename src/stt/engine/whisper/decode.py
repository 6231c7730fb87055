"""Whisper decodes of short utterances, with a shorter encoder context and a fallback.

faster-whisper's `transcribe()` always pads audio to Whisper's 30 s window, so a 3 s
utterance costs as much as 30 s of audio. CTranslate2's encoder accepts shorter inputs:
padding the utterance (at most the engine's 10 s window) to 20 s instead measured the same
WER on the shared samples in less than half the time, and padding it with 5 s of silence
(`pad_s`, at most to the 20 s) the same WER again at a lower cost still (padding to the
audio's own length makes Whisper loop, so some silence must follow the speech). The steps are faster-whisper's
own building blocks (features, encode, language detection, generate, word alignment), so
the model behaves as in `transcribe()` with the same `Search` (beams, temperatures).

A decode that looks like a failure by Whisper's own rules (its text compresses too well: a
repetition loop; or its average log-probability is low while it is not silence) is retried
at the next temperature of `Search.temperatures`, sampling `BEST_OF` candidates, as
openai-whisper and faster-whisper do; when every try fails the most likely one that is not a
loop is kept (and the engine drops it if it is a loop or silence, `Decoded.hallucinated`).

Runs on the decode worker thread; CTranslate2 releases the GIL while it computes.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from stt.constants import WHISPER_SAMPLE_RATE
from stt.engine.interface import WordEvent

FRAMES_PER_SECOND = WHISPER_SAMPLE_RATE // 160
"""Mel frames per second of audio (a hop of 160 samples)."""
_MAX_TOKENS = 224
"""Text tokens per decode at most: half of Whisper's text context, as `transcribe()` allows."""
_MAX_INITIAL_TIMESTAMP = 50
"""Latest first timestamp token (1 s, at 0.02 s a step), as `transcribe()` allows."""
_NO_SPEECH = 0.6
_LOW_LOGPROB = -1.0
"""Whisper's own rule: a decode that is probably not speech and has low confidence is a
hallucination ("Thank you.", "Sous-titres...") and yields no words."""
_MAX_COMPRESSION = 2.4
"""Text that compresses better than this is a repetition loop (Whisper's threshold)."""
SURE_LANGUAGE = 0.8
"""Detected-language probability (over Whisper's 99 languages) above which the detection is
trusted. Measured on the samples: under a second of speech, wrong guesses score 0.06-0.38
(French heard as English), right ones from one second on mostly 0.8-1.0."""


@dataclass(frozen=True)
class RawWord:
    """A word as aligned by Whisper: text with its leading space, times from audio start."""

    text: str
    start_s: float
    end_s: float


BEST_OF = 5
"""Candidates sampled at a fallback temperature, the most likely kept (Whisper's `best_of`)."""


@dataclass(frozen=True)
class Search:
    """How a decode searches. Requests with equal searches share a model call."""

    beam_size: int = 1
    """1: greedy; more: beam search with that many beams, at temperature 0."""
    temperatures: tuple[float, ...] = ()
    """Temperatures (> 0) a failed decode is retried at, in order; empty: no fallback."""
    timestamps: bool = False
    """Let Whisper write its segment timestamp tokens, as in its training and `transcribe()`
    (dropped from the text; word times come from the alignment); False asks for text only."""

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"a search needs at least one beam, got {self.beam_size}")
        if not all(t > 0 for t in self.temperatures):
            raise ValueError(f"fallback temperatures sample, so they must be > 0: {self.temperatures}")


GREEDY = Search()


@dataclass(frozen=True)
class Decoded:
    words: list[RawWord]
    language: str
    language_sure: bool
    """The language was given, or detected with a probability of at least SURE_LANGUAGE."""
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    temperature: float = 0.0
    """Temperature of the try kept: above 0 when the first try failed."""
    tries: int = 1
    """Generations this window took: 1 plus its fallbacks (0: not generated, `sure_only`)."""

    @property
    def hallucinated(self) -> bool:
        """Whisper's rules for a decode that heard no speech or got stuck repeating itself."""
        return _silent(self.no_speech_prob, self.avg_logprob) or self.compression_ratio > _MAX_COMPRESSION


@dataclass(frozen=True)
class _Try:
    """One generation of one window: its text tokens and Whisper's measures of it."""

    tokens: list[int]
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    temperature: float

    @property
    def looping(self) -> bool:
        return self.compression_ratio > _MAX_COMPRESSION

    @property
    def failed(self) -> bool:
        """Whisper's rule for a retry at a higher temperature: a loop, or low confidence in
        what is not silence (silence is not retried: the engine drops it)."""
        low = self.avg_logprob < _LOW_LOGPROB
        return self.looping or (low and not _silent(self.no_speech_prob, self.avg_logprob))


def _silent(no_speech_prob: float, avg_logprob: float) -> bool:
    """Probably no speech, and decoded without confidence."""
    return no_speech_prob > _NO_SPEECH and avg_logprob < _LOW_LOGPROB


class Decoder:
    """Decodes of up to `context_s` of 16 kHz audio with a faster-whisper model.

    The encoder runs on `model`; generation, language detection and word alignment on
    `generator` (by default the same model), which may be a copy of the same weights with
    fewer threads: their operations are small (one token at a time), and on 2 AMD EPYC cores
    CTranslate2 generated 20-50% faster on one thread than on two, which spent the difference
    handing each operation between them, while the encoder's large ones gain from both."""

    def __init__(
        self,
        model: Any,
        languages: Sequence[str],
        context_s: float,
        pad_s: float = 0.0,
        *,
        generator: Any | None = None,
    ) -> None:
        """`context_s` and `pad_s` as `WhisperOptions` validated them: each window is padded
        with `pad_s` of silence, at most to `context_s` (`pad_s` 0: always to `context_s`)."""
        from faster_whisper.tokenizer import Tokenizer

        self._model = model
        self._generator = model if generator is None else generator
        self._languages = tuple(languages)
        self._multilingual = bool(model.model.is_multilingual)
        self.context_frames = _even(context_s * FRAMES_PER_SECOND)
        self.pad_frames = _even(pad_s * FRAMES_PER_SECOND)
        self._tokenizers = {
            lang: Tokenizer(
                model.hf_tokenizer,
                self._multilingual,
                task="transcribe",
                language=lang if self._multilingual else None,
            )
            for lang in self._languages
        }
        from faster_whisper.transcribe import get_suppressed_tokens

        self._suppressed = get_suppressed_tokens(self._tokenizers[self._languages[0]], [-1])
        """Token ids never generated: the same for every language (none is a language token)."""

    @property
    def max_audio_s(self) -> float:
        return self.context_frames / FRAMES_PER_SECOND

    def encoded_frames(self, frames: int) -> int:
        """Frames the encoder sees for a window of `frames` (see `encoded_frames`)."""
        return encoded_frames(frames, self.context_frames, self.pad_frames)

    def __call__(
        self, audio: npt.NDArray[np.float32], language: str | None, search: Search = GREEDY
    ) -> Decoded:
        """Decode `audio` (at most `max_audio_s`) in `language`, or the most likely of the
        decoder's languages when None."""
        return self.batch([(audio, language)], search)[0]

    def batch(
        self,
        items: Sequence[tuple[npt.NDArray[np.float32], str | None]],
        search: Search = GREEDY,
        *,
        sure_only: Sequence[bool] | None = None,
    ) -> list[Decoded]:
        """Decode several streams' windows in one call of each model stage: each window is
        padded to the context, encoded, the unknown languages detected, then all are generated
        together with `search` (each with its own language's prompt; the failed ones again at
        each fallback temperature) and aligned together per language. Results are in the
        order of `items`; each is what a decode of it alone would give at the batch's padding
        (every window is padded as the longest is).

        An item flagged in `sure_only` (one flag per item) whose language was neither given
        nor detected for sure stops after the detection (no words, `tries` 0): a partial
        decode's words in an unsure language are dropped by the engine, so generating them
        would only cost time."""
        from faster_whisper.audio import pad_or_trim

        features = [self._model.feature_extractor(audio) for audio, _ in items]
        frames = [min(int(f.shape[-1]), self.context_frames) for f in features]
        context = self.encoded_frames(max(frames))  # one length for the whole batch: the longest
        encoded = self._encode([pad_or_trim(f, context) for f in features])
        languages, sure = self._languages_of(encoded, [language for _, language in items])
        flags = [False] * len(items) if sure_only is None else sure_only
        rows = [i for i, (flag, known) in enumerate(zip(flags, sure, strict=True)) if known or not flag]
        out = [_undecoded(languages[i]) for i in range(len(items))]
        if not rows:
            return out
        encoded = _take(encoded, rows, len(items))
        tries = self._generate(encoded, [self._tokenizers[languages[i]] for i in rows], search)
        kept = [_keep(window) for window in tries]
        words = self._align(
            encoded, [languages[i] for i in rows], [k.tokens for k in kept], [frames[i] for i in rows]
        )
        for j, (i, k) in enumerate(zip(rows, kept, strict=True)):
            out[i] = Decoded(
                words=words[j],
                language=languages[i],
                language_sure=sure[i],
                no_speech_prob=k.no_speech_prob,
                avg_logprob=k.avg_logprob,
                compression_ratio=k.compression_ratio,
                temperature=k.temperature,
                tries=len(tries[j]),
            )
        return out

    def _generate(self, encoded: Any, tokenizers: list[Any], search: Search) -> list[list[_Try]]:
        """Every window generated at temperature 0 (greedy or beam search), then those whose
        try failed again at each fallback temperature, `BEST_OF` samples each, until they
        pass or the temperatures run out. Each window's tries, in order."""
        tries: list[list[_Try]] = [[] for _ in tokenizers]
        rows = list(range(len(tokenizers)))
        for temperature in (0.0, *search.temperatures):
            sampling: dict[str, Any] = (
                {"beam_size": search.beam_size}
                if temperature == 0
                else {
                    "beam_size": 1,
                    "num_hypotheses": BEST_OF,
                    "sampling_topk": 0,  # the whole distribution, as Whisper samples
                    "sampling_temperature": temperature,
                }
            )
            results = self._generator.model.generate(
                _take(encoded, rows, len(tokenizers)),
                [_prompt(tokenizers[i], search) for i in rows],
                max_length=_MAX_TOKENS,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=self._suppressed,
                **({"max_initial_timestamp_index": _MAX_INITIAL_TIMESTAMP} if search.timestamps else {}),
                **sampling,
            )
            for i, result in zip(rows, results, strict=True):
                tries[i].append(_measure(result, tokenizers[i], temperature))
            rows = [i for i in rows if tries[i][-1].failed]
            if not rows:
                break
        return tries

    def _encode(self, features: list[npt.NDArray[np.float32]]) -> Any:
        """The encoder's output for a batch of padded features, encoded one window at a time
        and joined: on CPU a batched encode costs as much per window (it is compute-bound), and
        only generation and alignment gain from the batch."""
        import ctranslate2

        if len(features) == 1:
            return self._model.encode(features[0])
        parts = [np.asarray(self._model.encode(f)) for f in features]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(parts)))

    def _languages_of(self, encoded: Any, asked: list[str | None]) -> tuple[list[str], list[bool]]:
        """Each window's language: the one asked for, else the detected one (and whether sure)."""
        languages = [lang if lang in self._tokenizers else "" for lang in asked]
        sure = [lang in self._tokenizers for lang in asked]
        if all(sure):
            return languages, sure
        if not self._multilingual:
            return [self._languages[0]] * len(asked), [True] * len(asked)
        for i, found in enumerate(self._generator.model.detect_language(encoded)):
            if sure[i]:
                continue
            probs = {token.strip("<|>"): prob for token, prob in found}
            best = max(self._languages, key=lambda lang: probs.get(lang, 0.0))
            languages[i], sure[i] = best, probs.get(best, 0.0) >= SURE_LANGUAGE
        return languages, sure

    def _align(
        self, encoded: Any, languages: list[str], tokens: list[list[int]], frames: list[int]
    ) -> list[list[RawWord]]:
        """Word times of every window with text, aligned together per language (the start
        sequence names the language, one per call)."""
        words: list[list[RawWord]] = [[] for _ in tokens]
        groups: dict[str, list[int]] = {}
        for i, ids in enumerate(tokens):
            if ids:
                groups.setdefault(languages[i], []).append(i)
        for language, rows in groups.items():
            aligned = self._generator.find_alignment(
                self._tokenizers[language],
                [tokens[i] for i in rows],
                _take(encoded, rows, len(tokens)),
                [frames[i] for i in rows],
            )
            for i, found in zip(rows, aligned, strict=True):
                words[i] = [RawWord(w["word"], float(w["start"]), float(w["end"])) for w in found]
        return words

    def probe(self, tokens: int) -> int:
        """A decode shaped like a stream's: 5 s of faint noise encoded, exactly `tokens` text
        tokens generated (end of text suppressed) and aligned. Silence would end at once and
        under-state the cost; the warm-up times this to estimate the decoder's capacity before
        real decodes refine it. Returns the tokens generated."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_suppressed_tokens

        noise = np.random.default_rng(0).standard_normal(5 * WHISPER_SAMPLE_RATE) * 0.01
        features = self._model.feature_extractor(noise.astype(np.float32))
        frames = min(int(features.shape[-1]), self.context_frames)
        encoded = self._model.encode(pad_or_trim(features, self.encoded_frames(frames)))
        tokenizer = self._tokenizers[self._languages[0]]
        result = self._generator.model.generate(
            encoded,
            [[*tokenizer.sot_sequence, tokenizer.no_timestamps]],
            beam_size=1,
            max_length=tokens,
            suppress_blank=True,
            suppress_tokens=[*get_suppressed_tokens(tokenizer, [-1]), tokenizer.eot],
        )[0]
        ids = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        if ids:
            self._generator.find_alignment(tokenizer, [ids], encoded, frames)
        return len(ids)


def _undecoded(language: str) -> Decoded:
    """A window not generated: its language was unsure and its words would be dropped."""
    return Decoded(
        words=[],
        language=language,
        language_sure=False,
        no_speech_prob=0.0,
        avg_logprob=0.0,
        compression_ratio=0.0,
        tries=0,
    )


def _prompt(tokenizer: Any, search: Search) -> list[int]:
    """The start of a decode: Whisper's start sequence for the language, then no-timestamps
    unless the search lets Whisper write them."""
    start = list(tokenizer.sot_sequence)
    return start if search.timestamps else [*start, tokenizer.no_timestamps]


def _take(encoded: Any, rows: list[int], windows: int) -> Any:
    """The encoder output of some of a batch's `windows` (all of it when `rows` are all)."""
    import ctranslate2

    if len(rows) == windows:
        return encoded
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[rows]))


def _measure(result: Any, tokenizer: Any, temperature: float) -> _Try:
    """A generation's text tokens and Whisper's measures of it. CTranslate2's scores are
    length-normalised (length penalty 1): the sum of log-probabilities over the tokens is
    the score times their count, averaged over them and the end of text as Whisper does."""
    tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
    total = float(result.scores[0]) * len(tokens)
    return _Try(
        tokens=tokens,
        no_speech_prob=float(result.no_speech_prob),
        avg_logprob=total / (len(tokens) + 1),
        compression_ratio=_compression_ratio(tokenizer.decode(tokens)),
        temperature=temperature,
    )


def _keep(tries: list[_Try]) -> _Try:
    """The try a window keeps: the first that did not fail; when all failed, the most likely
    one that is not a loop (the most likely of all if every one loops), as faster-whisper."""
    if not tries[-1].failed:
        return tries[-1]
    pool = [t for t in tries if not t.looping] or tries
    return max(pool, key=lambda t: t.avg_logprob)


def encoded_frames(frames: int, context: int, pad: int) -> int:
    """Mel frames the encoder sees for a window of `frames`: the window and `pad` frames of
    silence, at most `context` (`pad` 0: always `context`); an even number.

    The encoder's cost grows faster than its frames (attention) and the decoder's
    cross-attention with them: on 2 cores a 4 s window padded to 9 s encodes in a third of
    the time of one padded to 20 s. Whisper needs silence after the speech (with only 3 s it
    repeated words and lost some on the shared samples; 5 s gave the 20 s context's WER).
    """
    if not pad:
        return context
    return min(context, _even(frames) + pad)


def _even(frames: float) -> int:
    """Mel frames rounded to an even number: the encoder halves them."""
    return 2 * round(frames / 2)


def _compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


_DIGIT_GROUP = re.compile(r"-\d[\d.,]*")
"""A hyphen-led group of digits: the next group of a phone number or a range, not an elision."""


def stream_words(raw: Sequence[RawWord], offset_s: float, duration_s: float) -> list[WordEvent]:
    """Aligned words -> words in stream time.

    Whisper's alignment splits punctuation ("dog" + ".") and elisions ("d" + "'or") into
    words of their own, without the leading space that starts a word; they are glued to the
    word before, so a word is a word. Digit groups are not glued ("415" "-5555" "-2671" of a
    phone number stay three words): one glued word spanning seconds would not line up with
    the partial hypotheses' words already sent, and its new digits would be lost. Words past
    the end of the audio are dropped.
    """
    words: list[WordEvent] = []
    for word in raw:
        text = word.text.strip()
        if not text or word.start_s >= duration_s:
            continue
        start = offset_s + word.start_s
        end = offset_s + min(word.end_s, duration_s)
        if _DIGIT_GROUP.fullmatch(text):
            text = text.lstrip("-")
            words.append(WordEvent(text, start, end))
        elif words and (not word.text[:1].isspace() or not any(c.isalnum() for c in text)):
            words[-1] = WordEvent(words[-1].text + text, words[-1].start_s, max(end, words[-1].end_s))
        else:
            words.append(WordEvent(text, start, end))
    return words
