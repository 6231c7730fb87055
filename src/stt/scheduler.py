"""The live scheduler: owns the engine, runs plan -> step -> complete on the event loop.

Engine steps run on one dedicated thread; the event loop only plans, awaits the step's
future and routes the results, so it never blocks on model work. A step starts as soon as
any stream has a frame waiting; while it runs, newly arrived frames queue up and all go
into the next step. Real-time clients deliver a frame every 80 ms, so under load this
settles into one full step per 80 ms tick, and a stream that fell behind (a burst, a large
chunk, a Finalize's padding) catches up in back-to-back steps without waiting for a tick.
`batch_wait_s` optionally holds the first step after an idle period so that frames arriving
together share it (worth it for engines whose step cost does not depend on batch size).

An engine with work outstanding between frames (a Whisper final decode after a stream's
last frame) returns a `wake` future with its step's output; when no frame waits, the loop
sleeps on its one event until either a frame or that future arrives, and then runs the
next step, with no rows if need be, to bring the results back. Nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from stt.audio import split_frames
from stt.engine.base import warm_up
from stt.engine.interface import (
    Capacity,
    Engine,
    EngineEvent,
    EngineInfo,
    StepOutput,
    StreamOptions,
    WordEvent,
    capacity_of,
)
from stt.planner import Frames, Plan, QueuedFrames, StepPlanner, StreamListener

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class NoCapacityError(RuntimeError):
    """No slot became free in time."""


class EngineFailedError(RuntimeError):
    """The engine raised on a step that held this stream (the cause is chained)."""


@dataclass
class SchedulerStats:
    """Counters for metrics and benchmarks (read on the event loop)."""

    steps: int = 0
    rows: int = 0
    failed_steps: int = 0
    busy_s: float = 0.0
    last_step_s: float = 0.0
    last_rows: int = 0


StepObserver = Callable[[float, int], None]
"""Called on the event loop after each step with (seconds, rows): seconds is the engine's own
time in `step`, measured on the engine thread (not the hand-off to it and back, which is the
server's); rows is 0 for a step that only collected results landed between frames (see
`StepOutput.wake`)."""


class StreamPort(Protocol):
    """What a StreamHandle may ask of the scheduler, for one stream id: the per-stream calls
    of the planner, with the loop woken when input arrives and waiters told of a freed slot."""

    def slot_of(self, stream_id: int) -> int: ...

    def backlog(self, stream_id: int) -> int: ...

    def configure(self, stream_id: int, options: StreamOptions) -> None: ...

    def push(self, stream_id: int, frames: QueuedFrames) -> None: ...

    def finalize(self, stream_id: int, tail: QueuedFrames, *, end: bool) -> None: ...

    def release(self, stream_id: int) -> None: ...

    def watch_steps(self, stream_id: int, watcher: Callable[[], None]) -> None: ...


class StreamHandle:
    """A stream's way into the scheduler. Methods are called on the event loop."""

    def __init__(self, port: StreamPort, stream_id: int) -> None:
        self._port = port
        self.id = stream_id
        self.closed = False

    @property
    def slot(self) -> int:
        return self._port.slot_of(self.id)

    @property
    def backlog_frames(self) -> int:
        """Frames received but not yet stepped."""
        return self._port.backlog(self.id)

    def configure(self, options: StreamOptions) -> None:
        self._port.configure(self.id, options)

    def push(self, frames: QueuedFrames) -> None:
        """Queue whole frames, shape (n, FRAME_SAMPLES): float32, or int16 PCM16 values."""
        if frames.shape[0]:
            self._port.push(self.id, frames)

    def finalize(self, tail: QueuedFrames, *, end: bool) -> None:
        """Flush everything sent so far (`tail` is the last partial frame's samples)."""
        self._port.finalize(self.id, tail, end=end)

    def watch_steps(self, watcher: Callable[[], None]) -> None:
        """Call `watcher` on the event loop after every engine step that advanced this stream
        (after the step's results were delivered), until the stream is released. Protocols
        that report each model step (Kyutai's `Step`) and backpressure use it."""
        self._port.watch_steps(self.id, watcher)

    def close(self) -> None:
        """Drop the stream now and free its slot (idempotent)."""
        if not self.closed:
            self.closed = True
            self._port.release(self.id)


