"""The async scheduler: engine thread, no blocking, join/leave, failures, offline path."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
import pytest

from stt.audio import split_frames
from stt.constants import FRAME_SAMPLES
from stt.engine.fake.tones import encode_text
from stt.engine.interface import StepInput, StepOutput, StreamOptions
from stt.planner import Frames
from stt.scheduler import EngineFailedError, NoCapacityError, Scheduler, StreamHandle
from tests.fakes import (
    AckDroppingEngine,
    FailingEngine,
    GatedEngine,
    LateAckEngine,
    Listener,
    MeasuredEngine,
    RecordingEngine,
)


async def steps_until(scheduler: Scheduler, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until `predicate()` holds, checked after every completed step (a step observer)."""
    reached = asyncio.Event()

    def check(seconds: float, rows: int) -> None:
        if not reached.is_set() and predicate():
            reached.set()  # and never looked at again: the observer outlives the wait

    if predicate():
        return
    scheduler.add_step_observer(check)
    await asyncio.wait_for(reached.wait(), timeout_s)


def send(handle: object, text: str, *, end: bool = True) -> None:
    frames, tail = split_frames(encode_text(text))
    handle.push(frames)  # type: ignore[attr-defined]
    handle.finalize(tail, end=end)  # type: ignore[attr-defined]


def test_steps_run_on_the_engine_thread_and_warmup_first() -> None:
    async def main() -> None:
        engine = RecordingEngine(slots=2, delay_frames=1)
        scheduler = Scheduler(engine)
        await scheduler.start()
        assert engine.inner.steps == 2  # warmup
        listener = Listener()
        handle = scheduler.open(listener)
        assert handle is not None
        send(handle, "thread")
        await listener.done()
        await scheduler.stop()
        assert listener.text == "thread"
        names = {r.thread for r in engine.records}
        assert names and all(n.startswith("stt-engine") for n in names)
        assert threading.current_thread().name not in names
        assert engine.closed

    asyncio.run(main())


def test_the_event_loop_runs_while_a_step_is_in_progress() -> None:
    """A step held on the engine thread for as long as the test likes: meanwhile the loop
    admits and feeds another stream, and nothing is delivered before the step returns."""

    async def main() -> None:
        engine = GatedEngine(slots=2, delay_frames=0)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        first, second = Listener(), Listener()
        handle = scheduler.open(first)
        assert handle is not None
        send(handle, "held")
        assert await asyncio.to_thread(engine.entered.wait, 10), "no step started"
        other = scheduler.open(second)  # the loop is free while the step holds
        assert other is not None
        send(other, "next")
        assert engine.records == [] and first.events == []  # the step has not returned yet
        engine.gate.set()
        await first.done()
        await second.done()
        await scheduler.stop()
        assert (first.text, second.text) == ("held", "next")
        assert all(r.thread.startswith("stt-engine") for r in engine.records)

    asyncio.run(main())


def test_admission_is_bounded_and_rows_never_exceed_max_batch() -> None:
    async def main() -> None:
        engine = RecordingEngine(slots=3, delay_frames=2)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        listeners = [Listener() for _ in range(5)]
        handles = [scheduler.open(listener) for listener in listeners]
        assert [h is not None for h in handles] == [True, True, True, False, False]
        assert scheduler.used_slots == scheduler.total_slots == 3
        for h in handles[:3]:
            assert h is not None
            send(h, "abc def")
        for listener in listeners[:3]:
            await listener.done()
        assert scheduler.used_slots == 0
        await scheduler.stop()
        assert [listener.text for listener in listeners[:3]] == ["abc def"] * 3
        assert max(len(r.slots) for r in engine.records) == 3

    asyncio.run(main())


