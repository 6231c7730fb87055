"""Small engines and listeners for tests (fakes over mocks)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stt.engine.base import BaseEngine
from stt.engine.fake.engine import FakeEngine
from stt.engine.interface import EngineEvent, EngineInfo, PauseEvent, StepInput, StepOutput, WordEvent


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


@dataclass
class Listener:
    """Collects what the planner / scheduler delivers to one stream."""

    words: list[WordEvent] = field(default_factory=list)
    flushed: int = 0
    finished: bool = False
    error: BaseException | None = None
    events: list[str] = field(default_factory=list)
    pauses: list[PauseEvent] = field(default_factory=list)

    def on_events(self, events: Sequence[EngineEvent]) -> None:
        for e in events:
            if isinstance(e, WordEvent):
                self.words.append(e)
                self.events.append(f"word:{e.text}")
            else:
                self.pauses.append(e)
                self.events.append("pause")

    def on_flushed(self) -> None:
        self.flushed += 1
        self.events.append("flushed")

    def on_finished(self) -> None:
        self.finished = True
        self.events.append("finished")

    def on_failed(self, error: BaseException) -> None:
        self.error = error
        self.events.append("failed")

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)