class _Port:
    """The scheduler's StreamPort: the planner's per-stream calls plus the loop's wake-up."""

    def __init__(self, planner: StepPlanner, wake: Callable[[], None], freed: Callable[[], None]) -> None:
        self._planner = planner
        self._wake = wake
        self._freed = freed
        self.step_watchers: dict[int, Callable[[], None]] = {}
        """Per stream id: called after each step that held the stream (see watch_steps)."""

    def slot_of(self, stream_id: int) -> int:
        return self._planner.slot_of(stream_id)

    def backlog(self, stream_id: int) -> int:
        return self._planner.backlog(stream_id)

    def configure(self, stream_id: int, options: StreamOptions) -> None:
        self._planner.configure(stream_id, options)

    def push(self, stream_id: int, frames: QueuedFrames) -> None:
        self._planner.push(stream_id, frames)
        self._wake()

    def finalize(self, stream_id: int, tail: QueuedFrames, *, end: bool) -> None:
        self._planner.finalize(stream_id, tail, end=end)
        self._wake()

    def release(self, stream_id: int) -> None:
        self.step_watchers.pop(stream_id, None)
        self._planner.close(stream_id)
        self._freed()

    def watch_steps(self, stream_id: int, watcher: Callable[[], None]) -> None:
        self._planner.slot_of(stream_id)  # raises for a stream that is not open
        self.step_watchers[stream_id] = watcher

    def stepped(self, owners: Sequence[int]) -> None:
        """Tell the watchers of a finished step's streams (a watcher's bug closes only its stream)."""
        watchers = self.step_watchers
        if not watchers:
            return
        for stream_id in owners:
            watcher = watchers.get(stream_id)
            if watcher is None:
                continue
            try:
                watcher()
            except Exception:
                log.exception("step watcher of stream %d failed; closing it", stream_id)
                self.release(stream_id)


class _WordsFuture:
    """Listener that resolves a future with the stream's words (the offline path)."""

    def __init__(self, future: asyncio.Future[list[WordEvent]]) -> None:
        self.future = future
        self.words: list[WordEvent] = []

    def on_events(self, events: Sequence[EngineEvent]) -> None:
        self.words.extend(e for e in events if isinstance(e, WordEvent))

    def on_flushed(self) -> None:
        pass

    def on_finished(self) -> None:
        if not self.future.done():
            self.future.set_result(self.words)

    def on_failed(self, error: BaseException) -> None:
        if not self.future.done():
            failure = EngineFailedError("the engine failed while processing this stream")
            failure.__cause__ = error
            self.future.set_exception(failure)