def test_admission_stops_at_the_engines_measured_capacity_and_follows_it() -> None:
    """Slots free but past the capacity: refused as if full; a capacity that rises (a
    measurement) or a stream that leaves lets the next one in; running streams go on."""

    async def main() -> None:
        engine = MeasuredEngine(2, slots=4, delay_frames=1)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        assert (scheduler.capacity.streams, scheduler.capacity.source) == (2, "measured")
        listeners = [Listener() for _ in range(4)]
        a, b, refused = (scheduler.open(listener) for listener in listeners[:3])
        assert a is not None and b is not None and refused is None
        with pytest.raises(NoCapacityError, match="takes 2 streams within its latency budget"):
            async with scheduler.stream(Listener()):
                pass
        waiting = asyncio.create_task(scheduler.transcribe(encode_text("queued"), slot_wait_s=5))
        await asyncio.sleep(0)  # the task runs up to its wait for a slot
        assert scheduler.waiting_for_slots == 1
        send(a, "first")
        await listeners[0].done()  # a leaves: its place goes to the waiting clip
        assert [w.text for w in await waiting] == ["queued"]
        engine.streams = 3
        c, d = scheduler.open(listeners[3]), scheduler.open(listeners[2])
        assert c is not None and d is not None
        assert scheduler.open(Listener()) is None  # b, c, d: 3 of 4 slots, the capacity
        send(b, "second")
        send(c, "third")
        send(d, "fourth")
        await asyncio.gather(*(listener.done() for listener in listeners[1:]))
        await scheduler.stop()
        assert [listener.text for listener in listeners] == ["first", "second", "fourth", "third"]

    asyncio.run(main())


def test_an_engine_that_measures_nothing_has_its_slots_as_capacity() -> None:
    scheduler = Scheduler(RecordingEngine(slots=3))
    assert scheduler.capacity.as_dict() == {
        "streams": 3,
        "source": "slots",
        "measured_streams": None,
        "decode_s": None,
        "decode_s_per_audio_s": None,
        "budget_s": None,
        "samples": 0,
    }
    assert Scheduler(MeasuredEngine(9, slots=3)).capacity.streams == 3  # never past the slots


def test_streams_join_and_leave_a_running_batch() -> None:
    async def main() -> None:
        engine = RecordingEngine(slots=2, delay_frames=2, step_cost_s=0.002)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        long_listener = Listener()
        long_handle = scheduler.open(long_listener)
        assert long_handle is not None
        long_text = " ".join(f"w{i}" for i in range(30))
        frames, tail = split_frames(encode_text(long_text))
        long_handle.push(frames[:40])  # the long stream is mid-way when others come and go

        leaver = Listener()
        leaving = scheduler.open(leaver)
        assert leaving is not None
        leaving.push(split_frames(encode_text("zzzz zzzz"))[0][:3])
        await steps_until(scheduler, lambda: leaving.backlog_frames == 1)  # two frames stepped...
        assert leaving.backlog_frames == 0  # ...and the loop went on: the third is in flight
        leaving.close()  # disconnect mid-word, with a step in flight

        joiner = Listener()
        joining = scheduler.open(joiner)
        assert joining is not None and joining.slot == 1  # the freed slot is reused
        send(joining, "fresh")
        long_handle.push(frames[40:])
        long_handle.finalize(tail, end=True)
        await long_listener.done()
        await joiner.done()
        await scheduler.stop()
        assert long_listener.text == long_text
        assert joiner.text == "fresh"  # nothing of the stream that left before it
        assert leaver.events == []  # it left mid-word: no word, and no end either
        slot1 = [r.reset[r.slots.index(1)] for r in engine.records if 1 in r.slots]
        assert slot1[:4] == [True, False, False, True], slot1  # the joiner's first step resets
        assert slot1.count(True) == 2

    asyncio.run(main())


