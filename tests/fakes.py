"""Small engines, listeners and connections for tests (fakes over mocks)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from stt.engine.base import BaseEngine
from stt.engine.fake.engine import FakeEngine
from stt.engine.interface import (
    Capacity,
    EngineEvent,
    EngineInfo,
    PauseEvent,
    SlotEvent,
    StepInput,
    StepOutput,
    WordEvent,
)
from stt.session import Disconnect, Incoming


@dataclass
class StepRecord:
    slots: list[int]
    reset: list[bool]
    flush: list[bool]
    thread: str


class RecordingEngine(BaseEngine):
    """Wraps the fake engine and records every step it is given."""

    def __init__(self, inner: FakeEngine | None = None, **kwargs: object) -> None:
        self.inner = inner or FakeEngine(**kwargs)  # type: ignore[arg-type]
        self.records: list[StepRecord] = []
        self.closed = False

    @property
    def info(self) -> EngineInfo:
        return self.inner.info

    def step(self, batch: StepInput) -> StepOutput:
        self.records.append(
            StepRecord(
                [int(s) for s in batch.slots],
                [bool(r) for r in batch.reset],
                [bool(f) for f in batch.flush],
                threading.current_thread().name,
            )
        )
        return self.inner.step(batch)

    def close(self) -> None:
        self.closed = True


class FailingEngine(RecordingEngine):
    """Raises on any step for which `should_fail(batch)` is true."""

    def __init__(self, should_fail: Callable[[StepInput], bool], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.should_fail = should_fail

    def step(self, batch: StepInput) -> StepOutput:
        if self.should_fail(batch):
            raise RuntimeError("boom: simulated engine failure")
        return super().step(batch)


class LateAckEngine(RecordingEngine):
    """Like Whisper: a flushed slot's last words and its acknowledgement land after the flush
    row's step, here when the test calls `release()` (on any thread), or at the end of the
    next step with `land_at_once`. Until then the slot's events are held back, later rows'
    too, so the slot's events stay in order."""

    def __init__(self, *, land_at_once: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.land_at_once = land_at_once
        self.held: dict[int, list[SlotEvent]] = {}
        self._due: set[int] = set()
        self._lock = threading.Lock()
        self._wake: Future[None] = Future()

    def release(self) -> None:
        """Everything held now has landed: the next step returns it."""
        with self._lock:
            self._due.update(self.held)
            wake, self._wake = self._wake, Future()
        wake.set_result(None)

    def step(self, batch: StepInput) -> StepOutput:
        out = super().step(batch)
        events = [list(e) for e in out.events]
        late: dict[int, list[SlotEvent]] = {}
        with self._lock:
            for row, slot in enumerate(batch.slots.tolist()):
                if batch.reset[row]:
                    self.held.pop(slot, None)
                    self._due.discard(slot)
                if slot in self._due:
                    events[row][:0] = self.held.pop(slot)
                    self._due.discard(slot)
                elif slot in self.held or batch.flush[row]:
                    self.held.setdefault(slot, []).extend(events[row])
                    events[row] = []
            for slot in self._due:
                late[slot] = self.held.pop(slot)
            self._due.clear()
            if self.land_at_once:
                self._due.update(self.held)
            wake = None
            if self.held:
                wake = self._wake
                if self.land_at_once:
                    wake.set_result(None)
                    self._wake = Future()
        return StepOutput(events, late, wake)


class AckDroppingEngine(RecordingEngine):
    """A broken engine: it never acknowledges a flush and promises nothing."""

    def step(self, batch: StepInput) -> StepOutput:
        out = super().step(batch)
        return StepOutput([[e for e in row if isinstance(e, WordEvent | PauseEvent)] for row in out.events])


class GatedEngine(RecordingEngine):
    """Every step signals `entered`, then holds until the test opens `gate` (a step that
    takes as long as the test needs, without guessing a duration)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def step(self, batch: StepInput) -> StepOutput:
        self.entered.set()
        if not self.gate.wait(10):
            raise RuntimeError("the test never opened the gate")
        return super().step(batch)


class MeasuredEngine(RecordingEngine):
    """The fake engine with a capacity of its own, as a measuring engine reports it; the test
    sets `streams` (what a measurement would say) at any time."""

    def __init__(self, streams: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.streams = streams

    def capacity(self) -> Capacity:
        return Capacity(self.streams, "measured", self.streams, decode_s=0.25, budget_s=1.0, samples=3)


@dataclass
class Listener:
    """Collects what the planner / scheduler delivers to one stream."""

    words: list[WordEvent] = field(default_factory=list)
    flushed: int = 0
    finished: bool = False
    error: BaseException | None = None
    events: list[str] = field(default_factory=list)
    pauses: list[PauseEvent] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    """Set by every callback, so a test awaits results instead of polling for them."""

    async def until(self, predicate: Callable[[Listener], bool], timeout_s: float = 10.0) -> None:
        """Wait until `predicate(self)` holds (on the loop that delivers the results)."""
        async with asyncio.timeout(timeout_s):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    async def done(self, timeout_s: float = 10.0) -> None:
        """Wait until the stream finished or failed."""
        await self.until(lambda listener: listener.finished or listener.error is not None, timeout_s)

    def on_events(self, events: Sequence[EngineEvent]) -> None:
        for e in events:
            if isinstance(e, WordEvent):
                self.words.append(e)
                self.events.append(f"word:{e.text}")
            else:
                self.pauses.append(e)
                self.events.append("pause")
        self._changed.set()

    def on_flushed(self) -> None:
        self.flushed += 1
        self.events.append("flushed")
        self._changed.set()

    def on_finished(self) -> None:
        self.finished = True
        self.events.append("finished")
        self._changed.set()

    def on_failed(self, error: BaseException) -> None:
        self.error = error
        self.events.append("failed")
        self._changed.set()

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


class FakeConnection:
    """Feeds scripted messages; records what the session sends and how it closes."""

    def __init__(self, script: list[Incoming], *, hold_open: bool = True) -> None:
        self._script: asyncio.Queue[Incoming] = asyncio.Queue()
        for item in script:
            self._script.put_nowait(item)
        self._hold_open = hold_open
        self.sent: list[dict[str, object]] = []
        self.closed: tuple[int, str] | None = None
        self.accepted = False

    async def accept(self) -> None:
        self.accepted = True

    async def receive(self) -> Incoming:
        if self._script.empty() and not self._hold_open:
            return Disconnect(1000)
        return await self._script.get()

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = (code, reason)
        self._script.put_nowait(Disconnect(code))