class Scheduler:
    """Streams hold a slot with `async with stream(...)`, feed frames through their handle,
    and get results through their listener. Start with `await start()`, stop with `await stop()`."""

    def __init__(
        self, engine: Engine, *, batch_wait_s: float = 0.0, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        """`clock` times each step on the engine thread (tests pass a fake one)."""
        self.engine = engine
        self._clock = clock
        self.info: EngineInfo = engine.info
        self.stats = SchedulerStats()
        self._planner = StepPlanner(self.info)
        self._batch_wait_s = batch_wait_s
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._port = _Port(self._planner, self._wake.set, self._slot_freed)
        self._observers: list[StepObserver] = []
        self._idle = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, warmup: bool = True) -> None:
        """Start the engine thread, warm the engine up on it, then start stepping."""
        if self._task is not None:
            raise RuntimeError("scheduler already started")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt-engine")
        if warmup:
            started = time.perf_counter()
            await self.run_on_engine_thread(lambda: warm_up(self.engine))
            log.info("engine %s warmed up in %.2f s", self.info.name, time.perf_counter() - started)
        self._task = asyncio.create_task(self._loop(), name="stt-scheduler")

    async def stop(self) -> None:
        """Stop stepping, close the engine on its thread and end the thread."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._executor is not None:
            executor, self._executor = self._executor, None
            try:
                await asyncio.get_running_loop().run_in_executor(executor, self.engine.close)
            finally:
                await asyncio.to_thread(executor.shutdown, wait=True)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run_on_engine_thread(self, fn: Callable[[], _T]) -> _T:
        """Run `fn` on the engine thread (model calls must never run anywhere else)."""
        if self._executor is None:
            raise RuntimeError("scheduler not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def add_step_observer(self, observer: StepObserver) -> None:
        self._observers.append(observer)

    @property
    def idle(self) -> bool:
        """The loop is waiting for frames (nothing to step): the next frame wakes it, after
        `batch_wait_s` if set. Tests check this state before they rely on it."""
        return self._idle

    # -- admission -----------------------------------------------------------------------------

    @property
    def used_slots(self) -> int:
        return self._planner.used_slots

    @property
    def total_slots(self) -> int:
        return self._planner.total_slots

    @property
    def capacity(self) -> Capacity:
        """Streams admitted now: the engine's measured capacity, else its slots."""
        return capacity_of(self.engine)

    def open(self, listener: StreamListener, options: StreamOptions | None = None) -> StreamHandle | None:
        """Reserve a slot now, or return None when all are busy or the engine's capacity is
        reached (then running streams keep their latency). The caller must close the handle;
        `stream()` does it for you and is what servers use."""
        if self._planner.used_slots >= self.capacity.streams:
            return None
        stream_id = self._planner.open(listener, options)
        return None if stream_id is None else StreamHandle(self._port, stream_id)

    @contextlib.asynccontextmanager
    async def stream(
        self, listener: StreamListener, options: StreamOptions | None = None, *, wait_s: float = 0.0
    ) -> AsyncIterator[StreamHandle]:
        """Hold a slot for the body of an `async with`: taken on entry, released on exit
        whatever happens in between (an accept() that fails, a cancelled handler).

        Raises NoCapacityError when no slot is free, after waiting up to `wait_s` for one.
        """
        handle = self.open(listener, options)
        if handle is None:
            handle = await self._wait_for_slot(listener, options, wait_s)
        try:
            yield handle
        finally:
            handle.close()

    async def _wait_for_slot(
        self, listener: StreamListener, options: StreamOptions | None, wait_s: float
    ) -> StreamHandle:
        if wait_s <= 0:
            raise NoCapacityError(self._refusal())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (handle := self.open(listener, options)) is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise NoCapacityError(f"no free slot within {wait_s:g} s")
            waiter: asyncio.Future[None] = loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            finally:
                if waiter in self._slot_waiters:
                    self._slot_waiters.remove(waiter)
        return handle

    async def transcribe(
        self, audio: Frames, options: StreamOptions | None = None, *, slot_wait_s: float = 30.0
    ) -> list[WordEvent]:
        """Offline: a whole clip through the live batch, beside the live streams."""
        frames, tail = split_frames(audio)
        listener = _WordsFuture(asyncio.get_running_loop().create_future())
        async with self.stream(listener, options, wait_s=slot_wait_s) as handle:
            handle.push(frames)
            handle.finalize(tail, end=True)
            return await listener.future

    def _refusal(self) -> str:
        capacity = self.capacity
        if capacity.streams < self.total_slots:
            how = "measured decoder cost" if capacity.source == "measured" else capacity.source
            streams = "1 stream" if capacity.streams == 1 else f"{capacity.streams} streams"
            return (
                f"the engine takes {streams} within its latency budget ({how}) and all are busy; retry later"
            )
        return f"all {self.total_slots} slots are busy; retry later"

    @property
    def waiting_for_slots(self) -> int:
        """Streams still waiting in `stream(wait_s=...)` for a slot (tests check this state)."""
        return sum(not waiter.done() for waiter in self._slot_waiters)

    def _slot_freed(self) -> None:
        """Wake as many slot waiters as there are free slots (called after every step: the
        engine's capacity is only asked when someone waits)."""
        if not self._slot_waiters:
            return
        free = min(self._planner.total_slots, self.capacity.streams) - self._planner.used_slots
        while free > 0 and self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    # -- the loop ------------------------------------------------------------------------------

    def _wake_from_thread(self, loop: asyncio.AbstractEventLoop) -> Callable[[object], None]:
        """A done-callback for the engine's `wake` (run on whichever thread resolves it)."""

        def wake(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
                loop.call_soon_threadsafe(self._wake.set)

        return wake

    async def _loop(self) -> None:
        """plan -> step on the engine thread -> complete, for as long as the scheduler runs."""
        loop = asyncio.get_running_loop()
        assert self._executor is not None
        wake: Future[None] | None = None
        """The last step's promise of results between frames (None: nothing outstanding)."""
        watched: Future[None] | None = None
        while True:
            plan = self._planner.plan()
            if plan is None:
                if wake is not None and wake.done():
                    plan, wake = self._planner.collect_plan(), None
                elif wake is None and self._planner.awaiting_acks():
                    log.error("engine %s left a flush unacknowledged", self.info.name)
                    self._planner.fail_unacknowledged(RuntimeError("the engine left a flush unacknowledged"))
                    self._slot_freed()
                    continue
                else:
                    self._wake.clear()
                    if wake is not None and wake is not watched:
                        watched = wake
                        wake.add_done_callback(self._wake_from_thread(loop))
                    self._idle = True
                    try:
                        await self._wake.wait()
                    finally:
                        self._idle = False
                    if self._batch_wait_s and self._planner.has_work():
                        await asyncio.sleep(self._batch_wait_s)
                    continue
            try:
                output, elapsed = await loop.run_in_executor(self._executor, self._timed_step, plan)
            except Exception as exc:
                self.stats.failed_steps += 1
                log.exception("engine step failed; failing its %d stream(s)", len(plan))
                self._planner.fail(plan, exc)
                self._slot_freed()
                wake = None
                continue
            stats = self.stats
            stats.steps += 1
            stats.rows += len(plan)
            stats.busy_s += elapsed
            stats.last_step_s = elapsed
            stats.last_rows = len(plan)
            self._planner.complete(plan, output)
            wake = output.wake
            self._port.stepped(plan.owners)
            self._slot_freed()
            for observer in self._observers:
                observer(elapsed, len(plan))

    def _timed_step(self, plan: Plan) -> tuple[StepOutput, float]:
        """On the engine thread: the step and the engine's own time in it."""
        started = self._clock()
        output = self.engine.step(plan.input)
        return output, self._clock() - started