def test_a_backlogged_stream_does_not_delay_a_real_time_one() -> None:
    """Each step carries every ready stream: a 10 s burst does not queue ahead of others.
    Counted in steps (the engine's clock), so a busy CPU cannot change the outcome."""

    async def main() -> tuple[int, int]:
        engine = RecordingEngine(slots=2, delay_frames=0)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        finished_at: dict[str, int] = {}

        class Timed(Listener):
            def __init__(self, name: str) -> None:
                super().__init__()
                self.name = name

            def on_finished(self) -> None:
                finished_at[self.name] = len(engine.records)  # steps so far, this one included
                super().on_finished()

        bulk, live = Timed("bulk"), Timed("live")
        bulk_handle, live_handle = scheduler.open(bulk), scheduler.open(live)
        assert bulk_handle is not None and live_handle is not None
        bulk_text = " ".join(["backlog"] * 15)  # 120 frames
        send(bulk_handle, bulk_text)
        send(live_handle, "hi")  # 3 frames and the flush's padding frame
        await live.done()
        await bulk.done()
        await scheduler.stop()
        assert bulk.text == bulk_text and live.text == "hi"
        return finished_at["live"], finished_at["bulk"]

    live_steps, bulk_steps = asyncio.run(main())
    assert (live_steps, bulk_steps) == (4, 121)


def test_engine_failure_fails_only_the_streams_of_that_step() -> None:
    poison = split_frames(encode_text("x", gap_frames=0))[0][0]

    def is_poisoned(batch: object) -> bool:
        return any(np.array_equal(f, poison) for f in batch.frames)  # type: ignore[attr-defined]

    async def main() -> None:
        engine = FailingEngine(is_poisoned, slots=2, delay_frames=0)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        victim = Listener()
        handle = scheduler.open(victim)
        assert handle is not None
        send(handle, "x")
        await victim.done()
        assert victim.error is not None and not victim.finished
        assert scheduler.stats.failed_steps == 1 and scheduler.used_slots == 0
        survivor = Listener()
        handle = scheduler.open(survivor)
        assert handle is not None
        send(handle, "fine")
        await survivor.done()
        await scheduler.stop()
        assert survivor.text == "fine"

    asyncio.run(main())


def test_offline_transcribe_shares_the_batch_with_live_streams() -> None:
    async def main() -> None:
        engine = RecordingEngine(slots=2, delay_frames=3)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        live = Listener()
        handle = scheduler.open(live)
        assert handle is not None
        send(handle, "live words")
        words = await scheduler.transcribe(encode_text("offline clip"), StreamOptions(language="en"))
        await live.done()
        await scheduler.stop()
        assert [w.text for w in words] == ["offline", "clip"]
        assert live.text == "live words"
        assert any(len(r.slots) == 2 for r in engine.records)  # they really shared steps

    asyncio.run(main())


def test_offline_waits_for_a_slot_then_times_out() -> None:
    async def main() -> None:
        engine = RecordingEngine(slots=1, delay_frames=0)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        holder = scheduler.open(Listener())
        assert holder is not None
        with pytest.raises(NoCapacityError):
            await scheduler.transcribe(encode_text("wait"), slot_wait_s=0.05)
        task = asyncio.create_task(scheduler.transcribe(encode_text("queued"), slot_wait_s=5))
        await asyncio.sleep(0)  # one loop iteration: the new task runs up to its wait for a slot
        assert scheduler.waiting_for_slots == 1 and not task.done()
        holder.close()
        words = await task
        await scheduler.stop()
        assert [w.text for w in words] == ["queued"]

    asyncio.run(main())


def test_offline_transcribe_reports_engine_failure() -> None:
    async def main() -> None:
        scheduler = Scheduler(FailingEngine(lambda batch: True, slots=1))
        await scheduler.start(warmup=False)
        with pytest.raises(EngineFailedError):
            await scheduler.transcribe(encode_text("boom"))
        await scheduler.stop()

    asyncio.run(main())


