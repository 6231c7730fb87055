"""The slot table and step planning: which frame of which stream goes into the next step.

This is the scheduler's pure core, in the spirit of vLLM's scheduler: no threads, no
sockets, no tensors, so it is unit-tested directly. It is used by the live asyncio
scheduler (`stt.scheduler`) and by the offline path (`run_offline`) alike.

The loop around it is always: `plan()` -> `engine.step(plan.input)` -> `complete(plan, out)`.
Every step carries every stream that has a frame waiting, one frame each: streams never
exceed slots and slots never exceed the engine's batch, so no stream can starve, and a
stream with a backlog catches up one frame per step while the steps run back to back.

Each planned row remembers the id of the stream that owned the slot when the step was
planned. A stream that leaves while its step is in flight frees its slot at once; when the
step completes, rows whose owner is gone are dropped, so a reused slot never receives the
previous stream's words.

A stream's lead-in (the engine's `prefix_frames`) and flush padding are frames of that
stream alone, removed from its clock. A flush completes when the engine acknowledges it
(`FLUSHED` in the slot's events), in the flush row's step or a later one; until then the
stream keeps its slot, even after its last frame. Results that land between frames
(`StepOutput.late`) go to the stream the slot was last reset for, if it is still there.
Plans complete in the order they were made, one at a time.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from stt.audio import SampleArray, split_frames, to_float32_into
from stt.constants import FRAME_SAMPLES, SAMPLE_RATE
from stt.engine.interface import (
    Engine,
    EngineEvent,
    EngineInfo,
    FlushAck,
    PauseEvent,
    SlotEvent,
    StepInput,
    StepOutput,
    StreamOptions,
    WordEvent,
)

Frames = npt.NDArray[np.float32]
"""Float32 frames, shape (n, FRAME_SAMPLES): what engines get."""
QueuedFrames = SampleArray
"""Frames as a stream queues them: float32, or int16 PCM16 values (`stt.audio.pcm16_view`),
which `plan` converts for the whole step at once."""
_PCM16 = np.dtype(np.int16)

log = logging.getLogger(__name__)


class StreamListener(Protocol):
    """Receives a stream's results. Called on the thread that calls `StepPlanner.complete`."""

    def on_events(self, events: Sequence[EngineEvent]) -> None:
        """New words and pauses, timed in seconds of the client's own audio (padding removed)."""

    def on_flushed(self) -> None:
        """Every word of the audio sent before a `finalize` has been delivered (the engine
        acknowledged the flush)."""

    def on_finished(self) -> None:
        """End of stream reached and its flush acknowledged; the slot has been released."""

    def on_failed(self, error: BaseException) -> None:
        """The engine failed on a step holding this stream; the slot has been released."""


class Marker(enum.Enum):
    """What a flush row completes."""

    FINALIZE = "finalize"
    END = "end"


class StreamClosedError(RuntimeError):
    """The stream is unknown, already ended or already closed."""


@dataclass(frozen=True)
class Plan:
    """A planned step: the engine's input plus, per row, the owner and marker."""

    input: StepInput
    owners: tuple[int, ...]
    markers: tuple[Marker | None, ...]
    buffer: Frames | None = field(default=None, repr=False, compare=False)
    """The planner's array that `input.frames` is a view of, reused once this plan completes."""

    def __len__(self) -> int:
        return len(self.owners)


@dataclass
class _Stream:
    id: int
    slot: int
    options: StreamOptions
    listener: StreamListener
    blocks: deque[QueuedFrames] = field(default_factory=deque)
    head: int = 0
    """Index of the next unplanned frame inside blocks[0]."""
    queued: int = 0
    """Frames queued since the stream opened (the engine's timeline, padding included)."""
    planned: int = 0
    markers: deque[tuple[int, Marker]] = field(default_factory=deque)
    """(frame number, marker): the marker rides on that frame as its flush row."""
    unacked: deque[Marker] = field(default_factory=deque)
    """Markers of flush rows already planned, waiting for the engine's acknowledgement."""
    paddings: list[tuple[int, int]] = field(default_factory=list)
    """(start sample, length in samples) of silence the planner inserted (lead-in, flush
    padding), on the engine's timeline."""
    started: bool = False
    ending: bool = False

    @property
    def backlog(self) -> int:
        return self.queued - self.planned

    def to_stream_time(self, t: float) -> float:
        """Map an engine time to the client's audio time by removing inserted padding."""
        pos = t * SAMPLE_RATE
        shift = 0.0
        for start, length in self.paddings:
            if pos >= start + length:
                shift += length
            elif pos > start:
                shift += pos - start
            else:
                break
        return max(0.0, (pos - shift) / SAMPLE_RATE)