@pytest.mark.parametrize(("batch_wait_s", "rows"), [(0.5, [3]), (0.0, [1, 2])])
def test_batch_wait_gathers_frames_into_one_step(batch_wait_s: float, rows: list[int]) -> None:
    """After an idle period the first frame wakes the loop; with a batch wait, frames that
    arrive while it waits share the step, without one the step starts at once."""

    async def main() -> list[int]:
        engine = RecordingEngine(slots=3, delay_frames=0)
        scheduler = Scheduler(engine, batch_wait_s=batch_wait_s)
        await scheduler.start(warmup=False)
        await asyncio.sleep(0)  # one loop iteration: the scheduler's task runs until it idles
        assert scheduler.idle
        handles = [scheduler.open(Listener()) for _ in range(3)]
        frame = split_frames(encode_text("a"))[0][:1]
        for i, h in enumerate(handles):
            assert h is not None
            h.push(frame)
            if i == 0:
                await asyncio.sleep(0)  # the first frame wakes the loop, the others come after
                assert not scheduler.idle
        await steps_until(scheduler, lambda: sum(len(r.slots) for r in engine.records) == 3)
        await scheduler.stop()
        return [len(r.slots) for r in engine.records]

    assert asyncio.run(main()) == rows


def test_a_step_is_timed_on_the_engine_thread_not_the_wait_for_it() -> None:
    """The step time observers get (and /metrics exports) is the engine's own: a step that
    queued behind other work on the engine thread is not charged for the wait (a fake clock
    that only the blocking work and the step advance)."""

    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()

    class TimedEngine(RecordingEngine):
        def step(self, batch: StepInput) -> StepOutput:
            clock.now += 0.25
            return super().step(batch)

    async def main() -> list[tuple[float, int]]:
        seen: list[tuple[float, int]] = []
        scheduler = Scheduler(TimedEngine(slots=1, delay_frames=0), clock=clock)
        scheduler.add_step_observer(lambda seconds, rows: seen.append((seconds, rows)))
        await scheduler.start(warmup=False)
        started, gate = threading.Event(), threading.Event()

        def hold() -> None:
            started.set()
            gate.wait(10)
            clock.now += 5.0  # the engine thread is busy with something else meanwhile

        blocker = asyncio.ensure_future(scheduler.run_on_engine_thread(hold))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        listener = Listener()
        handle = scheduler.open(listener)
        assert handle is not None
        handle.push(np.zeros((1, FRAME_SAMPLES), np.float32))
        await asyncio.sleep(0)  # one turn: the woken scheduler task plans and hands the step over
        assert not scheduler.idle, "the step is queued behind the engine thread's other work"
        gate.set()
        await blocker
        await steps_until(scheduler, lambda: scheduler.stats.steps == 1)
        handle.close()
        await scheduler.stop()
        return seen

    assert asyncio.run(main()) == [(0.25, 1)]


def test_step_observers_see_every_step() -> None:
    async def main() -> list[tuple[float, int]]:
        seen: list[tuple[float, int]] = []
        scheduler = Scheduler(RecordingEngine(slots=1, delay_frames=0))
        scheduler.add_step_observer(lambda seconds, rows: seen.append((seconds, rows)))
        await scheduler.start(warmup=False)
        listener = Listener()
        handle = scheduler.open(listener)
        assert handle is not None
        send(handle, "ab")
        await listener.done()
        await scheduler.stop()
        assert scheduler.stats.steps == len(seen)
        return seen

    seen = asyncio.run(main())
    assert len(seen) == 4 and all(rows == 1 and seconds >= 0 for seconds, rows in seen)


def test_a_stream_holds_its_slot_for_its_block_whatever_ends_it() -> None:
    async def main() -> None:
        scheduler = Scheduler(RecordingEngine(slots=1, delay_frames=0))
        await scheduler.start(warmup=False)
        with pytest.raises(ValueError, match="handler failed"):
            async with scheduler.stream(Listener()) as handle:
                assert scheduler.used_slots == 1 and handle.slot == 0
                with pytest.raises(NoCapacityError, match="all 1 slots are busy; retry later"):
                    async with scheduler.stream(Listener()):
                        pass
                raise ValueError("handler failed")
        assert scheduler.used_slots == 0 and handle.closed
        listener = Listener()
        async with scheduler.stream(listener) as handle:  # the slot serves the next stream
            send(handle, "again")
            await listener.done()
        await scheduler.stop()
        assert listener.text == "again" and scheduler.used_slots == 0