class StepPlanner:
    """Owns the slot table and every stream's queued frames. Not thread-safe by design:
    one owner (the event loop, or the offline loop) calls every method."""

    def __init__(self, info: EngineInfo) -> None:
        self.info = info
        self._free: list[int] = list(range(info.max_batch))
        heapq.heapify(self._free)
        self._streams: dict[int, _Stream] = {}
        self._ready: dict[int, None] = {}
        """Ids of streams with frames waiting, in arrival order (a set that keeps order)."""
        self._engine_owner: list[int] = [0] * info.max_batch
        """Per slot: the stream whose reset was planned last (0: none), whose state the
        engine holds there; late results of the slot are that stream's."""
        self._unacked = 0
        """Planned flushes of every open stream still waiting for their acknowledgement."""
        self._ids = itertools.count(1)
        self._staging = np.empty((0, FRAME_SAMPLES), dtype=np.int16)
        """Where `plan` gathers a step's PCM16 rows: kept from step to step (it never leaves
        `plan`), since a fresh array of this size costs a page fault per 4 KiB every step
        (about half of `plan`'s time at 60 rows: glibc hands such arrays back to the system)."""
        self._spare: Frames | None = None
        """The frames array of the last completed step, for the next plan to fill (see
        `StepInput.frames`: valid until its step completes)."""
        self.steps = 0
        self.frames_planned = 0

    # -- admission -------------------------------------------------------------------------

    @property
    def total_slots(self) -> int:
        return self.info.max_batch

    @property
    def used_slots(self) -> int:
        return len(self._streams)

    def open(self, listener: StreamListener, options: StreamOptions | None = None) -> int | None:
        """Reserve a free slot for a new stream; None when every slot is taken."""
        if not self._free:
            return None
        stream_id = next(self._ids)
        slot = heapq.heappop(self._free)
        self._streams[stream_id] = _Stream(stream_id, slot, options or StreamOptions(), listener)
        return stream_id

    def configure(self, stream_id: int, options: StreamOptions) -> None:
        """Set options; only before the stream's first frame reaches the engine."""
        stream = self._get(stream_id)
        if stream.started or stream.queued:
            raise StreamClosedError("options can only be set before the first audio")
        stream.options = options

    def slot_of(self, stream_id: int) -> int:
        return self._get(stream_id).slot

    def backlog(self, stream_id: int) -> int:
        """Frames queued but not yet planned into a step."""
        return self._get(stream_id).backlog

    # -- input -------------------------------------------------------------------------------

    def push(self, stream_id: int, frames: QueuedFrames) -> None:
        """Queue whole frames, shape (n, FRAME_SAMPLES): float32, or int16 PCM16 values."""
        stream = self._get(stream_id)
        if stream.ending:
            raise StreamClosedError("stream already ended")
        if frames.ndim != 2 or frames.shape[1] != FRAME_SAMPLES:
            raise ValueError(f"frames must be (n, {FRAME_SAMPLES}), got {frames.shape}")
        if frames.shape[0] == 0:
            return
        self._enqueue(stream, _queued(frames))

    def finalize(self, stream_id: int, tail: QueuedFrames, *, end: bool) -> None:
        """Flush: pad `tail` (< one frame of samples) and the engine's flush frames with
        silence; the last padded frame carries the marker. With `end`, the stream accepts
        no more input and is released once the marker completes."""
        stream = self._get(stream_id)
        if stream.ending:
            raise StreamClosedError("stream already ended")
        if tail.ndim != 1 or tail.size >= FRAME_SAMPLES:
            raise ValueError(f"tail must be fewer than {FRAME_SAMPLES} samples, got {tail.shape}")
        pad_frames = max(self.info.flush_frames, 0 if tail.size else 1)
        tail = _queued(tail)
        dtype = tail.dtype if tail.size else _PCM16
        block = np.zeros(((1 if tail.size else 0) + pad_frames, FRAME_SAMPLES), dtype=dtype)
        block[0, : tail.size] = tail
        self._pad(stream, block, tail.size)
        stream.markers.append((stream.queued - 1, Marker.END if end else Marker.FINALIZE))
        stream.ending = end

    def close(self, stream_id: int) -> None:
        """Drop a stream now (client gone): free its slot; results in flight are discarded."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._release(stream)

    def _pad(self, stream: _Stream, block: QueuedFrames, audio: int) -> None:
        """Queue `block`, whose samples after the first `audio` are inserted silence: they
        are taken off the stream's clock."""
        self._enqueue(stream, block)
        start = (stream.queued - block.shape[0]) * FRAME_SAMPLES + audio
        stream.paddings.append((start, block.size - audio))

    def _enqueue(self, stream: _Stream, frames: QueuedFrames) -> None:
        if stream.queued == 0 and self.info.prefix_frames:
            # The engine's lead-in: the stream's own first frames, off its clock.
            lead = np.zeros((self.info.prefix_frames, FRAME_SAMPLES), dtype=_PCM16)
            stream.blocks.append(lead)
            stream.queued = lead.shape[0]
            stream.paddings.append((0, lead.size))
        stream.blocks.append(frames)
        stream.queued += frames.shape[0]
        self._ready[stream.id] = None

    # -- the step ----------------------------------------------------------------------------

    def has_work(self) -> bool:
        return bool(self._ready)

    def plan(self) -> Plan | None:
        """Take one frame from every stream that has one; None when nothing is waiting.

        The per-row work is kept to bookkeeping: PCM16 rows are gathered as int16 and
        converted to float32 for the whole step in one pass (`to_float32_into`), and the
        rare per-row flags (a stream's first frame, a flush row) are set by index.
        """
        if not self._ready:
            return None
        ids = list(self._ready)
        n = len(ids)
        streams = self._streams
        if self._staging.shape[0] < n:
            self._staging = np.empty((min(self.info.max_batch, 2 * n), FRAME_SAMPLES), dtype=np.int16)
        pcm = self._staging[:n]
        floats: list[tuple[int, QueuedFrames]] = []
        slots = [0] * n
        options: list[StreamOptions | None] = [None] * n
        markers: list[Marker | None] = [None] * n
        resets: list[int] = []
        flushes: list[int] = []
        for row, stream_id in enumerate(ids):
            stream = streams[stream_id]
            blocks = stream.blocks
            block = blocks[0]
            head = stream.head
            if block.dtype is _PCM16:
                pcm[row] = block[head]
            else:
                floats.append((row, block[head]))
            head += 1
            if head == block.shape[0]:
                blocks.popleft()
                head = 0
            stream.head = head
            slots[row] = stream.slot
            if not stream.started:
                stream.started = True
                resets.append(row)
                options[row] = stream.options
                self._engine_owner[stream.slot] = stream_id
            if stream.markers and stream.markers[0][0] == stream.planned:
                marker = stream.markers.popleft()[1]
                markers[row] = marker
                stream.unacked.append(marker)
                self._unacked += 1
                flushes.append(row)
            stream.planned += 1
            if not blocks:
                del self._ready[stream_id]
        buffer = self._buffer_for(n)
        frames = to_float32_into(pcm, buffer[:n])
        for row, frame in floats:
            frames[row] = frame
        reset = np.zeros(n, dtype=np.bool_)
        reset[resets] = True
        flush = np.zeros(n, dtype=np.bool_)
        flush[flushes] = True
        self.steps += 1
        self.frames_planned += n
        batch = StepInput(
            slots=np.array(slots, dtype=np.int64), frames=frames, reset=reset, flush=flush, options=options
        )
        return Plan(batch, tuple(ids), tuple(markers), buffer)

    def _buffer_for(self, n: int) -> Frames:
        """A float32 array of at least n frames for a step: the spare one when it is large
        enough (no plan in flight uses it), else a new one sized for growth."""
        spare, self._spare = self._spare, None
        if spare is None or spare.shape[0] < n:
            spare = np.empty((min(self.info.max_batch, 2 * n), FRAME_SAMPLES), dtype=np.float32)
        return spare

    def _recycle(self, plan: Plan) -> None:
        """The plan's step is over: its frames array may serve a later plan."""
        buffer = plan.buffer
        if buffer is not None and (self._spare is None or buffer.shape[0] > self._spare.shape[0]):
            self._spare = buffer

    def collect_plan(self) -> Plan:
        """A step with no rows, run when the engine's `wake` resolved and no frame waits:
        it only brings back results that landed between frames."""
        self.steps += 1
        return Plan(StepInput.empty(), (), ())

    def awaiting_acks(self) -> bool:
        """Whether a planned flush still waits for the engine's acknowledgement."""
        return self._unacked > 0

    def complete(self, plan: Plan, output: StepOutput) -> None:
        """Route a finished step's events to the streams that owned the rows, and late results
        to the stream each slot was last reset for (dropped when it has left)."""
        if len(output.events) != len(plan):
            self.fail(plan, RuntimeError(f"engine returned {len(output.events)} rows for {len(plan)}"))
            return
        self._recycle(plan)
        for row, stream_id in enumerate(plan.owners):
            if output.events[row]:
                self._route(stream_id, output.events[row])
        for slot, events in output.late.items():
            if events:
                self._route(self._engine_owner[slot], events)

    def _route(self, stream_id: int, events: Sequence[SlotEvent]) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # left while the step was in flight; its slot may serve another stream
        try:
            self._deliver(stream, events)
        except Exception:
            # One listener's bug must not cost the other streams of the step their words.
            log.exception("listener of stream %d failed; closing it", stream_id)
            self.close(stream_id)

    def _deliver(self, stream: _Stream, events: Sequence[SlotEvent]) -> None:
        """Events up to each acknowledgement, then that flush's completion, in order."""
        words: list[EngineEvent] = []
        for event in events:
            if not isinstance(event, FlushAck):
                words.append(_retime(stream, event))
                continue
            if words:
                stream.listener.on_events(words)
                words = []
            if not stream.unacked:
                log.error("engine acknowledged a flush stream %d never sent; ignored", stream.id)
                continue
            self._unacked -= 1
            if stream.unacked.popleft() is Marker.END:
                self._release(stream)
                stream.listener.on_finished()
                return  # nothing can follow the end of the stream
            else:
                stream.listener.on_flushed()
        if words:
            stream.listener.on_events(words)

    def fail(self, plan: Plan, error: BaseException) -> None:
        """The step raised: release every stream it held and tell each one. A failed step
        without rows had only late results to bring: the streams waiting for them fail."""
        self._recycle(plan)
        owners = plan.owners if len(plan) else [s.id for s in self._streams.values() if s.unacked]
        for stream_id in owners:
            stream = self._streams.get(stream_id)
            if stream is not None:
                self._release(stream)
                stream.listener.on_failed(error)

    def fail_unacknowledged(self, error: BaseException) -> None:
        """The engine has nothing outstanding, yet flushes wait for it (an engine bug): fail
        those streams rather than keep their clients waiting for ever."""
        self.fail(Plan(StepInput.empty(), (), ()), error)

    # -- internals ----------------------------------------------------------------------------

    def _get(self, stream_id: int) -> _Stream:
        try:
            return self._streams[stream_id]
        except KeyError:
            raise StreamClosedError(f"stream {stream_id} is not open") from None

    def _release(self, stream: _Stream) -> None:
        self._unacked -= len(stream.unacked)
        del self._streams[stream.id]
        self._ready.pop(stream.id, None)
        heapq.heappush(self._free, stream.slot)