class RecordingPort:
    """A StreamPort that records what a handle asks of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def slot_of(self, stream_id: int) -> int:
        self.calls.append(("slot_of", stream_id))
        return 3

    def backlog(self, stream_id: int) -> int:
        self.calls.append(("backlog", stream_id))
        return 2

    def configure(self, stream_id: int, options: StreamOptions) -> None:
        self.calls.append(("configure", stream_id))

    def push(self, stream_id: int, frames: Frames) -> None:
        self.calls.append(("push", stream_id))

    def finalize(self, stream_id: int, tail: Frames, *, end: bool) -> None:
        self.calls.append(("finalize", stream_id))

    def release(self, stream_id: int) -> None:
        self.calls.append(("release", stream_id))


def test_a_handle_speaks_only_to_its_port_for_its_own_stream() -> None:
    port = RecordingPort()
    handle = StreamHandle(port, 7)
    frames, tail = split_frames(encode_text("port"))
    assert (handle.slot, handle.backlog_frames) == (3, 2)
    handle.configure(StreamOptions(language="fr"))
    handle.push(frames[:0])  # nothing to queue: the port is not bothered
    handle.push(frames)
    handle.finalize(tail, end=True)
    handle.close()
    handle.close()
    assert handle.closed
    assert port.calls == [
        ("slot_of", 7),
        ("backlog", 7),
        ("configure", 7),
        ("push", 7),
        ("finalize", 7),
        ("release", 7),
    ]


def test_a_late_acknowledgement_holds_the_slot_and_never_holds_up_other_streams() -> None:
    async def main() -> None:
        engine = LateAckEngine(slots=2, delay_frames=0)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        ending, going = Listener(), Listener()
        flush_stepped, b_planned = asyncio.Event(), asyncio.Event()
        async with scheduler.stream(ending) as a, scheduler.stream(going) as b:

            def observe(seconds: float, rows: int) -> None:
                if any(engine.records[-1].flush):
                    flush_stepped.set()
                if flush_stepped.is_set() and going.words and b.backlog_frames == 0:
                    b_planned.set()

            scheduler.add_step_observer(observe)
            send(a, "bye")
            await asyncio.wait_for(flush_stepped.wait(), 5)
            assert not ending.finished and scheduler.used_slots == 2
            with pytest.raises(NoCapacityError):  # a stream awaiting its end keeps its slot
                async with scheduler.stream(Listener()):
                    pass
            b.push(split_frames(encode_text("still here"))[0])
            await asyncio.wait_for(b_planned.wait(), 5)  # b's words came while a's end was pending
            assert going.text.startswith("still") and not ending.finished
            steps = len(engine.records)
            engine.release()  # a's last words land with no frame waiting: the wake runs a step
            await ending.done(5)
            assert ending.events == ["word:bye", "finished"]
            assert [r.slots for r in engine.records[steps:]] == [[]], "one collecting step, no rows"
            assert scheduler.used_slots == 1
        await scheduler.stop()

    asyncio.run(main())


def test_a_flush_the_engine_never_acknowledges_fails_that_stream_instead_of_hanging() -> None:
    async def main() -> None:
        scheduler = Scheduler(AckDroppingEngine(slots=2))
        await scheduler.start(warmup=False)
        broken = Listener()
        async with scheduler.stream(broken) as handle:
            send(handle, "x")
            await broken.done(5)
        assert isinstance(broken.error, RuntimeError) and scheduler.used_slots == 0
        await scheduler.stop()

    asyncio.run(main())


def test_offline_transcribe_waits_for_acknowledgements_that_land_later() -> None:
    async def main() -> list[str]:
        engine = LateAckEngine(land_at_once=True, slots=2, delay_frames=2)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        words = await scheduler.transcribe(encode_text("late words"))
        await scheduler.stop()
        assert any(not r.slots for r in engine.records), "the last words came in a collecting step"
        return [w.text for w in words]

    assert asyncio.run(main()) == ["late", "words"]