def _queued(frames: QueuedFrames) -> QueuedFrames:
    """Frames in one of the two forms `plan` gathers: native int16 (PCM16 values) or float32."""
    if frames.dtype is _PCM16 or frames.dtype == np.float32:
        return frames
    if frames.dtype.kind == "i":
        return frames.astype(np.int16)
    return frames.astype(np.float32)


def _retime(stream: _Stream, event: EngineEvent) -> EngineEvent:
    """An engine event with its times moved to the client's audio timeline."""
    if isinstance(event, WordEvent):
        return WordEvent(event.text, stream.to_stream_time(event.start_s), stream.to_stream_time(event.end_s))
    return PauseEvent(stream.to_stream_time(event.time_s), event.probability)


class _Collector:
    """Listener for the offline path: keeps words, notes completion."""

    def __init__(self) -> None:
        self.words: list[WordEvent] = []
        self.done = False
        self.error: BaseException | None = None

    def on_events(self, events: Sequence[EngineEvent]) -> None:
        self.words.extend(e for e in events if isinstance(e, WordEvent))

    def on_flushed(self) -> None:
        pass

    def on_finished(self) -> None:
        self.done = True

    def on_failed(self, error: BaseException) -> None:
        self.error = error
        self.done = True


def run_offline(
    engine: Engine, clips: Sequence[Frames], options: StreamOptions | None = None
) -> list[list[WordEvent]]:
    """Transcribe whole clips synchronously through the same planner as live streams.

    Clips take slots as they free up, so any number of clips runs in at most max_batch rows.
    When only acknowledgements are outstanding, it waits on the engine's `wake` (this is the
    caller's thread, not a shared engine thread) and runs a collecting step.
    """
    planner = StepPlanner(engine.info)
    collectors = [_Collector() for _ in clips]
    waiting = deque(range(len(clips)))
    wake: Future[None] | None = None
    while waiting or planner.has_work() or planner.awaiting_acks():
        while waiting:
            index = waiting[0]
            stream_id = planner.open(collectors[index], options)
            if stream_id is None:
                break
            waiting.popleft()
            frames, tail = split_frames(clips[index])
            planner.push(stream_id, frames)
            planner.finalize(stream_id, tail, end=True)
        plan = planner.plan()
        if plan is None:
            if wake is None:
                planner.fail_unacknowledged(RuntimeError("the engine left a flush unacknowledged"))
                continue
            wake.result()
            plan = planner.collect_plan()
        try:
            output = engine.step(plan.input)
        except Exception as exc:
            planner.fail(plan, exc)
            wake = None
        else:
            planner.complete(plan, output)
            wake = output.wake
    for collector in collectors:
        if collector.error is not None:
            raise RuntimeError("engine failed during offline transcription") from collector.error
    return [c.words for c in collectors]
